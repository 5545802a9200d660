"""The streaming engine: sources -> per-stream pipelines -> one batched inference task -> calls,
alarms, sinks.

Usage::

    async with Engine(cfg=cfg, session=session, sources=[src], sinks=[JsonLinesSink(path)]) as eng:
        sub = eng.subscribe()                  # or subscribe before entering, to miss nothing
        ev = await sub.wait_for(lambda e: e.kind == "alarm_on", timeout=30)

On entry the engine enters its sinks, starts its named tasks in an :class:`asyncio.TaskGroup`
(``inference``, one ``ingest-<n>`` per distinct source queue) and enters the sources; on exit it
cancels and awaits them, writes pending alarm strips and closes sinks. All per-stream DSP runs on the
event loop (cheap, causal, per chunk); ONNX Runtime runs in a worker thread; alarm strips are drawn
in threads. A problem with one stream (unknown channel names, bad chunk) becomes an ``error``
event for that stream; the other streams carry on.

With a beat model (``beat_session``, see :mod:`pedstream.stream.ectopy`) every stream also gets a
beat path; its ready beats go to a second batcher (task ``beat-inference``: one ``session.run`` per
batch of beats of all streams). Each classified beat is a ``beat`` event, updates the stream's
PVC/min and PAC/min (also added to its ``call`` events) and the ``pvc_run`` alarm. A beat-model
failure on one stream is that stream's ``error`` event and switches its beat path off.

Fair service: the ingest task takes every source event at once into a bounded queue per stream
(``[stream] ingest_queue_s`` of signal; beyond it the stream's OLDEST chunks are dropped and counted)
and serves the streams round-robin, at most one hop of samples of one stream per turn (a longer
chunk is split; the DSP is chunk-size invariant), so a flooding stream delays the others by at most
one hop of its own DSP per round.

No silent hang: every wait between tasks is bounded or watched. The ``watchdog`` task reports a
stream without progress for ``[stream] watchdog_s`` (data queued but not processed, windows waiting
for inference, or no data while its source has not reported it lost) and a model call running that
long as one ``error`` event each and a ``stalled`` flag on the stream's row (cleared when it moves
again). A model call is abandoned after ``infer_timeout_s`` (error events); leaving cancels the
tasks with a bound (``stop_timeout_s``; a task that does not stop is named in the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from pedstream.config import Config
from pedstream.dsp.windowing import window_samples
from pedstream.errors import PedstreamError
from pedstream.model.runtime import softmax
from pedstream.stream.alarms import AlarmTracker, hr_limits_for_age, save_strip
from pedstream.stream.batcher import BatchResult, InferenceBatcher, WindowItem
from pedstream.stream.ectopy import BeatInfo, BeatModelSpec, BeatStream, EctopyCounter
from pedstream.stream.pipeline import ReadyStrip, StreamPipeline, StripRequest
from pedstream.stream.sinks import MonitorEvent
from pedstream.stream.source import Chunk, ChunkReceived, StreamAdded
from pedstream.stream.source import StreamError as StreamErrorEvent
from pedstream.stream.source import ErrorThrottle, StreamInfo, StreamLost, close_task_group

__all__ = ["Engine", "EventSubscription", "StreamStatus", "EngineSnapshot", "percentile", "model_banner",
           "is_packaged_model", "hr_limits_text"]

log = logging.getLogger(__name__)


def _clock(pipe: StreamPipeline) -> str:
    """Whose clock the stream's timestamps are on: the stream's ``meta["clock"]`` if it says, else its source kind."""
    meta = pipe.info.meta if isinstance(pipe.info.meta, dict) else {}
    return str(meta.get("clock") or pipe.info.source)


def _n_samples(ev: Any) -> int:
    try:
        return int(ev.chunk.data.shape[0])
    except Exception:  # a malformed chunk: the pipeline reports it
        return 0


def _split(ev: ChunkReceived, k: int) -> tuple[ChunkReceived, ChunkReceived] | None:
    """``ev``'s chunk cut after ``k`` samples (``None``: it is not longer, or cannot be cut)."""
    c = ev.chunk
    try:
        if c.data.shape[0] <= k or c.timestamps is None or len(c.timestamps) != c.data.shape[0]:
            return None
        head = Chunk(stream_id=c.stream_id, data=c.data[:k], timestamps=c.timestamps[:k], first_index=c.first_index,
                     seq=c.seq)
        tail = Chunk(stream_id=c.stream_id, data=c.data[k:], timestamps=c.timestamps[k:],
                     first_index=c.first_index + k, seq=c.seq)
    except Exception:
        return None
    return ChunkReceived(head), ChunkReceived(tail)


def percentile(values: Iterable[float], q: float) -> float | None:
    v = list(values)
    return float(np.percentile(v, q)) if v else None


