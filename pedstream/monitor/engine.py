"""The streaming engine: sources -> per-stream pipelines -> one batched inference task -> calls,
alarms, sinks.

Usage::

    async with Engine(cfg=cfg, session=session, sources=[src], sinks=[JsonLinesSink(path)]) as eng:
        sub = eng.subscribe()                  # or subscribe before entering, to miss nothing
        ev = await sub.wait_for(lambda e: e.kind == "alarm_on", timeout=30)

On entry the engine enters its sinks, starts its named tasks in an :class:`asyncio.TaskGroup`
(``inference``, one ``ingest-<n>`` per distinct source queue) and enters the sources; on exit it
cancels and awaits them, writes pending alarm strips and closes sinks. The per-stream DSP runs on the
event loop's behalf in the DSP thread (``[stream] dsp_thread``: numpy and scipy release the
interpreter lock, so the loop runs the sources and the inference batches meanwhile; each pipeline
guards its state with its own lock), all streams of an ingest round together (:mod:`pedstream.monitor.bank`), or with
``[stream] workers`` > 1 in DSP worker processes (:mod:`pedstream.monitor.workers`, windows back
through shared memory); ONNX Runtime runs in a worker thread; alarm strips are drawn
in threads. A problem with one stream (unknown channel names, bad chunk) becomes an ``error``
event for that stream; the other streams carry on.

With a beat model (``beat_session``, see :mod:`pedstream.monitor.ectopy`) every stream also gets a
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
again). A thread (:class:`~pedstream.monitor.loopwatch.LoopWatch`) watches the loop itself: a loop
blocked that long by one synchronous call is logged at once with where it is stuck, and becomes an
``error`` event when the loop runs again. A model call is abandoned after ``infer_timeout_s``
(error events); leaving cancels the tasks with a bound (``stop_timeout_s``; a task that does not stop is named in the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pedstream.config import Config
from pedstream.errors import ConfigError, PedstreamError
from pedstream.model.runtime import softmax
from pedstream.monitor.alarms import AlarmTracker
from pedstream.monitor.banner import is_packaged_model, model_banner
from pedstream.monitor.workers import WorkerPool, worker_count
from pedstream.monitor.batcher import BatchResult, InferenceBatcher, WindowItem
from pedstream.monitor.beat_hooks import BeatHooks
from pedstream.monitor.views import EngineViews
from pedstream.monitor.ectopy import BeatModelSpec, BeatStream, EctopyCounter
from pedstream.monitor.ingest import FairIngest
from pedstream.monitor.loopwatch import LoopWatch
from pedstream.monitor.pipeline import StreamPipeline, stream_clock
from pedstream.events import StripRequest
from pedstream.monitor.release import note_error_only, release_lost, revive
from pedstream.monitor.rhythm_context import ring_need
from pedstream.monitor.rhythm_hooks import RhythmHooks
from pedstream.transports.replay import record_position
from pedstream.events import MonitorEvent
from pedstream.events import ChunkReceived, StreamAdded
from pedstream.events import StreamFailed
from pedstream.transports.base import ErrorThrottle, TaskScope
from pedstream.events import StreamInfo, StreamLost

from pedstream.outputs.strips import StripWriter, alarms_folder
from pedstream.events import EngineSnapshot, EventSubscription, StreamStatus, percentile
from pedstream.monitor.watchdog import Watchdog

__all__ = ["Engine", "EventSubscription", "StreamStatus", "EngineSnapshot", "StreamState", "percentile"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class StreamState:
    """Everything the engine keeps about one stream id (made at its first source event).

    The ingest side (its queue of ``(event, arrival time)``, served round-robin) exists from the
    first event; ``pipe``/``tracker``/``status`` once a ``StreamAdded`` was handled (``pipe`` is
    ``None`` when its metadata was refused); ``ectopy`` with a beat model.
    """

    stream_id: str
    fs: float | None = None  # the announced rate (sizes the ingest queue and a turn's slice)
    pending: deque = field(default_factory=deque)  # (event, monotonic arrival), oldest first
    pending_samples: int = 0
    in_turn: bool = False  # in the round-robin
    deferred: bool = False  # waiting in the heap of deferred streams until ``due`` (pedstream.monitor.ingest)
    due: float = 0.0
    need: int = 0  # source samples its next window still needs (0: unknown)
    ingest_dropped: int = 0  # samples dropped by the engine's queue (oldest first)
    last_data: float | None = None  # monotonic arrival of its last chunk
    last_served: float | None = None  # monotonic time its queue was last served
    pipe: StreamPipeline | None = None
    tracker: AlarmTracker | None = None
    status: StreamStatus | None = None
    ectopy: EctopyCounter | None = None


class Engine(FairIngest, Watchdog, RhythmHooks, BeatHooks, EngineViews):
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
        rhythm_model: Any = None,
    ) -> None:
        self.cfg = cfg
        self.session = session
        self.sources = list(sources)
        self.sinks = list(sinks)
        meta = dict(getattr(session, "metadata", {}) or {})
        self.meta = meta
        self.class_names: list[str] = list(session.class_names)
        self.geometry = session.geometry  # checked once by the model session (pedstream.dsp.windowing)
        self.fs, self.window, self.hop = self.geometry.fs, self.geometry.window, self.geometry.hop
        self.banner = model_banner(meta, packaged=is_packaged_model(getattr(session, "path", None)))
        self.alarms_dir = alarms_folder(cfg.alarms, override=alarms_dir)
        self.strip_writer = StripWriter(alarms_dir=self.alarms_dir, banner=self.banner)
        self.batcher = InferenceBatcher.from_config(cfg.stream, session=session, on_results=self._on_results,
                                                    on_timeout=self._on_infer_timeout)
        self.beat_session = beat_session
        n_workers = worker_count(cfg.stream.workers)
        if n_workers > 1 and beat_session is not None:
            raise ConfigError([("stream.workers", f"{cfg.stream.workers}: the beat model runs only with workers = 1 for now")],
                              source="engine")
        # the per-stream DSP in worker processes (pedstream.monitor.workers), or here (None)
        self.workers: WorkerPool | None = None if n_workers <= 1 else WorkerPool(
            cfg=cfg, fs=self.fs, window=self.window, hop=self.hop, n=n_workers, on_result=self._apply_result)
        self.beat_spec: BeatModelSpec | None = None
        self.beat_batcher: InferenceBatcher | None = None
        if beat_session is not None:
            self.beat_spec = BeatModelSpec.from_session(beat_session, channels=list(cfg.signal.channels))
            self.beat_batcher = InferenceBatcher.from_config(cfg.stream, session=beat_session,
                                                             on_results=self._on_beat_results,
                                                             queue_windows=cfg.stream.beat_queue,
                                                             on_error=self._on_beat_error, name="ort-beat",
                                                             on_timeout=self._on_infer_timeout)
        self.beats_total = 0
        self.beat_labels = None  # clinician beat labels adapting each stream's calls (feature beat models)
        if beat_session is not None:
            from pedstream.monitor.adapt import beat_labels_for

            self.beat_labels = beat_labels_for(beat_session)
        self.streams: dict[str, StreamState] = {}  # one state object per stream id
        self._subscribers: set[EventSubscription] = set()
        self._listeners: list[Callable[[MonitorEvent], None]] = []
        self.e2e_ms: deque[float] = deque(maxlen=5000)
        self._win_times: deque[float] = deque(maxlen=20000)
        self.counts: dict[str, int] = {}
        self.windows_total = 0
        self.ignored_chunks = 0
        self.error_throttle = ErrorThrottle()
        self._tg: TaskScope | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._tasks: list[asyncio.Task] = []
        self.t_start = time.monotonic()
        self._rr: deque[str] = deque()  # fair ingest: stream ids with queued events, served round-robin
        self._deferred: list[tuple[float, str]] = []  # heap of (due, stream id): deferred DSP (pedstream.monitor.ingest)
        self._stalled_engine: str | None = None
        self.watchdog_reports = 0
        self.loopwatch: LoopWatch | None = None
        # the DSP thread ([stream] dsp_thread; in-process DSP without a beat model): one group of
        # streams at a time (pedstream.monitor.ingest), so a pipeline is never fed twice at once
        self._dsp_pool: ThreadPoolExecutor | None = None
        self._dsp_lock = asyncio.Lock()
        self._dsp_future: Any = None
        self.dsp_s = 0.0  # seconds the DSP ran (on the loop or in its thread; bench engine)
        self._rhythm_init(rhythm_model)  # the rhythm-context layer (pedstream.monitor.rhythm_hooks); None = off

    # -- per-stream state and its read-only views --------------------------------------------------------
    def _state(self, sid: str) -> StreamState:
        st = self.streams.get(sid)
        if st is None:
            st = self.streams[sid] = StreamState(stream_id=sid)
        return st

    @property
    def pipelines(self) -> dict[str, StreamPipeline]:
        return {sid: s.pipe for sid, s in self.streams.items() if s.pipe is not None}

    @property
    def trackers(self) -> dict[str, AlarmTracker]:
        return {sid: s.tracker for sid, s in self.streams.items() if s.tracker is not None}

    @property
    def status(self) -> dict[str, StreamStatus]:
        return {sid: s.status for sid, s in self.streams.items() if s.status is not None}

    @property
    def ectopy_counts(self) -> dict[str, EctopyCounter]:
        return {sid: s.ectopy for sid, s in self.streams.items() if s.ectopy is not None}

    @property
    def ingest_dropped(self) -> dict[str, int]:
        """Samples dropped by the engine's per-stream queue (streams that lost any)."""
        return {sid: s.ingest_dropped for sid, s in self.streams.items() if s.ingest_dropped}

    @property
    def _pending_samples(self) -> dict[str, int]:
        return {sid: s.pending_samples for sid, s in self.streams.items()}

    @property
    def strips(self) -> list[Path]:
        """Alarm strips drawn so far."""
        return self.strip_writer.paths

    def _pipe(self, sid: str) -> StreamPipeline | None:
        s = self.streams.get(sid)
        return None if s is None else s.pipe

    # -- lifecycle -----------------------------------------------------------------------------------
    async def __aenter__(self) -> "Engine":
        self.t_start = time.monotonic()
        async with contextlib.AsyncExitStack() as stack:  # unwinds what was entered if one step fails
            for sink in self.sinks:
                await stack.enter_async_context(sink)
            if self.cfg.stream.gil_switch_ms > 0:  # the inference thread's turns at the GIL (restored on exit)
                old = sys.getswitchinterval()
                sys.setswitchinterval(self.cfg.stream.gil_switch_ms / 1000.0)
                stack.callback(sys.setswitchinterval, old)
            if self.workers is not None:
                self.workers.start()
                stack.callback(self.workers.close)  # after the strips were flushed
                await self.workers.wait_ready()  # no data before the DSP is up
            elif self.beat_session is None and getattr(self.cfg.stream, "dsp_thread", False):
                self._dsp_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsp")
                stack.callback(self._close_dsp)  # after the strips were flushed
            stack.push_async_callback(self._finish_strips)  # after the tasks stopped, before the sinks close
            if self.cfg.stream.watchdog_s > 0:  # watches the loop from a thread; stops after the tasks
                self.loopwatch = stack.enter_context(LoopWatch(self.cfg.stream.watchdog_s))
            self._tg = await stack.enter_async_context(TaskScope(timeout_s=self.cfg.stream.stop_timeout_s))
            self._tasks = self._tg.tasks
            self._tg.create_task(self.batcher.run(), name="inference")
            if self.rhythm is not None:
                self._tg.create_task(self.rhythm.run(), name="rhythm")
            if self.beat_batcher is not None:
                self._tg.create_task(self.beat_batcher.run(), name="beat-inference")
            queues: list[asyncio.Queue] = []
            for src in self.sources:
                if not any(q is src.events for q in queues):
                    queues.append(src.events)
            for i, q in enumerate(queues):
                self._tg.create_task(self._ingest(q), name=f"ingest-{i}")
            if self.cfg.stream.watchdog_s > 0:
                self._tg.create_task(self._watchdog(), name="watchdog")
            for src in self.sources:
                await stack.enter_async_context(src)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    def _close_dsp(self) -> None:
        pool, self._dsp_pool = self._dsp_pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def _finish_strips(self) -> None:
        self._tg = None
        for pipe in self.pipelines.values():  # strips still waiting for post-onset samples
            for strip in pipe.flush_strips():
                self.strip_writer.write(pipe, strip)
        await self.strip_writer.finish(max(10.0, 2 * self.cfg.stream.stop_timeout_s))

    # -- events out --------------------------------------------------------------------------------------
    def subscribe(self) -> EventSubscription:
        sub = EventSubscription(self._subscribers.discard)
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
        s = self.streams.get(stream_id)
        st, pipe = (None, None) if s is None else (s.status, s.pipe)
        if st is not None:
            st.error = message
        self._emit(MonitorEvent(stream=stream_id, kind="error", extra={"message": message},
                                t_signal=None if pipe is None else pipe.last_ts,
                                clock=None if pipe is None else stream_clock(pipe)))

    def _on_infer_timeout(self, items: list[WindowItem], exc: Exception) -> None:
        for sid in dict.fromkeys(i.stream_id for i in items):
            self._error(sid, str(exc))

    def handle(self, ev: Any, t_received: float) -> None:
        """Process one source event (synchronous, never blocks)."""
        match ev:
            case ChunkReceived(chunk=chunk):
                pipe = self._pipe(chunk.stream_id)
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
                pipe = self._pipe(sid)
                if pipe is not None:
                    self._apply(pipe, pipe.mark_lost(reason))
                self._rhythm_lost(sid)
                release_lost(self, sid)  # its pipeline's memory (pedstream.monitor.release)
            case StreamFailed(stream_id=sid, message=msg):
                self._error(sid, msg)
                note_error_only(self, sid)
            case _:
                log.warning("unknown source event %r", type(ev).__name__)

    def _add_stream(self, info: StreamInfo) -> None:
        sid = info.stream_id
        s = self._state(sid)
        revive(self, sid)
        old = s.pipe
        if old is not None and info.same_layout(old.info):
            old.info = info  # same stream back: the next chunk's index/timestamps decide about a gap
            if self.workers is not None:
                self.workers.same_stream_back(info)
            return
        st = StreamStatus(stream_id=sid, source=info.source, fs=info.fs, units_assumed=info.units_assumed,
                          age_years=info.age_years)
        s.status = st
        try:
            need = 0 if self.rhythm is None else ring_need(self.cfg, self.fs, self.hop)  # the rhythm calls' lead
            pipe = (StreamPipeline(info=info, cfg=self.cfg, fs=self.fs, window=self.window, hop=self.hop, ring_at_least=need)
                    if self.workers is None else self.workers.new_pipeline(info))
        except PedstreamError as exc:
            s.pipe = None
            st.quality = "error"
            self._error(sid, str(exc))
            return
        s.pipe = pipe
        self.batcher.remove_stream(sid)
        tracker = s.tracker = AlarmTracker(class_names=self.class_names, cfg=self.cfg.alarms, age_years=info.age_years)
        st.n_present, st.has_ecg, st.has_iegm = pipe.cmap.n_present, pipe.has_ecg, pipe.has_iegm
        st.hr_band = f"{tracker.hr_band} {tracker.hr_low:g}-{tracker.hr_high:g}"
        st.error = None
        if self.beat_spec is not None and self.beat_batcher is not None:
            self.beat_batcher.remove_stream(sid)
            s.ectopy = EctopyCounter()
            try:
                pipe.ectopy = BeatStream(stream_id=sid, spec=self.beat_spec, fs_in=info.fs,
                                         rhythm_time=pipe.resampler.output_time, present=pipe.present,
                                         ring_seconds=self.cfg.stream.ring_seconds)
                st.ectopy, st.pvc_per_min, st.pac_per_min = "on", 0, 0
                if self.beat_labels is not None:
                    self.beat_labels.add_stream(sid)  # this patient's earlier labels, if any
            except PedstreamError as exc:
                self._beat_error(sid, str(exc))
        self._rhythm_add(sid)
        if pipe.cmap.unknown:
            log.info("stream %s: channels %s not used", sid, list(pipe.cmap.unknown))

    def _apply(self, pipe: StreamPipeline, res: Any) -> None:
        sid = pipe.stream_id
        s = self.streams[sid]
        st = s.status
        for kind, reason in res.transitions:
            if kind == "signal_loss":
                s.tracker.reset_smoothing()  # windows already queued were complete: keep them
            self._emit(MonitorEvent(stream=sid, kind=kind, hr=pipe.heart_rate, extra={"reason": reason},
                                    t_signal=pipe.last_ts, clock=stream_clock(pipe)))
        for item in res.windows:
            if item.meta is None:  # the heart rate when the window was complete (stream time), not when its result is back
                item.meta = {"hr": pipe.heart_rate}
            self.batcher.submit(item)
        if self.beat_batcher is not None:
            for item in res.beats:
                self.beat_batcher.submit(item)
            if res.ectopy_error:
                self._beat_error(sid, res.ectopy_error)
        if res.windows:
            self._rhythm_window(pipe, res.windows)
        for strip in res.strips:
            self.strip_writer.write(pipe, strip)
        st.quality = pipe.quality
        st.queue = self.batcher.queue_depth(sid)
        st.dropped = self.batcher.dropped.get(sid, 0)

    # -- inference results -----------------------------------------------------------------------------
    def _on_results(self, results: list[BatchResult]) -> None:
        now = time.monotonic()
        for r in results:
            sid = r.item.stream_id
            s = self.streams.get(sid)
            pipe, tracker, st = (None, None, None) if s is None else (s.pipe, s.tracker, s.status)
            if pipe is None or tracker is None or st is None:
                continue
            probs = softmax(r.logits, dtype=np.float64)  # (C,)
            hr = r.item.meta["hr"] if isinstance(r.item.meta, dict) and "hr" in r.item.meta else pipe.heart_rate
            call, transitions = tracker.update(probs, hr)
            rates = r.item.meta.get("rates") if isinstance(r.item.meta, dict) else None
            if rates:
                transitions += tracker.rates([(i / pipe.fs, bpm) for i, bpm in rates])
            latency = (now - r.item.t_received) * 1000.0
            self.e2e_ms.append(latency)
            self._win_times.append(now)
            self.windows_total += 1
            raw = int(np.argmax(probs))
            if call.label != st.call:
                st.rhythm_since = now
            st.call, st.p, st.hr, st.windows = call.label, call.p, hr, st.windows + 1
            t_sig = r.item.t_signal
            lead = int(np.argmax(call.probs))
            st.lead, st.lead_p = self.class_names[lead], float(call.probs[lead])
            extra = {"window_start": r.item.start, "raw_label": self.class_names[raw],
                     "raw_p": round(float(probs[raw]), 4),
                     "t_signal_end": None if t_sig is None else round(t_sig + pipe.window / pipe.fs, 6)}
            extra.update(record_position(pipe.info.meta, t_sig))  # a replayed record: the window's place in it
            if st.ectopy == "on":
                self._update_rates(sid, pipe, st)
                extra.update(pvc_per_min=st.pvc_per_min, pac_per_min=st.pac_per_min)
            self._emit(MonitorEvent(stream=sid, kind="call", label=call.label, p=call.p, hr=hr, latency_ms=latency,
                                    extra=extra, t_signal=t_sig, clock=stream_clock(pipe)))
            self._emit_transitions(pipe, st, tracker, transitions, onset=r.item.start + pipe.window,
                                   latency=latency, now=now, t_signal=t_sig, window_start=r.item.start)
            st.dropped = self.batcher.dropped.get(sid, 0)
            st.queue = self.batcher.queue_depth(sid)

    def _emit_transitions(self, pipe: StreamPipeline, st: StreamStatus, tracker: AlarmTracker, transitions: list,
                          *, onset: int, latency: float | None, now: float, t_signal: float | None = None,
                          window_start: int | None = None) -> None:
        """Alarm events (and strips, ``onset`` = ring index at the model rate) of one stream. A strip's
        onset mark is where the episode's evidence began: the start of its first window
        (``window_start`` minus ``windows_back`` hops)."""
        sid = pipe.stream_id
        for tr in transitions:
            if tr.kind == "alarm_on":
                st.alarms += 1
            else:
                st.last_alarm, st.last_alarm_ended = (tr.label, tr.priority), now
            extra: dict[str, Any] = {"priority": tr.priority, **record_position(pipe.info.meta, t_signal)}
            if tr.detail:
                extra["detail"] = tr.detail
            if tr.kind == "alarm_on" and self.cfg.alarms.strips:
                path = self.strip_writer.path_for(sid, tr.label)
                extra["strip"] = str(path)
                evidence = None if window_start is None else window_start - tr.windows_back * pipe.hop
                if tr.at_s is not None:  # a rate alarm: the beat where the rate crossed its limit
                    evidence = int(round(tr.at_s * pipe.fs))
                pipe.request_strip(StripRequest(onset=onset, label=tr.label, priority=tr.priority, t_iso=str(path),
                                                evidence=evidence, hr=tr.hr))
            self._emit(MonitorEvent(stream=sid, kind=tr.kind, label=tr.label, p=tr.p, hr=tr.hr,
                                    latency_ms=latency, extra=extra, t_signal=t_signal, clock=stream_clock(pipe)))
        st.alarm, st.alarms_active = tracker.top_alarm, len(tracker.active)
