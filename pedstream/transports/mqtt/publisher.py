"""Publishing to MQTT: :class:`MQTTPublisher`, the one publisher class with the one reconnect policy,
used by ``pedstream replay --to mqtt`` (:func:`replay_to_mqtt`) and by the ``--publish-mqtt`` event sink
(:class:`MQTTSink`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
from typing import Any, Callable, Sequence

import aiomqtt
import numpy as np

from pedstream.errors import RecordError, StreamError as StreamFailure
from pedstream.transports.mqtt.bundle import pack_bundles
from pedstream.transports.mqtt.client import (
    MQTTAuth,
    make_client,
    paho_client,
    retrieve_disconnect_error,
    wait_backoff,
)
from pedstream.transports.mqtt.pacing import paced_many
from pedstream.transports.mqtt.wills import WillKeepers
from pedstream.transports.mqtt.wire import check_stream_id, encode_binary, encode_json, encode_meta, topic_for
from pedstream.transports.replay import ReplayPlan
from pedstream.events import MonitorEvent
from pedstream.config import MQTTSection

__all__ = ["MQTTPublisher", "MQTTSink", "replay_to_mqtt"]

log = logging.getLogger(__name__)


class MQTTPublisher:
    """Publish pedstream streams (meta retained + data) to a broker.

    ``async with MQTTPublisher(host=..., port=...) as pub: await pub.publish_meta(sid, meta_bytes);
    await pub.publish_data(sid, payload)``. Leaving the block clears the retained metas it
    published (``clear_meta_on_exit``), so subscribers see the streams end; ``will_stream`` sets a
    Last Will that clears that stream's retained meta if the publisher dies without leaving the block.

    ``reconnect=True``: a lost connection does not raise; data published while disconnected is
    dropped (counted in ``dropped``), the publisher reconnects in the background (capped jittered
    backoff, at once when the broker answers again) and republishes its retained metas. The first
    connection must succeed (:class:`~pedstream.errors.StreamError` otherwise) unless
    ``require_broker=False`` (the event sink): then a broker that is not there yet is waited for in
    the background under the same policy (``connected_event`` is set once connected).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 1883, prefix: str = "pedstream/v1",
                 timeout_s: float = 5.0, keepalive_s: int = 30, qos: int = 0, client_id: str | None = None,
                 clear_meta_on_exit: bool = True, auth: MQTTAuth | None = None, reconnect: bool = False,
                 reconnect_min_s: float = 0.2, reconnect_max_s: float = 5.0, probe_interval_s: float = 0.25,
                 will_stream: str | None = None, require_broker: bool = True) -> None:
        self.host, self.port = host, int(port)
        self.prefix = prefix.rstrip("/")
        self.timeout_s = float(timeout_s)
        self.keepalive_s = int(keepalive_s)
        self.qos = int(qos)
        self.clear_meta_on_exit = clear_meta_on_exit
        self.auth = auth or MQTTAuth()
        self.require_broker = bool(require_broker)
        self.reconnect = bool(reconnect) or not self.require_broker
        self.reconnect_min_s, self.reconnect_max_s = float(reconnect_min_s), float(reconnect_max_s)
        self.probe_interval_s = float(probe_interval_s)
        self.client_id = client_id or f"pedstream-pub-{uuid.uuid4().hex[:10]}"
        self.will_stream = None if will_stream is None else check_stream_id(will_stream)
        self._client = self._new_client()
        self._metas: dict[str, bytes] = {}
        self._connected = False
        self._reconnector: asyncio.Task | None = None
        self.published = 0
        self.dropped = 0  # messages not sent while disconnected (reconnect=True)
        self.reconnects = 0
        self.connected_event = asyncio.Event()

    def _new_client(self) -> aiomqtt.Client:
        will = None
        if self.will_stream is not None:
            will = aiomqtt.Will(topic_for(self.prefix, self.will_stream, "meta"), b"", qos=1, retain=True)
        return make_client(self.host, self.port, identifier=self.client_id, auth=self.auth, timeout_s=self.timeout_s,
                           keepalive_s=self.keepalive_s, will=will)

    async def __aenter__(self) -> "MQTTPublisher":
        try:
            await self._client.__aenter__()
        except aiomqtt.MqttError as exc:
            if not self.require_broker:
                log.warning("MQTT publisher %s:%d: %s (retrying in the background)", self.host, self.port, exc)
                retrieve_disconnect_error(self._client)
                self._reconnector = asyncio.get_running_loop().create_task(self._reconnect_loop(),
                                                                           name="mqtt-publisher-reconnect")
                return self
            raise StreamFailure(f"mqtt://{self.host}:{self.port}", f"cannot connect to the broker ({exc})") from exc
        self._connected = True
        self.connected_event.set()
        return self

    async def __aexit__(self, *exc: object) -> None:
        task, self._reconnector = self._reconnector, None
        if task is not None:
            task.cancel()
            try:  # asyncio.timeout, not wait_for: Python 3.11's wait_for can lose a cancellation
                async with asyncio.timeout(self.timeout_s):
                    await asyncio.shield(task)
            except (asyncio.CancelledError, TimeoutError, Exception):
                me = asyncio.current_task()
                if me is not None and me.cancelling():
                    raise
        try:
            if self.clear_meta_on_exit and self._connected:
                for sid in await self._still_ours():
                    await self._publish(topic_for(self.prefix, sid, "meta"), b"", qos=1, retain=True)
        except StreamFailure:
            pass
        finally:
            await self._close_client()

    async def _read_back(self, wait_s: float) -> dict[str, bytes]:
        """The retained metas the broker holds now for this publisher's streams (read for at most ``wait_s``)."""
        topics = {topic_for(self.prefix, sid, "meta"): sid for sid in self._metas}
        seen: dict[str, bytes] = {}
        try:
            async with asyncio.timeout(min(wait_s, self.timeout_s)):
                await self._client.subscribe([(t, 1) for t in topics], timeout=self.timeout_s)
                async for m in self._client.messages:
                    sid = topics.get(m.topic.value)
                    if sid is not None and m.retain:
                        seen[sid] = bytes(m.payload or b"")
                    if len(seen) >= len(topics):
                        break
        except (TimeoutError, aiomqtt.MqttError):
            pass
        try:  # later changes of these metas need not reach this publisher
            async with asyncio.timeout(min(wait_s, self.timeout_s)):
                await self._client.unsubscribe(list(topics), timeout=self.timeout_s)
        except (TimeoutError, aiomqtt.MqttError):
            pass
        return seen

    async def _still_ours(self, wait_s: float = 1.0) -> list[str]:
        """The streams whose retained meta on the broker is still the one this publisher sent: a second
        publisher of the same id may have replaced it, and clearing it then would end that one's stream
        for every monitor. A meta not read back in time is taken as ours."""
        seen = await self._read_back(wait_s)
        return [sid for sid in sorted(self._metas) if seen.get(sid, self._metas[sid]) == self._metas[sid]]

    async def reassert_metas(self, wait_s: float = 0.5) -> list[str]:
        """Publish again the retained metas that are gone from the broker while this publisher still sends
        (cleared by someone else: a second publisher of the same id leaving, an operator); a meta another
        publisher replaced is left alone. Returns the stream ids republished; never raises."""
        if not self._connected or not self._metas:
            return []
        try:
            seen = await self._read_back(wait_s)
            gone = [sid for sid in sorted(self._metas) if sid not in seen]
            for sid in gone:
                await self._publish(topic_for(self.prefix, sid, "meta"), self._metas[sid], qos=1, retain=True)
        except (StreamFailure, aiomqtt.MqttError) as exc:
            log.info("MQTT publisher %s:%d: checking the retained metas failed (%s)", self.host, self.port, exc)
            return []
        if gone:
            log.warning("MQTT publisher: retained meta(s) of %s were gone while still publishing: republished",
                        ", ".join(gone[:5]) + (" ..." if len(gone) > 5 else ""))
        return gone

    async def _close_client(self) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._client.__aexit__(None, None, None)
        except (aiomqtt.MqttError, TimeoutError, RuntimeError):
            pass
        retrieve_disconnect_error(self._client)

    def _lost(self, exc: Exception) -> None:
        if self._connected:
            log.warning("MQTT publisher %s:%d: connection lost (%s); reconnecting", self.host, self.port, exc)
        self._connected = False
        self.connected_event.clear()
        if self._reconnector is None or self._reconnector.done():
            self._reconnector = asyncio.get_running_loop().create_task(self._reconnect_loop(),
                                                                       name="mqtt-publisher-reconnect")

    async def _reconnect_loop(self) -> None:
        await self._close_client()
        attempt = 0
        while True:
            delay = min(self.reconnect_max_s, self.reconnect_min_s * 2 ** attempt) * random.uniform(0.5, 1.0)
            if await wait_backoff(self.host, self.port, delay, probe_interval_s=self.probe_interval_s):
                attempt = 0
            else:
                attempt = min(attempt + 1, 30)
            self._client = self._new_client()
            try:
                await self._client.__aenter__()
            except aiomqtt.MqttError as exc:
                log.info("MQTT publisher %s:%d: reconnect failed (%s)", self.host, self.port, exc)
                retrieve_disconnect_error(self._client)
                continue
            self._connected = True
            self.reconnects += 1
            try:
                for sid, meta in list(self._metas.items()):
                    await self._client.publish(topic_for(self.prefix, sid, "meta"), meta, qos=1, retain=True,
                                               timeout=self.timeout_s)
            except aiomqtt.MqttError as exc:
                self._connected = False
                await self._close_client()
                log.info("MQTT publisher: republishing metas failed (%s)", exc)
                continue
            self.connected_event.set()
            log.info("MQTT publisher %s:%d: reconnected", self.host, self.port)
            return

    async def _publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> None:
        if self.reconnect and not self._connected:
            self.dropped += 1
            return
        try:
            await self._client.publish(topic, payload, qos=qos, retain=retain, timeout=self.timeout_s)
        except aiomqtt.MqttError as exc:
            if self.reconnect:
                self.dropped += 1
                self._lost(exc)
                return
            raise StreamFailure(topic, f"publish failed ({exc})") from exc
        self.published += 1

    async def publish_meta(self, stream_id: str, meta: bytes) -> None:
        """Retained meta (see :func:`pedstream.transports.mqtt.wire.encode_meta`)."""
        check_stream_id(stream_id)
        self._metas[stream_id] = meta
        await self._publish(topic_for(self.prefix, stream_id, "meta"), meta, qos=1, retain=True)

    async def clear_meta(self, stream_id: str) -> None:
        self._metas.pop(stream_id, None)
        await self._publish(topic_for(self.prefix, stream_id, "meta"), b"", qos=1, retain=True)

    async def publish_data(self, stream_id: str, payload: bytes) -> None:
        """One data message (binary or JSON, see :mod:`pedstream.transports.mqtt.wire`)."""
        await self._publish(topic_for(self.prefix, stream_id, "data"), payload, qos=self.qos)

    def publish_data_nowait(self, stream_id: str, payload: bytes) -> bool:
        """Queue one data message without waiting for its write (see :func:`~pedstream.transports.mqtt.client.paho_client`):
        many messages then go out in one writer callback. Bound the queue with :meth:`drain`. False
        when not sent: disconnected with ``reconnect`` (counted in ``dropped``); without ``reconnect`` a
        lost connection raises :class:`~pedstream.errors.StreamError`."""
        return self.publish_nowait(topic_for(self.prefix, stream_id, "data"), payload)

    def publish_nowait(self, topic: str, payload: bytes) -> bool:
        """:meth:`publish_data_nowait` to any topic (e.g. a bundle's), at the data QoS."""
        paho = paho_client(self._client)
        if self._connected and paho is not None and paho.is_connected():
            info = paho.publish(topic, payload, self.qos)
            if info.rc == 0:
                self.published += 1
                return True
            exc: Exception = aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        else:
            exc = aiomqtt.MqttError("not connected")
        if not self.reconnect:
            raise StreamFailure(topic, f"publish failed ({exc})") from exc
        self.dropped += 1
        if self._connected:
            self._lost(exc)
        return False

    def queued(self) -> int:
        """Messages queued on the connection and not yet written (QoS 1: or not yet acknowledged)."""
        paho = paho_client(self._client)
        n = len(getattr(paho, "_out_packet", ()))
        if self.qos > 0:
            n += len(getattr(paho, "_out_messages", ()))
        return n

    async def drain(self, max_queued: int = 0) -> None:
        """Wait until at most ``max_queued`` messages wait to be written (``timeout_s`` at most; then the
        connection counts as lost: with ``reconnect`` the rest is dropped, else StreamError)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while self._connected and self.queued() > max_queued:
            if loop.time() > deadline:
                exc = aiomqtt.MqttError(f"{self.queued()} messages not written within {self.timeout_s:g} s")
                if not self.reconnect:
                    raise StreamFailure(f"mqtt://{self.host}:{self.port}", str(exc)) from exc
                self.dropped += self.queued()
                self._lost(exc)
                return
            await asyncio.sleep(0.001 if max_queued else 0.0005)

    async def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Anything else (e.g. the engine's ``<prefix>/<stream_id>/rhythm``)."""
        await self._publish(topic, payload, qos=self.qos, retain=retain)


