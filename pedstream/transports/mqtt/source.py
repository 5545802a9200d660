"""MQTT source (aiomqtt, MQTT v5, TCP_NODELAY). Payloads: :mod:`pedstream.transports.mqtt.wire`; connection:
:mod:`pedstream.transports.mqtt.client`; publishing: :mod:`pedstream.transports.mqtt.publisher`.

:class:`MQTTSource` subscribes to ``<prefix>/+/meta``, ``<prefix>/+/data`` and ``<prefix>/+/bundle`` and
turns them into source events:

- a (retained) meta message -> ``StreamAdded``; a changed meta -> ``StreamLost("meta changed")`` then
  ``StreamAdded``; a meta that changes ``fs``, ``channels`` or ``dtype`` is a new stream session,
  reported once as a ``StreamError``; a new ``session``/``t0`` restarts the sequence tracker; an
  empty meta -> ``StreamLost``, healed if the stream's data keeps coming (lifecycle, admission,
  stale metas, re-read retained metas: :mod:`~pedstream.transports.mqtt.lifecycle`);
- a bundle (:mod:`~pedstream.transports.mqtt.bundle`: several streams' data messages in one) -> its
  structure checked whole (a broken one is one ``StreamError`` of the bundle id, counted in
  ``rejected_messages``), then each frame its publisher may carry handled as a data message of its
  stream; the others are refused and charged to the bundle's publisher
  (:mod:`~pedstream.transports.mqtt.admission`, :mod:`~pedstream.transports.mqtt.data`);
- per publisher (the first topic level): a CPU budget (``cpu_share`` of a core per stream it
  publishes) and a meta budget (``metas_per_s``); over them, its messages are dropped unread,
  counted, and reported as error events naming it;
- data messages -> decoded, put back in ``seq`` order (reorder window, see
  :class:`~pedstream.transports.mqtt.wire.SequenceTracker`; a restarted publisher is recognised at its
  first message), converted to mV -> ``ChunkReceived``;
- a payload that cannot be decoded, or *any* exception while handling one message -> a
  ``StreamError`` of that stream, throttled (``error_burst`` per ``error_period_s``, the rest
  counted); nothing a publisher sends can end the source. Limits (size, JSON depth, channels,
  samples, sampling rate) are checked before parsing (:class:`~pedstream.transports.mqtt.wire.PayloadLimits`);
- per-stream ingest budget: at most ``max(max_messages_per_s, fs)`` messages/s and ``budget_factor`` times the
  samples/s (and bytes/s) the meta declares (token buckets with 2 s of burst; samples counted once
  decoded); messages beyond are rejected and counted (``rejected_messages``, ``dropped_samples``), the stream is
  flagged with one (throttled) ``StreamError``;
- data before its meta is held up to ``meta_wait_s`` (at most 256 messages), then dropped with one
  ``StreamError`` saying how many;
- no data for ``lost_timeout_s`` -> ``StreamLost``; data again -> ``StreamAdded`` again; a stream id
  with no message for ``forget_after_s`` (or never any data for ``stale_meta_s``) is forgotten (its
  meta kept in a bounded cache), at most ``max_streams`` stream ids are tracked; a second publisher of
  one stream id is detected and its messages dropped (:class:`~pedstream.transports.mqtt.admission.DuplicateGuard`);
- broker connection lost -> ``StreamLost`` for every live stream, reconnect with capped, jittered
  exponential backoff (``reconnect_min_s`` doubling up to ``reconnect_max_s``, times a random factor
  in [0.5, 1)); while waiting the broker is probed every ``probe_interval_s`` and the source
  reconnects as soon as it answers again; the retained metas re-announce the streams. While the
  broker does not answer, :meth:`MQTTSource.status_line` says so (the dashboard shows it) and one
  warning line per outage is logged.

Authentication and TLS: :class:`~pedstream.transports.mqtt.client.MQTTAuth` (``[mqtt] username``, ``password`` / ``password_file`` /
``password_env``, ``tls``, ``ca_file``, ``cert_file``, ``key_file``); the password is never logged.

Every network await (connect, subscribe, publish, probe) has a timeout (``timeout_s``).

Cost: messages from aiomqtt wait in a bounded inbox (``max_queued_messages``) handled once per
event-loop turn (no task per message); a message that finds it full is dropped and counted
(``totals()["queue_full_drops"]``, a warning per doubling), never silently. Measure the MQTT path's
CPU with ``python -m pedstream.bench.mqttcost``.

Allow-list (``streams=``, :meth:`MQTTSource.set_streams`): a source given a set of stream ids subscribes
to exactly those streams' ``meta``/``data`` topics (no wildcard), ignores any other stream, and follows
changes of the set while running (a stream taken off is reported ``StreamLost("unassigned")``). The Ray
workers of :mod:`pedstream.cluster` use it so each stream is handled by one worker.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
import uuid
from collections import deque
from typing import Any

import aiomqtt

from pedstream.config import MQTTSection
from pedstream.errors import PayloadError
from pedstream.transports.mqtt.admission import PublisherBook, publisher_of
from pedstream.transports.mqtt.client import MQTTAuth, make_client, retrieve_disconnect_error, wait_backoff
from pedstream.transports.mqtt.data import DataHandling
from pedstream.transports.mqtt.lifecycle import StreamLifecycle, TrackedStream as _Stream
from pedstream.transports.mqtt.wire import PayloadLimits, SeqStats, check_stream_id, topic_for
from pedstream.transports.base import ErrorThrottle, SourceBase
from pedstream.events import StreamLost

__all__ = ["MQTTSource", "limits_from"]

log = logging.getLogger(__name__)


def limits_from(section: MQTTSection) -> PayloadLimits:
    """:class:`PayloadLimits` from the ``[mqtt]`` section."""
    return PayloadLimits(max_message_bytes=section.max_message_bytes, max_json_depth=section.max_json_depth,
                         max_channels=section.max_channels, max_samples=section.max_samples_per_message,
                         fs_min=section.fs_min, fs_max=section.fs_max)


class _Inbox(asyncio.Queue):
    """aiomqtt's incoming-message queue (its ``queue_type``), bounded and never silent.

    aiomqtt hands every message to ``put_nowait`` and its ``messages`` iterator awaits one task and
    one ``asyncio.wait`` per message; here the messages wait in a deque of at most ``maxsize`` and are
    handled in one call scheduled once per event-loop turn (:meth:`MQTTSource._drain_inbox`). A
    message that finds the inbox full is dropped and counted (``queue_full_drops`` of the source, in
    :meth:`MQTTSource.totals`), with a throttled warning: never aiomqtt's per-message log line."""

    def __init__(self, source: "MQTTSource", maxsize: int = 0) -> None:
        super().__init__()
        self._source = source
        self._limit = int(maxsize)

    def put_nowait(self, item: Any) -> None:
        src = self._source
        box = src._inbox
        if self._limit > 0 and len(box) >= self._limit:
            src._queue_full(item)
            return
        box.append(item)
        if not src._drain_scheduled:
            src._drain_scheduled = True
            asyncio.get_running_loop().call_soon(src._drain_inbox)


