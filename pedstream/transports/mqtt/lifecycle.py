"""Stream lifecycle of the MQTT source (a mixin of :class:`~pedstream.transports.mqtt.source.MQTTSource`):
admission, metas, loss, withdrawal, and the ways a stream comes back.

- **Admission.** At most ``max_streams`` stream ids are tracked. When the table is full, a stream
  that is not live is released to make room; a stream *sending data* whose meta is at hand (parked)
  may also take the slot of a stream that never sent any (a meta sitting retained on the broker). A meta that still finds no
  room is *parked* (a bounded cache, counted in ``refused_metas``): it is used as soon as its stream
  sends data and a slot can be made, never dropped for good.
- **Stale retained metas age out.** A tracked stream that never sent data is reported lost after
  ``lost_timeout_s`` (like any silent stream) and released (its meta parked) after
  ``stale_meta_s``; any stream silent for ``forget_after_s`` is released the same way.
- **Re-reading the retained meta.** Data of a stream whose meta is unknown (never seen, parked out
  of the cache, refused, withdrawn) makes the source re-subscribe to that stream's meta topic (at
  most once per ``_REFETCH_S`` per stream, batched), so the broker sends its retained meta again.
- **Withdrawn metas heal.** An empty meta message reports the stream lost but keeps its last meta
  aside: if the stream's data keeps arriving and the broker has no other meta for it within
  ``meta_wait_s``, monitoring resumes on that last meta (one error event says so). So one stray
  empty message, or a second publisher of the same id clearing the retained meta when it exits,
  does not end the monitoring of a publisher that is still sending.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import aiomqtt
import numpy as np

from pedstream.errors import PayloadError
from pedstream.transports.mqtt.admission import Bucket, DuplicateGuard
from pedstream.transports.mqtt.wire import SequenceTracker, StreamMeta, decode_meta, topic_for
from pedstream.events import StreamAdded, StreamFailed, StreamInfo, StreamLost

__all__ = ["StreamLifecycle", "TrackedStream"]

log = logging.getLogger("pedstream.transports.mqtt.source")
_REFETCH_S = 2.0  # a stream's retained meta is asked for again at most this often
_REFETCH_BATCH = 64  # meta topics per subscribe
_MAX_REFETCH = 1024  # stream ids waiting for a re-read at most


@dataclass(slots=True)
class TrackedStream:
    """What the source keeps about one tracked stream id."""

    meta: StreamMeta | None = None
    meta_raw: bytes = b""
    info: StreamInfo | None = None
    tracker: SequenceTracker = field(default_factory=SequenceTracker)
    guard: DuplicateGuard = field(default_factory=DuplicateGuard)
    live: bool = False  # StreamAdded emitted and not lost since
    data_seen: bool = False  # any data accepted since it was tracked
    last_data: float = 0.0
    last_message: float = 0.0
    since: float = 0.0  # when it was tracked
    pending: deque = field(default_factory=deque)  # (arrival, raw bytes) before meta
    withdrawn: bytes = b""  # the meta it had when an empty meta withdrew it
    refetch_at: float = -1e9  # when its retained meta was last asked for again
    errors: int = 0
    dropped_before_meta: int = 0
    rejected_messages: int = 0  # over budget, over a limit, undecodable or not matching the meta
    dropped_samples: int = 0  # samples in messages rejected over budget
    sessions: int = 0  # metas that started a new stream session
    mismatch_reported: bool = False  # one error per meta session for data that does not fit the meta
    flagged: str | None = None  # why the stream is flagged (e.g. over its ingest budget)
    msg_bucket: Bucket | None = None
    sample_bucket: Bucket | None = None
    byte_bucket: Bucket | None = None
    int16_factors: np.ndarray | None = None  # mv_factors * scale of offsets_meta
    offsets: np.ndarray | None = None  # k / fs for the last chunk size
    offsets_meta: StreamMeta | None = None


class StreamLifecycle:
    """Admission, metas and the lifecycle of the tracked streams (see the module docstring)."""

    # -- admission -----------------------------------------------------------------------------
    def _new_stream(self, now: float) -> TrackedStream:
        return TrackedStream(tracker=SequenceTracker(reorder_window=self.reorder_window),
                             guard=DuplicateGuard(grace_s=max(1.0, 4 * self.reorder_hold_s)), since=now,
                             last_message=now)

    def _route(self, sid: str, kind: str, payload: bytes, now: float) -> None:
        """One meta or data message of a (checked) stream id."""
        st = self._streams.get(sid)
        if st is None:
            if kind == "meta" and not payload:  # withdrawn before it was tracked: nothing to track
                self._parked.pop(sid, None)
                return
            # data with its meta at hand may take the slot of a meta that only sits retained; data of an id
            # nobody announced may take only the slot of a stream that is not live
            sending = kind == "data" and sid in self._parked
            if len(self._streams) >= self.max_streams and not self._make_room(now, for_data=sending):
                self._refuse(sid, kind, payload)
                return
            st = self._streams[sid] = self._new_stream(now)
            parked = self._parked.pop(sid, None)
            if parked is not None and kind == "data":
                self._on_meta(sid, st, parked)
        st.last_message = now
        if kind == "meta":
            self._on_meta(sid, st, payload)
        else:
            self._on_data(sid, st, payload, now)

    def _refuse(self, sid: str, kind: str, payload: bytes) -> None:
        """No slot for a new stream id: a meta is parked (used when its data comes), data is counted."""
        if kind == "meta":
            self.refused_metas += 1
            if payload:
                self._park(sid, payload)
        else:
            self.rejected_unknown += 1
        self.emit_error("mqtt-admission", f"{self.max_streams} streams are tracked and live ([mqtt] max_streams): "
                                          f"{sid} waits ({self.refused_metas} meta(s) parked, "
                                          f"{self.rejected_unknown} data message(s) of untracked streams refused)")

    def _park(self, sid: str, raw: bytes) -> None:
        self._parked[sid] = raw
        self._parked.move_to_end(sid)
        while len(self._parked) > self.max_streams:
            self._parked.popitem(last=False)

    def _make_room(self, now: float, *, for_data: bool = False) -> bool:
        """Release the longest-idle stream that is not live (for data, also one that never sent
        data: a meta only sitting retained); False if there is none."""
        idle = [(st.data_seen, max(st.last_message, st.last_data), sid) for sid, st in self._streams.items()
                if not st.live or (for_data and not st.data_seen)]
        if not idle:
            return False
        _, _, sid = min(idle)
        st = self._streams[sid]
        if st.live:
            st.live = False
            self.emit(StreamLost(sid, "released: it sent no data since its meta, and a stream sending data "
                                      "needed the slot"))
        self._forget(sid, st)
        return True

    def _forget(self, sid: str, st: TrackedStream) -> None:
        """Drop an idle stream id; its meta is parked (bounded) in case its publisher comes back."""
        self._streams.pop(sid, None)
        self.errors.forget(sid)
        gone = self._gone_counts
        gone[0] += st.rejected_messages
        gone[1] += st.dropped_samples
        gone[2] += st.guard.dropped
        if st.meta is not None:
            self.book.own(st.meta.extra.get("publisher"), sid, time.monotonic(), on=False)
        if st.meta_raw or st.withdrawn:
            self._park(sid, st.meta_raw or st.withdrawn)

    def _all_lost(self, reason: str) -> None:
        for sid, st in self._streams.items():
            if st.live:
                st.live = False
                self.emit(StreamLost(sid, reason))
            # the retained meta will come again on reconnect: forget it so it is re-announced
            st.meta_raw = b""

    # -- periodic ------------------------------------------------------------------------------
    def _tick(self, now: float) -> None:
        for sid, st in list(self._streams.items()):
            try:
                self._tick_stream(sid, st, now)
            except Exception as exc:
                self._handler_failed(sid, exc)

    def _tick_stream(self, sid: str, st: TrackedStream, now: float) -> None:
        for payload in st.tracker.flush_stale(self.reorder_hold_s):
            self._deliver(sid, st, payload)
        if st.pending and now - st.pending[0][0] > self.meta_wait_s:
            if st.withdrawn:  # its data kept coming and no other meta did: go on with the last one
                raw, st.withdrawn = st.withdrawn, b""
                self.emit(StreamFailed(sid, "its meta was withdrawn but its data keeps arriving: monitoring "
                                           "resumed on its last meta"))
                self._on_meta(sid, st, raw)
                return
            n = len(st.pending) + st.dropped_before_meta
            st.pending.clear()
            st.dropped_before_meta = 0
            st.rejected_messages += n
            self.emit_error(sid, f"{n} data message(s) dropped: no meta on "
                                 f"{topic_for(self.prefix, sid, 'meta')} within {self.meta_wait_s:g} s")
        if st.live and now - st.last_data > self.lost_timeout_s:
            st.live = False
            self.emit(StreamLost(sid, f"no data for {self.lost_timeout_s:g} s"))
        if not st.live and not st.pending:
            idle = now - max(st.last_message, st.last_data)
            if idle > self.forget_after_s or (not st.data_seen and now - st.since > self.stale_meta_s):
                self._forget(sid, st)

    # -- metas ---------------------------------------------------------------------------------
    def _withdraw(self, sid: str, st: TrackedStream) -> None:
        """An empty meta: the stream is lost; its last meta is kept aside (see the module docstring)."""
        if st.live:
            self.emit(StreamLost(sid, "meta withdrawn by the publisher"))
        st.live = False
        if st.meta_raw:
            st.withdrawn = st.meta_raw
        if st.meta is not None:
            self.book.own(st.meta.extra.get("publisher"), sid, time.monotonic(), on=False)
        for p in st.tracker.reset():
            self._deliver(sid, st, p)
        st.meta, st.meta_raw, st.info = None, b"", None

    def _on_meta(self, sid: str, st: TrackedStream, raw: bytes) -> None:
        if not raw:  # retained meta cleared (or an empty message)
            self._withdraw(sid, st)
            return
        if raw == st.meta_raw:
            return
        try:
            meta = decode_meta(raw, stream=sid, limits=self.limits)
        except PayloadError as exc:
            st.errors += 1
            st.rejected_messages += 1
            self.emit_error(sid, str(exc))
            return
        old = st.meta
        if st.live:
            self.emit(StreamLost(sid, "meta changed"))
            st.live = False
        if old is not None and old.shape_key != meta.shape_key:
            st.sessions += 1
            changed = [f"{k} {a!r} -> {b!r}" for k, a, b in (("fs", old.fs, meta.fs),
                                                            ("channels", len(old.channels), len(meta.channels)),
                                                            ("dtype", old.dtype, meta.dtype))
                       if a != b] or ["channel names"]
            self.emit(StreamFailed(sid, f"new stream session: the meta changed {', '.join(changed)}"))
        if old is None or old.shape_key != meta.shape_key or old.session_key != meta.session_key:
            for p in st.tracker.reset():  # held messages of the old session go out under the old meta
                self._deliver(sid, st, p)
            st.tracker = SequenceTracker(reorder_window=self.reorder_window)
            st.guard.reset()
        now = time.monotonic()
        if old is not None:
            self.book.own(old.extra.get("publisher"), sid, now, on=False)
        self.book.own(meta.extra.get("publisher"), sid, now, on=True)
        st.meta, st.meta_raw, st.withdrawn = meta, raw, b""
        st.mismatch_reported = False
        st.flagged = None
        self._set_budgets(st, meta, now)
        st.info = StreamInfo(stream_id=sid, source="mqtt", fs=meta.fs, channel_names=list(meta.channels),
                             units=[u or "mV" for u in meta.units], units_assumed=meta.units_assumed,
                             age_years=meta.age_years,
                             meta={"dtype": meta.dtype, "scale": meta.scale, "encoding": meta.encoding,
                                   "t0": meta.t0, "session": meta.session, **meta.extra})
        st.last_data = now
        self._announce(sid, st)
        pending, st.pending = list(st.pending), deque()
        for arrival, data in pending:
            self._on_data(sid, st, data, arrival)

    def _set_budgets(self, st: TrackedStream, meta: StreamMeta, t: float) -> None:
        """Messages/s, samples/s and bytes/s against what the meta declares (2 s of burst)."""
        mps = max(self.max_messages_per_s, meta.fs)  # one sample per message in real time is always allowed
        st.msg_bucket = Bucket(mps, 2 * mps, t)
        sps = self.budget_factor * meta.fs
        st.sample_bucket = Bucket(sps, 2 * sps + self.limits.max_samples, t)
        bps = sps * meta.n_channels * 24 + 64 * self.max_messages_per_s  # JSON needs up to ~24 bytes a value
        st.byte_bucket = Bucket(bps, 2 * bps + self.limits.max_message_bytes, t)

    def _announce(self, sid: str, st: TrackedStream) -> None:
        if not st.live and st.info is not None:
            st.live = True
            self.emit(StreamAdded(st.info))

    # -- re-reading retained metas -------------------------------------------------------------
    def _request_meta(self, sid: str, st: TrackedStream, now: float) -> None:
        """Ask the broker for ``sid``'s retained meta again (rate-limited, batched)."""
        if now - st.refetch_at < _REFETCH_S or len(self._refetch) >= _MAX_REFETCH:
            return
        st.refetch_at = now
        self._refetch[sid] = None
        self._refetch_wake.set()

    async def _refetcher(self) -> None:
        """Re-subscribe to the meta topics asked for: the broker sends their retained metas again."""
        while True:
            await self._refetch_wake.wait()
            self._refetch_wake.clear()
            client = self._client
            if not self.connected.is_set() or client is None:
                self._refetch.clear()
                continue
            batch = list(self._refetch)[:_REFETCH_BATCH]
            for sid in batch:
                self._refetch.pop(sid, None)
            topics = [topic_for(self.prefix, sid, "meta") for sid in batch]
            extra = [t for sid, t in zip(batch, topics) if self._allow is None or sid not in self._subscribed]
            try:
                await client.subscribe([(t, 1) for t in topics], timeout=self.timeout_s)
                if extra:  # the wildcard subscription stays the one that delivers
                    await client.unsubscribe(extra, timeout=self.timeout_s)
                self.meta_refetches += len(batch)
            except (aiomqtt.MqttError, asyncio.TimeoutError) as exc:
                log.info("MQTT %s:%d: re-reading %d retained meta(s) failed (%s)", self.host, self.port,
                         len(batch), exc)
            if self._refetch:
                self._refetch_wake.set()

    def _init_lifecycle(self, stale_meta_s: float) -> None:
        self.stale_meta_s = float(stale_meta_s)
        self.refused_metas = 0  # metas that found every slot live (parked)
        self.meta_refetches = 0  # retained metas asked for again
        self._refetch: OrderedDict[str, None] = OrderedDict()
        self._refetch_wake = asyncio.Event()
        self._parked: OrderedDict[str, bytes] = OrderedDict()  # untracked stream id -> its meta (bounded)
