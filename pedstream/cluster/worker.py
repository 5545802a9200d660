"""One monitor worker: the engine over the streams assigned to it, its events on the broker.

:class:`MonitorWorker` is a plain class; the supervisor makes it a Ray actor (``ray.remote``), so this
module imports no ray. Its methods are coroutines (a Ray *async* actor: they run on the actor's event
loop, beside the engine's tasks):

- ``start()``: reach the broker (bounded by ``[mqtt] timeout_s``; unreachable -> :class:`ClusterError`),
  publish the retained presence (Last Will ``state: gone``), open its own ONNX session, start the
  engine with an allow-list MQTT source subscribed to no stream yet;
- ``assign(streams, moved)``: monitor exactly ``streams`` from now on; ``moved`` maps the streams that
  come from another worker to the reason (``worker_failover`` when that worker died,
  ``worker_rebalance`` when one joined): each gets ``signal_loss`` with that reason now, and
  ``signal_ok`` with it just before its first call here (after the DSP warm-up);
- ``ping()``: the heartbeat (pid, host, streams, calls so far);
- ``stop()``: leave the engine, clear the presence.

:class:`WorkerEvents` is the engine's sink: every event of an assigned stream goes to
``<prefix>/<stream>/rhythm`` (QoS 1, with ``worker``), the alarm state to ``<prefix>/<stream>/alarm``
(retained); events of streams no longer assigned here are dropped, so a stream is never reported by two
workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pedstream.cluster.topics import (
    PRIORITY_RANK,
    ClusterError,
    alarm_topic,
    encode_json,
    presence_topic,
    rhythm_topic,
)
from pedstream.events import MonitorEvent

__all__ = ["MonitorWorker", "WorkerEvents"]

log = logging.getLogger(__name__)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


class WorkerEvents:
    """The worker's engine sink (see the module docstring). ``publish(topic, payload, retain)`` is an
    async callable; events wait in a bounded queue (``max_pending``; beyond, dropped and counted)."""

    def __init__(self, *, worker: str, prefix: str, publish: Any, catch_up_calls: int = 3,
                 max_pending: int = 10_000) -> None:
        self.worker = worker
        self.prefix = prefix.rstrip("/")
        self._publish = publish
        self.catch_up_calls = int(catch_up_calls)
        self.assigned: set[str] = set()
        self._moved: dict[str, tuple[str, float]] = {}  # stream -> (reason, monotonic time of the move)
        self._calls: dict[str, int] = {}  # calls here since the stream was assigned
        self._alarms: dict[str, dict[str, str]] = {}  # stream -> {label: priority} active here
        self._state_due: set[str] = set()  # streams whose alarm state is published at a later call
        self._queue: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue(maxsize=max_pending)
        self._task: asyncio.Task | None = None
        self.published = 0
        self.dropped = 0
        self.calls = 0

    async def __aenter__(self) -> "WorkerEvents":
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"worker-events-{self.worker}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self._queue.join()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _put(self, topic: str, payload: bytes, retain: bool = False) -> None:
        try:
            self._queue.put_nowait((topic, payload, retain))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _run(self) -> None:
        while True:
            topic, payload, retain = await self._queue.get()
            try:
                await self._publish(topic, payload, retain)
                self.published += 1
            except Exception as exc:  # a broken publish must not end the sink
                self.dropped += 1
                log.warning("worker %s: not published to %s (%s)", self.worker, topic, exc)
            finally:
                self._queue.task_done()

    # -- assignment ------------------------------------------------------------------------------
    def assign(self, streams: set[str], moved: dict[str, str]) -> None:
        now = time.monotonic()
        for sid in set(self.assigned) - streams:
            self._moved.pop(sid, None)
            self._calls.pop(sid, None)
            self._alarms.pop(sid, None)
            self._state_due.discard(sid)
        for sid in sorted(streams - self.assigned):
            self._calls[sid] = 0
            self._alarms[sid] = {}
            self._state_due.add(sid)
            reason = moved.get(sid)
            if reason:
                self._moved[sid] = (reason, now)
                self._send(MonitorEvent(stream=sid, kind="signal_loss", extra={"reason": reason}))
        self.assigned = set(streams)

    # -- the engine's sink -------------------------------------------------------------------------
    def _send(self, ev: MonitorEvent) -> None:
        self._put(rhythm_topic(self.prefix, ev.stream), encode_json({**ev.to_dict(), "worker": self.worker}))

    def _send_alarm_state(self, sid: str) -> None:
        active = sorted(self._alarms.get(sid, {}).items(), key=lambda kv: (PRIORITY_RANK.get(kv[1], 9), kv[0]))
        self._put(alarm_topic(self.prefix, sid),
                  encode_json({"stream": sid, "worker": self.worker, "t": _now_iso(),
                               "alarms": [{"label": lab, "priority": pr} for lab, pr in active]}), retain=True)

    def emit(self, ev: MonitorEvent) -> None:
        sid = ev.stream
        if sid not in self.assigned:
            return  # not ours (any more): the stream's new worker reports it
        if ev.kind == "call":
            self.calls += 1
            self._calls[sid] = self._calls.get(sid, 0) + 1
            moved = self._moved.pop(sid, None)
            if moved is not None:  # the first call after a move: the gap is over
                reason, t_move = moved
                self._send(MonitorEvent(stream=sid, kind="signal_ok", hr=ev.hr, t_signal=ev.t_signal, clock=ev.clock,
                                        extra={"reason": reason, "gap_s": round(time.monotonic() - t_move, 3)}))
        elif ev.kind == "signal_ok" and sid in self._moved:
            return  # the pipeline's own signal_ok inside the move's gap: the move's signal_ok says it
        self._send(ev)
        if ev.kind in ("alarm_on", "alarm_off"):
            alarms = self._alarms.setdefault(sid, {})
            if ev.kind == "alarm_on" and ev.label:
                alarms[ev.label] = str(ev.extra.get("priority", "none"))
            elif ev.label:
                alarms.pop(ev.label, None)
            self._state_due.discard(sid)
            self._send_alarm_state(sid)
        elif ev.kind == "call" and sid in self._state_due and self._calls[sid] >= self.catch_up_calls:
            # an alarm still active on the previous worker stays shown (retained) until this worker has
            # had enough windows to raise it again itself
            self._state_due.discard(sid)
            self._send_alarm_state(sid)


class MonitorWorker:
    """A Ray actor body (see the module docstring). ``cfg``: the validated :class:`~pedstream.config.Config`."""

    def __init__(self, name: str, cfg: Any, model_path: str | None = None) -> None:
        self.name = name
        self.cfg = cfg
        self.model_path = model_path
        self.host = socket.gethostname()
        self._stack: contextlib.AsyncExitStack | None = None
        self._source: Any = None
        self._events: WorkerEvents | None = None
        self._publisher: Any = None
        self._presence_task: asyncio.Task | None = None
        self._t_start = time.time()

    def _presence(self, state: str) -> bytes:
        n = 0 if self._events is None else len(self._events.assigned)
        return encode_json({"worker": self.name, "state": state, "pid": os.getpid(), "host": self.host,
                            "streams": n, "t": _now_iso()})

    async def start(self) -> dict[str, Any]:
        """Reach the broker, open the model, start the engine (see the module docstring). Any domain error
        comes back as one :class:`ClusterError` naming this worker and its host (it pickles across Ray)."""
        from pedstream.errors import PedstreamError

        try:
            return await self._start()
        except ClusterError:
            raise
        except PedstreamError as exc:  # e.g. the model file is not on this node
            raise ClusterError(f"worker {self.name} on {self.host}", str(exc)) from exc

    async def _start(self) -> dict[str, Any]:
        import aiomqtt

        from pedstream.errors import StreamError as StreamFailure
        from pedstream.monitor.engine import Engine
        from pedstream.transports.mqtt.client import MQTTAuth, make_client
        from pedstream.transports.mqtt.publisher import MQTTPublisher
        from pedstream.transports.mqtt.source import MQTTSource
        from pedstream.monitor.assembly import open_model

        m = self.cfg.mqtt
        me = self
        will_topic = presence_topic(m.topic_prefix, self.name)

        class _Publisher(MQTTPublisher):  # the one publisher, with the presence Last Will
            def _new_client(self) -> aiomqtt.Client:
                return make_client(self.host, self.port, identifier=self.client_id, auth=self.auth,
                                   timeout_s=self.timeout_s, keepalive_s=self.keepalive_s,
                                   will=aiomqtt.Will(will_topic, me._presence("gone"), qos=1, retain=True))

        auth = MQTTAuth.from_section(m)
        pub = _Publisher(host=m.host, port=m.port, prefix=m.topic_prefix, timeout_s=m.timeout_s,
                         keepalive_s=m.keepalive_s, qos=1, auth=auth, reconnect=True, clear_meta_on_exit=False,
                         reconnect_max_s=min(m.reconnect_max_s, 5.0), probe_interval_s=m.probe_interval_s,
                         client_id=f"pedstream-worker-{self.name}-{os.getpid()}")
        session = open_model(self.cfg, Path(self.model_path) if self.model_path else None)
        async with contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(pub)
            except StreamFailure as exc:
                raise ClusterError(f"worker {self.name} on {self.host}",
                                   f"cannot reach the MQTT broker at {m.host}:{m.port} ({exc.reason})") from exc
            self._publisher = pub

            async def publish(topic: str, payload: bytes, retain: bool) -> None:
                await pub.publish_raw(topic, payload, retain=retain)

            self._events = WorkerEvents(worker=self.name, prefix=m.topic_prefix, publish=publish,
                                        catch_up_calls=self.cfg.alarms.onset_windows + 1)
            self._source = MQTTSource(m, events=asyncio.Queue(), streams=(), auth=auth,
                                                  client_id=f"pedstream-src-{self.name}-{os.getpid()}")
            engine = Engine(cfg=self.cfg, session=session, sources=[self._source], sinks=[self._events])
            await stack.enter_async_context(engine)
            self.engine = engine
            await pub.publish_raw(will_topic, self._presence("up"), retain=True)
            self._presence_task = asyncio.get_running_loop().create_task(self._presence_loop(), name="presence")
            stack.callback(self._presence_task.cancel)
            self._stack = stack.pop_all()
        return await self.ping()

    async def _presence_loop(self) -> None:
        topic = presence_topic(self.cfg.mqtt.topic_prefix, self.name)
        while True:
            await asyncio.sleep(self.cfg.cluster.presence_s)  # the presence refresh cadence
            if self._publisher is not None:
                await self._publisher.publish_raw(topic, self._presence("up"), retain=True)

    async def assign(self, streams: list[str], moved: dict[str, str] | None = None) -> int:
        """Monitor exactly ``streams`` from now on (see the module docstring); returns how many."""
        if self._events is None or self._source is None:
            raise ClusterError(f"worker {self.name}", "assign before start")
        new = set(streams)
        self._events.assign(new, dict(moved or {}))
        await self._source.set_streams(new)
        return len(new)

    async def ping(self) -> dict[str, Any]:
        ev = self._events
        return {"worker": self.name, "pid": os.getpid(), "host": self.host, "t_start": self._t_start,
                "streams": sorted(ev.assigned) if ev else [], "calls": ev.calls if ev else 0,
                "published": ev.published if ev else 0, "dropped": ev.dropped if ev else 0,
                "connected": bool(self._source is not None and self._source.connected.is_set())}

    async def stop(self) -> None:
        """Leave the engine and clear the retained presence (a clean stop is not a death)."""
        pub = self._publisher
        if pub is not None:
            with contextlib.suppress(Exception):
                await pub.publish_raw(presence_topic(self.cfg.mqtt.topic_prefix, self.name), b"", retain=True)
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
