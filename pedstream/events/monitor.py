"""Monitor events (:class:`MonitorEvent`) and what a sink is (:class:`Sink`). The JSON lines sink (file or
stdout) is :class:`pedstream.outputs.jsonlines.JsonLinesSink`; the transports' sinks live with their transport: :class:`pedstream.transports.mqtt.publisher.MQTTSink` (``--publish-mqtt``)
and :class:`pedstream.transports.lsl.outlet.LSLMarkerSink` (``--lsl-markers``).

Every sink is an async context manager with a non-blocking ``emit(event)``; the engine enters the
sinks it is given and calls ``emit`` for every :class:`MonitorEvent`. A sink never blocks the event
loop: the file sinks write one short line and flush (cheap), the MQTT sink hands events to its own
publishing task through a bounded queue, the LSL sink pushes one string sample (non-blocking in
liblsl).

The JSON line format (one object per line, schema version :data:`SCHEMA_VERSION`)::

    {"schema_version": 3, "t": "2025-01-01T12:00:00.123456+00:00", "t_signal": 1735732800.125,
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
``error``, ``technical_alarm`` and, with a beat model, ``beat`` (one per classified beat: ``label`` the AAMI class, ``p``,
``beat_t``, ``pre_rr_s``, ``post_rr_s``, ``pvc_per_min``, ``pac_per_min``; calls then also carry
``pvc_per_min``/``pac_per_min``). ``p``/``hr``/``latency_ms`` are ``null`` when they do not apply; ``latency_ms`` is the
time from receiving the last sample of the classified window to emitting the call (monotonic
clock). Alarm events add ``priority``; calls add ``window_start`` (sample index at the model rate);
errors add ``message``. Replays of records: calls and alarms add ``record``, ``record_s`` and
``record_sample`` (the place in the record, :func:`pedstream.transports.replay.record_position`), calls of
annotated records ``truth`` and ``truth_source`` (``rhythm`` | ``beats``: :mod:`pedstream.monitor.reference`).

Version 4 (the alarm lifecycle, :mod:`pedstream.outputs.lifecycle`): every alarm event carries
``alarm_id`` (the same for an alarm's onset and its end); every ``alarm_on`` gets exactly one
``alarm_off`` whose ``end_reason`` says why it ended: ``cleared`` (the condition is over),
``signal_lost`` (the stream's signal was lost: the alarm cannot be evaluated; if it still holds
when the signal returns, a new ``alarm_on`` with ``reason`` ``signal_restored`` follows) or
``monitoring_stopped`` (the monitor ended with the alarm active). ``hr_high``/``hr_low`` alarms carry
``detail`` (the limit crossed, as text). ``technical_alarm`` events (``stream`` ``pedstream``) report a
fault of an output: ``label`` what (``hl7_undeliverable``, ``hl7_outbox``, ``events_unwritable``,
``strips_unwritable``, ``fhir_unwritable``, ``recording_unwritable``), ``state`` ``on``/``off``,
``output``, ``message``. Version 5: ``beat_label`` events (a clinician's beat label applied, undone or
unmatched) and the ectopy patterns of beat events (couplets, runs, bigeminy/trigeminy). The JSON Schema
of the events is shipped in the package: ``pedstream/schemas/events.schema.json`` (:func:`event_schema`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Protocol

__all__ = ["SCHEMA_VERSION", "EventKind", "MonitorEvent", "Sink", "event_schema"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 5  # 3: call events may carry "truth"; 4: alarm lifecycle, technical_alarm; 5: beat_label, ectopy patterns

EventKind = Literal["call", "beat", "alarm_on", "alarm_off", "signal_loss", "signal_ok", "error", "technical_alarm",
                    "rhythm", "alarm_ack", "alarm_silence", "alarm_resound", "beat_label"]


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


def event_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one event line, shipped as ``pedstream/schemas/events.schema.json``."""
    from importlib import resources

    return json.loads((resources.files("pedstream") / "schemas" / "events.schema.json").read_text(encoding="utf-8"))
