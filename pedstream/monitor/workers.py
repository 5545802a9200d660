"""The per-stream DSP in worker processes (``[stream] workers`` > 1): every core busy.

The engine's process keeps the sources, the fair per-stream ingest queues, the inference batch,
alarms, events and sinks. Each round of the ingest (``Engine._feed_round``) sends every worker
the chunks of its streams in ONE message; the worker runs them through
:func:`pedstream.monitor.bank.feed_round` (its streams' filter banks in one call per band) and
answers with one message per round: per stream its transitions, heart rate, quality, errors and
ready alarm strips, and its windows as sequence numbers of a :class:`~pedstream.monitor.shm.WindowRing`
(the windows themselves are written to shared memory, never pickled).

Streams are pinned to workers by :func:`pedstream.monitor.assign.assign` (rendezvous hashing of the
stream id over the worker names, the function the Ray helper uses for machines). When a worker
dies its streams move to the workers left (only its streams move); each one restarts there as
after a lost signal (``signal_loss``, then warm-up). The engine sees a :class:`RemotePipeline` per
stream: the attributes it reads of a :class:`StreamPipeline`, kept up to date by the worker's
answers. The heart rate a call carries is the one at the end of the worker's round (in-process:
when the result comes back), so it may be one round older.

Back-pressure: at most ``_MAX_ROUNDS`` rounds may be outstanding per worker; the engine leaves
the streams of a busy worker in its own bounded queues (drop-oldest) until it catches up. The
engine's process never blocks on a pipe: a thread per worker sends, the event loop reads.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from collections import defaultdict
from typing import Any, Callable

import numpy as np

from pedstream.config import Config
from pedstream.data.channels import CANONICAL_CHANNELS, ECG_CHANNELS
from pedstream.errors import PedstreamError
from pedstream.monitor.assign import assign
from pedstream.monitor.batcher import WindowItem
from pedstream.monitor.pipeline import FeedResult, StreamPipeline, stream_channels
from pedstream.events import ReadyStrip, StripRequest
from pedstream.monitor.shm import RingSpec, WindowRing
from pedstream.events import Chunk, StreamInfo

__all__ = ["RemotePipeline", "WorkerPool", "worker_count"]

log = logging.getLogger(__name__)
N_CH, N_ECG = len(CANONICAL_CHANNELS), len(ECG_CHANNELS)
_SLOTS = 512  # windows in flight per worker (186 kB each at 977 Hz x 2.5 s): the shared ring's size
_MAX_ROUNDS = 4  # rounds sent to a worker and not answered yet, at most
_RING_WAIT_S = 2.0  # a worker waits this long for a free slot before it drops a window (counted)
_TICK_S = 0.02  # chunks for the workers are collected this long and sent in one message per worker


def worker_count(setting: int) -> int:
    """``[stream] workers``: 0 = one per CPU core."""
    return max(1, os.cpu_count() or 1) if setting == 0 else int(setting)


class RemotePipeline:
    """The engine's view of a stream whose DSP runs in a worker (see the module docstring)."""

    def __init__(self, *, info: StreamInfo, cfg: Config, fs: float, window: int, hop: int, pool: "WorkerPool") -> None:
        self.info, self.stream_id, self.cfg = info, info.stream_id, cfg
        self.fs, self.window, self.hop = float(fs), int(window), int(hop)
        self.cmap = stream_channels(info, cfg)  # raises StreamError as StreamPipeline does
        self.present = self.cmap.present.copy()
        self.mask = self.present.astype(np.float32)
        self.has_ecg = bool(self.present[:N_ECG].any())
        self.has_iegm = bool(self.present[N_ECG:].any())
        self.heart_rate: float | None = None
        self.quality = "warm-up"
        self.state = "warm-up"
        self.last_ts: float | None = None
        self.lost = False
        self.ectopy = None
        self._settle = int(round(cfg.filters.settle_s * self.fs))
        self._pool = pool
        # what the worker said at its last answer: samples its next window needed, and the stream index
        # it had processed; the stream index sent to it so far
        self._to_window, self._done_index, self._sent_end = 0, None, None

    def samples_to_window(self) -> int:
        """The worker's figure less what was sent since (0: not known yet; see StreamPipeline)."""
        if self._to_window <= 0 or self._done_index is None or self._sent_end is None:
            return 0
        return max(1, self._to_window - (self._sent_end - self._done_index))

    def _first_start(self, segment_start: int) -> int:
        return segment_start + -(-self._settle // self.hop) * self.hop

    def mark_lost(self, reason: str) -> FeedResult:
        res = FeedResult()
        if self.state != "loss":
            res.transitions.append(("signal_loss", reason))
        self.state = self.quality = "loss"
        self.lost = True
        self._pool.send_to(self.stream_id, ("lost", self.stream_id, reason))
        return res

    def request_strip(self, req: StripRequest) -> None:
        self._pool.send_to(self.stream_id, ("strip", self.stream_id, req))

    def flush_strips(self) -> list[ReadyStrip]:
        return self._pool.flush_strips(self.stream_id)


class _Worker:
    def __init__(self, name: str, ring: WindowRing, conn: Any, proc: Any) -> None:
        self.name, self.ring, self.conn, self.proc = name, ring, conn, proc
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.outstanding = 0
        self.alive = True
        self.ready = False
        self.sender = threading.Thread(target=self._send_loop, name=f"dsp-{name}-send", daemon=True)
        self.sender.start()

    def _send_loop(self) -> None:
        while True:
            msg = self.outbox.get()
            if msg is None:
                return
            try:
                self.conn.send(msg)
            except (OSError, ValueError):  # the worker is gone: the reader reports it
                return


class WorkerPool:
    """``n`` DSP worker processes. ``on_result(pipe, FeedResult | Exception)`` is called on the event
    loop for every stream of every answered round."""

    def __init__(self, *, cfg: Config, fs: float, window: int, hop: int, n: int,
                 on_result: Callable[[RemotePipeline, Any], None]) -> None:
        self.cfg, self.fs, self.window, self.hop, self.n = cfg, float(fs), int(window), int(hop), int(n)
        self.on_result = on_result
        self.workers: dict[str, _Worker] = {}
        self.pipes: dict[str, RemotePipeline] = {}
        self.owner: dict[str, str] = {}
        self.dropped = 0  # windows dropped because a worker's ring stayed full
        self._loop: Any = None
        self._pending: dict[str, list] = defaultdict(list)  # worker -> chunks not sent yet
        self._flush_at: Any = None

    @property
    def names(self) -> list[str]:
        return [n for n, w in self.workers.items() if w.alive]

    def start(self) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        ctx = mp.get_context("spawn")  # never fork a process with an event loop and ONNX Runtime threads
        for i in range(self.n):
            name = f"dsp{i}"
            ring = WindowRing.create(slots=_SLOTS, channels=N_CH, samples=self.window)
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, name=f"pedstream-{name}", daemon=True,
                               args=(name, ring.spec, child, self.cfg, self.fs, self.window, self.hop))
            proc.start()
            child.close()
            w = self.workers[name] = _Worker(name, ring, parent, proc)
            self._loop.add_reader(parent.fileno(), self._readable, w)

    def close(self) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
        for w in self.workers.values():
            if self._loop is not None and w.alive:
                self._loop.remove_reader(w.conn.fileno())
            w.outbox.put(("stop",))
            w.outbox.put(None)
        for w in self.workers.values():
            w.sender.join(2.0)
            w.proc.join(5.0)
            if w.proc.is_alive():
                log.warning("DSP worker %s did not stop; terminating it", w.name)
                w.proc.terminate()
            w.conn.close()
            w.ring.close()

    # -- engine side ------------------------------------------------------------------------------
    def new_pipeline(self, info: StreamInfo) -> RemotePipeline:
        pipe = RemotePipeline(info=info, cfg=self.cfg, fs=self.fs, window=self.window, hop=self.hop, pool=self)
        self.pipes[info.stream_id] = pipe
        name = assign(info.stream_id, self.names)
        if self._pending:
            self._flush()
        self.owner[info.stream_id] = name
        self.workers[name].outbox.put(("add", info))
        return pipe

    def same_stream_back(self, info: StreamInfo) -> None:
        self.send_to(info.stream_id, ("add", info))

    def send_to(self, sid: str, msg: tuple) -> None:
        if self._pending:  # chunks queued before this message go first
            self._flush()
        w = self.workers.get(self.owner.get(sid, ""))
        if w is not None and w.alive:
            w.outbox.put(msg)

    def saturated(self, sid: str) -> bool:
        w = self.workers.get(self.owner.get(sid, ""))
        return w is not None and w.outstanding >= _MAX_ROUNDS

    def submit(self, items: list[tuple[RemotePipeline, Chunk, float]]) -> None:
        """Queue the chunks for their workers; they are sent together ``_TICK_S`` after the first
        (a worker's DSP batches streams only when a message carries many)."""
        for pipe, c, t in items:
            self._pending[self.owner[pipe.stream_id]].append((pipe.stream_id, c.data, c.timestamps, c.first_index, c.seq, t))
            pipe._sent_end = int(c.first_index) + len(c.data)
        if self._pending and self._flush_at is None:
            self._flush_at = self._loop.call_later(_TICK_S, self._flush)

    def _flush(self) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        pending, self._pending = self._pending, defaultdict(list)
        for name, batch in pending.items():
            w = self.workers[name]
            if w.alive:
                w.outstanding += 1
                w.outbox.put(("chunks", batch))

    def flush_strips(self, sid: str) -> list[ReadyStrip]:
        """Strips of ``sid`` still waiting for data, cut now (asks its worker; at shutdown)."""
        w = self.workers.get(self.owner.get(sid, ""))
        if w is None or not w.alive:
            return []
        self._flush()
        w.outbox.put(("flush", sid))
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if not w.conn.poll(max(0.0, deadline - time.monotonic())):
                break
            msg = w.conn.recv()
            if msg[0] == "flushed" and msg[1] == sid:
                return msg[2]
            self._handle(w, msg)
        return []

    # -- answers ----------------------------------------------------------------------------------
    def _readable(self, w: _Worker) -> None:
        try:
            while w.conn.poll():
                self._handle(w, w.conn.recv())
        except (EOFError, OSError):
            self._lost_worker(w)

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until every worker has started (imported, attached to its ring); PedstreamError after ``timeout_s``."""
        import asyncio

        try:
            async with asyncio.timeout(timeout_s):
                while not all(w.ready or not w.alive for w in self.workers.values()):
                    await asyncio.sleep(0.05)  # bounded by the timeout; a worker starts in seconds
        except TimeoutError:
            slow = [w.name for w in self.workers.values() if not w.ready]
            raise PedstreamError(f"DSP worker(s) {slow} did not start within {timeout_s:g} s") from None
        if not self.names:
            raise PedstreamError("no DSP worker started")

    def _handle(self, w: _Worker, msg: tuple) -> None:
        if msg[0] == "ready":
            w.ready = True
        if msg[0] != "results":
            return
        _, final, payloads = msg
        if final:
            w.outstanding = max(0, w.outstanding - 1)
        for sid, p in payloads:
            windows = [WindowItem(stream_id=sid, start=start, x=x, mask=mask, t_received=t_rec, t_signal=t_sig,
                                  meta=meta, raw=True)
                       for (seq, start, t_rec, t_sig, meta) in p.get("windows", ())
                       for x, mask in (w.ring.take(seq),)]  # taken in order, always: frees the slots
            pipe = self.pipes.get(sid)
            if pipe is None:
                continue
            (pipe.heart_rate, pipe.quality, pipe.state, pipe.last_ts, pipe.lost, pipe._to_window,
             pipe._done_index) = p["state"]
            self.dropped += p.get("dropped", 0)
            if "error" in p:
                self.on_result(pipe, PedstreamError(p["error"]))
                continue
            self.on_result(pipe, FeedResult(windows=windows, transitions=p["transitions"], strips=p["strips"]))

    def _lost_worker(self, w: _Worker) -> None:
        if not w.alive:
            return
        w.alive = False
        self._loop.remove_reader(w.conn.fileno())
        w.outbox.put(None)
        left = self.names
        log.error("DSP worker %s stopped (exit code %s); its streams move to %s", w.name, w.proc.exitcode, left)
        for sid, name in list(self.owner.items()):
            if name != w.name:
                continue
            pipe = self.pipes[sid]
            if not left:
                self.on_result(pipe, PedstreamError(f"DSP worker {w.name} stopped and no worker is left"))
                continue
            self.owner[sid] = new = assign(sid, left)
            self.workers[new].outbox.put(("add", pipe.info))
            pipe.state = "ok"  # so that mark_lost reports the loss once
            self.on_result(pipe, pipe.mark_lost(f"DSP worker {w.name} stopped; the stream moved to {new}"))


def _worker_main(name: str, spec: RingSpec, conn: Any, cfg: Config, fs: float, window: int, hop: int) -> None:
    """A DSP worker: a plain loop over the messages of the engine (see the module docstring)."""
    from pedstream.monitor.bank import feed_round

    ring = WindowRing.attach(spec)
    pipes: dict[str, StreamPipeline] = {}
    conn.send(("ready", name))
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            kind = msg[0]
            if kind == "stop":
                return
            if kind == "add":
                info = msg[1]
                old = pipes.get(info.stream_id)
                if old is not None and info.same_layout(old.info):
                    old.info = info
                else:
                    try:
                        pipes[info.stream_id] = StreamPipeline(info=info, cfg=cfg, fs=fs, window=window, hop=hop)
                    except PedstreamError:  # the engine checked the same metadata and reported it
                        pipes.pop(info.stream_id, None)
            elif kind == "lost" and msg[1] in pipes:
                pipes[msg[1]].mark_lost(msg[2])
            elif kind == "strip" and msg[1] in pipes:
                pipes[msg[1]].request_strip(msg[2])
            elif kind == "flush":
                conn.send(("flushed", msg[1], pipes[msg[1]].flush_strips() if msg[1] in pipes else []))
            elif kind == "chunks":
                # sub-rounds in which each stream appears once (a message may carry several of its chunks, in order)
                rounds: list[list] = []
                seen: dict[str, int] = defaultdict(int)
                for sid, d, ts, fi, seq, t in msg[1]:
                    if sid not in pipes:
                        continue
                    k = seen[sid]
                    seen[sid] += 1
                    if k == len(rounds):
                        rounds.append([])
                    rounds[k].append((pipes[sid], Chunk(stream_id=sid, data=d, timestamps=ts, first_index=fi, seq=seq), t))
                _answer(conn, ring, [r for items in rounds for r in feed_round(items)])
    finally:
        ring.close()


def _state(pipe: StreamPipeline) -> tuple:
    return (pipe.heart_rate, pipe.quality, pipe.state, pipe.last_ts, pipe.lost, pipe.samples_to_window(),
            pipe.expected_index)


def _answer(conn: Any, ring: WindowRing, results: list) -> None:
    out: list = []
    for pipe, res in results:
        p: dict[str, Any] = {"state": _state(pipe)}
        if isinstance(res, PedstreamError):
            p["error"] = str(res)  # a message, not the exception: its class need not unpickle
        elif isinstance(res, Exception):
            p["error"] = f"processing failed ({type(res).__name__}: {str(res)[:120]})"
        else:
            p["transitions"], p["strips"], p["windows"] = res.transitions, res.strips, []
            for w in res.windows:
                seq = ring.put(w.x, w.mask)
                if seq is None:  # full: hand over what is done so the engine frees slots, then wait a little
                    conn.send(("results", False, out))
                    out = []
                    deadline = time.monotonic() + _RING_WAIT_S
                    while seq is None and time.monotonic() < deadline:
                        time.sleep(0.001)
                        seq = ring.put(w.x, w.mask)
                if seq is None:
                    p["dropped"] = p.get("dropped", 0) + 1
                    continue
                p["windows"].append((seq, w.start, w.t_received, w.t_signal, dict(w.meta or {})))
        out.append((pipe.stream_id, p))
    conn.send(("results", True, out))