class MQTTSink:
    """Publish events (JSON) to ``<prefix>/<stream_id>/rhythm`` (MQTT v5, QoS 0) through an
    :class:`MQTTPublisher` (the same client construction, credentials, TLS and reconnect policy as
    the replay publisher; a broker that is not there yet is waited for).

    Publishing runs in its own task; ``emit`` only enqueues (at most ``max_pending``; beyond that
    events are dropped and counted). Events are published while connected; one in flight when the
    connection breaks is dropped and counted. On exit the events still queued are published first
    (at most ``drain_s`` seconds, and only while connected), so a run's last events reach the broker.
    """

    def __init__(self, *, host: str, port: int, prefix: str = "pedstream/v1", max_pending: int = 10000,
                 drain_s: float = 2.0, auth: MQTTAuth | None = None, timeout_s: float = 5.0,
                 reconnect_min_s: float = 0.2, reconnect_max_s: float = 5.0, probe_interval_s: float = 0.25) -> None:
        """``auth``: :class:`~pedstream.transports.mqtt.client.MQTTAuth` (the ``[mqtt]`` credentials and TLS,
        the same as the source's)."""
        self.host, self.port, self.prefix = host, port, prefix.rstrip("/")
        self.drain_s = float(drain_s)
        self.publisher = MQTTPublisher(host=host, port=port, prefix=self.prefix, timeout_s=timeout_s, auth=auth,
                                       clear_meta_on_exit=False, reconnect=True, require_broker=False,
                                       reconnect_min_s=reconnect_min_s, reconnect_max_s=reconnect_max_s,
                                       probe_interval_s=probe_interval_s)
        self._queue: asyncio.Queue[MonitorEvent] = asyncio.Queue(maxsize=max_pending)
        self._stack: contextlib.AsyncExitStack | None = None
        self.published = 0
        self.dropped = 0

    @classmethod
    def from_config(cls, section: MQTTSection, *, auth: MQTTAuth | None = None, **overrides: Any) -> "MQTTSink":
        """From the ``[mqtt]`` section: broker, topic prefix, timeout, reconnect policy and (unless
        ``auth`` is given) the credentials and TLS."""
        kw: dict[str, Any] = dict(host=section.host, port=section.port, prefix=section.topic_prefix,
                                  timeout_s=section.timeout_s, reconnect_min_s=section.reconnect_min_s,
                                  reconnect_max_s=min(section.reconnect_max_s, 5.0),
                                  probe_interval_s=section.probe_interval_s,
                                  auth=auth if auth is not None else MQTTAuth.from_section(section))
        kw.update(overrides)
        return cls(**kw)

    @property
    def connected(self) -> asyncio.Event:
        """Set while the publisher is connected to the broker."""
        return self.publisher.connected_event

    async def __aenter__(self) -> "MQTTSink":
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.publisher)
            tg = await stack.enter_async_context(asyncio.TaskGroup())
            task = tg.create_task(self._run(), name="sink-mqtt")
            stack.callback(task.cancel)  # runs before the task group waits for it
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.connected.is_set() and self.drain_s > 0:
            try:
                async with asyncio.timeout(self.drain_s):
                    await self._queue.join()
            except TimeoutError:
                log.warning("MQTT sink: %d events not published at exit", self._queue.qsize())
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    def emit(self, event: MonitorEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _run(self) -> None:
        pub = self.publisher
        while True:
            ev = await self._queue.get()
            try:
                await pub.connected_event.wait()
                before = pub.dropped
                try:
                    await pub.publish_raw(topic_for(self.prefix, ev.stream, "rhythm"), ev.to_json().encode())
                except Exception as exc:  # a broken event or client must not end the sink
                    log.warning("MQTT sink: event not published (%s)", exc)
                    pub.dropped += 1
                if pub.dropped > before:
                    self.dropped += 1
                else:
                    self.published += 1
            finally:
                self._queue.task_done()


async def _cancel_task(get: Callable[[], asyncio.Task | None]) -> None:
    task = get()
    if task is not None and not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def replay_to_mqtt(plans: Sequence[ReplayPlan], *, host: str = "127.0.0.1", port: int = 1883,
                         prefix: str = "pedstream/v1", speed: float = 1.0, chunk_ms: float = 50.0,
                         loop: bool = False, encoding: str = "binary", dtype: str = "int16",
                         int16_scale_mv: float = 0.001, timeout_s: float = 5.0,
                         on_start: Callable[[ReplayPlan], None] | None = None, auth: Any = None,
                         reconnect: bool = True, reconnect_max_s: float = 5.0,
                         probe_interval_s: float = 0.25, wills: bool = True,
                         max_queued: int = 4096, bundle_bytes: int = 0,
                         start_offsets: Sequence[float] | None = None, meta_check_s: float = 5.0,
                         on_t0: Callable[[ReplayPlan, float], None] | None = None) -> dict[str, int]:
    """Publish each plan on MQTT: retained meta, then paced data messages (binary or JSON).
    int16 samples are ``round(mV / int16_scale_mv)``, clipped to the int16 range (one numpy call per
    block of the record, not per chunk).

    One pacing task and one MQTT connection carry every stream (:func:`~pedstream.transports.mqtt.pacing.paced_many`;
    data is queued without awaiting each message's write, at most ``max_queued`` messages waiting);
    ``wills``: per stream an idle connection whose Last Will clears its retained meta if the process
    dies (:class:`~pedstream.transports.mqtt.wills.WillKeepers`); a normal end (or Ctrl-C) clears the metas
    itself. With ``reconnect`` a lost broker does not end the replay: data is dropped (counted) while
    disconnected and the metas are republished on reconnect (see :class:`MQTTPublisher`).
    ``bundle_bytes`` > 0: the data messages due at the same tick go out in bundles of at most that many
    bytes on ``<prefix>/<publisher id>/bundle`` (:mod:`pedstream.transports.mqtt.bundle`; same chunks, same
    latency, one MQTT message per bundle instead of one per stream); 0: one message per stream and chunk.
    ``start_offsets``: each stream's start (seconds after the first; see :func:`paced_many`).
    ``meta_check_s`` > 0: that often the retained metas are read back and republished if someone cleared
    them while the replay runs (:meth:`MQTTPublisher.reassert_metas`). ``on_t0(plan, t0)``: the time of the
    plan's first sample on the payloads' clock (``t``; a monitor's events carry it as ``t_signal``), told
    when the pacing starts (the reference labels of ``pedstream run --source mqtt --records``).
    Returns samples sent per stream id."""
    if encoding not in ("binary", "json"):
        raise RecordError("replay", f"encoding must be binary or json (got {encoding!r})")
    ids = [check_stream_id(p.stream_id) for p in plans]
    if encoding == "binary" and dtype == "int16":
        def convert(a: np.ndarray) -> np.ndarray:
            return np.clip(np.rint(a / int16_scale_mv), -32768, 32767).astype(np.int16)
    else:
        def convert(a: np.ndarray) -> np.ndarray:
            return a
    sent = {sid: 0 for sid in ids}
    client_id = f"pedstream-pub-{uuid.uuid4().hex[:10]}"
    # bundles go on <prefix>/<publisher>/bundle, the publisher being the broker user where there is one (the
    # documented ACL lets a user write only <prefix>/<user>/#); each meta names it, which authorises the bundle
    bundle_id = check_stream_id(getattr(auth, "username", None) or client_id)
    owner = {"publisher": bundle_id} if bundle_bytes > 0 else {}
    async with contextlib.AsyncExitStack() as stack:
        keepers = None
        if wills:
            keepers = await stack.enter_async_context(WillKeepers(
                host=host, port=port, prefix=prefix, stream_ids=ids, client_id=client_id, auth=auth,
                timeout_s=timeout_s))
        pub = await stack.enter_async_context(MQTTPublisher(
            host=host, port=port, prefix=prefix, timeout_s=timeout_s, auth=auth, reconnect=reconnect,
            reconnect_max_s=reconnect_max_s, probe_interval_s=probe_interval_s, client_id=client_id))
        t0 = time.time()
        for plan in plans:
            await pub.publish_meta(plan.stream_id, encode_meta(
                fs=plan.fs, channels=plan.channel_names, units="mV", dtype=dtype,
                scale=int16_scale_mv if dtype == "int16" else 1.0, encoding=encoding, age_years=plan.age_years,
                t0=t0, session=uuid.uuid4().hex[:12], record=plan.record.name, **owner))
            if on_start is not None:
                on_start(plan)
        reconnects = pub.reconnects
        bundle_topic = topic_for(prefix, bundle_id, "bundle")
        t_sample0 = [t0]

        def clock_started() -> None:  # data times count from when sample 0 is actually due
            t_sample0[0] = time.time()
            if on_t0 is not None:  # each plan's first sample on the payloads' clock (the events' t_signal)
                for plan, off in zip(plans, rec_offs):
                    on_t0(plan, t_sample0[0] + off)

        # record seconds after the first stream's start (a stream's data times count from its own start),
        # wall seconds for the pacer (speed inf: no pacing, no offsets)
        rec_offs = [0.0] * len(plans) if start_offsets is None or not math.isfinite(speed) else \
            [max(0.0, float(o)) for o in start_offsets]
        offs = [o / speed for o in rec_offs]
        check: asyncio.Task | None = None  # the retained metas read back now and then (MQTTPublisher.reassert_metas)
        next_check = time.monotonic() + meta_check_s
        stack.push_async_callback(_cancel_task, lambda: check)
        async for due in paced_many(plans, chunk_ms=chunk_ms, speed=speed, loop=loop, convert=convert,
                                    started=clock_started, offsets=offs):
            if meta_check_s > 0 and time.monotonic() >= next_check and (check is None or check.done()):
                next_check = time.monotonic() + meta_check_s
                check = asyncio.create_task(pub.reassert_metas(), name="mqtt-meta-check")
            t0 = t_sample0[0]
            frames: list[tuple[str, bytes]] = []
            for d in due:
                plan = plans[d.index]
                t = t0 + rec_offs[d.index] + d.first / plan.fs
                seq = d.seq % (1 << 32)
                if encoding == "json":
                    payload = encode_json(d.data, seq=seq, first_sample=d.first, t=t)
                else:
                    payload = encode_binary(d.data, seq=seq, first_sample=d.first, t=t)
                if bundle_bytes > 0:
                    frames.append((plan.stream_id, payload))
                else:
                    pub.publish_data_nowait(plan.stream_id, payload)
                sent[plan.stream_id] = d.first + d.data.shape[0]
            for b in pack_bundles(frames, bundle_bytes) if frames else ():
                pub.publish_nowait(bundle_topic, b)
            await pub.drain(max_queued)
            if keepers is not None and pub.reconnects != reconnects:  # a broker restart: the Wills are gone too
                reconnects = pub.reconnects
                await keepers.refresh()
        await pub.drain(0)
        if pub.dropped:
            log.warning("MQTT %s:%d: %d message(s) not sent while the broker was unreachable", host, port,
                        pub.dropped)
    return sent
