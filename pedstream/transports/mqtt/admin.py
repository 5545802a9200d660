"""Retained metas on the broker: list them with what their streams are doing, and clear stale ones
(``pedstream mqtt metas``).

A publisher that dies without a Last Will leaves its retained meta on the broker; a monitor started
later sees a stream that never sends data (it ages out there: see
:mod:`pedstream.transports.mqtt.lifecycle`), but the broker keeps the meta until someone clears it.
:func:`scan_metas` subscribes to ``<prefix>/+/meta``, ``+/data`` and ``+/bundle`` for ``listen_s``
seconds and reports every retained meta with the data messages its stream sent meanwhile (bundle
frames included): a meta whose stream sent nothing is *stale*. :func:`clear_metas` publishes the
empty retained message that deletes a meta (the broker user needs write access to those topics:
see docs/security.md, the ``admin`` user of the ACL example).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Iterable

import aiomqtt

from pedstream.errors import PayloadError, StreamError as StreamFailure
from pedstream.transports.mqtt.bundle import split_bundle
from pedstream.transports.mqtt.client import MQTTAuth, make_client
from pedstream.transports.mqtt.wire import DEFAULT_LIMITS, decode_meta, topic_for

__all__ = ["RetainedMeta", "scan_metas", "clear_metas"]

_MAX_METAS = 100_000  # retained metas listed at most


@dataclass(slots=True)
class RetainedMeta:
    stream_id: str
    size: int
    fs: float | None = None
    channels: int | None = None
    publisher: str | None = None
    session: str | None = None
    problem: str | None = None  # not a valid meta (why)
    data_messages: int = 0  # data messages (and bundle frames) of the stream while listening

    @property
    def stale(self) -> bool:
        return self.data_messages == 0

    def as_dict(self) -> dict[str, Any]:
        return {"stream": self.stream_id, "bytes": self.size, "fs": self.fs, "channels": self.channels,
                "publisher": self.publisher, "session": self.session, "problem": self.problem,
                "data_messages": self.data_messages, "stale": self.stale}


def _stream_of(topic: str, prefix: str, kind: str) -> str | None:
    rest = topic[len(prefix) + 1:] if topic.startswith(prefix + "/") else ""
    sid, _, k = rest.partition("/")
    return sid if sid and k == kind else None


async def scan_metas(*, host: str, port: int, prefix: str, auth: MQTTAuth | None = None, listen_s: float = 3.0,
                     timeout_s: float = 5.0) -> list[RetainedMeta]:
    """The retained metas under ``prefix`` and the data their streams sent in ``listen_s`` seconds."""
    prefix = prefix.rstrip("/")
    metas: dict[str, RetainedMeta] = {}
    data: dict[str, int] = {}
    try:
        async with make_client(host, port, identifier=None, auth=auth, timeout_s=timeout_s) as client:
            await client.subscribe([(topic_for(prefix, "+", "meta"), 1), (topic_for(prefix, "+", "data"), 0),
                                    (topic_for(prefix, "+", "bundle"), 0)], timeout=timeout_s)
            deadline = time.monotonic() + listen_s
            try:
                async with asyncio.timeout(listen_s):
                    async for m in client.messages:
                        _take(m, prefix, metas, data)
                        if time.monotonic() > deadline:
                            break
            except TimeoutError:
                pass
    except aiomqtt.MqttError as exc:
        raise StreamFailure(f"mqtt://{host}:{port}", f"cannot read the retained metas ({exc})") from exc
    for sid, n in data.items():
        if sid in metas:
            metas[sid].data_messages = n
    return sorted(metas.values(), key=lambda r: r.stream_id)


def _take(m: Any, prefix: str, metas: dict[str, RetainedMeta], data: dict[str, int]) -> None:
    topic = m.topic.value
    raw = bytes(m.payload or b"") if not isinstance(m.payload, bytes) else m.payload
    sid = _stream_of(topic, prefix, "meta")
    if sid is not None:
        if m.retain and raw and len(metas) < _MAX_METAS:
            metas[sid] = _describe(sid, raw)
        return
    sid = _stream_of(topic, prefix, "data")
    if sid is not None:
        data[sid] = data.get(sid, 0) + 1
        return
    bid = _stream_of(topic, prefix, "bundle")
    if bid is not None:
        try:
            frames = split_bundle(raw, max_message_bytes=DEFAULT_LIMITS.max_message_bytes, max_frames=0xFFFF, bundle=bid)
        except PayloadError:
            return
        for fsid, _ in frames:
            data[fsid] = data.get(fsid, 0) + 1


def _describe(sid: str, raw: bytes) -> RetainedMeta:
    r = RetainedMeta(stream_id=sid, size=len(raw))
    try:
        meta = decode_meta(raw, stream=sid)
    except PayloadError as exc:
        r.problem = str(exc)[:120]
        return r
    r.fs, r.channels, r.session = meta.fs, meta.n_channels, meta.session
    pub = meta.extra.get("publisher")
    r.publisher = pub if isinstance(pub, str) else None
    return r


async def clear_metas(stream_ids: Iterable[str], *, host: str, port: int, prefix: str, auth: MQTTAuth | None = None,
                      timeout_s: float = 5.0) -> int:
    """Delete these streams' retained metas (an empty retained message each, QoS 1). Returns how many."""
    n = 0
    try:
        async with make_client(host, port, identifier=None, auth=auth, timeout_s=timeout_s) as client:
            for sid in stream_ids:
                await client.publish(topic_for(prefix.rstrip("/"), sid, "meta"), b"", qos=1, retain=True,
                                     timeout=timeout_s)
                n += 1
    except aiomqtt.MqttError as exc:
        raise StreamFailure(f"mqtt://{host}:{port}", f"clearing retained metas failed after {n} ({exc})") from exc
    return n
