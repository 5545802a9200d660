"""Last Wills for a publisher that sends many streams over one connection.

An MQTT connection has one Last Will, so the replay publisher (one data connection for all its
streams) keeps, per stream, an idle connection whose Will clears that stream's retained meta
(:class:`WillKeepers`): if the process dies, the broker publishes every Will and subscribers see the
streams end; a normal exit disconnects them cleanly (no Will) after the publisher cleared the metas
itself. The idle connections send nothing but keep-alive pings, so they cost no per-message work.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Sequence

import aiomqtt

from pedstream.transports.mqtt.client import MQTTAuth, make_client, paho_client, retrieve_disconnect_error
from pedstream.transports.mqtt.wire import check_stream_id, topic_for

__all__ = ["WillKeepers"]

log = logging.getLogger(__name__)


class WillKeepers:
    """``async with WillKeepers(host=..., port=..., prefix=..., stream_ids=[...]):`` one connection per
    stream id, each with the Last Will ``<prefix>/<id>/meta`` = empty retained (the meta withdrawn).

    ``open`` connects at most ``concurrency`` at a time; a connection that fails is counted
    (``failed``) and logged once, it does not stop the publisher. :meth:`refresh` reconnects the ones
    that are down (after a broker restart)."""

    def __init__(self, *, host: str, port: int, prefix: str, stream_ids: Sequence[str], client_id: str,
                 auth: MQTTAuth | None = None, timeout_s: float = 5.0, keepalive_s: int = 30,
                 concurrency: int = 32) -> None:
        self.host, self.port, self.prefix = host, int(port), prefix.rstrip("/")
        self.stream_ids = [check_stream_id(s) for s in stream_ids]
        self.client_id = client_id
        self.auth = auth
        self.timeout_s, self.keepalive_s = float(timeout_s), int(keepalive_s)
        self._sem = asyncio.Semaphore(max(1, int(concurrency)))
        self._clients: dict[str, aiomqtt.Client] = {}
        self.failed = 0

    async def __aenter__(self) -> "WillKeepers":
        await self.refresh()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def connected(self) -> int:
        """How many Will connections are up now."""
        return sum(1 for c in self._clients.values() if (p := paho_client(c)) is not None and p.is_connected())

    async def _open_one(self, k: int, sid: str) -> None:
        old = self._clients.pop(sid, None)
        if old is not None:
            await self._close_one(old)
        will = aiomqtt.Will(topic_for(self.prefix, sid, "meta"), b"", qos=1, retain=True)
        client = make_client(self.host, self.port, identifier=f"{self.client_id}-w{k}", auth=self.auth,
                             timeout_s=self.timeout_s, keepalive_s=self.keepalive_s, will=will)
        async with self._sem:
            try:
                await client.__aenter__()
            except aiomqtt.MqttError as exc:
                retrieve_disconnect_error(client)
                self.failed += 1
                if self.failed == 1:
                    log.warning("MQTT %s:%d: Last Will connection of %s failed (%s); its retained meta is not "
                                "cleared if this process dies", self.host, self.port, sid, exc)
                return
        self._clients[sid] = client

    async def refresh(self) -> None:
        """Connect every stream's Will connection that is not up."""
        todo = [(k, sid) for k, sid in enumerate(self.stream_ids)
                if (p := paho_client(self._clients.get(sid))) is None or not p.is_connected()]
        if todo:
            await asyncio.gather(*(self._open_one(k, sid) for k, sid in todo))

    async def _close_one(self, client: Any) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                await client.__aexit__(None, None, None)
        except (aiomqtt.MqttError, TimeoutError, RuntimeError):
            pass
        retrieve_disconnect_error(client)

    async def close(self) -> None:
        """Disconnect cleanly (the broker discards the Wills)."""
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(self._close_one(c) for c in clients))
