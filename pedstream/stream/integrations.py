"""Sinks for hospital systems: HL7 v2 over MLLP (IHE PCD-01 / PCD-04) and FHIR R4 NDJSON.

:class:`HL7Sink` (``pedstream run --hl7``, ``[hl7]``) sends

- every alarm transition (``alarm_on`` / ``alarm_off``) as an ``ORU^R40`` message laid out as the IHE
  PCD-04 *Report Alarm* transaction: ``MSH`` (profile ``IHE_PCD_ACM_001``), ``PID`` (the stream id
  as patient identifier), ``OBR`` (the alarm's unique id, filler order number, and its onset
  time), then ``OBX`` rows: the event identification under ``196616^MDC_EVT_ALARM^MDC`` (value: the
  alarm label as a local ``99PEDSTREAM`` code; OBX-8 the PCD-04 abnormal flags: priority ``PH`` /
  ``PM`` / ``PL`` and type ``SP`` physiological), the heart rate ``147842^MDC_ECG_HEART_RATE^MDC``
  in ``/min``, the event phase ``68481^MDC_ATTR_EVENT_PHASE^MDC`` (``start`` / ``end``) and the
  alarm state ``68482^MDC_ATTR_ALARM_STATE^MDC`` (``active`` / ``inactive``);
- each stream's rhythm call and heart rate at most every ``observation_interval_s`` as an
  ``ORU^R01`` (PCD-01 *Communicate PCD Data*, profile ``IHE_PCD_001``): ``OBX`` heart rate (MDC) and
  rhythm (local code ``RHYTHM^Rhythm call^99PEDSTREAM``, value the class, with its probability).

MDC has no codes for most pediatric rhythm classes (AVRT, AVNRT, pre-excitation...), so rhythm and
alarm labels are local codes (``99PEDSTREAM``); the MDC codes used are the heart rate and the
PCD-04 alarm attributes. Messages are built and checked with the ``hl7`` package (python-hl7:
segment structure, escaping, ``create_ack``) and sent with its asyncio MLLP streams; every message
waits for its ACK (``AA``/``CA``; anything else is logged and counted as rejected). The sink never
blocks the engine: ``emit`` queues, a task sends; while the receiver is away messages wait (at most
``max_pending``, then the oldest go, counted) and the task reconnects with backoff.

:class:`FHIRSink` (``pedstream run --fhir FILE``) appends one FHIR R4 resource per line (NDJSON):
an ``Observation`` (category ``vital-signs``, LOINC 8867-4 heart rate, the rhythm call as a
component) per call at most every ``observation_interval_s`` per stream, and a ``DetectedIssue``
(the R4 resource for a clinical alert; R4 has no DeviceAlert) per alarm onset and end (``status``
``preliminary`` while active, ``final`` when it ended; ``severity`` from the priority). Every
resource is validated with ``fhir.resources`` (R4B models, the R4-compatible release) before it
is written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from pedstream.stream.sinks import MonitorEvent

__all__ = ["HL7Sink", "FHIRSink", "build_oru_r40", "build_oru_r01", "fhir_resources_for"]

log = logging.getLogger(__name__)

CR = "\r"
LOCAL = "99PEDSTREAM"
_PRIORITY_FLAG = {"high": "PH", "medium": "PM", "advisory": "PL", "none": "PN"}


def _esc(value: Any) -> str:
    """HL7 escaping of a field value (the default encoding characters |^~\\&)."""
    text = "" if value is None else str(value)
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("~", "\\R\\")
    return out.replace("&", "\\T\\").replace("\r", " ").replace("\n", " ")


def _ts(when: datetime) -> str:
    """HL7 DTM with milliseconds and offset: 20250101120000.123+0000."""
    return when.strftime("%Y%m%d%H%M%S.") + f"{when.microsecond // 1000:03d}" + when.strftime("%z")


def _event_time(ev: MonitorEvent) -> datetime:
    try:
        return datetime.fromisoformat(ev.t)
    except (TypeError, ValueError):
        return datetime.now(timezone.utc)


def _msh(cfg: Any, kind: str, profile: str, control_id: str, when: datetime) -> str:
    return "|".join(["MSH", "^~\\&", _esc(cfg.sending_application), _esc(cfg.sending_facility),
                     _esc(cfg.receiving_application), _esc(cfg.receiving_facility), _ts(when), "", kind,
                     control_id, "P", "2.6", "", "", "NE", "AL", "", "UNICODE UTF-8", "", "", profile])


def _pid(stream: str) -> str:
    return f"PID|||{_esc(stream)}^^^PEDSTREAM^U"


def _parse(text: str) -> Any:
    """The message through python-hl7's parser: a structural check (and the object to send)."""
    import hl7

    msg = hl7.parse(text)
    if str(msg.segment("MSH")[9]).split("^")[0] != "ORU":
        raise ValueError("not an ORU message")  # pragma: no cover - our own builder
    return msg


