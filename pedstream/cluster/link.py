"""The supervisor's side of the broker: one connection (Last Will: free the lock), the lock on
``<prefix>/_supervisor``, stream discovery from the retained metas, reconnecting. A mixin of
:class:`pedstream.cluster.supervisor.Supervisor` (it owns the state these methods use)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from typing import Any

import aiomqtt

from pedstream.cluster.topics import ClusterError, decode_json, encode_json, lock_topic
from pedstream.transports.mqtt.client import MQTTAuth, make_client, retrieve_disconnect_error, wait_backoff
from pedstream.transports.mqtt.wire import STREAM_ID_RE, topic_for

__all__ = ["BrokerLink"]

log = logging.getLogger(__name__)


class BrokerLink:
    """Broker connection, lock and stream discovery of the supervisor (see the module docstring)."""

    cfg: Any
    prefix: str
    id: str
    since: float
    streams: set[str]
    workers: dict
    fatal: ClusterError | None
    on_line: Any
    _client: aiomqtt.Client | None
    _changed: asyncio.Event
    _foreign_lock: dict[str, Any] | None

    async def _connect(self) -> None:
        """A new broker connection (Last Will: clear the lock) subscribed to the lock topic."""
        m = self.cfg.mqtt
        await self._close_client()
        self._client = make_client(m.host, m.port, identifier=f"pedstream-sup-{uuid.uuid4().hex[:10]}",
                                   auth=MQTTAuth.from_section(m), timeout_s=m.timeout_s, keepalive_s=m.keepalive_s,
                                   will=aiomqtt.Will(lock_topic(self.prefix), b"", qos=1, retain=True))
        await self._client.__aenter__()
        await self._client.subscribe(lock_topic(self.prefix), qos=1, timeout=m.timeout_s)

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.cfg.mqtt.timeout_s):
                    await client.__aexit__(None, None, None)
            retrieve_disconnect_error(client)

    def _lock_payload(self) -> bytes:
        return encode_json({"id": self.id, "host": socket.gethostname(), "pid": os.getpid(), "since": self.since})

    def _check_lock(self, *, before: bool) -> None:
        """``before`` publishing ours: any other lock refuses; after: only an earlier one (two at once)."""
        other = self._foreign_lock
        if other is None:
            return
        mine = (self.since, self.id)
        since = other.get("since")
        theirs = (float(since) if isinstance(since, (int, float)) else 0.0, str(other.get("id", "")))
        if before or theirs < mine:
            raise ClusterError("supervisor", f"another supervisor (host {other.get('host')!s:.64}, pid "
                                             f"{other.get('pid')!s:.16}) holds {lock_topic(self.prefix)}; one per "
                                             "broker prefix (if it is gone, its Last Will frees the lock within "
                                             f"1.5 x [mqtt] keepalive_s = {1.5 * self.cfg.mqtt.keepalive_s:g} s)")

    async def _release_lock(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.publish(lock_topic(self.prefix), b"", qos=1, retain=True,  # type: ignore[union-attr]
                                       timeout=self.cfg.mqtt.timeout_s)

    # -- broker messages ----------------------------------------------------------------------------
    async def _read(self) -> None:
        """Messages until the connection breaks; then reconnect (capped backoff, at once when the broker
        answers again), take the lock again and re-subscribe the metas. Meanwhile the assignments stay
        as they are. A lock of another supervisor found on reconnect (one that started while the broker
        had dropped ours) ends this supervisor (:attr:`fatal`): that one has started its workers."""
        m, c = self.cfg.mqtt, self.cfg.cluster
        attempt = 0
        while True:
            client = self._client
            try:
                if client is None:
                    raise aiomqtt.MqttError("not connected")
                async for msg in client.messages:
                    try:
                        self._on_message(msg.topic.value, bytes(msg.payload or b""))
                    except Exception as exc:  # one message can never end the supervisor
                        log.warning("supervisor: message on %s not handled (%s)", msg.topic.value, exc)
            except aiomqtt.MqttError as exc:
                if attempt == 0:
                    self.on_line(f"supervisor: broker connection lost ({exc}); reconnecting, assignments stay")
            delay = min(m.reconnect_max_s, m.reconnect_min_s * 2 ** attempt)
            attempt = 0 if await wait_backoff(m.host, m.port, delay, probe_interval_s=m.probe_interval_s) else attempt + 1
            try:
                self._foreign_lock = None
                await self._connect()
                assert self._client is not None
                client = self._client
                reader = asyncio.get_running_loop().create_task(self._drain_lock(client), name="supervisor-relock")
                await asyncio.sleep(c.lock_wait_s)  # a retained lock of another supervisor arrives in this time
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
                if self._foreign_lock is not None:
                    self.fatal = ClusterError("supervisor", f"another supervisor took {lock_topic(self.prefix)} while "
                                                            "the broker was unreachable; this one stops")
                    self._changed.set()
                    return
                await client.publish(lock_topic(self.prefix), self._lock_payload(), qos=1, retain=True,
                                     timeout=m.timeout_s)
                await client.subscribe(topic_for(self.prefix, "+", "meta"), qos=1, timeout=m.timeout_s)
                self.on_line("supervisor: broker connection back")
                attempt = 0
            except aiomqtt.MqttError:
                attempt = min(attempt + 1, 30)

    async def _drain_lock(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            self._on_message(msg.topic.value, bytes(msg.payload or b""))

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == lock_topic(self.prefix):
            if not payload:  # released (or its holder's Last Will)
                self._foreign_lock = None
                return
            try:
                obj = decode_json(payload, max_bytes=4096)
            except ValueError:
                return
            if obj.get("id") != self.id:
                self._foreign_lock = obj
                if self.workers:  # running: a later supervisor's lock; it sees ours and stops
                    log.warning("supervisor: another supervisor announced itself (%s)", obj.get("id"))
            return
        rest = topic[len(self.prefix) + 1:]
        sid, _, kind = rest.partition("/")
        if kind != "meta" or not STREAM_ID_RE.match(sid) or sid.startswith("_"):
            return
        if not payload:
            if sid in self.streams:
                self.streams.discard(sid)
                self._changed.set()
            return
        if sid not in self.streams:
            if len(self.streams) >= self.cfg.cluster.max_streams or len(payload) > self.cfg.mqtt.max_message_bytes:
                self.refused_streams += 1
                return
            self.streams.add(sid)
            self._changed.set()