class EventSubscription:
    """An async iterator over the engine's :class:`MonitorEvent` objects from the moment it was made."""

    def __init__(self, engine: "Engine") -> None:
        self._engine = engine
        self._queue: asyncio.Queue[MonitorEvent] = asyncio.Queue()
        self.seen: list[MonitorEvent] = []

    def _put(self, ev: MonitorEvent) -> None:
        self._queue.put_nowait(ev)

    def __aiter__(self) -> "EventSubscription":
        return self

    async def __anext__(self) -> MonitorEvent:
        ev = await self._queue.get()
        self.seen.append(ev)
        return ev

    async def wait_for(self, predicate: Callable[[MonitorEvent], bool], *, timeout: float) -> MonitorEvent:
        """The next event satisfying ``predicate``; raises :class:`TimeoutError` after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            async for ev in self:
                if predicate(ev):
                    return ev
        raise TimeoutError  # pragma: no cover - the loop only ends by returning or timing out

    def drain(self) -> list[MonitorEvent]:
        """The events already delivered but not yet iterated (no waiting); they join ``seen``."""
        out = []
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        self.seen.extend(out)
        return out

    def close(self) -> None:
        self._engine._subscribers.discard(self)


@dataclass
class StreamStatus:
    """What the dashboard shows for one stream."""

    stream_id: str
    source: str
    fs: float
    n_present: int = 0
    has_ecg: bool = False
    has_iegm: bool = False
    units_assumed: bool = False
    age_years: float | None = None
    hr_band: str = ""
    call: str | None = None
    p: float | None = None
    hr: float | None = None
    rhythm_since: float | None = None  # monotonic time the current call started
    alarm: tuple[str, str] | None = None  # (label, priority) of the highest-priority active alarm
    alarms_active: int = 0  # alarms active on this stream now
    alarms: int = 0  # alarm onsets on this stream since it was added
    last_alarm: tuple[str, str] | None = None  # (label, priority) of the alarm that ended last
    last_alarm_ended: float | None = None  # monotonic time it ended
    quality: str = "warm-up"
    dropped: int = 0
    windows: int = 0
    queue: int = 0
    error: str | None = None
    ectopy: str | None = None  # None: no beat model; "on"; "error": this stream's beat path failed
    pvc_per_min: int | None = None  # V beats in the last 60 s of stream time
    pac_per_min: int | None = None  # S beats in the last 60 s of stream time
    beats: int = 0  # beats classified
    rejected: int = 0  # messages its source rejected (over budget, over a limit, undecodable)
    dropped_samples: int = 0  # samples dropped before processing (by its source or the engine's queue)
    stalled: str | None = None  # why the watchdog flags it (no progress for [stream] watchdog_s), else None


@dataclass
class EngineSnapshot:
    streams: list[StreamStatus]
    windows_per_s: float
    batch_mean: float | None
    infer_p50: float | None
    infer_p99: float | None
    e2e_p50: float | None
    e2e_p99: float | None
    queue_depth: int
    banner: str
    windows_total: int
    dropped_total: int
    alarms_total: int  # alarm onsets since the start (all streams)
    uptime_s: float
    alarms_active: int = 0  # alarms active now (all streams)
    extra: dict[str, Any] = field(default_factory=dict)


def _training_data(meta: dict[str, Any]) -> tuple[str | None, int | None, str]:
    """``(data format, number of subjects, description)`` of the model's training data.

    Models exported since the ``training_data`` metadata field exist carry the first two as fields;
    for older ones they are read from ``data_description`` ("... N subjects ...", "Leipzig-format").
    """
    desc = " ".join(str(meta.get("data_description", "")).split())
    td = meta.get("training_data")
    if isinstance(td, dict):
        fmt = td.get("format")
        n = td.get("subjects")
        return (str(fmt) if fmt else None, int(n) if isinstance(n, (int, float)) else None, desc)
    m = re.search(r"(\d+)\s+(?:simulated\s+)?subjects", desc, flags=re.IGNORECASE)
    fmt = "Leipzig-format" if re.search(r"leipzig-format", desc, flags=re.IGNORECASE) else None
    return fmt, int(m.group(1)) if m else None, desc


def is_packaged_model(path: str | Path | None) -> bool:
    """Whether ``path`` is the demo model shipped inside pedstream (``pedstream/assets/demo_model.onnx``)."""
    if path is None:
        return False
    from importlib import resources

    packaged = Path(str(resources.files("pedstream") / "assets" / "demo_model.onnx"))
    try:
        return Path(path).resolve() == packaged.resolve()
    except OSError:
        return False


def model_banner(meta: dict[str, Any], *, packaged: bool = False) -> str:
    """One short line stating what the model was trained on, from its metadata.

    Only the packaged demo model (``packaged``, see :func:`is_packaged_model`) trained on simulated
    data is a ``DEMO MODEL · trained on SIMULATED Leipzig-format data (29 simulated subjects) · not for
    clinical use``. Another model trained on simulated data (a user's first run): ``Model · trained on
    SIMULATED Leipzig-format data (3 simulated subjects) · not for clinical use``. Real data: ``Model ·
    trained on <training_data.name, else the format> (29 subjects) · research use only, not a medical
    device`` (the description itself when it names neither and is short).
    """
    fmt, n_subj, desc = _training_data(meta)
    td = meta.get("training_data")
    name = " ".join(str(td.get("name") or "").split()) if isinstance(td, dict) else ""
    if meta.get("trained_on_simulated_data", False):
        what = f"SIMULATED {fmt} data" if fmt else "SIMULATED data"
        if n_subj is not None:
            what += f" ({n_subj} simulated subject{'s' if n_subj != 1 else ''})"
        return f"{'DEMO MODEL' if packaged else 'Model'} · trained on {what} · not for clinical use"
    if name:
        what = name if len(name) <= 70 else name[:69].rstrip() + "…"
    elif fmt:
        what = f"{fmt} data" + (f" ({n_subj} subject{'s' if n_subj != 1 else ''})" if n_subj is not None else "")
    elif desc:
        what = desc if len(desc) <= 60 else desc[:59].rstrip() + "…"
    else:
        what = "unknown data"
    return f"Model · trained on {what} · research use only, not a medical device"


class Engine:
    """Monitors every stream its sources announce. See the module docstring."""

    def __init__(
        self,
        *,
        cfg: Config,
        session: Any,
        sources: Sequence[Any] = (),
        sinks: Sequence[Any] = (),
        alarms_dir: Path | str | None = None,
        beat_session: Any = None,
    ) -> None:
        self.cfg = cfg
        self.session = session
        self.sources = list(sources)
        self.sinks = list(sinks)
        meta = dict(getattr(session, "metadata", {}) or {})
        self.meta = meta
        self.class_names: list[str] = list(session.class_names)
        self.fs = float(meta.get("fs", cfg.signal.fs))
        self.window = int(meta.get("window_samples") or window_samples(float(meta.get("window_s", cfg.segments.window_s)), self.fs))
        self.hop = window_samples(float(meta.get("hop_s", cfg.segments.hop_s)), self.fs)
        self.banner = model_banner(meta, packaged=is_packaged_model(getattr(session, "path", None)))
        self.alarms_dir = Path(alarms_dir if alarms_dir is not None else cfg.alarms.alarms_dir)
        self.batcher = InferenceBatcher(session=session, on_results=self._on_results,
                                        max_batch=cfg.stream.max_batch, max_wait_ms=cfg.stream.max_wait_ms,
                                        queue_windows=cfg.stream.queue_windows,
                                        threads=cfg.stream.inference_threads,
                                        infer_timeout_s=cfg.stream.infer_timeout_s, on_timeout=self._on_infer_timeout)
        self.beat_session = beat_session
        self.beat_spec: BeatModelSpec | None = None
        self.beat_batcher: InferenceBatcher | None = None
        if beat_session is not None:
            self.beat_spec = BeatModelSpec.from_session(beat_session, channels=list(cfg.signal.channels))
            self.beat_batcher = InferenceBatcher(session=beat_session, on_results=self._on_beat_results,
                                                 max_batch=cfg.stream.max_batch, max_wait_ms=cfg.stream.max_wait_ms,
                                                 queue_windows=cfg.stream.beat_queue,
                                                 threads=cfg.stream.inference_threads,
                                                 on_error=self._on_beat_error, name="ort-beat",
                                                 infer_timeout_s=cfg.stream.infer_timeout_s,
                                                 on_timeout=self._on_infer_timeout)
        self.ectopy_counts: dict[str, EctopyCounter] = {}
        self.beats_total = 0
        self.pipelines: dict[str, StreamPipeline] = {}
        self.trackers: dict[str, AlarmTracker] = {}
        self.status: dict[str, StreamStatus] = {}
        self._subscribers: set[EventSubscription] = set()
        self._listeners: list[Callable[[MonitorEvent], None]] = []
        self.e2e_ms: deque[float] = deque(maxlen=5000)
        self._win_times: deque[float] = deque(maxlen=20000)
        self.counts: dict[str, int] = {}
        self.windows_total = 0
        self.ignored_chunks = 0
        self.error_throttle = ErrorThrottle()
        self.strips: list[Path] = []
        self._strip_tasks: set[asyncio.Task] = set()
        self._tg: asyncio.TaskGroup | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._tasks: list[asyncio.Task] = []
        self.t_start = time.monotonic()
        # fair ingest: per-stream queues of (event, arrival time), served round-robin
        self._pending: dict[str, deque[tuple[Any, float]]] = {}
        self._pending_samples: dict[str, int] = {}
        self._rr: deque[str] = deque()
        self._stream_fs: dict[str, float] = {}
        self.ingest_dropped: dict[str, int] = {}  # samples dropped by the engine's per-stream queue
        self._last_data: dict[str, float] = {}  # monotonic arrival of the stream's last chunk
        self._last_served: dict[str, float] = {}  # monotonic time the stream's queue was last served
        self._stalled_engine: str | None = None
        self.watchdog_reports = 0

    # -- lifecycle -----------------------------------------------------------------------------------
    async def __aenter__(self) -> "Engine":
        self.t_start = time.monotonic()
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            for sink in self.sinks:
                await stack.enter_async_context(sink)
            self._tg = asyncio.TaskGroup()
            await self._tg.__aenter__()
            stack.push_async_callback(self._stop_tasks)
            self._tasks.append(self._tg.create_task(self.batcher.run(), name="inference"))
            if self.beat_batcher is not None:
                self._tasks.append(self._tg.create_task(self.beat_batcher.run(), name="beat-inference"))
            queues: list[asyncio.Queue] = []
            for src in self.sources:
                if not any(q is src.events for q in queues):
                    queues.append(src.events)
            for i, q in enumerate(queues):
                self._tasks.append(self._tg.create_task(self._ingest(q), name=f"ingest-{i}"))
            if self.cfg.stream.watchdog_s > 0:
                self._tasks.append(self._tg.create_task(self._watchdog(), name="watchdog"))
            for src in self.sources:
                await stack.enter_async_context(src)
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        self._stack = stack
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    async def _stop_tasks(self) -> None:
        tg, self._tg = self._tg, None
        await close_task_group(tg, self._tasks, timeout_s=self.cfg.stream.stop_timeout_s)
        self._tasks.clear()
        for pipe in self.pipelines.values():  # strips still waiting for post-onset samples
            for strip in pipe.flush_strips():
                self._write_strip(pipe, strip)
        if self._strip_tasks:
            limit = max(10.0, 2 * self.cfg.stream.stop_timeout_s)
            _, late = await asyncio.wait(set(self._strip_tasks), timeout=limit)
            if late:
                log.error("%d alarm strip(s) not drawn within %g s of leaving; abandoned", len(late), limit)
                for t in late:
                    t.cancel()

    # -- events out --------------------------------------------------------------------------------------
    def subscribe(self) -> EventSubscription:
        sub = EventSubscription(self)
        self._subscribers.add(sub)
        return sub

    def add_listener(self, fn: Callable[[MonitorEvent], None]) -> None:
        """Call ``fn(event)`` synchronously for every event (must not block)."""
        self._listeners.append(fn)

    def _emit(self, ev: MonitorEvent) -> None:
        self.counts[ev.kind] = self.counts.get(ev.kind, 0) + 1
        for sink in self.sinks:
            try:
                sink.emit(ev)
            except Exception as exc:  # a broken sink must not stop monitoring
                log.warning("sink %s failed: %s", type(sink).__name__, exc)
        for sub in list(self._subscribers):
            sub._put(ev)
        for fn in self._listeners:
            fn(ev)

    def _error(self, stream_id: str, message: str) -> None:
        """An ``error`` event, throttled per stream (a few per minute; the next one says how many were held back)."""
        admitted = self.error_throttle.admit(stream_id, message)
        if admitted is None:
            return
        message = admitted
        st = self.status.get(stream_id)
        if st is not None:
            st.error = message
        pipe = self.pipelines.get(stream_id)
        self._emit(MonitorEvent(stream=stream_id, kind="error", extra={"message": message},
                                t_signal=None if pipe is None else pipe.last_ts,
                                clock=None if pipe is None else _clock(pipe)))

    # -- ingestion -------------------------------------------------------------------------------------
    async def _ingest(self, queue: asyncio.Queue) -> None:
        """Take the source events into the per-stream queues and serve them round-robin (see the
        module docstring). Waiting for a source with nothing queued is not bounded (a quiet ward is
        no fault); the watchdog watches the streams instead."""
        while True:
            if not self._rr:
                self._enqueue(await queue.get(), time.monotonic())
            now = time.monotonic()
            while True:  # whatever the sources delivered meanwhile (bounded per stream by _enqueue)
                try:
                    ev = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                self._enqueue(ev, now)
            self._serve_round()
            await asyncio.sleep(0)  # let the sources and the inference task run between rounds

    def _enqueue(self, ev: Any, now: float) -> None:
        sid = str(getattr(ev, "stream_id", "?"))
        q = self._pending.get(sid)
        if q is None:  # its queue was empty: it waits from now
            q = self._pending[sid] = deque()
            self._rr.append(sid)
            self._last_served[sid] = now
        if isinstance(ev, StreamAdded):
            self._stream_fs[sid] = float(ev.info.fs)
        q.append((ev, now))
        if not isinstance(ev, ChunkReceived):
            return
        self._last_data[sid] = now
        n = self._pending_samples.get(sid, 0) + _n_samples(ev)
        cap = max(1, int(self.cfg.stream.ingest_queue_s * self._stream_fs.get(sid, 1000.0)))
        while n > cap:  # drop the stream's OLDEST queued chunk (never a StreamAdded/Lost/Error)
            i = next((k for k, (e, _) in enumerate(q) if isinstance(e, ChunkReceived)), None)
            if i is None or i == len(q) - 1:
                break
            old = q[i][0]
            del q[i]
            k = _n_samples(old)
            n -= k
            self.ingest_dropped[sid] = self.ingest_dropped.get(sid, 0) + k
        self._pending_samples[sid] = n

    def _slice(self, sid: str) -> int:
        """Samples of one stream handled per turn: one hop at the stream's rate."""
        return max(1, int(round(self.hop / self.fs * self._stream_fs.get(sid, self.fs))))

    def _serve_round(self) -> None:
        """One turn per stream with queued events: one event, a chunk cut to one hop of samples."""
        for _ in range(len(self._rr)):
            sid = self._rr.popleft()
            q = self._pending.get(sid)
            if not q:
                self._pending.pop(sid, None)
                continue
            ev, t_arr = q[0]
            piece = _split(ev, self._slice(sid)) if isinstance(ev, ChunkReceived) else None
            if piece is None:
                q.popleft()
            else:
                ev, q[0] = piece[0], (piece[1], t_arr)
            if isinstance(ev, ChunkReceived):
                self._pending_samples[sid] = max(0, self._pending_samples.get(sid, 0) - _n_samples(ev))
            self._handle_safe(ev, t_arr)
            self._last_served[sid] = time.monotonic()
            if q:
                self._rr.append(sid)
            else:
                self._pending.pop(sid, None)

    def _handle_safe(self, ev: Any, t_received: float) -> None:
        try:
            self.handle(ev, t_received)
        except Exception as exc:  # one stream's failure is its error event, never the end of the run
            sid = str(getattr(ev, "stream_id", "?"))
            log.debug("stream %s: event %s failed", sid, type(ev).__name__, exc_info=exc)
            self._error(sid, f"processing failed ({type(exc).__name__}: {str(exc)[:120]})")

    def ingest_depth(self, stream_id: str) -> int:
        """Events of a stream waiting in the engine's ingest queue."""
        q = self._pending.get(stream_id)
        return 0 if q is None else len(q)

    # -- watchdog --------------------------------------------------------------------------------------
    async def _watchdog(self) -> None:
        budget = self.cfg.stream.watchdog_s
        period = min(1.0, max(0.02, budget / 5))
        while True:
            await asyncio.sleep(period)  # the watchdog's own cadence
            try:
                self.check_progress(time.monotonic())
            except Exception as exc:  # the watchdog must outlive any one stream's problem
                log.exception("engine watchdog: %s", exc)

    def check_progress(self, now: float) -> None:
        """Flag (one ``error`` event, ``StreamStatus.stalled``) every stream and task without progress for
        ``[stream] watchdog_s``; clear the flag when it moves again."""
        budget = self.cfg.stream.watchdog_s
        oldest_window: dict[str, float] = {}
        for b in (self.batcher, self.beat_batcher):
            for sid, q in (getattr(b, "_queues", {}) or {}).items():
                if q:
                    oldest_window[sid] = min(oldest_window.get(sid, now), q[0].t_enqueued)
        for sid, st in self.status.items():
            pipe = self.pipelines.get(sid)
            why = None
            if self._pending.get(sid) and now - self._last_served.get(sid, now) > budget:
                why = (f"no progress: {len(self._pending[sid])} event(s) queued, none processed for "
                       f"{now - self._last_served[sid]:.1f} s")
            elif sid in oldest_window and now - oldest_window[sid] > budget:
                why = f"no progress: a window has waited {now - oldest_window[sid]:.1f} s for inference"
            elif (pipe is not None and not pipe.lost and sid in self._last_data
                  and now - self._last_data[sid] > budget):
                why = (f"no data for {now - self._last_data[sid]:.1f} s and its source has not reported it "
                       "lost (source stalled?)")
            if why is not None and st.stalled is None:
                st.stalled = why
                self.watchdog_reports += 1
                self._error(sid, f"watchdog: {why} ([stream] watchdog_s {budget:g})")
            elif why is None and st.stalled is not None:
                st.stalled = None
        for b in (self.batcher, self.beat_batcher):
            since = getattr(b, "busy_since", None)
            if b is not None and since is not None and now - since > budget:
                if self._stalled_engine is None:
                    self._stalled_engine = f"a model call has been running for {now - since:.1f} s"
                    self.watchdog_reports += 1
                    self._error("engine", f"watchdog: {self._stalled_engine} ([stream] watchdog_s {budget:g})")
                break
        else:
            self._stalled_engine = None
        for t in self._tasks:
            if t.done() and not t.cancelled() and not getattr(t, "_pedstream_reported", False):
                t._pedstream_reported = True  # type: ignore[attr-defined]
                exc = t.exception()
                self._error("engine", f"watchdog: task {t.get_name()} ended"
                                      + (f" ({type(exc).__name__}: {exc})" if exc else ""))

    def _on_infer_timeout(self, items: list[WindowItem], exc: Exception) -> None:
        for sid in dict.fromkeys(i.stream_id for i in items):
            self._error(sid, str(exc))

    def handle(self, ev: Any, t_received: float) -> None:
        """Process one source event (synchronous, never blocks)."""
        match ev:
            case ChunkReceived(chunk=chunk):
                pipe = self.pipelines.get(chunk.stream_id)
                if pipe is None:
                    self.ignored_chunks += 1
                    return
                try:
                    res = pipe.feed(chunk, t_received)
                except PedstreamError as exc:
                    self._error(chunk.stream_id, str(exc))
                    return
                self._apply(pipe, res)
            case StreamAdded(info=info):
                self._add_stream(info)
            case StreamLost(stream_id=sid, reason=reason):
                pipe = self.pipelines.get(sid)
                if pipe is not None:
                    self._apply(pipe, pipe.mark_lost(reason))
            case StreamErrorEvent(stream_id=sid, message=msg):
                self._error(sid, msg)
            case _:
                log.warning("unknown source event %r", type(ev).__name__)

    def _add_stream(self, info: StreamInfo) -> None:
        sid = info.stream_id
        old = self.pipelines.get(sid)
        if old is not None and old.info.fs == info.fs and list(old.info.channel_names) == list(info.channel_names):
            old.info = info  # same stream back: the next chunk's index/timestamps decide about a gap
            return
        st = StreamStatus(stream_id=sid, source=info.source, fs=info.fs, units_assumed=info.units_assumed,
                          age_years=info.age_years)
        self.status[sid] = st
        try:
            pipe = StreamPipeline(info=info, cfg=self.cfg, fs=self.fs, window=self.window, hop=self.hop)
        except PedstreamError as exc:
            self.pipelines.pop(sid, None)
            st.quality = "error"
            self._error(sid, str(exc))
            return
        self.pipelines[sid] = pipe
        self.batcher.remove_stream(sid)
        tracker = AlarmTracker(class_names=self.class_names, cfg=self.cfg.alarms, age_years=info.age_years)
        self.trackers[sid] = tracker
        st.n_present, st.has_ecg, st.has_iegm = pipe.cmap.n_present, pipe.has_ecg, pipe.has_iegm
        st.hr_band = f"{tracker.hr_band} {tracker.hr_low:g}-{tracker.hr_high:g}"
        st.error = None
        if self.beat_spec is not None and self.beat_batcher is not None:
            self.beat_batcher.remove_stream(sid)
            self.ectopy_counts[sid] = EctopyCounter()
            try:
                pipe.ectopy = BeatStream(stream_id=sid, spec=self.beat_spec, fs_in=info.fs,
                                         rhythm_time=pipe.resampler.output_time, present=pipe.present,
                                         ring_seconds=self.cfg.stream.ring_seconds)
                st.ectopy, st.pvc_per_min, st.pac_per_min = "on", 0, 0
            except PedstreamError as exc:
                self._beat_error(sid, str(exc))
        if pipe.cmap.unknown:
            log.info("stream %s: channels %s not used", sid, list(pipe.cmap.unknown))

    def _apply(self, pipe: StreamPipeline, res: Any) -> None:
        sid = pipe.stream_id
        st = self.status[sid]
        for kind, reason in res.transitions:
            if kind == "signal_loss":
                self.trackers[sid].reset_smoothing()  # windows already queued were complete: keep them
            self._emit(MonitorEvent(stream=sid, kind=kind, hr=pipe.heart_rate, extra={"reason": reason},
                                    t_signal=pipe.last_ts, clock=_clock(pipe)))
        for item in res.windows:
            self.batcher.submit(item)
        if self.beat_batcher is not None:
            for item in res.beats:
                self.beat_batcher.submit(item)
            if res.ectopy_error:
                self._beat_error(sid, res.ectopy_error)
        for strip in res.strips:
            self._write_strip(pipe, strip)
        st.quality = pipe.quality
        st.queue = self.batcher.queue_depth(sid)
        st.dropped = self.batcher.dropped.get(sid, 0)

    # -- inference results -----------------------------------------------------------------------------
    def _on_results(self, results: list[BatchResult]) -> None:
        now = time.monotonic()
        for r in results:
            sid = r.item.stream_id
            pipe, tracker, st = self.pipelines.get(sid), self.trackers.get(sid), self.status.get(sid)
            if pipe is None or tracker is None or st is None:
                continue
            probs = softmax(r.logits, dtype=np.float64)  # (C,)
            hr = pipe.heart_rate
            call, transitions = tracker.update(probs, hr)
            latency = (now - r.item.t_received) * 1000.0
            self.e2e_ms.append(latency)
            self._win_times.append(now)
            self.windows_total += 1
            raw = int(np.argmax(probs))
            if call.label != st.call:
                st.rhythm_since = now
            st.call, st.p, st.hr, st.windows = call.label, call.p, hr, st.windows + 1
            t_sig = r.item.t_signal
            extra = {"window_start": r.item.start, "raw_label": self.class_names[raw],
                     "raw_p": round(float(probs[raw]), 4),
                     "t_signal_end": None if t_sig is None else round(t_sig + pipe.window / pipe.fs, 6)}
            if st.ectopy == "on":
                self._update_rates(sid, pipe, st)
                extra.update(pvc_per_min=st.pvc_per_min, pac_per_min=st.pac_per_min)
            self._emit(MonitorEvent(stream=sid, kind="call", label=call.label, p=call.p, hr=hr, latency_ms=latency,
                                    extra=extra, t_signal=t_sig, clock=_clock(pipe)))
            self._emit_transitions(pipe, st, tracker, transitions, onset=r.item.start + pipe.window,
                                   latency=latency, now=now, t_signal=t_sig)
            st.dropped = self.batcher.dropped.get(sid, 0)
            st.queue = self.batcher.queue_depth(sid)

    def _emit_transitions(self, pipe: StreamPipeline, st: StreamStatus, tracker: AlarmTracker, transitions: list,
                          *, onset: int, latency: float | None, now: float, t_signal: float | None = None) -> None:
        """Alarm events (and strips, ``onset`` = ring index at the model rate) of one stream."""
        sid = pipe.stream_id
        for tr in transitions:
            if tr.kind == "alarm_on":
                st.alarms += 1
            else:
                st.last_alarm, st.last_alarm_ended = (tr.label, tr.priority), now
            extra: dict[str, Any] = {"priority": tr.priority}
            if tr.detail:
                extra["detail"] = tr.detail
            if tr.kind == "alarm_on" and self.cfg.alarms.strips:
                path = self._strip_path(sid, tr.label)
                extra["strip"] = str(path)
                pipe.request_strip(StripRequest(onset=onset, label=tr.label, priority=tr.priority, t_iso=str(path)))
            self._emit(MonitorEvent(stream=sid, kind=tr.kind, label=tr.label, p=tr.p, hr=tr.hr,
                                    latency_ms=latency, extra=extra, t_signal=t_signal, clock=_clock(pipe)))
        st.alarm, st.alarms_active = tracker.top_alarm, len(tracker.active)

    # -- beat model (ectopy) -------------------------------------------------------------------------
    def _update_rates(self, sid: str, pipe: StreamPipeline | None, st: StreamStatus, t: float | None = None) -> None:
        counter = self.ectopy_counts.get(sid)
        if counter is None or st.ectopy is None:
            return
        now = t if t is not None else (pipe.last_ts if pipe is not None else None)
        st.pvc_per_min, st.pac_per_min = counter.rates(now)

    def _on_beat_results(self, results: list[BatchResult]) -> None:
        now = time.monotonic()
        names = self.beat_spec.class_names if self.beat_spec is not None else ()
        for r in results:
            sid = r.item.stream_id
            pipe, tracker, st = self.pipelines.get(sid), self.trackers.get(sid), self.status.get(sid)
            info: BeatInfo = r.item.meta
            if pipe is None or tracker is None or st is None or st.ectopy != "on":
                continue
            probs = softmax(r.logits, dtype=np.float64)  # (C,)
            k = int(np.argmax(probs))
            label, p = names[k], float(probs[k])
            self.ectopy_counts[sid].add(info.t, label)
            self._update_rates(sid, pipe, st, t=info.t)
            st.beats += 1
            self.beats_total += 1
            latency = (now - r.item.t_received) * 1000.0
            hr = pipe.heart_rate
            self._emit(MonitorEvent(stream=sid, kind="beat", label=label, p=p, hr=hr, latency_ms=latency,
                                    extra={"beat_t": round(info.t, 3), "pre_rr_s": round(info.pre_rr, 3),
                                           "post_rr_s": round(info.post_rr, 3), "pvc_per_min": st.pvc_per_min,
                                           "pac_per_min": st.pac_per_min}, t_signal=info.t, clock=_clock(pipe)))
            self._emit_transitions(pipe, st, tracker, tracker.beat(label, p), onset=info.rhythm_index,
                                   latency=latency, now=now, t_signal=info.t)

    def _beat_error(self, sid: str, message: str) -> None:
        """This stream's beat path failed: an ``error`` event; its beat path is off, its rhythm goes on."""
        pipe, st = self.pipelines.get(sid), self.status.get(sid)
        if pipe is not None:
            pipe.ectopy = None
        if self.beat_batcher is not None:
            self.beat_batcher.remove_stream(sid)
        if st is not None:
            st.ectopy, st.pvc_per_min, st.pac_per_min = "error", None, None
        self._emit(MonitorEvent(stream=sid, kind="error", extra={"message": message}))

    def _on_beat_error(self, sid: str, exc: Exception) -> None:
        if self.status.get(sid) is not None and self.status[sid].ectopy == "error":
            return  # already reported (items of a stream already switched off)
        self._beat_error(sid, f"beat model: {exc}")

    # -- strips ------------------------------------------------------------------------------------------------
    def _strip_path(self, sid: str, label: str) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S_%f")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{sid}_{label}")
        return self.alarms_dir / f"{safe}_{stamp}.png"

    def _write_strip(self, pipe: StreamPipeline, strip: ReadyStrip) -> None:
        from pedstream.data.channels import CANONICAL_CHANNELS

        req = strip.request
        path = Path(req.t_iso)
        title = (f"{pipe.stream_id}  ALARM {req.label.upper()} ({req.priority})  {path.stem.rsplit('_', 2)[-2]}  "
                 f"HR {pipe.heart_rate or float('nan'):.0f} bpm  — {self.banner}")

        async def _draw() -> None:
            try:
                await asyncio.to_thread(save_strip, path, data=strip.data, fs=pipe.fs, channel_names=CANONICAL_CHANNELS,
                                        present=pipe.present, onset_s=strip.onset_s, title=title)
                self.strips.append(path)
            except Exception as exc:  # a failed drawing must not stop monitoring
                log.warning("alarm strip %s: %s", path, exc)

        task = asyncio.get_running_loop().create_task(_draw(), name=f"strip-{pipe.stream_id}")
        self._strip_tasks.add(task)
        task.add_done_callback(self._strip_tasks.discard)

    # -- views ---------------------------------------------------------------------------------------------------
    def snapshot(self) -> EngineSnapshot:
        now = time.monotonic()
        recent = [t for t in self._win_times if now - t <= 5.0]
        span = min(5.0, max(now - self.t_start, 1e-3))
        for sid, st in self.status.items():
            pipe = self.pipelines.get(sid)
            if pipe is not None:
                st.quality = pipe.quality
                st.hr = pipe.heart_rate
            st.dropped = self.batcher.dropped.get(sid, 0)
            st.queue = self.batcher.queue_depth(sid)
            st.rejected, st.dropped_samples = self._ingest_counters(sid)
            if st.ectopy == "on":
                self._update_rates(sid, pipe, st)
        bs = list(self.batcher.batch_sizes)
        return EngineSnapshot(
            streams=list(self.status.values()),
            windows_per_s=len(recent) / span,
            batch_mean=float(np.mean(bs)) if bs else None,
            infer_p50=percentile(self.batcher.infer_ms, 50), infer_p99=percentile(self.batcher.infer_ms, 99),
            e2e_p50=percentile(self.e2e_ms, 50), e2e_p99=percentile(self.e2e_ms, 99),
            queue_depth=self.batcher.pending, banner=self.banner, windows_total=self.windows_total,
            dropped_total=sum(self.batcher.dropped.values()), alarms_total=self.counts.get("alarm_on", 0),
            uptime_s=now - self.t_start, alarms_active=sum(len(t.active) for t in self.trackers.values()),
        )

    def _ingest_counters(self, sid: str) -> tuple[int, int]:
        """(messages rejected by the stream's source, samples dropped by its source and the engine)."""
        rejected, dropped = 0, self.ingest_dropped.get(sid, 0)
        for src in self.sources:
            counters = getattr(src, "stream_counters", None)
            c = counters(sid) if callable(counters) else None
            if c:
                rejected += int(c.get("rejected_messages", 0))
                dropped += int(c.get("dropped_samples", 0))
        return rejected, dropped

    def summary(self) -> dict[str, Any]:
        """End-of-run figures (the CLI prints them)."""
        return {
            "streams": len(self.status),
            "windows_classified": self.windows_total,
            "alarms": self.counts.get("alarm_on", 0),
            "alarms_active": sum(len(t.active) for t in self.trackers.values()),
            "errors": self.counts.get("error", 0),
            "signal_loss": self.counts.get("signal_loss", 0),
            "dropped_windows": sum(self.batcher.dropped.values()),
            "rejected_messages": sum(src.totals()["rejected_messages"] for src in self.sources if hasattr(src, "totals")),
            "dropped_samples": sum(src.totals()["dropped_samples"] for src in self.sources if hasattr(src, "totals"))
            + sum(self.ingest_dropped.values()),
            "watchdog_reports": self.watchdog_reports,
            "e2e_latency_ms_p50": percentile(self.e2e_ms, 50),
            "e2e_latency_ms_p99": percentile(self.e2e_ms, 99),
            "inference_ms_p50": percentile(self.batcher.infer_ms, 50),
            "inference_ms_p99": percentile(self.batcher.infer_ms, 99),
            "batch_mean": float(np.mean(self.batcher.batch_sizes)) if self.batcher.batch_sizes else None,
            "strips": len(self.strips),
            **({"beats_classified": self.beats_total,
                "dropped_beats": sum(self.beat_batcher.dropped.values())} if self.beat_batcher is not None else {}),
        }


def hr_limits_text(age_years: float | None, cfg: Config) -> str:
    lo, hi, band = hr_limits_for_age(age_years, cfg.alarms)
    return f"{band}: {lo:g}-{hi:g} bpm"

