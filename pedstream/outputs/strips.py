"""Alarm strips: each alarm onset's 10 s ECG+IEGM strip PNG, drawn in a worker thread
(:func:`save_strip`) so the event loop never waits on matplotlib; a daemon
thread of its own, so a strip stuck on a hung path never holds the end of the run. The engine
asks for a file name at the onset (it goes into the ``alarm_on`` event) and hands over the samples
once the post-onset part has arrived (:class:`~pedstream.monitor.pipeline.ReadyStrip`)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pedstream.outputs.linewriter import in_daemon_thread
from pedstream.events import ReadyStrip
from pedstream.config import AlarmsSection

__all__ = ["StripWriter", "alarms_folder", "run_folder", "save_strip", "wrap_title"]

log = logging.getLogger(__name__)


def alarms_folder(section: AlarmsSection, *, events_path: Path | str | None = None, override: Path | str | None = None,
                  demo: bool = False) -> Path:
    """Where the alarm strips go (absolute): ``override`` (``--alarms-dir``), else ``[alarms] dir``, else
    ``alarms`` beside the events file, else ``$XDG_DATA_HOME/pedstream/alarms`` (by default
    ``~/.local/share/pedstream/alarms``; ``demo-alarms`` for the demo): never the folder a command happens
    to run in. Commands put each run's strips in a folder of its own below it (:func:`run_folder`)."""
    if override is not None:
        return Path(override).expanduser().resolve()
    if section.dir:
        return Path(section.dir).expanduser().resolve()
    if events_path is not None:
        return Path(events_path).expanduser().resolve().parent / "alarms"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser().resolve() / "pedstream" / ("demo-alarms" if demo else "alarms")


_RUN_DIR = re.compile(r"^run-\d{8}T\d{6}Z(-\d+)?$")


def run_folder(base: Path | str, section: AlarmsSection, *, now: datetime | None = None) -> Path:
    """This run's strip folder, ``base/run-YYYYMMDDTHHMMSSZ`` (UTC start time; not created until a strip
    is drawn). Older run folders in ``base`` beyond ``[alarms] keep_runs`` or, oldest first, past
    ``keep_mb`` in all, are removed first; only folders named like this are ever touched."""
    base = Path(base)
    stamp = (now or datetime.now(timezone.utc)).strftime("run-%Y%m%dT%H%M%SZ")
    here, k = base / stamp, 2
    while here.exists():
        here, k = base / f"{stamp}-{k}", k + 1
    _prune_runs(base, keep_runs=max(0, section.keep_runs - 1), keep_bytes=int(section.keep_mb * 1e6))
    return here


def _prune_runs(base: Path, *, keep_runs: int, keep_bytes: int) -> None:
    try:
        runs = sorted((p for p in base.iterdir() if p.is_dir() and _RUN_DIR.match(p.name)), key=lambda p: p.name)
    except OSError:
        return  # no folder yet, or unreadable: nothing to prune
    sizes = {p: sum(f.stat().st_size for f in p.iterdir() if f.is_file()) for p in runs}
    total = sum(sizes.values())
    for i, p in enumerate(runs):
        if len(runs) - i <= keep_runs and total <= keep_bytes:
            break
        try:
            shutil.rmtree(p)
            total -= sizes[p]
        except OSError as exc:
            log.warning("alarm strips: cannot remove old run folder %s (%s)", p, exc.strerror or exc)


