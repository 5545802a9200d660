"""``pedstream bench ingest``: N LSL outlets into the engine's LSL inlets, and into mne-lsl's ``StreamLSL``.

A publisher process (``python -m pedstream.bench.publish --to lsl``) opens N outlets (977 Hz,
19 float32 channels, the bundled record ``x001``) and pushes ``--seconds`` of signal in real time in
50 ms chunks, each outlet waiting (up to 60 s) for its consumer first so no sample goes out before
an inlet listens. This process receives:

- ``pedstream``: :class:`~pedstream.transports.lsl.inlet.LSLSource` (the engine's LSL source: resolver,
  one inlet per stream, all pulled by one pump with non-blocking ``pull_chunk`` into preallocated
  buffers, its blocking liblsl calls in a pool of 16 threads, timestamps, ``ChunkReceived`` events),
  the events drained and counted;
- ``mne-lsl`` (``--peer mne-lsl``, the ``peers`` extra): one ``mne_lsl.stream.StreamLSL`` per outlet
  (its own acquisition thread, ring buffer of 5 s), samples counted by its ``n_new_samples`` (never
  reset: no ``get_data`` call).

For each: ``discovered`` (streams announced: ``StreamAdded``, or ``StreamLSL.connect`` returned) and
``discover_s`` (from the publisher's launch, its Python start-up included, until the last of them;
``discover_spread_s`` from the first to the last),
samples sent (the publisher's count), received (a backlog is waited for while it still drains, up to
60 s after the publisher ended), ``lost`` = sent - received (pushed before the inlet listened, or
never delivered) in all and per stream (``streams_with_loss``, ``max_lost_on_a_stream``), samples/s
received over the push time (the offered load when nothing is lost: both consumers are paced by the
same real-time publisher), this process's CPU time from the publisher's launch until drained
(``cpu_s``; ``process_cpu_pct`` = that as a share of one core over the same time, discovery and
drain included) and the throughput that CPU buys:
``samples_per_cpu_s`` (samples received per second of one core) and ``us_cpu_per_ksample``. The
ratio of ``samples_per_cpu_s`` is what the notes compare. LSL stays on this machine: the ``[lsl]``
settings (scope ``machine``, loopback, ``port_range``) with a session id private to this run.
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
from pedstream.config import Config

__all__ = ["ingest_bench", "RECORD_SECONDS", "INGEST_COLUMNS"]

RECORD_SECONDS = 24.0  # length of the bundled record x001 (the publisher does not loop)


INGEST_COLUMNS = [("consumer", "consumer"), ("streams", "outlets"), ("discovered", "discovered"),
                  ("discover_s", "discover s"), ("samples_sent", "sent"), ("samples_received", "received"),
                  ("lost", "lost"), ("streams_with_loss", "streams w/ loss"), ("samples_per_s", "samples/s"),
                  ("cpu_s", "CPU s"), ("samples_per_cpu_s", "samples / CPU s")]


def _per_stream(cfg: Config, seconds: float) -> int:
    """Samples each outlet of the publisher sends (its plan of the bundled record)."""
    from pedstream.bench.publish import RECORD
    from pedstream.transports.replay import plan_replay

    plan = plan_replay([RECORD], cfg.signal, stream_id="x", seconds=seconds)[0]
    return int(plan.stop - plan.start)


def _publisher(n: int, seconds: float, session: str, prefix: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pedstream.bench.publish", "--to", "lsl", "--streams", str(n),
                             "--seconds", str(seconds), "--session-id", session, "--id-prefix", prefix,
                             "--wait-consumers-s", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ))


def _sent(proc: subprocess.Popen, timeout: float) -> dict[str, int]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"LSL publisher still running {timeout:.0f} s after the consumers connected "
                           "(machine overloaded?)") from exc
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return {k: int(v) for k, v in json.loads(line)["sent"].items()}
    raise RuntimeError(f"LSL publisher gave no counts (exit {proc.returncode}): {err.strip()[-300:]}")


def _row(consumer: str, n: int, sent: dict[str, int], received: dict[str, int], push_s: float,
         cpu: dict[str, Any], cpu_wall_s: float, found: list[float]) -> dict[str, Any]:
    """``found``: when each stream was discovered, in seconds from the publisher's launch."""
    s, r = sum(sent.values()), sum(received.get(k, 0) for k in sent)
    cpu_s = cpu["process_cpu_pct"] / 100.0 * cpu_wall_s  # CpuSampler: % of one core over its wall time
    lost = [sent[k] - received.get(k, 0) for k in sent]
    return {"consumer": consumer, "streams": n, "discovered": len(found),
            "discover_s": round(max(found), 2) if found else None,
            "discover_spread_s": round(max(found) - min(found), 2) if found else None,
            "streams_received": sum(1 for k in sent if received.get(k)),
            "samples_sent": s, "samples_received": r, "lost": s - r,
            "lost_on_streams_received": sum(sent[k] - received[k] for k in sent if received.get(k)),
            "streams_with_loss": sum(1 for x in lost if x), "max_lost_on_a_stream": max(lost, default=0),
            "push_seconds": round(push_s, 2),
            "samples_per_s": round(r / push_s, 1) if push_s > 0 else None,
            "cpu_s": round(cpu_s, 2), "process_cpu_pct": cpu["process_cpu_pct"], "cpu_wall_s": round(cpu_wall_s, 1),
            "samples_per_cpu_s": round(r / cpu_s) if r and cpu_s > 0 else None,
            "us_cpu_per_ksample": round(cpu_s * 1e6 / (r / 1000), 1) if r else None,
            "cpu_per_core_pct": cpu["cpu_per_core_pct"]}