def build_oru_r40(ev: MonitorEvent, cfg: Any, *, alarm_id: str, control_id: str | None = None) -> Any:
    """The ``ORU^R40`` (IHE PCD-04 Report Alarm) message of one ``alarm_on``/``alarm_off`` event."""
    when = _event_time(ev)
    control_id = control_id or uuid.uuid4().hex[:20]
    start = ev.kind == "alarm_on"
    prio = str(ev.extra.get("priority", "none"))
    label = ev.label or "alarm"
    segs = [
        _msh(cfg, "ORU^R40^ORU_R40", "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4^ISO", control_id, when),
        _pid(ev.stream),
        f"OBR|1|{_esc(alarm_id)}^PEDSTREAM|{_esc(alarm_id)}^PEDSTREAM|196616^MDC_EVT_ALARM^MDC|||{_ts(when)}",
        "|".join(["OBX", "1", "CWE", "196616^MDC_EVT_ALARM^MDC", "1.0.0.0.1",
                  f"{_esc(label)}^{_esc(label.replace('_', ' '))}^{LOCAL}", "", "",
                  f"{_PRIORITY_FLAG.get(prio, 'PN')}~SP", "", "", "F", "", "", _ts(when)]),
    ]
    n = 2
    if ev.hr is not None:
        segs.append("|".join(["OBX", str(n), "NM", "147842^MDC_ECG_HEART_RATE^MDC", "1.0.0.0.2",
                              f"{float(ev.hr):.0f}", "264864^/min^MDC", "", "", "", "", "F", "", "", _ts(when)]))
        n += 1
    segs.append("|".join(["OBX", str(n), "ST", "68481^MDC_ATTR_EVENT_PHASE^MDC", "1.0.0.0.3",
                          "start" if start else "end", "", "", "", "", "", "F"]))
    segs.append("|".join(["OBX", str(n + 1), "ST", "68482^MDC_ATTR_ALARM_STATE^MDC", "1.0.0.0.4",
                          "active" if start else "inactive", "", "", "", "", "", "F"]))
    if ev.p is not None:
        segs.append("|".join(["OBX", str(n + 2), "NM", f"PROB^Smoothed class probability^{LOCAL}", "1.0.0.0.5",
                              f"{float(ev.p):.3f}", "", "", "", "", "", "F"]))
    return _parse(CR.join(segs))


def build_oru_r01(ev: MonitorEvent, cfg: Any, *, control_id: str | None = None) -> Any:
    """The ``ORU^R01`` (IHE PCD-01) message of one ``call`` event: heart rate and rhythm call."""
    when = _event_time(ev)
    control_id = control_id or uuid.uuid4().hex[:20]
    segs = [
        _msh(cfg, "ORU^R01^ORU_R01", "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO", control_id, when),
        _pid(ev.stream),
        f"OBR|1|{control_id}^PEDSTREAM|{control_id}^PEDSTREAM|182777000^monitoring of patient^SCT|||{_ts(when)}",
    ]
    n = 1
    if ev.hr is not None:
        segs.append("|".join(["OBX", str(n), "NM", "147842^MDC_ECG_HEART_RATE^MDC", "1.0.0.1",
                              f"{float(ev.hr):.0f}", "264864^/min^MDC", "", "", "", "", "R", "", "", _ts(when)]))
        n += 1
    if ev.label is not None:
        segs.append("|".join(["OBX", str(n), "CWE", f"RHYTHM^Rhythm call^{LOCAL}", "1.0.0.2",
                              f"{_esc(ev.label)}^{_esc(ev.label.replace('_', ' '))}^{LOCAL}", "", "", "", "", "",
                              "R", "", "", _ts(when)]))
        n += 1
    if ev.p is not None:
        segs.append("|".join(["OBX", str(n), "NM", f"PROB^Smoothed class probability^{LOCAL}", "1.0.0.3",
                              f"{float(ev.p):.3f}", "", "", "", "", "", "R", "", "", _ts(when)]))
    return _parse(CR.join(segs))


