"""What every ``pedstream bench`` command shares: the machine block, percentiles, CPU/RSS sampling, the
rich table and the JSON file.

Every result is one JSON object ``{"bench": NAME, "command": ..., "quick": bool, "machine": {...},
...}``; :func:`machine_info` names the CPU (model, cores, load average at the start), the GPU when
``nvidia-smi`` answers, and the versions of the libraries that decide the figures.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from pedstream.fileio import write_json

__all__ = ["machine_info", "pct", "summary_ms", "CpuSampler", "ThreadCpu", "descendants", "rss_mib", "emit", "parse_ints", "repo_root", "command_line",
           "LIBRARIES"]

LIBRARIES = ("pedstream", "numpy", "scipy", "onnxruntime", "onnxruntime-gpu", "torch", "pylsl", "mne-lsl",
             "aiomqtt", "wfdb")


def repo_root() -> Path | None:
    """The source checkout pedstream runs from (an editable install), else None."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "bench").is_dir() else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> list[dict[str, str]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return gpus


def _git_commit() -> str | None:
    root = repo_root()
    if root is None or shutil.which("git") is None:
        return None
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _uncommitted() -> list[str] | None:
    """Files of pedstream/ that differ from the commit (the code measured is not exactly the commit's)."""
    root = repo_root()
    if root is None or shutil.which("git") is None:
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "pedstream"], capture_output=True,
                             text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [line[3:] for line in out.splitlines() if line[:2].strip()]


def machine_info() -> dict[str, Any]:
    """CPU model, cores, load average (1/5/15 min, other work on the machine skews timings), GPUs,
    platform, library versions (None: not installed), git commit, UTC time."""
    versions: dict[str, str | None] = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "load_avg": load, "gpus": _gpus(),
            "platform": platform.platform(), "python": platform.python_version(), "versions": versions,
            "commit": _git_commit(), "uncommitted": _uncommitted(), "time_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def pct(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (numpy's linear rule) of ``values``, None when empty."""
    v = np.asarray(list(values), dtype=np.float64)
    return None if v.size == 0 else float(np.percentile(v, q))


def summary_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """Median, p99 and mean of durations in seconds, as milliseconds (3 decimals)."""
    ms = [1000.0 * s for s in seconds]

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {"median_ms": r(pct(ms, 50)), "p99_ms": r(pct(ms, 99)),
            "mean_ms": r(float(np.mean(ms)) if ms else None)}


def _proc_stat() -> list[tuple[int, int]] | None:
    """(busy, total) jiffies per core from /proc/stat (Linux), None elsewhere."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    out = []
    for line in lines:
        if line.startswith("cpu") and line[3:4].isdigit():
            f = [int(x) for x in line.split()[1:]]
            idle = f[3] + (f[4] if len(f) > 4 else 0)
            out.append((sum(f) - idle, sum(f)))
    return out


class CpuSampler:
    """Whole-machine CPU use per core and this process's CPU time between ``start()`` and ``stop()``.

    ``stop()`` -> ``{"cpu_per_core_pct": [...], "process_cpu_pct": x}``: each core's busy share
    (every process on the machine, so other work shows) and this process's user+system time as a
    percentage of one core."""

    def start(self) -> "CpuSampler":
        self._stat = _proc_stat()
        self._t = time.perf_counter()
        self._proc = os.times()
        return self

    def stop(self) -> dict[str, Any]:
        wall = max(time.perf_counter() - self._t, 1e-9)
        p = os.times()
        proc = p.user + p.system - self._proc.user - self._proc.system  # not the children (a publisher)
        now = _proc_stat()
        per_core = None
        if self._stat is not None and now is not None and len(now) == len(self._stat):
            per_core = [round(100.0 * (b1 - b0) / max(t1 - t0, 1), 1) for (b0, t0), (b1, t1) in zip(self._stat, now)]
        return {"cpu_per_core_pct": per_core, "process_cpu_pct": round(100.0 * proc / wall, 1)}


def _ticks(path: str) -> int | None:
    """utime + stime (clock ticks) of a /proc ``stat`` file (a process or one of its threads)."""
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid: int, skip: set[int]) -> list[int]:
    """``pid``'s descendant processes (Linux /proc), except ``skip`` and theirs."""
    try:
        kids = [int(k) for t in Path(f"/proc/{pid}/task").iterdir() for k in (t / "children").read_text().split()]
    except (OSError, ValueError):
        return []
    out = []
    for k in kids:
        if k not in skip:
            out += [k, *descendants(k, skip)]
    return out