async def _pedstream(cfg: Config, n: int, seconds: float, session: str, log: Callable[[str], None]) -> dict[str, Any]:
    from pedstream.bench.engine import CountingQueue
    from pedstream.transports.lsl.inlet import LSLSource
    from pedstream.events import StreamAdded

    q = CountingQueue()
    src = LSLSource.from_config(cfg.lsl, events=q, predicate="starts-with(source_id, 'ing')")
    added: dict[str, float] = {}  # stream id -> when first announced

    async def drain() -> None:
        while True:
            ev = await q.get()
            if isinstance(ev, StreamAdded):
                added.setdefault(ev.stream_id, time.perf_counter())

    async with src:
        task = asyncio.create_task(drain())
        cpu = CpuSampler().start()
        t0 = time.perf_counter()
        proc = _publisher(n, seconds, session, "ing")
        first: float | None = None
        give_up = time.perf_counter() + seconds + 90 + n  # outlets open, wait (<= 60 s) for their inlet, push, linger
        expected = n * _per_stream(cfg, seconds)  # what the publisher will report (checked below)
        while proc.poll() is None and sum(q.samples.values()) < expected:  # it ends after its last chunk + 1 s
            if first is None and sum(q.samples.values()):
                first = time.perf_counter()
            if time.perf_counter() > give_up:
                proc.kill()
                raise RuntimeError(f"LSL publisher of {n} outlets still running after {give_up - t0:.0f} s")
            await asyncio.sleep(0.05)
        sent: dict[str, int] | None = None
        if proc.poll() is not None:  # ended before every sample was in: wait while a backlog still drains
            sent = await asyncio.to_thread(_sent, proc, 30)
            last, deadline = -1, time.perf_counter() + 60.0
            while time.perf_counter() < deadline:
                now = sum(q.samples.values())
                if now >= sum(sent.values()) or now == last:
                    break
                last = now
                await asyncio.sleep(1.0)
        # the clock stops here: not while the publisher tears its outlets down and liblsl's inlets try
        # to recover them (each recovery attempt scans the port range for a free port)
        usage, wall = cpu.stop(), time.perf_counter() - t0
        task.cancel()
    if sent is None:
        sent = await asyncio.to_thread(_sent, proc, 60 + n)
    push_s = min(seconds, time.perf_counter() - (first or t0))
    log(f"  pedstream LSLSource: {len(added)}/{n} streams, {sum(q.samples.values())}/{sum(sent.values())} samples")
    return _row("pedstream", n, sent, dict(q.samples), push_s, usage, wall, [t - t0 for t in added.values()])