class HL7Sink:
    """Alarms and periodic observations as HL7 v2 over MLLP to ``[hl7] host:port`` (module docstring)."""

    def __init__(self, *, cfg: Any, drain_s: float = 3.0) -> None:
        self.cfg = cfg
        self.drain_s = float(drain_s)
        self._pending: deque[Any] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._last_obs: dict[str, float] = {}
        self._alarm_ids: dict[tuple[str, str], str] = {}
        self.sent = 0
        self.acked = 0
        self.rejected = 0
        self.dropped = 0
        self.connected = asyncio.Event()

    async def __aenter__(self) -> "HL7Sink":
        self._task = asyncio.create_task(self._run(), name="sink-hl7")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is None:
            return
        deadline = time.monotonic() + self.drain_s
        while self._pending and self.connected.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # let the sender finish what is queued (bounded by drain_s)
        if self._pending:
            log.warning("HL7 sink: %d messages not sent at exit", len(self._pending))
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    def emit(self, event: MonitorEvent) -> None:
        msg = None
        try:
            if event.kind in ("alarm_on", "alarm_off"):
                key = (event.stream, event.label or "")
                if event.kind == "alarm_on":
                    self._alarm_ids[key] = uuid.uuid4().hex[:16]
                alarm_id = self._alarm_ids.pop(key, None) if event.kind == "alarm_off" else self._alarm_ids[key]
                msg = build_oru_r40(event, self.cfg, alarm_id=alarm_id or uuid.uuid4().hex[:16])
            elif event.kind == "call" and self.cfg.observation_interval_s > 0:
                now = time.monotonic()
                last = self._last_obs.get(event.stream)
                if last is None or now - last >= self.cfg.observation_interval_s:
                    self._last_obs[event.stream] = now
                    msg = build_oru_r01(event, self.cfg)
        except Exception as exc:  # a message we cannot build must not stop monitoring
            log.warning("HL7 sink: cannot build a message for %s %s: %s", event.stream, event.kind, exc)
            return
        if msg is None:
            return
        if len(self._pending) >= self.cfg.max_pending:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(msg)
        self._wake.set()

    async def _run(self) -> None:
        import hl7.mllp

        backoff = 0.2
        while True:
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can lose a cancellation that
                # races with completion (the task then outlives its cancel)
                async with asyncio.timeout(self.cfg.timeout_s):
                    reader, writer = await hl7.mllp.open_hl7_connection(self.cfg.host, self.cfg.port)
            except (OSError, TimeoutError) as exc:
                self.connected.clear()
                log.warning("HL7 sink %s:%d: %s (retrying in %.1f s)", self.cfg.host, self.cfg.port, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            self.connected.set()
            backoff = 0.2
            try:
                while True:
                    while not self._pending:
                        self._wake.clear()
                        await self._wake.wait()
                    msg = self._pending[0]
                    writer.writemessage(msg)
                    await writer.drain()
                    async with asyncio.timeout(self.cfg.timeout_s):
                        ack = await reader.readmessage()
                    self._pending.popleft()
                    self.sent += 1
                    code = str(ack.segment("MSA")[1])
                    if code in ("AA", "CA"):
                        self.acked += 1
                    else:
                        self.rejected += 1
                        log.warning("HL7 sink: message %s answered %s", msg.segment("MSH")[10], code)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, KeyError) as exc:
                self.connected.clear()
                log.warning("HL7 sink %s:%d: %s (reconnecting)", self.cfg.host, self.cfg.port, exc)
                writer.close()
                await asyncio.sleep(backoff)


# ------------------------------------------------------------------------------------------------- FHIR
_SEVERITY = {"high": "high", "medium": "moderate", "advisory": "low", "none": "low"}


