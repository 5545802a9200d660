"""``pedstream bench engine``: how many simultaneous streams the full engine keeps in real time.

N streams of the bundled simulated record ``x001`` (977 Hz, 19 channels, looped) at replay speed 1
go through the whole engine (mapping, DSP, ring buffers, windows, QRS, batched ONNX Runtime,
alarms; no dashboard, no strips):

- ``--source replay``: :class:`~pedstream.transports.replay.ReplaySource` in the engine's process, the
  record read once into memory for all streams (:class:`MemoryRecord`: disk reads are not measured),
  the streams' starts spread evenly over one hop (``--aligned``: all at once, so every stream's
  window completes in the same instant: the worst case for latency);
- ``--source mqtt``: a private ``mosquitto`` on a free 127.0.0.1 port, the streams published by a
  separate process (``python -m pedstream.bench.publish``), the engine's
  :class:`~pedstream.transports.mqtt.source.MQTTSource` subscribed.

The measurement starts once every stream has delivered data (at most 30 s + N/10 s later). The
source's event queue counts the samples each stream delivered, so for each N: ``windows`` vs
``windows_expected`` (what the delivered samples make complete), ``realtime_ratio`` (samples
delivered / N x fs x wall time), ``dropped`` windows, end-to-end latency p50/p99 (last sample of a
window received -> call emitted; the engine's own figure), CPU busy per core over the run (all
processes: other work on the machine shows), the CPU of the engine's process tree, its RSS. N is
``sustained`` when the real-time ratio is above 0.9, nothing is dropped, p99 < hop (1.25 s) and at
most one window per stream is still in flight at the end.

Each N also says what limited it (``bottleneck``, :class:`Bottleneck`), so that whoever sizes a
ward knows what to add: the event loop's lag (``loop_lag_ms_p99``: ingest, DSP and bookkeeping
share that one thread), the DSP's share of the wall time on it (``dsp_share``), and the inference
queue (windows waiting, share of the time every model-call slot was busy), the CPU of each thread
(``thread_cpu_pct``: loop, DSP, inference, ONNX Runtime's native pool, child processes; an event loop
thread near 100 % is the limit whatever the wall-time shares say, since the other threads wait for
the interpreter lock it holds); and the CPU per stream-second (``cpu_ms_per_stream_s``: the engine's
process and its child processes, such as the rhythm layer's feature process; not the MQTT publisher
or broker) and the RSS per stream (``rss_kib_per_stream``). ``max_realtime_streams`` is the largest
sustained N; by default the sweep stops after the first N that is not sustained.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

from pedstream.bench.common import CpuSampler, ThreadCpu, descendants, machine_info, rss_mib
from pedstream.bench.mosquitto import Mosquitto

__all__ = ["engine_bench", "capacity_one", "start_offsets", "RECORD", "CountingQueue", "MemoryRecord", "plot_latency", "replay_plans"]

RECORD = Path(__file__).resolve().parents[1] / "assets" / "demo_records" / "x001"


class MemoryRecord:
    """A record read once into memory and shared by every replayed stream: the replay source's
    per-stream disk reads (wfdb, in threads) are not part of what the engine bench measures."""

    def __init__(self, rec: Any) -> None:
        self._rec, self._sig = rec, rec.read()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rec, name)

    def read(self, start: int = 0, stop: int | None = None) -> Any:
        import dataclasses

        stop = self._rec.n_samples if stop is None else stop
        return dataclasses.replace(self._sig, data=self._sig.data[start:stop], clipped=self._sig.clipped[start:stop],
                                   start=start)


def replay_plans(cfg: Any, n: int) -> list[Any]:
    """N plans of ``x001`` (ids ``bed0000``...) sharing one in-memory copy of the record."""
    import dataclasses

    from pedstream.transports.replay import plan_replay

    first = plan_replay([RECORD], cfg.signal, stream_id="bed0000")[0]
    first = dataclasses.replace(first, record=MemoryRecord(first.record))
    return [dataclasses.replace(first, stream_id=f"bed{i:04d}") for i in range(n)]


class CountingQueue(asyncio.Queue):
    """The sources' event queue, counting the samples of each stream's ``ChunkReceived`` events."""

    def __init__(self) -> None:
        super().__init__()
        self.samples: Counter[str] = Counter()

    def put_nowait(self, item: Any) -> None:
        chunk = getattr(item, "chunk", None)
        if chunk is not None:
            self.samples[chunk.stream_id] += int(chunk.data.shape[0])
        super().put_nowait(item)


def _children_rss(pid: int, skip: set[int]) -> float:
    """RSS (MiB) of ``pid``'s descendants, except ``skip`` and theirs (Linux /proc)."""
    return sum(rss_mib(k) or 0.0 for k in descendants(pid, skip))


