"""Real rhythm windows (MIT-BIH) and real noise (MIT-BIH Noise Stress Test) for the monitor model.

:func:`build_rhythm_windows` turns a folder of rhythm-annotated ECG records at any rate (MIT-BIH: 360 Hz,
two leads) into a :class:`~pedstream.train.dataset.WindowSet` at the model's rate, ready to be trained
beside the simulated Leipzig-format windows:

    open_record (leads mapped by name onto the canonical layout: MLII -> II, V1, V2, V4, V5; the IEGM
    channels and the other leads are absent) -> whole record, present leads only -> scipy.signal.resample_poly
    (360 -> 977 Hz exactly: up 977, down 360) -> FilterBank at 977 Hz (the serving filters) -> rhythm
    episodes from the ``+`` annotations (pedstream.data.rhythm, mapped by ``[labels.rhythm.<mix.rhythm_map>]``;
    an aux with no class drops its episodes) -> windows of ``segments.window_s`` every ``segments.hop_s`` that
    lie wholly inside one episode, after the filter warm-up, with at least ``segments.min_beats`` beats ->
    normalize_window with the record's presence mask (the IEGM branch is masked).

A window of a ``sinus`` episode must also be clean at the beat level: its beats, grouped by the active
label scheme, must all fall in one class (all N/L -> sinus, all R -> that scheme's class for R, e.g. rbbb);
a sinus window holding an ectopic beat is dropped, as the simulated records' mixed windows are.

At most ``mix.eval_windows_per_class_record`` windows are kept per (record, class), evenly spaced in time;
:func:`training_subset` draws at most ``mix.max_windows_per_class_record`` of them per (record, class) for
training. Each record is its own subject (``mitdb:<record>``).

:class:`NoiseMixer` adds real noise to training batches (never to validation or test windows): the
``bw`` (baseline wander) and ``ma`` (muscle) records of the Noise Stress Test Database and ``em`` (electrode
motion, recovered as ``118e00 - 118``: the stress-test record minus the clean MIT-BIH record), resampled
and filtered exactly as the signals. The filters are linear, so adding filtered noise to a filtered
window equals filtering the noisy signal; the SNR is taken per lead against the window's own (unit,
z-scored) power and the noisy lead is z-scored again, which is the normalised noisy window. It also cuts
a fraction of full 12-lead windows down to 1-3 random leads (the partial layouts real monitors send).
Seeded: the same seed gives the same noise.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from pedstream.errors import RecordError
from pedstream.train.dataset import N_ECG, WindowSet, _load_cache, default_cache_dir
from pedstream.train.plan import record_hashes

if TYPE_CHECKING:  # pragma: no cover
    from pedstream.config import Config

__all__ = ["RHYTHM_CACHE_VERSION", "NoiseMixer", "build_rhythm_windows", "concat_windows", "load_noise",
           "resample_to", "training_subset"]

RHYTHM_CACHE_VERSION = 1


def resample_to(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """(n, C) samples at ``fs_in`` -> (m, C) float64 at ``fs_out`` with :func:`scipy.signal.resample_poly`
    (the up/down ratio as :class:`pedstream.dsp.resample.StreamResampler` takes it)."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    if fs_in <= 0 or fs_out <= 0:
        raise ValueError(f"sampling rates must be positive (got {fs_in}, {fs_out})")
    r = Fraction(float(fs_out) / float(fs_in)).limit_denominator(1000)
    x = np.asarray(x, dtype=np.float64)
    if r == 1:
        return x.copy()
    return resample_poly(x, r.numerator, r.denominator, axis=0)


def _filter(x: np.ndarray, fs: float, cfg: "Config") -> np.ndarray:
    """ECG filters of the serving path over (n, k) leads (k ECG channels, no IEGM)."""
    from pedstream.dsp.filters import FilterBank

    bank = FilterBank(fs=fs, cfg=cfg.filters, n_ecg=x.shape[1], n_iegm=0, name="rhythm windows")
    return bank.process(x)


def _episodes(rec: Any, ann: Any, cfg: "Config") -> list[tuple[int, int, str]]:
    """(start, stop, class) at the record's rate of every rhythm episode that has a class."""
    from pedstream.data.rhythm import RhythmMapping, episodes_from_annotations

    mapping = RhythmMapping.from_config(cfg, cfg.mix.rhythm_map)
    eps = episodes_from_annotations(ann, mapping, n_samples=int(rec.n_samples), fs=float(rec.fs), record=rec.name)
    return [(int(e.start), int(e.end), str(e.label)) for e in eps if e.label is not None]