def _mne_lsl(n: int, seconds: float, session: str, log: Callable[[str], None], per_stream: int) -> dict[str, Any]:
    import mne_lsl
    from mne_lsl.stream import StreamLSL

    mne_lsl.set_log_level("WARNING")  # "new samples exceed the buffer" is expected: we count, never read

    counts: dict[str, int] = {}
    streams = []
    cpu = CpuSampler().start()
    t0 = time.perf_counter()
    proc = _publisher(n, seconds, session, "mne")
    found: dict[str, float] = {}  # stream id -> seconds from the launch until connect() returned
    try:
        from concurrent.futures import ThreadPoolExecutor

        def connect(sid: str) -> Any:
            try:
                # acquisition every 10 ms, our pull cadence (mne-lsl's default, 1 ms, costs it more)
                st = StreamLSL(bufsize=5.0, name=sid, source_id=sid).connect(acquisition_delay=0.01, timeout=60)
                found[sid] = time.perf_counter() - t0
                return st
            except RuntimeError as exc:  # not found in time: all its samples count as lost
                failures.append(f"{sid}: {exc}")
                return None

        failures: list[str] = []
        ids = [f"mne{i:04d}" for i in range(n)]
        with ThreadPoolExecutor(max_workers=min(32, n)) as pool:  # connect() blocks: resolve + open
            streams = [(sid, st) for sid, st in zip(ids, pool.map(connect, ids)) if st is not None]
        expected = n * per_stream
        give_up = time.perf_counter() + seconds + 90 + n
        while proc.poll() is None and time.perf_counter() < give_up:  # until every sample is in
            counts = {sid: int(st.n_new_samples) for sid, st in streams}  # never reset: no get_data call
            if sum(counts.values()) >= expected:
                break
            time.sleep(0.05)
        if proc.poll() is not None:  # ended first: wait while a backlog still drains
            last, deadline = -1, time.perf_counter() + 60.0
            while time.perf_counter() < deadline:
                counts = {sid: int(st.n_new_samples) for sid, st in streams}
                now = sum(counts.values())
                if now >= expected or now == last:
                    break
                last = now
                time.sleep(1.0)
        usage, wall = cpu.stop(), time.perf_counter() - t0  # as above: not during the teardown
        for _, st in streams:
            try:
                st.disconnect()
            except Exception:  # already gone with its outlet
                pass
        streams = []
        sent = _sent(proc, seconds + 90 + n)
    finally:
        for _, st in streams:
            try:
                st.disconnect()
            except Exception:  # already gone with its outlet
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    log(f"  mne-lsl StreamLSL: {len(found)}/{n} streams, {sum(counts.values())}/{sum(sent.values())} samples")
    push_s = min(seconds, time.perf_counter() - t0)
    row = _row("mne-lsl", n, sent, counts, push_s, usage, wall, list(found.values()))
    row["not_connected"] = len(failures)
    if failures:
        row["first_failure"] = failures[0][:300]
    return row


def ingest_bench(cfg: Config, *, streams: int, seconds: float, peer: str | None = None, quick: bool = False,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Both measurements (the module docstring) in one run; JSON-ready result."""
    from pedstream.transports.lsl.config import configure_lsl_from

    notes = ["timing figures depend on the machine's load (cpu_per_core_pct shows all of it); both consumers "
             "take the same real-time load in the same run"]
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
            try:
                rows.append(_mne_lsl(streams, seconds, session, log, _per_stream(cfg, seconds)))
            except RuntimeError as exc:  # keep the pedstream row; say why there is no peer row
                notes.append(f"mne-lsl: no row: {exc}")
    ratio = None
    if len(rows) == 2 and rows[1]["samples_per_cpu_s"] and rows[0]["samples_per_cpu_s"]:
        ratio = round(rows[0]["samples_per_cpu_s"] / rows[1]["samples_per_cpu_s"], 2)
        notes.append(f"throughput per CPU second (samples_per_cpu_s): pedstream / mne-lsl = {ratio:.2f}")
    return {"bench": "ingest", "quick": quick, "transport": "lsl", "lsl": {"scope": cfg.lsl.resolve_scope,
            "interfaces": list(cfg.lsl.interfaces), "session_id": session}, "seconds": seconds,
            "machine": machine_info(), "results": rows, "throughput_ratio_to_mne_lsl": ratio, "notes": notes}
