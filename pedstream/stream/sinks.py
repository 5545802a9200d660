"""Where monitor events go: JSON lines (file or stdout), MQTT, an LSL marker stream.

Every sink is an async context manager with a non-blocking ``emit(event)``; the engine enters the
sinks it is given and calls ``emit`` for every :class:`MonitorEvent`. A sink never blocks the event
loop: the file sinks write one short line and flush (cheap), the MQTT sink hands events to its own
publishing task through an unbounded queue, the LSL sink pushes one string sample (non-blocking in
liblsl).

The JSON line format (one object per line, schema version :data:`SCHEMA_VERSION`)::

    {"schema_version": 2, "t": "2025-01-01T12:00:00.123456+00:00", "t_signal": 1735732800.125,
     "clock": "lsl", "stream": "sim001", "kind": "call", "label": "sinus", "p": 0.93, "hr": 112.4,
     "latency_ms": 18.2}

``t`` is the wall-clock time the event was emitted (UTC). ``t_signal`` is the signal time the event
is about, in seconds on the source's clock (``clock``: ``lsl`` = LSL's ``local_clock`` after time
correction, the clock of an XDF recording; ``mqtt`` / ``replay`` = the publisher's clock, from the
payload's ``t``; ``python`` = the clock of :meth:`pedstream.Monitor.push`): for a call the start of
its window (``t_signal_end`` its end), for an alarm the start of the window that raised or cleared
it, for a beat the R peak, for ``signal_loss``/``signal_ok`` the last sample received; ``null``
when unknown. Version 1 (before ``schema_version`` existed) had no ``t_signal``/``clock``.

``kind`` is one of ``call``, ``alarm_on``, ``alarm_off``, ``signal_loss``, ``signal_ok``,
``error`` and, with a beat model, ``beat`` (one per classified beat: ``label`` the AAMI class, ``p``,
``beat_t``, ``pre_rr_s``, ``post_rr_s``, ``pvc_per_min``, ``pac_per_min``; calls then also carry
``pvc_per_min``/``pac_per_min``). ``p``/``hr``/``latency_ms`` are ``null`` when they do not apply; ``latency_ms`` is the
time from receiving the last sample of the classified window to emitting the call (monotonic
clock). Alarm events add ``priority``; calls add ``window_start`` (sample index at the model rate);
errors add ``message``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

__all__ = [
    "SCHEMA_VERSION",
    "EventKind",
    "MonitorEvent",
    "Sink",
    "JsonLinesSink",
    "MQTTSink",
    "LSLMarkerSink",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

EventKind = Literal["call", "beat", "alarm_on", "alarm_off", "signal_loss", "signal_ok", "error"]


@dataclass(slots=True)
class MonitorEvent:
    """One event of the monitor (see the module docstring for the JSON form)."""

    stream: str
    kind: EventKind
    label: str | None = None
    p: float | None = None
    hr: float | None = None
    latency_ms: float | None = None
    t: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    extra: dict[str, Any] = field(default_factory=dict)
    t_signal: float | None = None  # seconds on the source clock (see the module docstring)
    clock: str | None = None  # "lsl" | "mqtt" | "replay" | "python": whose clock t_signal is on

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "t": self.t,
            "t_signal": None if self.t_signal is None else round(float(self.t_signal), 6),
            "clock": self.clock,
            "stream": self.stream,
            "kind": self.kind,
            "label": self.label,
            "p": None if self.p is None else round(float(self.p), 4),
            "hr": None if self.hr is None else round(float(self.hr), 1),
            "latency_ms": None if self.latency_ms is None else round(float(self.latency_ms), 2),
        }
        d.update(self.extra)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


class Sink(Protocol):
    async def __aenter__(self) -> "Sink": ...

    async def __aexit__(self, *exc: object) -> bool | None: ...

    def emit(self, event: MonitorEvent) -> None: ...


class JsonLinesSink:
    """Append events as JSON lines to ``path`` (or write them to ``stream``, e.g. stdout), flushing
    after each event so that ``tail -f`` and crashed runs see every line."""

    def __init__(self, path: Path | str | None = None, *, stream: TextIO | None = None) -> None:
        if (path is None) == (stream is None):
            raise ValueError("JsonLinesSink needs exactly one of path or stream")
        self.path = None if path is None else Path(path)
        self._stream = stream
        self._fh: TextIO | None = None
        self.count = 0

    async def __aenter__(self) -> "JsonLinesSink":
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")
        else:
            self._fh = self._stream
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.path is not None and self._fh is not None:
            self._fh.close()
        self._fh = None

    def emit(self, event: MonitorEvent) -> None:
        if self._fh is None:
            return
        self._fh.write(event.to_json() + "\n")
        self._fh.flush()
        self.count += 1

    @classmethod
    def stdout(cls) -> "JsonLinesSink":
        return cls(stream=sys.stdout)


class MQTTSink:
    """Publish events (JSON) to ``<prefix>/<stream_id>/rhythm`` with aiomqtt (MQTT v5, QoS 0).

    Publishing runs in its own task; ``emit`` only enqueues. Connection problems are logged and
    retried with backoff; events that arrive while disconnected are kept up to ``max_pending``. On
    exit the events still queued are published first (at most ``drain_s`` seconds, and only while
    connected), so a run's last events reach the broker.
    """

    def __init__(self, *, host: str, port: int, prefix: str = "pedstream/v1", max_pending: int = 10000,
                 drain_s: float = 2.0, auth: Any = None, timeout_s: float = 5.0) -> None:
        """``auth``: :class:`~pedstream.stream.sources.mqtt.MQTTAuth` (the ``[mqtt]`` credentials and TLS,
        the same as the source's); the client is built by the source's ``make_client``."""
        self.host, self.port, self.prefix = host, port, prefix.rstrip("/")
        self.auth, self.timeout_s = auth, float(timeout_s)
        self.drain_s = float(drain_s)
        self._queue: asyncio.Queue[MonitorEvent] = asyncio.Queue(maxsize=max_pending)
        self._task: asyncio.Task | None = None
        self.published = 0
        self.dropped = 0
        self.connected = asyncio.Event()

    async def __aenter__(self) -> "MQTTSink":
        self._task = asyncio.create_task(self._run(), name="sink-mqtt")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None and self.connected.is_set() and self.drain_s > 0:
            try:
                await asyncio.wait_for(self._queue.join(), self.drain_s)
            except TimeoutError:
                log.warning("MQTT sink: %d events not published at exit", self._queue.qsize())
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def emit(self, event: MonitorEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _run(self) -> None:
        import aiomqtt

        from pedstream.stream.sources.mqtt import make_client

        backoff = 0.2
        while True:
            try:
                async with make_client(self.host, self.port, identifier=None, auth=self.auth,
                                       timeout_s=self.timeout_s) as client:
                    self.connected.set()
                    backoff = 0.2
                    while True:
                        ev = await self._queue.get()
                        try:
                            await client.publish(f"{self.prefix}/{ev.stream}/rhythm", ev.to_json(), qos=0,
                                                 timeout=self.timeout_s)
                            self.published += 1
                        finally:
                            self._queue.task_done()
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                log.warning("MQTT sink %s:%d: %s (retrying in %.1f s)", self.host, self.port, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


class LSLMarkerSink:
    """An LSL marker outlet (type ``Markers``, one string channel, irregular rate) carrying each event
    as its JSON line. Each marker is stamped with the event's signal time when that is on the LSL
    clock (``clock == "lsl"``: the stream came in over LSL), so in an XDF recording it sits at the
    window it describes (a call at its window's end, when the call became possible); other events
    are stamped when pushed. LSL is configured with ``pedstream.stream.lslconfig`` (the safe
    machine-only defaults if nobody did). LSL has no flush: on exit the outlet stays open
    ``linger_s`` seconds when an inlet is connected, so the last events reach it."""

    def __init__(self, *, name: str = "pedstream-events", source_id: str | None = None, linger_s: float = 0.3) -> None:
        self.name, self.source_id = name, source_id or name
        self.linger_s = float(linger_s)
        self._outlet: Any = None
        self.count = 0

    async def __aenter__(self) -> "LSLMarkerSink":
        from pedstream.stream.lslconfig import ensure_lsl_configured

        ensure_lsl_configured()
        import pylsl

        info = pylsl.StreamInfo(self.name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, self.source_id)
        self._outlet = pylsl.StreamOutlet(info)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._outlet is not None and self.linger_s > 0 and self._outlet.have_consumers():
            await asyncio.sleep(self.linger_s)  # LSL has no flush: let the last samples reach the inlets
        self._outlet = None

    def emit(self, event: MonitorEvent) -> None:
        if self._outlet is not None:
            stamp = marker_timestamp(event)
            if stamp is None:
                self._outlet.push_sample([event.to_json()])
            else:
                self._outlet.push_sample([event.to_json()], stamp)
            self.count += 1


def marker_timestamp(event: MonitorEvent) -> float | None:
    """The LSL timestamp of ``event``'s marker: its signal time on the LSL clock (a call's window end),
    or ``None`` (stamp when pushed) when the event's time is not on the LSL clock."""
    if event.clock != "lsl" or event.t_signal is None:
        return None
    end = event.extra.get("t_signal_end")
    return float(end if isinstance(end, (int, float)) else event.t_signal)