def _plan(rec: Any, ann: Any, cfg: "Config", classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Window starts (at the model rate) and class indices of one record, before any cap."""
    from pedstream.data.labels import LabelGrouping
    from pedstream.dsp.windowing import window_samples

    fs_out = float(cfg.signal.fs)
    ratio = fs_out / float(rec.fs)
    win = int(window_samples(cfg.segments.window_s, fs_out))
    hop = int(window_samples(cfg.segments.hop_s, fs_out))
    n_out = int(np.ceil(rec.n_samples * ratio))
    settle = int(round(cfg.filters.settle_s * fs_out))
    grouping = LabelGrouping(cfg.labels.active)
    beat = ann.beat_mask()
    bsamp = np.round(ann.sample[beat] * ratio).astype(np.int64)
    blab = grouping.labels(np.asarray(ann.symbol)[beat], np.asarray(ann.aux)[beat])
    sinus = classes.index("sinus") if "sinus" in classes else -1
    starts, labels = [], []
    for s0, s1, name in _episodes(rec, ann, cfg):
        if name not in classes:
            continue
        k = classes.index(name)
        a = max(int(np.ceil(s0 * ratio)), settle)
        b = min(int(np.floor(s1 * ratio)), n_out)
        for st in range(a, b - win + 1, hop):
            i0, i1 = np.searchsorted(bsamp, [st, st + win])
            if i1 - i0 < cfg.segments.min_beats:
                continue
            lab = k
            if k == sinus:  # a sinus window must be clean: all its beats in one beat class
                kinds = set(blab[i0:i1].tolist()) - {-1}
                if len(kinds) != 1:
                    continue
                lab = kinds.pop()
            starts.append(st)
            labels.append(lab)
    return np.asarray(starts, dtype=np.int64), np.asarray(labels, dtype=np.int64)


def _even_cap(starts: np.ndarray, labels: np.ndarray, cap: int) -> np.ndarray:
    """Indices keeping at most ``cap`` windows per class, evenly spaced in time (sorted)."""
    keep: list[np.ndarray] = []
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        if idx.size > cap:
            idx = idx[np.unique(np.linspace(0, idx.size - 1, cap).round().astype(np.int64))]
        keep.append(idx)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def _fingerprint(cfg: "Config", hashes: list[dict[str, Any]]) -> str:
    fp = {"version": RHYTHM_CACHE_VERSION, "signal": cfg.signal.model_dump(mode="json"),
          "filters": cfg.filters.model_dump(mode="json"), "segments": cfg.segments.model_dump(mode="json"),
          "labels": cfg.labels.active.model_dump(mode="json"),
          "rhythm": cfg.labels.rhythm[cfg.mix.rhythm_map].model_dump(mode="json"),
          "cap": cfg.mix.eval_windows_per_class_record, "records": hashes}
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:24]


def build_rhythm_windows(folder: str | Path, cfg: "Config", *, records: Sequence[str] | None = None,
                         cache_dir: str | Path | None = None) -> WindowSet:
    """Rhythm windows of the records in ``folder`` (see the module docstring), cached like
    :func:`pedstream.train.dataset.build_windows`. ``records`` restricts to those names;
    ``train.exclude_records`` is not applied (the sets are mixed, the exclusions differ)."""
    from pedstream.config import SignalConfig
    from pedstream.data.labels import LabelGrouping
    from pedstream.data.loader import list_records, open_record
    from pedstream.dsp.windowing import normalize_window, window_samples

    folder = Path(folder)
    paths = [Path(p) for p in list_records(folder)] if folder.is_dir() else []
    if records is not None:
        paths = [p for p in paths if p.name in set(records)]
    if not paths:
        raise RecordError(str(folder), "contains no WFDB records (.hea files) to cut rhythm windows from")
    classes = list(LabelGrouping(cfg.labels.active).classes)
    win = int(window_samples(cfg.segments.window_s, cfg.signal.fs))
    hop = int(window_samples(cfg.segments.hop_s, cfg.signal.fs))
    key = _fingerprint(cfg, [{"name": p.name, "sha256": record_hashes(p)} for p in paths])
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir(cfg)
    target = root / f"rhythm-{key}"
    if (target / "meta.json").is_file():
        return _load_cache(target)
    sig_cfg = SignalConfig(**{**cfg.signal.model_dump(), "required": []})
    cut: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for p in paths:
        rec = open_record(p, sig_cfg)
        ann = rec.annotations()
        if ann is None:
            raise RecordError(str(p), "has no annotations (.atr with '+' rhythm markers)")
        starts, labels = _plan(rec, ann, cfg, classes)
        keep = _even_cap(starts, labels, cfg.mix.eval_windows_per_class_record)
        present = np.asarray(rec.present, dtype=bool).copy()
        present[N_ECG:] = False
        cut.append((rec, starts[keep], labels[keep], present, np.flatnonzero(present)))
    n = int(sum(c[1].size for c in cut))
    if n == 0:
        raise RecordError(str(folder), "no rhythm windows (no mapped '+' episodes long enough)")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".rhythm-{key}-", dir=root))
    try:
        x = np.lib.format.open_memmap(tmp / "x.npy", mode="w+", dtype=np.float16, shape=(n, 19, win))
        mask = np.zeros((n, 19), dtype=bool)
        info, off = [], 0
        for rec, starts, labels, present, cols in cut:
            if starts.size:
                raw = np.asarray(rec.read(0, rec.n_samples).data, dtype=np.float64)[:, cols]  # (n, k) mV
                y = _filter(resample_to(raw, rec.fs, cfg.signal.fs), float(cfg.signal.fs), cfg)  # (m, k)
                for j in range(0, starts.size, 256):
                    s = starts[j:j + 256]
                    xb = np.zeros((s.size, 19, win), dtype=np.float32)
                    xb[:, cols] = np.stack([y[a:a + win].T for a in s])
                    x[off + j:off + j + s.size] = normalize_window(xb, present).astype(np.float16)
                mask[off:off + starts.size] = present
            off += starts.size
            info.append({"name": rec.name, "subject": f"mitdb:{rec.name}", "path": str(rec.path.resolve()),
                         "sha256": record_hashes(rec.path), "n_samples": int(rec.n_samples), "fs_in": float(rec.fs),
                         "n_windows": int(starts.size), "leads": [rec.channels[c] for c in cols]})
        x.flush()
        del x
        np.savez(tmp / "index.npz", mask=mask, labels=np.concatenate([c[2] for c in cut]),
                 subjects=np.asarray([f"mitdb:{c[0].name}" for c in cut for _ in range(c[1].size)], dtype=str),
                 records=np.asarray([c[0].name for c in cut for _ in range(c[1].size)], dtype=str),
                 starts=np.concatenate([c[1] for c in cut]))
        meta = {"key": key, "classes": classes, "fs": float(cfg.signal.fs), "window": win, "hop": hop,
                "records": info, "storage": "float16", "source": "rhythm"}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        try:
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ws = _load_cache(target)
    ws.cache_hit = False
    return ws


def training_subset(ws: WindowSet, idx: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """At most ``cap`` of the windows ``idx`` per (record, class): a seeded random subset (sorted); 0 = all."""
    idx = np.asarray(idx, dtype=np.int64)
    if cap <= 0:
        return np.sort(idx)
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    keys = np.char.add(np.char.add(ws.records[idx].astype(str), "|"), ws.labels[idx].astype(str))
    for k in sorted(set(keys.tolist())):
        sel = idx[keys == k]
        out.append(sel if sel.size <= cap else rng.choice(sel, size=cap, replace=False))
    return np.sort(np.concatenate(out)) if out else idx[:0]


def concat_windows(sets: Sequence[WindowSet], cache_dir: str | Path) -> WindowSet:
    """One :class:`WindowSet` holding ``sets`` one after another (cached by their keys)."""
    classes = sets[0].classes
    for s in sets[1:]:
        if s.classes != classes or s.window != sets[0].window or s.fs != sets[0].fs:
            raise ValueError("window sets to concatenate differ in classes, window length or rate")
    key = hashlib.sha256("+".join(s.key for s in sets).encode()).hexdigest()[:24]
    root = Path(cache_dir)
    target = root / f"concat-{key}"
    if (target / "meta.json").is_file():
        return _load_cache(target)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".concat-{key}-", dir=root))
    n = sum(len(s) for s in sets)
    x = np.lib.format.open_memmap(tmp / "x.npy", mode="w+", dtype=np.float16, shape=(n, 19, sets[0].window))
    off = 0
    for s in sets:
        for j in range(0, len(s), 512):
            x[off + j:off + min(j + 512, len(s))] = s.x[j:j + 512]
        off += len(s)
    x.flush()
    del x
    cat = {f: np.concatenate([getattr(s, f) for s in sets]) for f in ("mask", "labels", "subjects", "records", "starts")}
    np.savez(tmp / "index.npz", **cat)
    meta = {"key": key, "classes": classes, "fs": sets[0].fs, "window": sets[0].window, "hop": sets[0].hop,
            "records": [r for s in sets for r in s.record_info], "storage": "float16", "parts": [s.key for s in sets]}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    try:
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return _load_cache(target)


def load_noise(noise_dir: str | Path, cfg: "Config", *, clean_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """``{name: (n, 2) float32}`` filtered noise at the model rate for ``mix.noise_records``.

    ``em`` is recovered as ``118e00 - 118`` (``118`` read from ``clean_dir``, the MIT-BIH folder) in
    digital units less their constant offset in the clean stretches, kept in the seconds where it is not
    zero (the stress-test record adds noise in blocks of minutes)."""
    import wfdb

    noise_dir = Path(noise_dir)
    out: dict[str, np.ndarray] = {}
    for name in cfg.mix.noise_records:
        try:
            if name == "em":
                if clean_dir is None:
                    raise RecordError(str(noise_dir / "118e00"), "em noise needs the clean record 118 (clean_dir)")
                nr = wfdb.rdrecord(str(noise_dir / "118e00"), physical=False)
                cr = wfdb.rdrecord(str(Path(clean_dir) / "118"), physical=False)
                n = min(nr.sig_len, cr.sig_len)
                diff = nr.d_signal[:n].astype(np.int64) - cr.d_signal[:n].astype(np.int64)  # (n, 2) digital
                # the clean stretches differ by one constant (118e00's header has another adc zero): the mode
                vals, counts = zip(*(np.unique(diff[:, c], return_counts=True) for c in range(diff.shape[1])))
                offset = np.asarray([v[np.argmax(k)] for v, k in zip(vals, counts)])
                d = (diff - offset) / np.asarray(nr.adc_gain, dtype=np.float64)  # mV
                sec = int(nr.fs)
                blocks = d[: d.shape[0] // sec * sec].reshape(-1, sec, d.shape[1])
                active = np.abs(blocks).max(axis=(1, 2)) > 0
                sig, fs = blocks[active].reshape(-1, d.shape[1]), float(nr.fs)
            else:
                r = wfdb.rdrecord(str(noise_dir / name))
                sig, fs = r.p_signal, float(r.fs)
        except (OSError, ValueError) as exc:
            raise RecordError(str(noise_dir / name), f"cannot read noise record: {exc}") from exc
        sig = np.nan_to_num(np.asarray(sig, dtype=np.float64))
        out[name] = _filter(resample_to(sig, fs, cfg.signal.fs), float(cfg.signal.fs), cfg)[int(cfg.filters.settle_s * cfg.signal.fs):]
    return out


class NoiseMixer:
    """Training-batch augmentation: real noise at a random SNR and random lead subsets (see module doc).

    ``mixer(batch)`` changes the batch dict (``ecg`` (B,12,T), ``mask`` (B,19); numpy arrays or torch
    tensors sharing memory with numpy) in place and returns it.
    """

    def __init__(self, noise: Mapping[str, np.ndarray], *, prob: float, snr_db: tuple[float, float],
                 lead_dropout: float, seed: int) -> None:
        if snr_db[0] > snr_db[1]:
            raise ValueError(f"snr_db range {snr_db} is reversed")
        self.noise = {k: np.asarray(v, dtype=np.float32) for k, v in noise.items()}
        self.names = sorted(self.noise)
        self.prob, self.snr_db, self.lead_dropout = float(prob), (float(snr_db[0]), float(snr_db[1])), float(lead_dropout)
        self.rng = np.random.default_rng(seed)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from pedstream.dsp.windowing import normalize_window

        ecg = np.asarray(batch["ecg"])  # (B, 12, T) view of the batch's memory
        mask = np.asarray(batch["mask"])  # (B, 19)
        b, _, t = ecg.shape
        rng = self.rng
        for i in range(b):
            present = mask[i, :N_ECG] > 0
            if self.lead_dropout and present.sum() >= N_ECG and rng.random() < self.lead_dropout:
                keep = rng.choice(N_ECG, size=int(rng.integers(1, 4)), replace=False)
                drop = np.ones(N_ECG, dtype=bool)
                drop[keep] = False
                ecg[i, drop] = 0.0
                mask[i, :N_ECG][drop] = 0.0
                present = ~drop
            if not self.names or rng.random() >= self.prob:
                continue
            src = self.noise[self.names[int(rng.integers(len(self.names)))]]
            if src.shape[0] <= t:
                continue
            a = int(rng.integers(0, src.shape[0] - t))
            snr = rng.uniform(*self.snr_db)
            for c in np.flatnonzero(present):
                seg = src[a:a + t, c % src.shape[1]].astype(np.float64)
                seg = seg - seg.mean()
                rms = float(np.sqrt(np.mean(seg ** 2)))
                if rms < 1e-9:
                    continue
                sig_rms = float(np.sqrt(np.mean(np.asarray(ecg[i, c], np.float64) ** 2))) or 1.0
                ecg[i, c] = ecg[i, c] + seg * (sig_rms * 10 ** (-snr / 20) / rms)
            ecg[i] = normalize_window(ecg[i], present)
        return batch