class MQTTSource(DataHandling, StreamLifecycle, SourceBase):
    """Receive pedstream streams from an MQTT broker (see the module docstring)."""

    kind = "mqtt"

    def __init__(self, section: MQTTSection | None = None, *, events: asyncio.Queue, streams: Any = None,
                 client_id: str | None = None, auth: MQTTAuth | None = None, limits: PayloadLimits | None = None,
                 reorder_hold_s: float = 0.25, **settings: Any) -> None:
        """``section``: the ``[mqtt]`` configuration (default: its defaults); ``settings``: fields of it to
        change for this source (``host=...``, ``max_streams=...``; an unknown name is a :class:`TypeError`).
        ``streams``: ``None`` = every stream under ``topic_prefix`` (wildcard subscription), else an iterable
        of stream ids: only those (see :meth:`set_streams`). ``auth`` / ``limits``: default from the section."""
        unknown = sorted(set(settings) - set(MQTTSection.model_fields))
        if unknown:
            raise TypeError(f"MQTTSource: unknown [mqtt] setting(s) {', '.join(unknown)}")
        s = (section or MQTTSection()).model_copy(update=settings)
        self.section = s
        super().__init__(events=events)
        self._allow: set[str] | None = None if streams is None else {check_stream_id(s) for s in streams}
        self._subscribed: set[str] = set()  # allow-list mode: stream ids subscribed on the current connection
        self._sub_lock = asyncio.Lock()
        self.host, self.port = s.host, int(s.port)
        self.prefix = s.topic_prefix.rstrip("/")
        self.keepalive_s = int(s.keepalive_s)
        self.timeout_s = float(s.timeout_s)
        self.reconnect_min_s, self.reconnect_max_s = float(s.reconnect_min_s), float(s.reconnect_max_s)
        self.reorder_window = int(s.reorder_window)
        self.reorder_hold_s = float(reorder_hold_s)
        self.meta_wait_s = float(s.meta_wait_s)
        self.lost_timeout_s = float(s.lost_timeout_s)
        self.qos = int(s.qos)
        self.client_id = client_id or f"pedstream-src-{uuid.uuid4().hex[:10]}"
        self.auth = auth or MQTTAuth.from_section(s)
        self.limits = limits or limits_from(s)
        self.probe_interval_s = float(s.probe_interval_s)
        self.budget_factor = float(s.budget_factor)
        self.max_messages_per_s = float(s.max_messages_per_s)
        self.max_streams = int(s.max_streams)
        self.forget_after_s = float(s.forget_after_s)
        self.max_queued_messages = int(s.max_queued_messages)
        self.errors = ErrorThrottle(burst=s.error_burst, period_s=s.error_period_s)
        self.connected = asyncio.Event()  # set while subscribed
        self.connects = 0
        self.last_error: str | None = None  # the last broker connection problem
        self.rejected_unknown = 0  # messages for new stream ids refused because max_streams were busy
        self.handler_errors = 0  # exceptions caught while handling one message
        self.queue_full_drops = 0  # messages dropped because the inbox held max_queued_messages
        self.queue_full_samples = 0  # their samples (binary data messages' headers)
        self.rejected_bundles = 0  # bundles whose structure was wrong (rejected whole)
        self._inbox: deque = deque()
        self._drain_scheduled = False
        self._streams: dict[str, _Stream] = {}
        self._client: aiomqtt.Client | None = None
        self.broker_state = "connecting"  # "connecting" | "connected" | "unreachable" (the dashboard's status line)
        self.book = PublisherBook(cpu_share=s.cpu_share, cpu_burst_s=s.cpu_burst_s, metas_per_s=s.metas_per_s,
                                  meta_burst=s.meta_burst, max_publishers=4 * self.max_streams)
        self._init_lifecycle(s.stale_meta_s)
        self._gone_counts = [0, 0, 0]  # rejected messages, dropped samples, duplicates of released streams

    # -- public stats ---------------------------------------------------------------------------
    def stream_stats(self, stream_id: str) -> SeqStats | None:
        """Sequence counters (lost, duplicates, reordered, late...) of one stream."""
        st = self._streams.get(stream_id)
        return None if st is None else st.tracker.stats

    def stream_counters(self, stream_id: str) -> dict[str, Any] | None:
        """Ingest counters of one stream: ``rejected_messages``, ``dropped_samples``, ``errors``,
        ``sessions``, ``flagged``."""
        st = self._streams.get(stream_id)
        if st is None:
            return None
        pub = self.book.find(stream_id)  # what its own topics were throttled for (CPU, metas)
        throttled = 0 if pub is None else pub.throttled + pub.throttled_metas
        return {"rejected_messages": st.rejected_messages + throttled,
                "dropped_samples": st.dropped_samples + (0 if pub is None else pub.dropped_samples),
                "errors": self.errors.counts.get(stream_id, 0), "sessions": st.sessions, "flagged": st.flagged,
                "duplicate_messages": st.guard.dropped}

    def publisher_counters(self) -> dict[str, dict[str, Any]]:
        """Per publisher (see :mod:`~pedstream.transports.mqtt.admission`) that was refused or throttled:
        ``unauthorised`` bundle frames, ``throttled`` messages (CPU), ``throttled_metas``,
        ``dropped_samples``, ``cpu_s``."""
        return self.book.flagged()

    def totals(self) -> dict[str, int]:
        """Summed ingest counters over the streams tracked now, plus refused stream ids, broken bundles
        and messages dropped on a full inbox (also alone as ``queue_full_drops``; their samples, as far
        as a binary header tells, in ``dropped_samples``): what the engine's summary and the benchmarks
        report. Also: bundle frames refused as ``unauthorised``, messages ``throttled`` over a
        publisher's CPU budget and metas over its meta budget (``throttled_metas``), messages of a
        ``duplicate_publisher``, ``refused_metas`` (parked while every slot was live); all of them are
        in ``rejected_messages`` too, and their samples (as far as a binary header tells) in
        ``dropped_samples``. Streams no longer tracked still count."""
        pubs = self.book.totals()
        dup = sum(s.guard.dropped for s in self._streams.values()) + self._gone_counts[2]
        return {"rejected_messages": sum(s.rejected_messages for s in self._streams.values()) + self.rejected_unknown
                + self.rejected_bundles + self.queue_full_drops + self._gone_counts[0] + pubs["unauthorised"]
                + pubs["throttled"] + pubs["throttled_metas"],
                "dropped_samples": sum(s.dropped_samples for s in self._streams.values()) + self.queue_full_samples
                + self._gone_counts[1] + pubs["dropped_samples"],
                "errors": sum(self.errors.counts.values()), "handler_errors": self.handler_errors,
                "queue_full_drops": self.queue_full_drops, "unauthorised": pubs["unauthorised"],
                "throttled": pubs["throttled"], "throttled_metas": pubs["throttled_metas"],
                "duplicate_publisher": dup, "refused_metas": self.refused_metas}

    def status_line(self) -> str | None:
        """One line about the broker connection while it is not up (``None`` when connected): what the
        dashboard and the log show instead of an endless "waiting for streams"."""
        if self.broker_state == "connected":
            return None
        where = f"MQTT broker {self.host}:{self.port}"
        if self.broker_state == "connecting":
            return f"{where}: connecting"
        return f"{where} unreachable ({(self.last_error or 'no answer')[:80]}); retrying"

    @property
    def stream_ids(self) -> list[str]:
        return sorted(self._streams)

    # -- lifecycle ------------------------------------------------------------------------------
    async def _start(self) -> None:
        self._spawn(self._run(), name=f"mqtt-source-{self.host}:{self.port}")
        self._spawn(self._watchdog(), name="mqtt-source-watchdog")
        self._spawn(self._refetcher(), name="mqtt-source-meta-refetch")

    def _new_client(self) -> aiomqtt.Client:
        return make_client(self.host, self.port, identifier=self.client_id, auth=self.auth, timeout_s=self.timeout_s,
                           keepalive_s=self.keepalive_s, max_queued_incoming_messages=self.max_queued_messages,
                           queue_type=functools.partial(_Inbox, self))  # type: ignore[arg-type]

    def _queue_full(self, message: Any) -> None:
        """A message that found the inbox full: dropped, counted, warned about (throttled)."""
        self.queue_full_drops += 1
        raw = getattr(message, "payload", b"")
        if isinstance(raw, bytes) and raw[:4] == b"PSD1" and len(raw) >= 16:
            self.queue_full_samples += int.from_bytes(raw[12:16], "little")
        n = self.queue_full_drops
        if n & (n - 1) == 0:  # 1, 2, 4, 8, ...: a log line per doubling, never one per message
            log.warning("MQTT source %s:%d: inbox full (%d messages, [mqtt] max_queued_messages): %d message(s) "
                        "dropped so far", self.host, self.port, self.max_queued_messages, n)

    def _drain_inbox(self) -> None:
        """Handle every message waiting in the inbox (one call per event-loop turn)."""
        self._drain_scheduled = False
        box = self._inbox
        while box:
            m = box.popleft()
            self._on_message_safe(m.topic.value, m.payload)

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                client = self._new_client()
                self._client = client
                async with client:
                    if self._allow is None:
                        await client.subscribe([(topic_for(self.prefix, "+", "meta"), 1),
                                                (topic_for(self.prefix, "+", "data"), self.qos),
                                                (topic_for(self.prefix, "+", "bundle"), self.qos)],
                                               timeout=self.timeout_s)
                    else:  # bundles carry many streams: every bundle, frames of other streams skipped
                        await client.subscribe(topic_for(self.prefix, "+", "bundle"), self.qos, timeout=self.timeout_s)
                        self._subscribed = set()
                        await self._sync_subscriptions(client)
                    attempt = 0
                    self.connects += 1
                    if self.broker_state == "unreachable":
                        log.warning("MQTT broker %s:%d answers again: subscribed under %s/", self.host, self.port,
                                    self.prefix)
                    self.last_error = None
                    self.broker_state = "connected"
                    self.connected.set()
                    log.info("MQTT source subscribed at %s:%d under %s/", self.host, self.port, self.prefix)
                    async for message in client.messages:  # only ends (MqttError) on a lost connection:
                        self._on_message_safe(message.topic.value, message.payload)  # the _Inbox hands
                        # messages to _drain_inbox, not to this iterator
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                self.last_error = str(exc)
                first = self.broker_state != "unreachable"
                self.broker_state = "unreachable"
                self._all_lost(f"broker connection lost ({exc})")
                delay = min(self.reconnect_max_s, self.reconnect_min_s * 2 ** attempt)
                delay *= random.uniform(0.5, 1.0)
                attempt = min(attempt + 1, 30)
                if first:  # one status line per outage, not one per attempt (the dashboard shows it throughout)
                    log.warning("%s", self.status_line() or "")
                log.debug("MQTT %s:%d: %s; reconnecting in at most %.2f s", self.host, self.port, exc, delay)
                if await wait_backoff(self.host, self.port, delay, probe_interval_s=self.probe_interval_s):
                    attempt = 0  # the broker is back: the next failure starts the backoff again
            finally:
                self.connected.clear()
                retrieve_disconnect_error(self._client)

    @property
    def allowed(self) -> set[str] | None:
        """The allow-list (``None``: every stream)."""
        return None if self._allow is None else set(self._allow)

    async def set_streams(self, streams: Any) -> None:
        """Monitor exactly these stream ids from now on (allow-list mode only): subscribe to the new
        ones' topics, unsubscribe from the others and report each of those ``StreamLost("unassigned")``.
        While disconnected the set is subscribed on the next connection."""
        if self._allow is None:
            raise ValueError("set_streams needs a source made with streams=... (allow-list mode)")
        new = {check_stream_id(s) for s in streams}
        for sid in sorted(self._allow - new):
            st = self._streams.pop(sid, None)
            self.errors.forget(sid)
            if st is not None and st.live:
                self.emit(StreamLost(sid, "unassigned"))
        self._allow = new
        client = self._client
        if self.connected.is_set() and client is not None:
            try:
                await self._sync_subscriptions(client)
            except aiomqtt.MqttError as exc:  # the reconnect subscribes the whole set again
                log.warning("MQTT %s:%d: subscription change failed (%s)", self.host, self.port, exc)

    async def _sync_subscriptions(self, client: aiomqtt.Client) -> None:
        """Make this connection's subscriptions match the allow-list (one subscribe, one unsubscribe)."""
        async with self._sub_lock:
            want = set(self._allow or ())
            drop, add = sorted(self._subscribed - want), sorted(want - self._subscribed)
            if drop:
                await client.unsubscribe([topic_for(self.prefix, s, k) for s in drop for k in ("meta", "data")],
                                         timeout=self.timeout_s)
                self._subscribed -= set(drop)
            if add:
                await client.subscribe([(topic_for(self.prefix, s, k), 1 if k == "meta" else self.qos)
                                        for s in add for k in ("meta", "data")], timeout=self.timeout_s)
                self._subscribed |= set(add)

    async def _watchdog(self) -> None:
        period = max(0.02, min(self.reorder_hold_s, self.meta_wait_s or 1.0, self.lost_timeout_s) / 4)
        while True:
            await asyncio.sleep(period)
            try:
                self._tick(time.monotonic())
            except Exception as exc:  # the watchdog must outlive any one stream's problem
                self.handler_errors += 1
                log.exception("MQTT source watchdog: %s", exc)

    # -- messages -------------------------------------------------------------------------------
    def _handler_failed(self, sid: str, exc: BaseException) -> None:
        self.handler_errors += 1
        log.debug("stream %s: message handler failed", sid, exc_info=exc)
        st = self._streams.get(sid)
        if st is not None:
            st.rejected_messages += 1
        self.emit_error(sid, f"message could not be handled ({type(exc).__name__}: {str(exc)[:120]})")

    def _on_message_safe(self, topic: str, payload: Any) -> None:
        """:meth:`_on_message` behind a catch-all (one message can only ever cost its stream an error)
        and its publisher's CPU budget (:mod:`~pedstream.transports.mqtt.admission`): the handler's thread
        CPU time is charged to the publisher; while its budget is spent its messages are dropped unread."""
        now = time.monotonic()
        pub = self.book.get(publisher_of(topic, self.prefix), now)
        if not pub.cpu.ok(now):
            self._throttled(pub, payload)
            return
        t = time.thread_time()
        try:
            raw = payload if isinstance(payload, bytes) else bytes(payload or b"")
            self._on_message(topic, raw, pub, now)
        except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001 - isolation is the point
            self._handler_failed(pub.name, exc)
        finally:
            dt = time.thread_time() - t
            pub.cpu_s += dt
            pub.cpu.charge(dt, now)

    def _throttled(self, pub: Any, payload: Any) -> None:
        pub.throttled += 1
        if isinstance(payload, bytes) and payload[:4] == b"PSD1" and len(payload) >= 16:
            pub.dropped_samples += int.from_bytes(payload[12:16], "little")
        st = self._streams.get(pub.name)
        if st is not None and st.flagged is None:
            st.flagged = "over its CPU budget"
        self.emit_error(pub.name, f"publisher {pub.name}: over its CPU budget ({self.book.cpu_share:.0%} of a core "
                                  f"per stream, [mqtt] cpu_share): its messages are dropped unread "
                                  f"({pub.throttled} so far)")

    def _on_message(self, topic: str, payload: bytes, pub: Any = None, now: float | None = None) -> None:
        rest = topic[len(self.prefix) + 1:] if topic.startswith(self.prefix + "/") else ""
        sid, _, kind = rest.partition("/")
        now = time.monotonic() if now is None else now
        if kind == "bundle" and sid:
            self._on_bundle(sid, payload, now)
            return
        if not sid or kind not in ("meta", "data"):
            return
        if self._allow is not None and sid not in self._allow:  # in flight while it was unsubscribed
            return
        if sid not in self._streams:  # a known stream id was checked when it was first seen
            try:
                check_stream_id(sid)
            except PayloadError as exc:
                self.emit_error(sid[:64], str(exc))
                return
        if kind == "meta":
            pub = pub if pub is not None else self.book.get(sid, now)
            if not pub.metas.take(1, now):  # meta messages cost a pipeline each downstream: bounded
                pub.throttled_metas += 1
                self.emit_error(sid, f"publisher {sid}: over its meta budget ({self.book.metas_per_s:g} metas/s, "
                                     f"[mqtt] metas_per_s): meta messages dropped unread ({pub.throttled_metas} so far)")
                return
        self._route(sid, kind, payload, now)
