"""Complete alarm lifecycles in every output, and one place for the outputs' faults.

:class:`AlarmLifecycle` turns the engine's events into the events every output sees: each
``alarm_on`` gets an ``alarm_id`` and exactly one ``alarm_off`` with the same id and an
``end_reason``: ``cleared`` (the engine's own ``alarm_off``), ``signal_lost`` (at the stream's
``signal_loss``: the alarm cannot be evaluated without signal), or ``monitoring_stopped`` (the
monitor ends while it is active). An alarm still held by the engine when the signal returns is
raised again (new ``alarm_id``, ``reason`` ``signal_restored``); the engine's later ``alarm_off`` of
an alarm already ended by a signal loss is not repeated.

:class:`Outputs` is the engine's one sink in front of the hospital-facing outputs (events file and
stdout, HL7, FHIR, MQTT, LSL markers, EDF+ recording): it enters them, passes them the completed
events, sends the ``monitoring_stopped`` ends before they close, and forwards every output's
technical alarm (``technical_alarm`` events: a full disk, an undeliverable HL7 backlog) to all the
others and to ``on_technical`` (the dashboard). A failing output is logged once and never stops the
others. :meth:`Outputs.report` collects what each output did not write or deliver.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from typing import Any, Callable, Sequence

from pedstream.events import MonitorEvent

__all__ = ["AlarmLifecycle", "Outputs", "OutputsStatus", "outputs_problem"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Open:
    alarm_id: str
    priority: str
    t_signal: float | None
    clock: str | None


class AlarmLifecycle:
    """The alarm bookkeeping of :class:`Outputs` (module docstring); pure, no I/O."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, str, str], _Open] = {}  # (stream, label, raising layer)
        self.suspended: dict[tuple[str, str, str], _Open] = {}  # ended by a signal loss, still held by the engine

    def process(self, ev: MonitorEvent) -> list[MonitorEvent]:
        key = (ev.stream, ev.label or "", str(ev.extra.get("source", "")))  # two layers may raise one label
        if ev.kind == "alarm_on":
            self.suspended.pop(key, None)
            a = self.open[key] = _Open(uuid.uuid4().hex[:16], str(ev.extra.get("priority", "none")), ev.t_signal, ev.clock)
            return [_with(ev, alarm_id=a.alarm_id)]
        if ev.kind == "alarm_off":
            if self.suspended.pop(key, None) is not None:
                return []  # already ended (signal_lost)
            a = self.open.pop(key, None)
            return [_with(ev, alarm_id=a.alarm_id if a else uuid.uuid4().hex[:16], end_reason="cleared")]
        if ev.kind == "signal_loss":
            return [ev, *self._end(ev.stream, "signal_lost", ev.t_signal, suspend=True)]
        if ev.kind == "signal_ok":
            out = [ev]
            for key2 in [k for k in self.suspended if k[0] == ev.stream]:
                old = self.suspended.pop(key2)
                a = self.open[key2] = _Open(uuid.uuid4().hex[:16], old.priority, ev.t_signal, ev.clock)
                out.append(MonitorEvent(stream=ev.stream, kind="alarm_on", label=key2[1], hr=ev.hr, t_signal=ev.t_signal,
                                        clock=ev.clock, extra={"priority": old.priority, "alarm_id": a.alarm_id,
                                                               "reason": "signal_restored", **_source(key2)}))
            return out
        return [ev]

    def close(self) -> list[MonitorEvent]:
        """The ``monitoring_stopped`` ends of every alarm still open."""
        out: list[MonitorEvent] = []
        for sid in dict.fromkeys(k[0] for k in self.open):
            out += self._end(sid, "monitoring_stopped", None, suspend=False)
        self.suspended.clear()
        return out

    def _end(self, stream: str, reason: str, t_signal: float | None, *, suspend: bool) -> list[MonitorEvent]:
        """End (and with ``suspend`` remember) every open alarm of ``stream``."""
        out = []
        for key in [k for k in self.open if k[0] == stream]:
            a = self.open.pop(key)
            if suspend:
                self.suspended[key] = a
            out.append(MonitorEvent(stream=stream, kind="alarm_off", label=key[1], t_signal=t_signal,
                                    clock=a.clock, extra={"priority": a.priority, "alarm_id": a.alarm_id,
                                                          "end_reason": reason, **_source(key)}))
        return out


def _source(key: tuple[str, str, str]) -> dict[str, str]:
    return {"source": key[2]} if key[2] else {}


def _with(ev: MonitorEvent, **extra: Any) -> MonitorEvent:
    return dataclasses.replace(ev, extra={**ev.extra, **extra})


