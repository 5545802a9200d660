"""MQTT source and publisher (aiomqtt, MQTT v5, TCP_NODELAY). Payloads: :mod:`pedstream.stream.payload`.

:class:`MQTTSource` subscribes to ``<prefix>/+/meta`` and ``<prefix>/+/data`` and turns them into
source events:

- a (retained) meta message -> ``StreamAdded``; a changed meta -> ``StreamLost("meta changed")`` then
  ``StreamAdded``; an empty retained meta (the publisher withdrew it) -> ``StreamLost``;
- data messages -> decoded, put back in ``seq`` order (reorder window, see
  :class:`~pedstream.stream.payload.SequenceTracker`), converted to mV -> ``ChunkReceived``;
- a payload that cannot be decoded -> ``StreamError`` (the other streams carry on);
- data before its meta is held up to ``meta_wait_s`` (at most 256 messages), then dropped with one
  ``StreamError`` saying how many;
- no data for ``lost_timeout_s`` -> ``StreamLost``; data again -> ``StreamAdded`` again;
- broker connection lost -> ``StreamLost`` for every live stream, reconnect with jittered
  exponential backoff (``reconnect_min_s`` doubling up to ``reconnect_max_s``, times a random factor
  in [0.5, 1)); the retained metas re-announce the streams.

Every network await (connect, subscribe, publish) has a timeout (``timeout_s``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import numpy as np

from pedstream.errors import PayloadError, StreamError as StreamFailure
from pedstream.stream.payload import (
    DataPayload,
    SeqStats,
    SequenceTracker,
    StreamMeta,
    check_stream_id,
    decode_data,
    decode_meta,
    payload_to_mv,
)
from pedstream.stream.sources.base import (
    Chunk,
    ChunkReceived,
    SourceBase,
    StreamAdded,
    StreamError,
    StreamInfo,
    StreamLost,
)

__all__ = ["MQTTSource", "MQTTPublisher", "NODELAY", "topic_for"]

log = logging.getLogger(__name__)

NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
_MAX_PENDING = 256


def _retrieve_disconnect_error(client: aiomqtt.Client | None) -> None:
    """aiomqtt keeps a broken connection's error in a future nobody awaits when the client is left
    after the break; read it so asyncio does not log 'exception was never retrieved'."""
    fut = getattr(client, "_disconnected", None)
    if isinstance(fut, asyncio.Future) and fut.done() and not fut.cancelled():
        fut.exception()


def topic_for(prefix: str, stream_id: str, kind: str) -> str:
    """``<prefix>/<stream_id>/<kind>`` with kind ``meta`` | ``data``."""
    return f"{prefix.rstrip('/')}/{stream_id}/{kind}"


@dataclass(slots=True)
class _Stream:
    meta: StreamMeta | None = None
    meta_raw: bytes = b""
    info: StreamInfo | None = None
    tracker: SequenceTracker = field(default_factory=SequenceTracker)
    live: bool = False  # StreamAdded emitted and not lost since
    last_data: float = 0.0
    pending: deque = field(default_factory=deque)  # (arrival, raw bytes) before meta
    errors: int = 0
    dropped_before_meta: int = 0


class MQTTSource(SourceBase):
    """Receive pedstream streams from an MQTT broker (see the module docstring)."""

    kind = "mqtt"

    def __init__(self, *, events: asyncio.Queue, host: str = "127.0.0.1", port: int = 1883,
                 prefix: str = "pedstream/v1", keepalive_s: int = 30, timeout_s: float = 5.0,
                 reconnect_min_s: float = 0.2, reconnect_max_s: float = 10.0, reorder_window: int = 4,
                 reorder_hold_s: float = 0.25, meta_wait_s: float = 2.0, lost_timeout_s: float = 5.0,
                 qos: int = 0, client_id: str | None = None) -> None:
        super().__init__(events=events)
        self.host, self.port = host, int(port)
        self.prefix = prefix.rstrip("/")
        self.keepalive_s = int(keepalive_s)
        self.timeout_s = float(timeout_s)
        self.reconnect_min_s, self.reconnect_max_s = float(reconnect_min_s), float(reconnect_max_s)
        self.reorder_window = int(reorder_window)
        self.reorder_hold_s = float(reorder_hold_s)
        self.meta_wait_s = float(meta_wait_s)
        self.lost_timeout_s = float(lost_timeout_s)
        self.qos = int(qos)
        self.client_id = client_id or f"pedstream-src-{uuid.uuid4().hex[:10]}"
        self.connected = asyncio.Event()  # set while subscribed
        self.connects = 0
        self._streams: dict[str, _Stream] = {}
        self._client: aiomqtt.Client | None = None

    @classmethod
    def from_config(cls, section: Any, *, events: asyncio.Queue, **overrides: Any) -> "MQTTSource":
        """Build from the ``[mqtt]`` config section."""
        kw = dict(host=section.host, port=section.port, prefix=section.topic_prefix,
                  keepalive_s=section.keepalive_s, timeout_s=section.timeout_s,
                  reconnect_min_s=section.reconnect_min_s, reconnect_max_s=section.reconnect_max_s,
                  reorder_window=section.reorder_window, meta_wait_s=section.meta_wait_s,
                  lost_timeout_s=section.lost_timeout_s, qos=section.qos)
        kw.update(overrides)
        return cls(events=events, **kw)

    # -- public stats ---------------------------------------------------------------------------
    def stream_stats(self, stream_id: str) -> SeqStats | None:
        """Sequence counters (lost, duplicates, reordered, late...) of one stream."""
        st = self._streams.get(stream_id)
        return None if st is None else st.tracker.stats

    @property
    def stream_ids(self) -> list[str]:
        return sorted(self._streams)

    # -- lifecycle ------------------------------------------------------------------------------
    async def _start(self) -> None:
        self._spawn(self._run(), name=f"mqtt-source-{self.host}:{self.port}")
        self._spawn(self._watchdog(), name="mqtt-source-watchdog")

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                client = aiomqtt.Client(self.host, self.port, identifier=f"{self.client_id}",
                                        protocol=aiomqtt.ProtocolVersion.V5, timeout=self.timeout_s,
                                        keepalive=self.keepalive_s, socket_options=NODELAY)
                self._client = client
                async with client:
                    await client.subscribe([(topic_for(self.prefix, "+", "meta"), 1),
                                            (topic_for(self.prefix, "+", "data"), self.qos)],
                                           timeout=self.timeout_s)
                    attempt = 0
                    self.connects += 1
                    self.connected.set()
                    log.info("MQTT source subscribed at %s:%d under %s/", self.host, self.port, self.prefix)
                    async for message in client.messages:
                        self._on_message(message.topic.value, bytes(message.payload or b""))
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                self._all_lost(f"broker connection lost ({exc})")
                delay = min(self.reconnect_max_s, self.reconnect_min_s * 2 ** attempt)
                delay *= random.uniform(0.5, 1.0)
                attempt = min(attempt + 1, 30)
                log.warning("MQTT %s:%d: %s; reconnecting in %.2f s", self.host, self.port, exc, delay)
                await asyncio.sleep(delay)
            finally:
                self.connected.clear()
                _retrieve_disconnect_error(self._client)

    async def _watchdog(self) -> None:
        period = max(0.02, min(self.reorder_hold_s, self.meta_wait_s or 1.0, self.lost_timeout_s) / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for sid, st in list(self._streams.items()):
                for payload in st.tracker.flush_stale(self.reorder_hold_s):
                    self._deliver(sid, st, payload)
                if st.pending and now - st.pending[0][0] > self.meta_wait_s:
                    n = len(st.pending) + st.dropped_before_meta
                    st.pending.clear()
                    st.dropped_before_meta = 0
                    self.emit(StreamError(sid, f"{n} data message(s) dropped: no meta on "
                                               f"{topic_for(self.prefix, sid, 'meta')} within {self.meta_wait_s:g} s"))
                if st.live and now - st.last_data > self.lost_timeout_s:
                    st.live = False
                    self.emit(StreamLost(sid, f"no data for {self.lost_timeout_s:g} s"))

    def _all_lost(self, reason: str) -> None:
        for sid, st in self._streams.items():
            if st.live:
                st.live = False
                self.emit(StreamLost(sid, reason))
            # the retained meta will come again on reconnect: forget it so it is re-announced
            st.meta_raw = b""

    # -- messages -------------------------------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes) -> None:
        rest = topic[len(self.prefix) + 1:] if topic.startswith(self.prefix + "/") else ""
        sid, _, kind = rest.partition("/")
        if not sid or kind not in ("meta", "data"):
            return
        try:
            check_stream_id(sid)
        except PayloadError as exc:
            self.emit(StreamError(sid, str(exc)))
            return
        st = self._streams.setdefault(sid, _Stream(tracker=SequenceTracker(reorder_window=self.reorder_window)))
        if kind == "meta":
            self._on_meta(sid, st, payload)
        else:
            self._on_data(sid, st, payload)

    def _on_meta(self, sid: str, st: _Stream, raw: bytes) -> None:
        if not raw:  # retained meta cleared: the publisher is gone
            if st.live:
                self.emit(StreamLost(sid, "meta withdrawn by the publisher"))
            self._streams.pop(sid, None)
            return
        if raw == st.meta_raw:
            return
        try:
            meta = decode_meta(raw, stream=sid)
        except PayloadError as exc:
            st.errors += 1
            self.emit(StreamError(sid, str(exc)))
            return
        if st.live:
            self.emit(StreamLost(sid, "meta changed"))
            st.live = False
        st.meta, st.meta_raw = meta, raw
        st.tracker = SequenceTracker(reorder_window=self.reorder_window)
        st.info = StreamInfo(stream_id=sid, source="mqtt", fs=meta.fs, channel_names=list(meta.channels),
                             units=[u or "mV" for u in meta.units], units_assumed=meta.units_assumed,
                             age_years=meta.age_years,
                             meta={"dtype": meta.dtype, "scale": meta.scale, "encoding": meta.encoding,
                                   "t0": meta.t0, **meta.extra})
        st.last_data = time.monotonic()
        self._announce(sid, st)
        pending, st.pending = list(st.pending), deque()
        for _, data in pending:
            self._on_data(sid, st, data)

    def _announce(self, sid: str, st: _Stream) -> None:
        if not st.live and st.info is not None:
            st.live = True
            self.emit(StreamAdded(st.info))

    def _on_data(self, sid: str, st: _Stream, raw: bytes) -> None:
        if st.meta is None:
            if len(st.pending) >= _MAX_PENDING:
                st.pending.popleft()
                st.dropped_before_meta += 1
            st.pending.append((time.monotonic(), raw))
            return
        try:
            payload = decode_data(raw, meta=st.meta, stream=sid)
        except PayloadError as exc:
            st.errors += 1
            self.emit(StreamError(sid, str(exc)))
            return
        st.last_data = time.monotonic()
        self._announce(sid, st)
        for p in st.tracker.push(payload.seq, payload):
            self._deliver(sid, st, p)

    def _deliver(self, sid: str, st: _Stream, p: DataPayload) -> None:
        meta = st.meta
        if meta is None:
            return
        data = payload_to_mv(p, meta)  # (n, n_ch) float32 mV
        ts = p.t + np.arange(p.n_samples, dtype=np.float64) / meta.fs  # (n,)
        self.emit(ChunkReceived(Chunk(stream_id=sid, data=data, timestamps=ts, first_index=p.first_sample,
                                      seq=p.seq)))


class MQTTPublisher:
    """Publish pedstream streams (meta retained + data) to a broker.

    ``async with MQTTPublisher(host=..., port=...) as pub: await pub.publish_meta(sid, meta_bytes);
    await pub.publish_data(sid, payload)``. Leaving the block clears the retained metas it
    published (``clear_meta_on_exit``), so subscribers see the streams end.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 1883, prefix: str = "pedstream/v1",
                 timeout_s: float = 5.0, keepalive_s: int = 30, qos: int = 0, client_id: str | None = None,
                 clear_meta_on_exit: bool = True) -> None:
        self.host, self.port = host, int(port)
        self.prefix = prefix.rstrip("/")
        self.timeout_s = float(timeout_s)
        self.qos = int(qos)
        self.clear_meta_on_exit = clear_meta_on_exit
        self._client = aiomqtt.Client(host, self.port, identifier=client_id or f"pedstream-pub-{uuid.uuid4().hex[:10]}",
                                      protocol=aiomqtt.ProtocolVersion.V5, timeout=self.timeout_s,
                                      keepalive=int(keepalive_s), socket_options=NODELAY)
        self._metas: set[str] = set()
        self.published = 0

    async def __aenter__(self) -> "MQTTPublisher":
        try:
            await self._client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise StreamFailure(f"mqtt://{self.host}:{self.port}", f"cannot connect to the broker ({exc})") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.clear_meta_on_exit:
                for sid in sorted(self._metas):
                    await self._publish(topic_for(self.prefix, sid, "meta"), b"", qos=1, retain=True)
        except StreamFailure:
            pass
        finally:
            try:
                await self._client.__aexit__(None, None, None)
            except aiomqtt.MqttError:
                pass
            _retrieve_disconnect_error(self._client)

    async def _publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> None:
        try:
            await self._client.publish(topic, payload, qos=qos, retain=retain, timeout=self.timeout_s)
        except aiomqtt.MqttError as exc:
            raise StreamFailure(topic, f"publish failed ({exc})") from exc
        self.published += 1

    async def publish_meta(self, stream_id: str, meta: bytes) -> None:
        """Retained meta (see :func:`pedstream.stream.payload.encode_meta`)."""
        check_stream_id(stream_id)
        await self._publish(topic_for(self.prefix, stream_id, "meta"), meta, qos=1, retain=True)
        self._metas.add(stream_id)

    async def clear_meta(self, stream_id: str) -> None:
        await self._publish(topic_for(self.prefix, stream_id, "meta"), b"", qos=1, retain=True)
        self._metas.discard(stream_id)

    async def publish_data(self, stream_id: str, payload: bytes) -> None:
        """One data message (binary or JSON, see :mod:`pedstream.stream.payload`)."""
        await self._publish(topic_for(self.prefix, stream_id, "data"), payload, qos=self.qos)

    async def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Anything else (e.g. the engine's ``<prefix>/<stream_id>/rhythm``)."""
        await self._publish(topic, payload, qos=self.qos, retain=retain)