def _device_ref() -> dict[str, str]:
    return {"display": "pedstream arrhythmia monitor (research use only, not a medical device)"}


def fhir_resources_for(ev: MonitorEvent) -> list[dict[str, Any]]:
    """The FHIR R4 resources (as JSON dicts, validated with ``fhir.resources``) for one event."""
    from fhir.resources.R4B.detectedissue import DetectedIssue
    from fhir.resources.R4B.observation import Observation

    when = _event_time(ev).isoformat()
    subject = {"identifier": {"system": "urn:pedstream:stream", "value": ev.stream}}
    out: list[Any] = []
    if ev.kind == "call":
        obs: dict[str, Any] = {
            "resourceType": "Observation", "id": uuid.uuid4().hex, "status": "preliminary",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs", "display": "Vital Signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
                     "text": "Heart rate and rhythm call"},
            "subject": subject, "effectiveDateTime": when, "device": _device_ref(),
            "component": [{"code": {"coding": [{"system": "urn:pedstream:code", "code": "rhythm",
                                                "display": "Rhythm call"}]},
                           "valueCodeableConcept": {"coding": [{"system": "urn:pedstream:rhythm", "code": ev.label,
                                                                "display": (ev.label or "").replace("_", " ")}]}}],
        }
        if ev.hr is not None:
            obs["valueQuantity"] = {"value": round(float(ev.hr), 1), "unit": "/min",
                                    "system": "http://unitsofmeasure.org", "code": "/min"}
        else:
            obs["dataAbsentReason"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                                   "code": "not-performed"}]}
        if ev.p is not None:
            obs["component"].append({"code": {"coding": [{"system": "urn:pedstream:code", "code": "probability"}]},
                                     "valueQuantity": {"value": round(float(ev.p), 4), "unit": "1",
                                                       "system": "http://unitsofmeasure.org", "code": "1"}})
        out.append(Observation.model_validate(obs))
    elif ev.kind in ("alarm_on", "alarm_off"):
        prio = str(ev.extra.get("priority", "none"))
        issue = {
            "resourceType": "DetectedIssue", "id": uuid.uuid4().hex,
            "status": "preliminary" if ev.kind == "alarm_on" else "final",
            "code": {"coding": [{"system": "urn:pedstream:alarm", "code": ev.label,
                                 "display": (ev.label or "").replace("_", " ")}],
                     "text": f"{ev.label} alarm {'onset' if ev.kind == 'alarm_on' else 'ended'} ({prio} priority)"},
            "severity": _SEVERITY.get(prio, "low"), "patient": subject, "identifiedDateTime": when,
            "author": _device_ref(),
            "detail": (f"pedstream {ev.kind} {ev.label} on stream {ev.stream}: priority {prio}"
                       + (f", HR {ev.hr:.0f}/min" if ev.hr is not None else "")
                       + (f", p {ev.p:.2f}" if ev.p is not None else "")
                       + (f", signal time {ev.t_signal:.3f} s ({ev.clock} clock)" if ev.t_signal is not None else "")),
        }
        out.append(DetectedIssue.model_validate(issue))
    return [json.loads(r.model_dump_json(exclude_none=True)) for r in out]


class FHIRSink:
    """FHIR R4 resources as NDJSON lines appended to ``path`` (module docstring)."""

    def __init__(self, path: str | Path, *, observation_interval_s: float = 30.0) -> None:
        self.path = Path(path)
        self.observation_interval_s = float(observation_interval_s)
        self._fh: TextIO | None = None
        self._last_obs: dict[str, float] = {}
        self.count = 0

    async def __aenter__(self) -> "FHIRSink":
        import fhir.resources.R4B.observation  # noqa: F401  (fail at start, not at the first event)

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()
        self._fh = None

    def emit(self, event: MonitorEvent) -> None:
        if self._fh is None:
            return
        if event.kind == "call":
            now = time.monotonic()
            last = self._last_obs.get(event.stream)
            if self.observation_interval_s <= 0 or (last is not None and now - last < self.observation_interval_s):
                return
            self._last_obs[event.stream] = now
        for res in fhir_resources_for(event):
            self._fh.write(json.dumps(res, separators=(",", ":")) + "\n")
            self.count += 1
        self._fh.flush()