def _role(name: str, main: bool) -> str:
    if main:
        return "loop"
    if name.startswith("dsp"):
        return "dsp"
    if name.startswith(("ort", "beat", "rhythm")):
        return "inference"
    return "other"


class ThreadCpu:
    """CPU time of this process's threads by role between ``start()`` and ``stop()`` (Linux /proc; empty
    elsewhere), as percentages of one core: ``loop`` (the main thread: the event loop), ``dsp`` (the
    engine's DSP thread), ``inference`` (the model-call threads, normalisation included), ``other``
    (other Python threads), ``native`` (threads Python does not know: ONNX Runtime's own pool), and
    ``children``: the descendant processes (feature or DSP worker processes) except ``skip``.

    Which thread is saturated says more than wall-time shares: a thread that waits for the interpreter
    lock is busy in wall time but not on a CPU."""

    def __init__(self, skip: Sequence[int] = ()) -> None:
        self.skip = set(skip)

    def _snap(self) -> dict[str, int]:
        import threading

        pid = os.getpid()
        named = {t.native_id: _role(t.name, t is threading.main_thread()) for t in threading.enumerate()}
        out: dict[str, int] = {}
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            return out
        for tid in tids:
            ticks = _ticks(f"/proc/{pid}/task/{tid}/stat")
            if ticks is not None:
                role = named.get(tid, "native")
                out[role] = out.get(role, 0) + ticks
        for child in descendants(pid, self.skip):
            ticks = _ticks(f"/proc/{child}/stat")
            if ticks is not None:
                out[f"child:{child}"] = ticks
        return out

    def start(self) -> "ThreadCpu":
        self._t, self._s0 = time.perf_counter(), self._snap()
        return self

    def stop(self) -> dict[str, float]:
        wall = max(time.perf_counter() - self._t, 1e-9)
        s1 = self._snap()
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        out: dict[str, float] = {}
        for key, ticks in s1.items():
            role = "children" if key.startswith("child:") else key
            out[role] = out.get(role, 0.0) + (ticks - self._s0.get(key, 0))
        return {k: round(100.0 * v / hz / wall, 1) for k, v in sorted(out.items())}


def rss_mib(pid: int | None = None) -> float | None:
    """Resident memory of ``pid`` (default: this process) in MiB, from /proc (None elsewhere)."""
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except (OSError, ValueError):
        pass
    return None


def parse_ints(text: str, *, name: str) -> list[int]:
    """``"1,8,32"`` -> ``[1, 8, 32]`` (positive integers); a bad list is a click usage error."""
    import click

    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint=name) from exc
    if not values or any(v < 1 for v in values):
        raise click.BadParameter(f"expected positive integers, got {text!r}", param_hint=name)
    return values


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def emit(result: Mapping[str, Any], *, title: str, columns: Sequence[tuple[str, str]],
         rows: Sequence[Mapping[str, Any]], json_path: Path | None, notes: Sequence[str] = ()) -> None:
    """Print ``rows`` as a rich table (``columns``: (key, header) pairs), the machine line and ``notes``
    to stdout; write ``result`` to ``json_path`` (atomically) when given."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # a log or a pipe: wide enough that no column is cut
        console = Console(width=160)
    table = Table(title=title, title_justify="left")
    for _, header in columns:
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(*(_fmt(row.get(key)) for key, _ in columns))
    console.print(table)
    m = result.get("machine", {})
    gpu = ", ".join(g["name"] for g in m.get("gpus") or []) or "none"
    console.print(f"machine: {m.get('cpu')} x {m.get('cores')} cores, load {m.get('load_avg')}, GPU {gpu}; "
                  f"onnxruntime {m.get('versions', {}).get('onnxruntime') or m.get('versions', {}).get('onnxruntime-gpu')}",
                  highlight=False)
    for note in notes:
        console.print(note, highlight=False)
    if json_path is not None:
        write_json(json_path, dict(result), indent=2)
        console.print(f"wrote {json_path}", highlight=False)


def command_line() -> str:
    return "pedstream " + " ".join(sys.argv[1:])
