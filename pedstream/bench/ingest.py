"""``pedstream bench ingest``: N LSL outlets into the engine's LSL inlets, and into mne-lsl's ``StreamLSL``.

A publisher process (``python -m pedstream.bench.publish --to lsl``) opens N outlets (977 Hz,
19 float32 channels, the bundled record ``x001``) and pushes ``--seconds`` of signal in real time in
50 ms chunks, each outlet waiting (up to 60 s) for its consumer first so no sample goes out before
an inlet listens. This process receives:

- ``pedstream``: :class:`~pedstream.stream.lsl.inlet.LSLSource` (the engine's LSL source: resolver,
  one inlet per stream, non-blocking ``pull_chunk`` into a preallocated buffer, timestamps,
  ``ChunkReceived`` events), the events drained and counted;
- ``mne-lsl`` (``--peer mne-lsl``, the ``peers`` extra): one ``mne_lsl.stream.StreamLSL`` per outlet
  (its own acquisition thread, ring buffer of 5 s), samples counted by its ``n_new_samples`` (never
  reset: no ``get_data`` call).

For each: samples sent (the publisher's count), received (a backlog is waited for while it still
drains, up to 60 s after the publisher ended), ``lost`` = sent - received (pushed before the inlet
listened, or never delivered), samples/s received over the push time, this process's CPU (% of one core) and CPU microseconds per 1,000
samples. LSL stays on this machine: the ``[lsl]`` settings (scope ``machine``, loopback) with a
session id private to this run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any, Callable

from pedstream.bench.common import CpuSampler, machine_info

__all__ = ["ingest_bench", "RECORD_SECONDS"]

RECORD_SECONDS = 24.0  # length of the bundled record x001 (the publisher does not loop)


def _publisher(n: int, seconds: float, session: str, prefix: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pedstream.bench.publish", "--to", "lsl", "--streams", str(n),
                             "--seconds", str(seconds), "--session-id", session, "--id-prefix", prefix,
                             "--wait-consumers-s", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ))


def _sent(proc: subprocess.Popen, timeout: float) -> dict[str, int]:
    out, err = proc.communicate(timeout=timeout)
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return {k: int(v) for k, v in json.loads(line)["sent"].items()}
    raise RuntimeError(f"LSL publisher gave no counts (exit {proc.returncode}): {err.strip()[-300:]}")


def _row(consumer: str, n: int, sent: dict[str, int], received: dict[str, int], push_s: float,
         cpu: dict[str, Any]) -> dict[str, Any]:
    s, r = sum(sent.values()), sum(received.get(k, 0) for k in sent)
    proc_cpu = cpu["process_cpu_pct"]
    return {"consumer": consumer, "streams": n, "streams_received": sum(1 for k in sent if received.get(k)),
            "samples_sent": s, "samples_received": r, "lost": s - r,
            "lost_on_streams_received": sum(sent[k] - received[k] for k in sent if received.get(k)),
            "push_seconds": round(push_s, 2),
            "samples_per_s": round(r / push_s, 1) if push_s > 0 else None, "process_cpu_pct": proc_cpu,
            "us_cpu_per_ksample": round(proc_cpu / 100 * push_s * 1e6 / (r / 1000), 1) if r else None,
            "cpu_per_core_pct": cpu["cpu_per_core_pct"]}


async def _pedstream(cfg: Any, n: int, seconds: float, session: str, log: Callable[[str], None]) -> dict[str, Any]:
    from pedstream.bench.engine import CountingQueue
    from pedstream.stream.lsl.inlet import LSLSource

    from concurrent.futures import ThreadPoolExecutor

    # LSLSource makes its blocking liblsl calls (open_stream, info, time_correction) in the default
    # thread pool, min(32, cores + 4) threads: too few for hundreds of inlets (each time_correction may
    # block up to 1 s every 5 s); the bench gives it one thread per stream (see the result's notes)
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=n + 8))
    q = CountingQueue()
    src = LSLSource.from_config(cfg.lsl, events=q, predicate="starts-with(source_id, 'ing')")
    drained = 0

    async def drain() -> None:
        nonlocal drained
        while True:
            await q.get()
            drained += 1

    async with src:
        task = asyncio.create_task(drain())
        proc = _publisher(n, seconds, session, "ing")
        cpu = CpuSampler().start()
        t0 = time.perf_counter()
        first: float | None = None
        give_up = time.perf_counter() + seconds + 90 + n  # outlets open, wait (<= 60 s) for their inlet, push, linger
        while proc.poll() is None:  # the publisher ends after its last chunk (+ 1 s linger)
            if first is None and sum(q.samples.values()):
                first = time.perf_counter()
            if time.perf_counter() > give_up:
                proc.kill()
                raise RuntimeError(f"LSL publisher of {n} outlets still running after {give_up - t0:.0f} s")
            await asyncio.sleep(0.05)
        sent = await asyncio.to_thread(_sent, proc, 30)
        last, deadline = -1, time.perf_counter() + 60.0
        while time.perf_counter() < deadline:  # what is still in LSL's buffers (a backlog drains late)
            now = sum(q.samples.values())
            if now >= sum(sent.values()) or now == last:
                break
            last = now
            await asyncio.sleep(2.0)
        drain_s = time.perf_counter() - t0
        usage = cpu.stop()
        task.cancel()
    push_s = min(seconds, time.perf_counter() - (first or t0))
    log(f"  pedstream LSLSource: {sum(q.samples.values())}/{sum(sent.values())} samples")
    return _row("pedstream", n, sent, dict(q.samples), push_s, usage)


def _mne_lsl(n: int, seconds: float, session: str, log: Callable[[str], None]) -> dict[str, Any]:
    import mne_lsl
    from mne_lsl.stream import StreamLSL

    mne_lsl.set_log_level("WARNING")  # "new samples exceed the buffer" is expected: we count, never read

    proc = _publisher(n, seconds, session, "mne")
    counts: dict[str, int] = {}
    streams = []
    cpu = CpuSampler().start()
    t0 = time.perf_counter()
    try:
        from concurrent.futures import ThreadPoolExecutor

        def connect(sid: str) -> Any:
            try:
                return StreamLSL(bufsize=5.0, name=sid, source_id=sid).connect(acquisition_delay=0.01, timeout=60)
            except RuntimeError as exc:  # not found in time: all its samples count as lost
                failures.append(f"{sid}: {exc}")
                return None

        failures: list[str] = []
        ids = [f"mne{i:04d}" for i in range(n)]
        with ThreadPoolExecutor(max_workers=min(32, n)) as pool:  # connect() blocks: resolve + open
            streams = [(sid, st) for sid, st in zip(ids, pool.map(connect, ids)) if st is not None]
        sent = _sent(proc, seconds + 120)
        last, deadline = -1, time.perf_counter() + 60.0
        while time.perf_counter() < deadline:
            counts = {sid: int(st.n_new_samples) for sid, st in streams}  # never reset: no get_data call
            now = sum(counts.values())
            if now >= sum(sent.values()) or now == last:
                break
            last = now
            time.sleep(2.0)
        usage = cpu.stop()
    finally:
        for _, st in streams:
            try:
                st.disconnect()
            except Exception:  # already gone with its outlet
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    log(f"  mne-lsl StreamLSL: {sum(counts.values())}/{sum(sent.values())} samples")
    row = _row("mne-lsl", n, sent, counts, min(seconds, time.perf_counter() - t0), usage)
    row["not_connected"] = len(failures)
    if failures:
        row["first_failure"] = failures[0][:300]
    return row


def ingest_bench(cfg: Any, *, streams: int, seconds: float, peer: str | None = None, quick: bool = False,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Both measurements (the module docstring) in one run; JSON-ready result."""
    from pedstream.stream.lsl.config import configure_lsl_from

    notes = [f"the LSL source ran with a default thread pool of {streams + 8} threads (its blocking liblsl calls "
             "run there; the asyncio default, min(32, cores + 4), is too small for hundreds of inlets)"]
    if seconds > RECORD_SECONDS:
        notes.append(f"--seconds {seconds:g} capped at the record's {RECORD_SECONDS:g} s")
        seconds = RECORD_SECONDS
    session = f"pedstream-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    cfg.lsl.session_id = session
    configure_lsl_from(cfg.lsl)  # this process (pylsl) and, through LSLAPICFG, mne-lsl's liblsl
    log(f"LSL session {session}: {streams} outlets x 977 Hz x 19 channels for {seconds:g} s")
    rows = [asyncio.run(_pedstream(cfg, streams, seconds, session, log))]
    if peer == "mne-lsl":
        try:
            import mne_lsl  # noqa: F401
        except ImportError:
            notes.append("mne-lsl not installed (pip install 'pedstream[peers]'): no peer row")
        else:
            rows.append(_mne_lsl(streams, seconds, session, log))
    if len(rows) == 2 and rows[1]["us_cpu_per_ksample"] and rows[0]["us_cpu_per_ksample"]:
        notes.append(f"CPU per sample: mne-lsl / pedstream = "
                     f"{rows[1]['us_cpu_per_ksample'] / rows[0]['us_cpu_per_ksample']:.2f}")
    return {"bench": "ingest", "quick": quick, "transport": "lsl", "lsl": {"scope": cfg.lsl.resolve_scope,
            "interfaces": list(cfg.lsl.interfaces), "session_id": session}, "seconds": seconds,
            "machine": machine_info(), "results": rows, "notes": notes}