def start_offsets(n: int, hop_s: float, *, aligned: bool) -> list[float] | None:
    """Each replayed stream's start after the first, spread evenly over one hop (a ward's monitors
    are not switched on in the same millisecond, so their windows do not all complete together);
    None when ``aligned`` (the worst case: every window of every stream at once)."""
    return None if aligned else [hop_s * k / n for k in range(n)]


def _source(cfg: Any, q: "CountingQueue", n: int, seconds: float, *, source: str, broker: Mosquitto | None,
            aligned: bool) -> tuple[Any, subprocess.Popen | None]:
    """The engine's source of N streams, and for MQTT the publisher process feeding the broker."""
    if source == "replay":
        from pedstream.transports.replay import ReplaySource

        return ReplaySource(events=q, plans=replay_plans(cfg, n), speed=1.0, chunk_ms=cfg.replay.chunk_ms, loop=True,
                            wake_ms=cfg.replay.wake_ms,
                            offsets=start_offsets(n, cfg.segments.hop_s, aligned=aligned)), None
    from pedstream.transports.mqtt.source import MQTTSource

    assert broker is not None
    src = MQTTSource(cfg.mqtt, events=q, host=broker.host, port=broker.port, max_streams=n + 16,
                     max_queued_messages=max(10_000, 40 * n))
    publisher = subprocess.Popen([sys.executable, "-m", "pedstream.bench.publish", "--to", "mqtt", "--host",
                                  broker.host, "--port", str(broker.port), "--streams", str(n),
                                  "--seconds", str(seconds), "--loop", "--prefix", cfg.mqtt.topic_prefix,
                                  "--chunk-ms", str(cfg.replay.chunk_ms),
                                  "--bundle-bytes", str(cfg.replay.mqtt_bundle_bytes),
                                  "--spread-s", str(0.0 if aligned else cfg.segments.hop_s)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return src, publisher


def _stop(publisher: subprocess.Popen | None) -> None:
    if publisher is not None:
        publisher.terminate()
        try:
            publisher.wait(timeout=10)
        except subprocess.TimeoutExpired:
            publisher.kill()
            publisher.wait(timeout=5)


async def _measure(eng: Any, q: "CountingQueue", n: int, seconds: float, skip: list[int]) -> dict[str, Any]:
    """Once every stream delivers (a bounded wait), ``seconds`` of the running engine: what it used and saw."""
    deadline = time.monotonic() + 30.0 + n / 10.0
    while len(q.samples) < n and time.monotonic() < deadline:  # bounded wait: every stream delivering
        await asyncio.sleep(0.05)
    ready = len(q.samples)
    cpu = CpuSampler().start()
    seen = Bottleneck(eng, skip=skip).start()
    t0 = time.perf_counter()
    base = sum(q.samples.values())
    await asyncio.sleep(seconds)  # the measurement period of a real-time run
    wall = time.perf_counter() - t0
    delivered = sum(q.samples.values()) - base
    return {"ready": ready, "wall": wall, "delivered": delivered, "usage": cpu.stop(), "limits": seen.stop()}


async def capacity_one(cfg: Any, session: Any, n: int, seconds: float, *, source: str = "replay",
                       broker: Mosquitto | None = None, aligned: bool = False) -> dict[str, Any]:
    """Run N streams for ``seconds`` through the engine; the figures of the module docstring."""
    import os

    from pedstream.monitor.engine import Engine

    q = CountingQueue()
    src, publisher = _source(cfg, q, n, seconds, source=source, broker=broker, aligned=aligned)
    skip = [p.pid for p in (publisher, broker and broker.proc) if p is not None]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            eng = Engine(cfg=cfg, session=session, sources=[src], alarms_dir=Path(tmp),
                         rhythm_model="default" if cfg.rhythm_context.enabled else None)  # --set rhythm_context.enabled=true
            async with eng:
                m = await _measure(eng, q, n, seconds, skip)
                rss = (rss_mib() or 0.0) + _children_rss(os.getpid(), {publisher.pid} if publisher else set())
    finally:
        _stop(publisher)
    return _figures(cfg, eng, q, n, m, rss)


def _figures(cfg: Any, eng: Any, q: "CountingQueue", n: int, m: dict[str, Any], rss: float) -> dict[str, Any]:
    """The result row of one N (see the module docstring)."""
    s = eng.summary()
    hop_ms = cfg.segments.hop_s * 1000
    try:  # windows that the delivered samples make complete (the first starts after the filters settle)
        first = next(iter(eng.pipelines.values()))._first_start(0)
    except Exception:  # the engine's internals moved: count from the first sample
        first = 0
    expected = sum(max(0, (got - first - eng.window) // eng.hop + 1) for got in q.samples.values())
    behind = expected - s["windows_classified"] - s["dropped_windows"]
    ratio = m["delivered"] / (n * cfg.signal.fs * m["wall"])
    p99 = s["e2e_latency_ms_p99"]
    sustained = bool(ratio > 0.9 and s["dropped_windows"] == 0 and p99 is not None and p99 < hop_ms
                     and behind <= n and len(q.samples) >= n)
    usage, limits = m["usage"], m["limits"]
    per_core = usage["cpu_per_core_pct"]
    cpu_pct = usage["process_cpu_pct"] + limits["thread_cpu_pct"].get("children", 0.0)
    return {"streams": n, "streams_seen": len(q.samples), "streams_ready_at_start": m["ready"],
            "seconds": round(m["wall"], 1), "windows": s["windows_classified"], "windows_expected": expected,
            "windows_behind": behind, "realtime_ratio": round(ratio, 3), "dropped": s["dropped_windows"],
            "dropped_samples": s.get("dropped_samples"), "rejected_messages": s.get("rejected_messages"),
            "e2e_ms_p50": _r(s["e2e_latency_ms_p50"]), "e2e_ms_p99": _r(p99), "inference_ms_p50": _r(s["inference_ms_p50"]),
            "batch_mean": _r(s["batch_mean"]), "cpu_per_core_pct": per_core,
            "cpu_total_pct": round(sum(per_core), 1) if per_core else None, "process_cpu_pct": usage["process_cpu_pct"],
            "rss_mib": round(rss, 1), "rss_kib_per_stream": round(rss * 1024 / max(1, n)),
            "cpu_ms_per_stream_s": round(10.0 * cpu_pct / max(1, n), 3),
            **limits, "rhythm_calls": None if eng.rhythm is None else eng.rhythm.calls, "sustained": sustained}


class Bottleneck:
    """What limited a run, sampled on the engine's loop every ``period_s``: the loop's lag (how late
    a timer fires: ingest, DSP and bookkeeping keep the loop busy), the inference queue (windows
    waiting for the model, batches in flight) and the DSP's share of the wall time (in the engine's
    loop: ``Engine.dsp_s``), and the CPU of each of the engine's threads (:class:`ThreadCpu`: a thread
    busy in wall time but not on a CPU waits for the interpreter lock that another one holds)."""

    def __init__(self, eng: Any, period_s: float = 0.05, skip: Sequence[int] = ()) -> None:
        self.eng, self.period_s = eng, period_s
        self.threads = ThreadCpu(skip)
        self.lags: list[float] = []
        self.pending: list[int] = []
        self.inflight: list[int] = []
        self._task: asyncio.Task | None = None

    def start(self) -> "Bottleneck":
        self._dsp0, self._t0 = getattr(self.eng, "dsp_s", 0.0), time.perf_counter()
        b = self.eng.batcher
        self._ms0 = sum(b.infer_ms), len(b.infer_ms)
        self._task = asyncio.ensure_future(self._run())
        self.threads.start()
        return self

    async def _run(self) -> None:
        b = self.eng.batcher
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.period_s)
            self.lags.append(max(0.0, time.perf_counter() - t - self.period_s) * 1000.0)
            self.pending.append(b.pending)
            self.inflight.append(len(getattr(b, "_inflight", ())) or int(bool(b.busy)))

    def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
        wall = max(time.perf_counter() - self._t0, 1e-9)
        b = self.eng.batcher
        lags = sorted(self.lags) or [0.0]
        p99 = lags[min(len(lags) - 1, int(0.99 * len(lags)))]
        dsp = (getattr(self.eng, "dsp_s", 0.0) - self._dsp0) / wall
        cap = b.max_batch * max(1, getattr(b, "inflight", 1))
        pend = sum(self.pending) / max(1, len(self.pending))
        busy = sum(1 for k in self.inflight if k) / max(1, len(self.inflight))
        full = sum(1 for k in self.inflight if k >= max(1, getattr(b, "inflight", 1))) / max(1, len(self.inflight))
        threads = self.threads.stop()
        if p99 > 250.0 or dsp > 0.6:  # the loop or the DSP cannot keep up: more cores (DSP workers) or fewer streams
            threaded = getattr(self.eng, "_dsp_pool", None) is not None
            if threads.get("loop", 0.0) >= 85.0:  # the loop's thread holds the interpreter: the DSP thread waits for it
                what = "event loop thread (its CPU: sources, ingest, bookkeeping)"
            else:
                what = (("DSP (its thread)" if threaded else "DSP on the event loop") if dsp >= 0.4
                        else "event loop (ingest and bookkeeping)")
        elif full > 0.8 or pend > cap:
            what = "inference (windows wait for the model)"
        else:
            what = "none seen (headroom)"
        return {"loop_lag_ms_p50": round(lags[len(lags) // 2], 1), "loop_lag_ms_p99": round(p99, 1),
                "loop_lag_ms_max": round(lags[-1], 1), "dsp_share": round(dsp, 3),
                "inference_pending_mean": round(pend, 1), "inference_busy_share": round(busy, 3),
                "inference_all_slots_busy_share": round(full, 3), "thread_cpu_pct": threads, "bottleneck": what}


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 2)


def plot_latency(results: Sequence[dict[str, Any]], path: Path, *, hop_ms: float, title: str) -> Path:
    """e2e p50/p99 against streams (log-log), the hop as the real-time limit; unsustained N marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results if r.get("e2e_ms_p99") is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    if rows:
        xs = [r["streams"] for r in rows]
        ax.plot(xs, [r["e2e_ms_p50"] for r in rows], "o-", label="e2e p50")
        ax.plot(xs, [r["e2e_ms_p99"] for r in rows], "s-", label="e2e p99")
        bad = [r for r in rows if not r["sustained"]]
        if bad:
            ax.plot([r["streams"] for r in bad], [r["e2e_ms_p99"] for r in bad], "rx", ms=12, mew=2,
                    label="not sustained")
    ax.axhline(hop_ms, color="gray", ls="--", lw=1, label=f"hop ({hop_ms:g} ms)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("simultaneous streams (977 Hz x 19 channels)")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def engine_bench(cfg: Any, *, model: Path, source: str, streams: Sequence[int], seconds: float,
                 providers: Sequence[str] | None = None, stop_at_first_failure: bool = True,
                 png: Path | None = None, quick: bool = False, aligned: bool = False,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """The sweep over ``streams``; JSON-ready result (``results``, ``max_realtime_streams``, ...)."""
    from pedstream.config import load_config
    from pedstream.model.runtime import ModelSession, expected_metadata

    cfg = load_config(overrides=["alarms.strips=false"]) if cfg is None else cfg
    cfg.alarms.strips = False
    exp = expected_metadata(signal_cfg=cfg.signal, filter_cfg=cfg.filters, window_s=cfg.segments.window_s,
                            hop_s=cfg.segments.hop_s)
    session = ModelSession(path=model, providers=providers, runtime_cfg=cfg.runtime, expected=exp,
                           max_batch=cfg.stream.max_batch)
    log(f"model {model.name}, providers {session.providers}, source {source}")
    results: list[dict[str, Any]] = []
    broker = Mosquitto().start() if source == "mqtt" else None
    try:
        for n in streams:
            r = asyncio.run(capacity_one(cfg, session, n, seconds, source=source, broker=broker, aligned=aligned))
            results.append(r)
            log(f"  {n:5d} streams: {r['windows']}/{r['windows_expected']} windows, real-time {r['realtime_ratio']:.2f}, "
                f"dropped {r['dropped']}, e2e p50 {r['e2e_ms_p50']} p99 {r['e2e_ms_p99']} ms, "
                f"CPU {r['cpu_total_pct']} %, RSS {r['rss_mib']} MiB -> {'sustained' if r['sustained'] else 'NOT sustained'}")
            log(f"         bottleneck: {r['bottleneck']} (loop lag p99 {r['loop_lag_ms_p99']} ms, DSP {100 * r['dsp_share']:.0f} % "
                f"of the time, inference busy {100 * r['inference_busy_share']:.0f} %, all {getattr(cfg.stream, 'inference_inflight', 1)} "
                f"slots busy {100 * r['inference_all_slots_busy_share']:.0f} %, {r['inference_pending_mean']} windows waiting)")
            log("         CPU by thread (% of one core): " + ", ".join(f"{k} {v:g}" for k, v in r["thread_cpu_pct"].items()))
            if stop_at_first_failure and not r["sustained"]:
                break
    finally:
        if broker is not None:
            broker.stop()
    ok = [r["streams"] for r in results if r["sustained"]]
    hop_ms = cfg.segments.hop_s * 1000
    if png is not None:
        plot_latency(results, png, hop_ms=hop_ms, title=f"pedstream engine, --source {source}, {model.name}")
    return {"bench": "engine", "quick": quick, "source": source, "model": str(model), "providers": session.providers,
            "machine": machine_info(),
            "config": {"max_batch": cfg.stream.max_batch, "max_wait_ms": cfg.stream.max_wait_ms,
                       "queue_windows": cfg.stream.queue_windows,
                       "inference_inflight": getattr(cfg.stream, "inference_inflight", None),
                       "intra_op_threads": cfg.runtime.intra_op_threads, "window_s": cfg.segments.window_s,
                       "hop_s": cfg.segments.hop_s, "workers": getattr(cfg.stream, "workers", None),
                       "dsp_defer_s": cfg.stream.dsp_defer_s, "seconds": seconds,
                       "starts": "aligned" if aligned else ("spread over one hop" if source == "replay"
                                                            else "spread over one hop on the chunk grid")},
            "criterion": "real-time ratio > 0.9, no dropped window, e2e p99 < hop, <= 1 window per stream behind",
            "results": results, "max_realtime_streams": max(ok) if ok else 0,
            "png": str(png) if png is not None else None}
