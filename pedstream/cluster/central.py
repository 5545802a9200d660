"""The central station: every stream of every worker, from the broker.

:class:`Central` subscribes to ``<prefix>/+/rhythm`` (QoS 1), ``<prefix>/+/alarm`` and
``<prefix>/_workers/+`` (retained) and keeps :class:`WardRow` per stream (call, heart rate, alarm,
worker, last seen) and the workers' presence. Each rhythm event goes to its sinks as a
:class:`~pedstream.events.MonitorEvent` (the ``--events`` JSON lines file of the whole ward,
stdout with ``--headless``), with ``worker`` kept.

Network bytes are hostile: a message over ``[mqtt] max_message_bytes``, nesting too deep, not a JSON
object, naming another stream than its topic or an unknown kind is dropped and counted
(``rejected``), never an exception; at most ``[mqtt] max_streams`` streams and 256 workers are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, get_args

import aiomqtt

from pedstream.cluster.topics import PRIORITY_RANK, WORKER_RE, ClusterError, decode_json
from pedstream.transports.mqtt.client import MQTTAuth, make_client, retrieve_disconnect_error, wait_backoff
from pedstream.transports.mqtt.wire import STREAM_ID_RE
from pedstream.events import EventKind, MonitorEvent
from pedstream.config import Config

__all__ = ["Central", "WardRow", "WorkerRow"]

log = logging.getLogger(__name__)
_KINDS = set(get_args(EventKind))
_BASE = {"schema_version", "t", "t_signal", "clock", "stream", "kind", "label", "p", "hr", "latency_ms"}
_MAX_WORKERS = 256


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass
class WardRow:
    stream: str
    worker: str | None = None
    call: str | None = None
    p: float | None = None
    hr: float | None = None
    quality: str = "warm-up"
    alarms: list[tuple[str, str]] = field(default_factory=list)  # (label, priority), highest first
    alarm_worker: str | None = None
    last_seen: float | None = None  # monotonic
    calls: int = 0

    @property
    def rank(self) -> int:
        return PRIORITY_RANK.get(self.alarms[0][1], 9) if self.alarms else 9


@dataclass
class WorkerRow:
    name: str
    state: str = "up"
    pid: Any = None
    host: str = ""
    streams: int = 0
    last_seen: float | None = None


class Central:
    """``async with Central(cfg=cfg, sinks=[...]) as c: ...``; ``rows``/``workers`` are the ward."""

    def __init__(self, *, cfg: Config, sinks: list[Any] = ()) -> None:  # type: ignore[assignment]
        self.cfg = cfg
        self.sinks = list(sinks)
        self.prefix = cfg.mqtt.topic_prefix.rstrip("/")
        self.rows: dict[str, WardRow] = {}
        self.workers: dict[str, WorkerRow] = {}
        self.events = 0
        self.rejected = 0
        self.connected = asyncio.Event()
        self.t_start = time.monotonic()
        self._stack: contextlib.AsyncExitStack | None = None
        self._listeners: list[Any] = []

    def add_listener(self, fn: Any) -> None:
        """``fn(event_dict)`` for every accepted rhythm event (synchronous, must not block)."""
        self._listeners.append(fn)

    async def __aenter__(self) -> "Central":
        async with contextlib.AsyncExitStack() as stack:
            for s in self.sinks:
                await stack.enter_async_context(s)
            task = asyncio.get_running_loop().create_task(self._run(), name="central-mqtt")

            async def cancel() -> None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            stack.push_async_callback(cancel)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _run(self) -> None:
        m = self.cfg.mqtt
        auth = MQTTAuth.from_section(m)
        while True:
            client = make_client(m.host, m.port, identifier=f"pedstream-central-{uuid.uuid4().hex[:10]}", auth=auth,
                                 timeout_s=m.timeout_s, keepalive_s=m.keepalive_s,
                                 max_queued_incoming_messages=m.max_queued_messages)
            try:
                async with client:
                    await client.subscribe([(f"{self.prefix}/+/rhythm", 1), (f"{self.prefix}/+/alarm", 1),
                                            (f"{self.prefix}/_workers/+", 1)], timeout=m.timeout_s)
                    self.connected.set()
                    async for msg in client.messages:
                        self.on_message(msg.topic.value, bytes(msg.payload or b""))
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                log.warning("central: broker %s:%d: %s; reconnecting", m.host, m.port, exc)
                await wait_backoff(m.host, m.port, min(m.reconnect_max_s, 2.0), probe_interval_s=m.probe_interval_s)
            finally:
                retrieve_disconnect_error(client)

    # -- messages ---------------------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes) -> None:
        try:
            self._on_message(topic, payload)
        except Exception as exc:  # noqa: BLE001 - one message can only ever be rejected
            self.rejected += 1
            log.debug("central: %s rejected (%s)", topic, exc)

    def _row(self, sid: str) -> WardRow | None:
        row = self.rows.get(sid)
        if row is None:
            if len(self.rows) >= self.cfg.mqtt.max_streams:
                self.rejected += 1
                return None
            row = self.rows[sid] = WardRow(stream=sid)
        return row

    def _on_message(self, topic: str, payload: bytes) -> None:
        rest = topic[len(self.prefix) + 1:] if topic.startswith(self.prefix + "/") else ""
        first, _, kind = rest.partition("/")
        now = time.monotonic()
        limit = self.cfg.mqtt.max_message_bytes
        if first == "_workers":
            if not WORKER_RE.match(kind):
                self.rejected += 1
                return
            if not payload:
                self.workers.pop(kind, None)
                return
            obj = decode_json(payload, max_bytes=limit)
            if kind not in self.workers and len(self.workers) >= _MAX_WORKERS:
                self.rejected += 1
                return
            w = self.workers.setdefault(kind, WorkerRow(name=kind))
            w.state = str(obj.get("state", "up"))[:16]
            w.pid, w.host = obj.get("pid") if isinstance(obj.get("pid"), int) else None, str(obj.get("host", ""))[:64]
            w.streams = int(_num(obj.get("streams")) or 0)
            w.last_seen = now
            return
        if not STREAM_ID_RE.match(first) or first.startswith("_") or kind not in ("rhythm", "alarm"):
            self.rejected += 1
            return
        if kind == "alarm":
            row = self.rows.get(first)
            if not payload:  # the stream is gone
                if row is not None:
                    row.alarms, row.alarm_worker = [], None
                return
            obj = decode_json(payload, max_bytes=limit)
            alarms = obj.get("alarms")
            if obj.get("stream") != first or not isinstance(alarms, list):
                raise ValueError("alarm state for another stream, or without an alarms list")
            row = self._row(first)
            if row is None:
                return
            row.alarms = sorted(((str(a.get("label"))[:32], str(a.get("priority"))[:16]) for a in alarms[:32]
                                 if isinstance(a, dict)), key=lambda lp: (PRIORITY_RANK.get(lp[1], 9), lp[0]))
            w = obj.get("worker")
            row.alarm_worker = w if isinstance(w, str) and WORKER_RE.match(w) else None
            return
        obj = decode_json(payload, max_bytes=limit)
        if obj.get("stream") != first or obj.get("kind") not in _KINDS:
            raise ValueError("event of another stream, or of an unknown kind")
        row = self._row(first)
        if row is None:
            return
        w = obj.get("worker")
        worker = w if isinstance(w, str) and WORKER_RE.match(w) else None
        row.worker, row.last_seen = worker or row.worker, now
        ev = MonitorEvent(stream=first, kind=obj["kind"], label=obj.get("label") if isinstance(obj.get("label"), str) else None,
                          p=_num(obj.get("p")), hr=_num(obj.get("hr")), latency_ms=_num(obj.get("latency_ms")),
                          t=str(obj.get("t", ""))[:40], t_signal=_num(obj.get("t_signal")),
                          clock=obj.get("clock") if isinstance(obj.get("clock"), str) else None,
                          extra={k: v for k, v in obj.items() if k not in _BASE})
        if ev.kind == "call":
            row.call, row.p, row.hr, row.calls = ev.label, ev.p, ev.hr, row.calls + 1
            row.quality = "ok"
        elif ev.kind == "signal_loss":
            row.quality = "loss"
        elif ev.kind == "signal_ok":
            row.quality = "ok"
        self.events += 1
        for sink in self.sinks:
            try:
                sink.emit(ev)
            except Exception as exc:  # a broken sink must not stop the station
                log.warning("central: sink %s failed (%s)", type(sink).__name__, exc)
        for fn in self._listeners:
            fn(ev)

    # -- views ------------------------------------------------------------------------------------
    def sorted_rows(self) -> list[WardRow]:
        """Alarms first (high, medium, advisory), then by stream id."""
        return sorted(self.rows.values(), key=lambda r: (r.rank, r.stream))

    def summary(self) -> dict[str, Any]:
        return {"streams": len(self.rows), "workers_up": sum(w.state == "up" for w in self.workers.values()),
                "events": self.events, "rejected": self.rejected,
                "alarms_active": sum(bool(r.alarms) for r in self.rows.values())}


def central_sinks(events_path: Any, headless: bool) -> list[Any]:
    """The central station's event sinks: ``--events FILE`` and, with ``--headless``, stdout."""
    from pedstream.outputs.jsonlines import JsonLinesSink

    sinks: list[Any] = []
    if events_path is not None:
        sinks.append(JsonLinesSink(events_path))
    if headless:
        sinks.append(JsonLinesSink.stdout())
    return sinks


def require_broker(cfg: Config) -> None:
    """One clear line (exit 2) when nothing answers at the ``[mqtt]`` broker address."""
    from pedstream.monitor.assembly import broker_reachable

    if not broker_reachable(cfg.mqtt.host, cfg.mqtt.port, timeout=cfg.mqtt.timeout_s):
        raise ClusterError("broker", f"cannot reach the MQTT broker at {cfg.mqtt.host}:{cfg.mqtt.port} "
                                     "(start one, or point --set mqtt.host=... --set mqtt.port=... at yours)")
