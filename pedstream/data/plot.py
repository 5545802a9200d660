"""``pedstream data plot``: a clinical-style strip of one record to a PNG (matplotlib, Agg).

The strip stacks the 12 ECG leads (10 mm/mV) and the IEGM channels present in the record (each
scaled to its row, the gain printed beside it) on ECG paper: 1 mm minor / 5 mm major grid, i.e.
40 ms / 200 ms at 25 mm/s and 0.1 mV / 0.5 mV on the ECG leads. Clipped samples are drawn red.
Beat annotations are written above the traces (symbol and aux) with their grouped class names
below; rhythm markers (``+``) show their aux (``(AVRT``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pedstream.config import Config
from pedstream.data.labels import LabelGrouping
from pedstream.data.loader import open_record
from pedstream.errors import RecordError

__all__ = ["plot_command", "plot_strip"]

MM_PER_MV = 10.0
ECG_ROW_MM = 20.0
IEGM_ROW_MM = 15.0
TOP_MM = 18.0  # room for annotations above the first trace
BOTTOM_MM = 10.0  # room for class names below the last trace


def _paper_speed(seconds: float) -> float:
    """mm/s: 25 for strips up to 20 s, slower for long strips so the PNG stays printable."""
    for speed in (25.0, 12.5, 6.25):
        if seconds * speed <= 500:
            return speed
    return 2.5


def plot_strip(cfg: Config, record: Path, *, start: float, seconds: float, out: Path) -> Path:
    """Draw ``seconds`` of ``record`` from ``start`` (both in s) into ``out`` (PNG); return ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = open_record(record, cfg.signal)
    if seconds <= 0:
        raise RecordError(rec.name, f"--seconds must be positive, got {seconds:g}")
    s0 = int(round(start * rec.fs))
    if not 0 <= s0 < rec.n_samples:
        raise RecordError(rec.name, f"--start {start:g} s is outside the record (0 to {rec.duration_s:.1f} s)")
    s1 = min(rec.n_samples, s0 + int(round(seconds * rec.fs)))
    sig = rec.read(s0, s1)  # data (n, 19) mV
    t = (np.arange(s0, s1) / rec.fs).astype(np.float64)
    n_ecg = len(cfg.signal.ecg)
    rows = list(range(n_ecg)) + [n_ecg + i for i in range(len(cfg.signal.iegm)) if sig.present[n_ecg + i]]
    grouping = LabelGrouping.from_config(cfg)
    ann = rec.annotations()

    speed = _paper_speed(seconds)
    dur = (s1 - s0) / rec.fs
    heights = [ECG_ROW_MM if k < n_ecg else IEGM_ROW_MM for k in rows]
    total_mm = TOP_MM + sum(heights) + BOTTOM_MM
    width_mm = dur * speed
    fig_w = (width_mm + 45.0) / 25.4
    fig_h = (total_mm + 22.0) / 25.4
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=150)
    ax = fig.add_axes((35.0 / 25.4 / fig_w, 10.0 / 25.4 / fig_h, width_mm / 25.4 / fig_w, total_mm / 25.4 / fig_h))
    x0, x1 = t[0], t[0] + dur
    ax.set_xlim(x0, x1)
    ax.set_ylim(-total_mm, 0)
    ax.set_aspect(1.0 / speed)  # 1 mm vertical = 1/speed s horizontal: both 1 mm on paper
    # ECG paper grid: 1 mm minor, 5 mm major
    mm_s = 1.0 / speed
    for xv in np.arange(np.ceil(x0 / mm_s) * mm_s, x1 + 1e-9, mm_s):
        major = abs(xv / (5 * mm_s) - round(xv / (5 * mm_s))) < 1e-6
        ax.axvline(xv, color="#f4a6a6" if major else "#fbe0e0", lw=0.6 if major else 0.3, zorder=0)
    for yv in np.arange(0, -total_mm - 1e-9, -1.0):
        major = int(round(-yv)) % 5 == 0
        ax.axhline(yv, color="#f4a6a6" if major else "#fbe0e0", lw=0.6 if major else 0.3, zorder=0)

    y = -TOP_MM
    for k, h in zip(rows, heights):
        base = y - h / 2
        name = sig.channels[k]
        trace = sig.data[:, k].astype(np.float64)
        if k < n_ecg:
            gain = MM_PER_MV
            label = name if sig.present[k] else f"{name} (absent)"
        else:
            amp = float(np.percentile(np.abs(trace), 99.5)) if trace.size else 0.0
            gain = (0.45 * h / amp) if amp > 0 else MM_PER_MV
            label = f"{name}\n{gain:.3g} mm/mV"
        yy = base + np.clip(trace * gain, -h * 1.5, h * 1.5)  # neighbours may overlap, as on paper
        color = ("black" if sig.present[k] else "#bbbbbb") if k < n_ecg else "#1f3f8f"
        ax.plot(t, yy, color=color, lw=0.6, zorder=3)
        clip = sig.clipped[:, k]
        if clip.any():
            ax.plot(t[clip], yy[clip], ".", color="red", ms=1.2, zorder=4)
        ax.text(x0 - 0.01 * dur, base, label, ha="right", va="center", fontsize=7,
                color="black" if sig.present[k] or k >= n_ecg else "grey")
        y -= h
    # calibration mark: 1 mV (10 mm) at the start of the first present ECG lead
    first = next((i for i, k in enumerate(rows) if k < n_ecg and sig.present[k]), 0)
    cal_base = -TOP_MM - sum(heights[:first]) - heights[first] / 2
    ax.plot([x0 + 0.01 * dur] * 2, [cal_base, cal_base + MM_PER_MV], color="black", lw=1.2, zorder=5)

    if ann is not None:
        w = ann.window(s0, s1)
        for smp, sym, aux in zip(w.sample, w.symbol, w.aux):
            tx = smp / rec.fs
            if sym == "+":
                ax.text(tx, -2.0, aux or "+", fontsize=7, color="#7a1f7a", ha="left", va="top",
                        fontweight="bold", zorder=6)
                ax.axvline(tx, color="#7a1f7a", lw=0.5, ls="--", zorder=2)
                continue
            ax.axvline(tx, ymin=1 - TOP_MM / total_mm * 0.35, ymax=1.0, color="#444444", lw=0.4, zorder=2)
            ax.text(tx, -7.0, sym, fontsize=7, ha="center", va="top", zorder=6)
            if aux:
                ax.text(tx, -10.5, aux, fontsize=5, ha="center", va="top", color="#444444", zorder=6)
            cname = grouping.class_name(sym, aux)
            if cname:
                ax.text(tx, -total_mm + 1.0, cname, fontsize=6, ha="center", va="bottom", rotation=90,
                        color="#0b6e4f", zorder=6)
    ax.set_xticks(np.arange(np.ceil(x0), x1 + 1e-9, 1.0))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_yticks([])
    ax.set_xlabel("time (s)", fontsize=7)
    for sp in ax.spines.values():
        sp.set_visible(False)
    h0 = int(s0 / rec.fs)
    fig.suptitle(f"{rec.name}   layout {rec.layout or '-'}   {t[0]:.2f}-{x1:.2f} s "
                 f"(from {h0 // 3600}:{h0 % 3600 // 60:02d}:{h0 % 60:02d})   fs {rec.fs:g} Hz   "
                 f"{speed:g} mm/s, ECG {MM_PER_MV:g} mm/mV   grouping {cfg.labels.scheme}",
                 fontsize=8, x=0.02, ha="left", y=1 - 4.0 / 25.4 / fig_h)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def plot_command(cfg: Config, *, record: Path, start: float, seconds: float, out: Path) -> None:
    """CLI entry: draw the strip and print where it went."""
    path = plot_strip(cfg, Path(record), start=start, seconds=seconds, out=Path(out))
    print(f"wrote {path}")