class StripWriter:
    """Names and draws the alarm strips of one engine into ``alarms_dir``; ``paths`` lists those drawn."""

    def __init__(self, *, alarms_dir: Path | str, banner: str) -> None:
        self.alarms_dir = Path(alarms_dir)
        self.banner = banner
        self.paths: list[Path] = []
        self.failed: list[Path] = []  # strips named in an alarm_on event that could not be written
        self.fault: str | None = None  # the current storage fault (reported once), None when strips are written
        self.on_technical: Any = None  # receives technical_alarm events (set by the outputs layer)
        self._tasks: set[asyncio.Task] = set()

    def report(self) -> dict[str, Any]:
        """The outputs layer's row: strips written and not written."""
        return {"output": "strips", "path": str(self.alarms_dir), "written": len(self.paths),
                "not_written": len(self.failed), "fault": self.fault}

    def _fault(self, path: Path, exc: BaseException | None) -> None:
        """A strip not written (reported once per fault, the partial file removed) or, ``exc`` None, written again."""
        if exc is None:
            if self.fault is not None:
                self.fault = None
                log.warning("alarm strips: written again in %s", self.alarms_dir)
                self._technical("off", f"alarm strips written again in {self.alarms_dir}")
            return
        self.failed.append(path)
        try:
            path.unlink(missing_ok=True)  # never leave a 0-byte or half-written PNG behind
        except OSError:
            pass
        if self.fault is None:
            why = f"{exc.strerror} (errno {exc.errno})" if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.fault = f"{path.parent}: {why}"
            log.error("alarm strips cannot be written: %s; monitoring goes on, further failures are counted", self.fault)
            self._technical("on", f"alarm strips cannot be written: {self.fault}")

    def _technical(self, state: str, message: str) -> None:
        if self.on_technical is not None:
            from pedstream.events import MonitorEvent

            self.on_technical(MonitorEvent(stream="pedstream", kind="technical_alarm", label="strips_unwritable",
                                           extra={"state": state, "output": "strips", "message": message}))

    def path_for(self, stream_id: str, label: str) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S_%f")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{stream_id}_{label}")
        return self.alarms_dir / f"{safe}_{stamp}.png"

    def write(self, pipe: Any, strip: ReadyStrip) -> None:
        """Draw ``strip`` of ``pipe``'s stream (a :class:`~pedstream.monitor.pipeline.StreamPipeline`) in a thread."""
        from pedstream.data.channels import CANONICAL_CHANNELS

        req = strip.request
        path = Path(req.t_iso)
        title = (f"{pipe.stream_id}  ALARM {req.label.upper()} ({req.priority})  {path.stem.rsplit('_', 2)[-2]}  "
                 f"HR {req.hr or pipe.heart_rate or float('nan'):.0f} bpm  — {self.banner}")

        async def _draw() -> None:
            try:
                await in_daemon_thread(save_strip, path, data=strip.data, fs=pipe.fs, channel_names=CANONICAL_CHANNELS,
                                        present=pipe.present, onset_s=strip.onset_s, title=title,
                                        alarm_s=strip.alarm_s)
                self.paths.append(path)
                self._fault(path, None)
            except Exception as exc:  # a failed drawing (full or read-only disk...) must not stop monitoring
                self._fault(path, exc)

        task = asyncio.get_running_loop().create_task(_draw(), name=f"strip-{pipe.stream_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def finish(self, limit_s: float) -> None:
        """Wait (at most ``limit_s``) for the strips still being drawn; abandon the rest with an error line."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=limit_s)
        if late:
            log.error("%d alarm strip(s) not drawn within %g s of leaving; abandoned", len(late), limit_s)
            for t in late:
                t.cancel()


def wrap_title(title: str, width_in: float, *, fontsize: float = 9.0) -> list[str]:
    """``title`` in lines that fit ``width_in`` inches at ``fontsize`` pt (about 0.6 em a character),
    broken at spaces; every word kept."""
    import textwrap

    per_line = max(20, int(width_in * 0.94 * 72 / (0.6 * fontsize)))
    return textwrap.wrap(title, width=per_line, break_long_words=False, break_on_hyphens=False) or [""]


def save_strip(
    path: Path,
    *,
    data: np.ndarray,
    fs: float,
    channel_names: Sequence[str],
    present: np.ndarray,
    onset_s: float,
    title: str,
    n_ecg: int = 12,
    alarm_s: float | None = None,
) -> Path:
    """Write a monitor-printout style strip PNG.

    ``data`` is ``(T, 19)`` float mV (canonical order, absent channels ignored via ``present``
    ``(19,) bool``), ``onset_s`` the alarm onset in seconds from the strip's start (drawn as a red
    line: where the episode's evidence began); ``alarm_s`` where the alarm was raised (dashed line). The
    title is wrapped onto as many lines as it needs (never cut). Standard paper scale: 25 mm/s, 10 mm/mV, pink 1 mm / 5 mm grid. Uses the Agg backend and
    no pyplot state, so it is safe in a worker thread.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = np.asarray(data, dtype=np.float64)
    rows = [i for i in range(data.shape[1]) if bool(present[i])]
    n_t = data.shape[0]
    dur = n_t / fs
    t = np.arange(n_t) / fs
    row_mv = 3.0  # vertical space per trace, mV
    height_mv = row_mv * max(1, len(rows))
    # 25 mm/s and 10 mm/mV -> figure size in inches (25.4 mm per inch), clipped to a sane size
    w_in = min(max(dur * 25 / 25.4, 4.0), 12.0)
    h_in = min(max(height_mv * 10 / 25.4 * 0.45, 3.0), 24.0)
    fig = Figure(figsize=(w_in, h_in), dpi=100)
    FigureCanvasAgg(fig)
    title_lines = wrap_title(title, w_in)
    top = 0.17 * len(title_lines) / h_in  # the title's share of the figure height (about 0.17 in a line)
    bottom = min(0.15, 0.45 / h_in)  # room for the time axis and its label
    ax = fig.add_axes((0.06, bottom, 0.93, max(0.4, 0.97 - top - bottom)))
    ax.set_facecolor("#fff5f5")
    for x in np.arange(0, dur + 1e-9, 0.04):  # 1 mm at 25 mm/s
        ax.axvline(x, color="#f4c2c2", lw=0.3 if round(x / 0.04) % 5 else 0.8, zorder=0)
    for y in np.arange(-height_mv, row_mv + 1e-9, 0.1):  # 1 mm at 10 mm/mV
        ax.axhline(y, color="#f4c2c2", lw=0.3 if round(y / 0.1) % 5 else 0.8, zorder=0)
    yticks, ylabels = [], []
    for r, ch in enumerate(rows):
        base = -r * row_mv
        trace = data[:, ch] - np.median(data[:, ch])
        trace = np.clip(trace, -row_mv / 2 * 1.4, row_mv / 2 * 1.4)
        ax.plot(t, base + trace, lw=0.6, color="black" if ch < n_ecg else "#1a3c8c")
        yticks.append(base)
        ylabels.append(channel_names[ch])
    ax.axvline(onset_s, color="red", lw=1.2)
    ax.text(onset_s, row_mv, " onset", color="red", fontsize=7, va="top")
    if alarm_s is not None:
        ax.axvline(alarm_s, color="red", lw=0.8, ls="--")
        ax.text(alarm_s, row_mv, " alarm", color="red", fontsize=7, va="top")
    ax.set_xlim(0, dur)
    ax.set_ylim(-height_mv + row_mv / 2, row_mv)
    ax.set_yticks(yticks, ylabels, fontsize=7)
    ax.set_xlabel("s (25 mm/s, 10 mm/mV)", fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    fig.suptitle("\n".join(title_lines), fontsize=9, x=0.06, y=0.995, ha="left", va="top")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