class Outputs:
    """The engine's sink in front of ``sinks`` (module docstring)."""

    def __init__(self, sinks: Sequence[Any], *, on_technical: Callable[[MonitorEvent], None] | None = None) -> None:
        self.sinks = list(sinks)
        self.on_technical = on_technical
        self.lifecycle = AlarmLifecycle()
        self.technical: list[MonitorEvent] = []
        self._stack: contextlib.AsyncExitStack | None = None
        self._failed: set[int] = set()
        self._watched: list[Any] = []
        self.active_technical: dict[str, str] = {}  # label -> message of the technical alarms now on

    async def __aenter__(self) -> "Outputs":
        async with contextlib.AsyncExitStack() as stack:
            for sink in self.sinks:
                if hasattr(sink, "on_technical"):
                    sink.on_technical = self.report_technical
                await stack.enter_async_context(sink)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ev in self.lifecycle.close():
            self._fan(ev)
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    def watch(self, other: Any) -> None:
        """Also report the faults and counts of ``other`` (an output that is not a sink, e.g. the strip writer)."""
        if hasattr(other, "on_technical"):
            other.on_technical = self.report_technical
        self._watched.append(other)

    def emit(self, event: MonitorEvent) -> None:
        for ev in self.lifecycle.process(event):
            self._fan(ev)

    def status_source(self, events: Any) -> "OutputsStatus":
        """A do-nothing engine source sharing the queue ``events`` whose ``status_line`` shows the active
        technical alarms on the dashboard (the engine shows its sources' status lines)."""
        return OutputsStatus(self, events)

    def status_line(self) -> str | None:
        """The active technical alarms as one line, or None."""
        if not self.active_technical:
            return None
        return "TECHNICAL ALARM: " + "; ".join(f"{label}: {msg}" for label, msg in self.active_technical.items())

    def report_technical(self, event: MonitorEvent) -> None:
        """A technical alarm of one output: to every output and to ``on_technical``."""
        if event.extra.get("state") == "off":
            self.active_technical.pop(event.label or "", None)
        else:
            self.active_technical[event.label or ""] = str(event.extra.get("message", ""))
        self.technical.append(event)
        self._fan(event)
        if self.on_technical is not None:
            try:
                self.on_technical(event)
            except Exception as exc:  # the dashboard must not stop the outputs
                log.warning("technical alarm listener failed: %s", exc)

    def _fan(self, ev: MonitorEvent) -> None:
        for sink in self.sinks:
            try:
                sink.emit(ev)
            except Exception as exc:  # one failing output must not stop the others; said once per output
                if id(sink) not in self._failed:
                    self._failed.add(id(sink))
                    log.error("output %s failed: %s (further failures of it are not logged)", type(sink).__name__, exc)

    def report(self) -> dict[str, Any]:
        """What the outputs did not write or deliver: ``{"outputs": [...], "not_written": n, "undelivered": m}``."""
        rows = []
        for sink in [*self.sinks, *self._watched]:
            fn = getattr(sink, "report", None)
            r = fn() if callable(fn) else None
            if r:
                rows.append(r)
        return {"outputs": rows, "not_written": sum(int(r.get("not_written", 0)) for r in rows),
                "undelivered": sum(int(r.get("undelivered", 0)) for r in rows),
                "technical_alarms": sum(1 for e in self.technical if e.extra.get("state") == "on")}


class OutputsStatus:
    """See :meth:`Outputs.status_source`: no streams, no task, only a status line."""

    def __init__(self, outputs: Outputs, events: Any) -> None:
        self.outputs = outputs
        self.events = events  # the queue of another source: no ingest task of its own

    async def __aenter__(self) -> "OutputsStatus":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def status_line(self) -> str | None:
        return self.outputs.status_line()


def outputs_problem(report: dict[str, Any] | None) -> str | None:
    """One line saying what the outputs did not write or deliver (None when everything went out)."""
    if not report or not (report.get("not_written") or report.get("undelivered")):
        return None
    parts = []
    for r in report.get("outputs", []):
        if r.get("not_written"):
            what = "strip(s)" if r["output"] == "strips" else "line(s)"
            parts.append(f"{r['output']}: {r['not_written']} {what} not written to {r.get('path')}"
                         + (f" ({r['fault']})" if r.get("fault") else ""))
        if r.get("undelivered"):
            parts.append(f"{r['output']}: {r['undelivered']} message(s) undelivered (kept in {r.get('path')})")
    return "outputs incomplete: " + "; ".join(parts)
