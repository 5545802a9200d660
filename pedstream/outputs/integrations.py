"""Sinks for hospital systems: HL7 v2 over MLLP (IHE PCD-01 / PCD-04) and FHIR R4 (R4B, 4.3.0) NDJSON.

HL7: the messages are built in :mod:`pedstream.outputs.hl7msg` (``ORU^R40`` alarms laid out as IHE
PCD-04, ``ORU^R01`` observations as PCD-01, checked with hl7apy's strict validator in the tests) and
delivered by :class:`~pedstream.outputs.hl7sink.HL7Sink` through a durable SQLite outbox (``pedstream
run --hl7``; re-exported here).

:class:`FHIRSink` (``pedstream run --fhir FILE``) appends one FHIR resource per line (NDJSON,
``application/fhir+ndjson; fhirVersion=4.3``; every resource also names its version in
``meta.tag``, system ``http://hl7.org/fhir/FHIR-version``, code ``4.3.0``), each validated with
``fhir.resources`` (R4B models) before it is written:

- once per stream a ``Patient`` (identifier ``urn:pedstream:stream`` = the stream id) and once per
  run a ``Device`` (the monitor); every other resource references them (``Patient/<id>``,
  ``Device/<id>``), not only by text;
- per call, at most every ``observation_interval_s`` per stream, an ``Observation`` (category
  ``vital-signs``, LOINC 8867-4 heart rate, profile ``heartrate``, the rhythm call as a component);
- per alarm one ``DetectedIssue`` whose id is the alarm's ``alarm_id``: written at the onset
  (``status`` ``preliminary``, ``identifiedPeriod.start``, ``meta.versionId`` 1) and written again,
  same id, at its end (``final``, ``identifiedPeriod.end``, versionId 2, the end reason in
  ``detail``): the end is an update of the onset, never an unlinked second issue. ``severity`` from
  the priority.

Times are signal times where the stream's clock is wall-clock time (MQTT and replay publishers
stamp Unix time) or this machine's LSL clock (mapped to wall time), else the emission time. The file is written by a thread of its own
(:class:`~pedstream.outputs.linewriter.LineWriter`): a full or read-only disk is reported once and
retried, never stops monitoring.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from pedstream.outputs.hl7msg import build_oru_r01, build_oru_r40
from pedstream.outputs.hl7msg import _event_time
from pedstream.outputs.hl7sink import HL7Sink
from pedstream.events import MonitorEvent

__all__ = ["HL7Sink", "FHIRSink", "build_oru_r40", "build_oru_r01", "fhir_resources_for", "FHIR_VERSION"]

log = logging.getLogger(__name__)

FHIR_VERSION = "4.3.0"  # R4B, the R4-compatible release fhir.resources validates


# ------------------------------------------------------------------------------------------------- FHIR
_SEVERITY = {"high": "high", "medium": "moderate", "advisory": "low", "none": "low"}
_NS = uuid.UUID("6f1c0f64-4c0e-4d0e-9d64-706564737472")  # ids of Patient/Device from names


def _meta(version: int | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"tag": [{"system": "http://hl7.org/fhir/FHIR-version", "code": FHIR_VERSION}]}
    if version is not None:
        meta["versionId"] = str(version)
    return meta


def patient_id(stream: str) -> str:
    return uuid.uuid5(_NS, "stream:" + stream).hex


def device_id(name: str = "pedstream") -> str:
    return uuid.uuid5(_NS, "device:" + name).hex


def patient_resource(stream: str) -> dict[str, Any]:
    from fhir.resources.R4B.patient import Patient

    res = {"resourceType": "Patient", "id": patient_id(stream), "meta": _meta(),
           "identifier": [{"system": "urn:pedstream:stream", "value": stream}]}
    return json.loads(Patient.model_validate(res).model_dump_json(exclude_none=True))


def device_resource(name: str = "pedstream") -> dict[str, Any]:
    from fhir.resources.R4B.device import Device

    res = {"resourceType": "Device", "id": device_id(name), "meta": _meta(), "status": "active",
           "identifier": [{"system": "urn:pedstream:device", "value": name}],
           "deviceName": [{"name": "pedstream arrhythmia monitor (research use only, not a medical device)",
                           "type": "model-name"}]}
    return json.loads(Device.model_validate(res).model_dump_json(exclude_none=True))


def _refs(ev: MonitorEvent, device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    subject = {"reference": f"Patient/{patient_id(ev.stream)}",
               "identifier": {"system": "urn:pedstream:stream", "value": ev.stream}, "display": ev.stream}
    return subject, {"reference": f"Device/{device_id(device)}", "display": "pedstream monitor"}


def _observation(ev: MonitorEvent, device: str) -> dict[str, Any]:
    subject, dev = _refs(ev, device)
    obs: dict[str, Any] = {
        "resourceType": "Observation", "id": uuid.uuid4().hex, "status": "preliminary",
        "meta": {**_meta(), "profile": ["http://hl7.org/fhir/StructureDefinition/heartrate"]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
                 "text": "Heart rate and rhythm call"},
        "subject": subject, "effectiveDateTime": _event_time(ev).isoformat(), "device": dev,
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
    return obs


def _issue(ev: MonitorEvent, device: str, *, alarm_id: str, onset: str | None) -> dict[str, Any]:
    subject, dev = _refs(ev, device)
    prio = str(ev.extra.get("priority", "none"))
    end = ev.kind == "alarm_off"
    when = _event_time(ev).isoformat()
    reason = str(ev.extra.get("end_reason", "cleared")) if end else str(ev.extra.get("reason", "onset"))
    period = {"start": onset or when, "end": when} if end else {"start": when}
    return {
        "resourceType": "DetectedIssue", "id": alarm_id, "meta": _meta(2 if end else 1),
        "identifier": [{"system": "urn:pedstream:alarm", "value": alarm_id}],
        "status": "final" if end else "preliminary",
        "code": {"coding": [{"system": "urn:pedstream:alarm", "code": ev.label,
                             "display": (ev.label or "").replace("_", " ")}],
                 "text": f"{ev.label} alarm ({prio} priority)"},
        "severity": _SEVERITY.get(prio, "low"), "patient": subject, "identifiedPeriod": period, "author": dev,
        "detail": (f"pedstream {ev.label} alarm on stream {ev.stream}: "
                   + (f"ended ({reason})" if end else "active") + f", priority {prio}"
                   + (f", HR {ev.hr:.0f}/min" if ev.hr is not None else "")
                   + (f", p {ev.p:.2f}" if ev.p is not None else "")
                   + (f", signal time {ev.t_signal:.3f} s ({ev.clock} clock)" if ev.t_signal is not None else "")),
    }


def fhir_resources_for(ev: MonitorEvent, *, device: str = "pedstream", alarm_id: str | None = None,
                       onset: str | None = None) -> list[dict[str, Any]]:
    """The FHIR resources (JSON dicts validated with ``fhir.resources`` R4B) for one event:
    an ``Observation`` for a call, the ``DetectedIssue`` (id ``alarm_id`` or the event's own
    ``alarm_id``) for an alarm onset or end (``onset``: the start time of the issue being ended)."""
    from fhir.resources.R4B.detectedissue import DetectedIssue
    from fhir.resources.R4B.observation import Observation

    out: list[Any] = []
    if ev.kind == "call":
        out.append(Observation.model_validate(_observation(ev, device)))
    elif ev.kind in ("alarm_on", "alarm_off"):
        aid = str(alarm_id or ev.extra.get("alarm_id") or uuid.uuid4().hex[:16])
        out.append(DetectedIssue.model_validate(_issue(ev, device, alarm_id=aid, onset=onset)))
    return [json.loads(r.model_dump_json(exclude_none=True)) for r in out]


class FHIRSink:
    """FHIR R4 (4.3.0) resources as NDJSON lines appended to ``path`` (module docstring)."""

    def __init__(self, path: str | Path, *, observation_interval_s: float = 30.0, device: str = "pedstream") -> None:
        self.path = Path(path)
        self.observation_interval_s = float(observation_interval_s)
        self.device = device
        self._writer: Any = None
        self._last_obs: dict[str, float] = {}
        self._patients: set[str] = set()
        self._alarms: dict[str, tuple[str, str]] = {}  # alarm key -> (alarm id, onset time)
        self.on_technical: Any = None
        self.count = 0

    async def __aenter__(self) -> "FHIRSink":
        import fhir.resources.R4B.observation  # noqa: F401  (fail at start, not at the first event)

        from pedstream.outputs.linewriter import LineWriter

        self._writer = LineWriter(self.path, on_fault=self._fault)
        self._writer.start()
        self._write(device_resource(self.device))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            await self._writer.close()

    def _fault(self, message: str | None) -> None:
        if message is not None:
            log.error("FHIR file: %s; writing is retried", message)
        if self.on_technical is not None:
            self.on_technical(MonitorEvent(stream="pedstream", kind="technical_alarm", label="fhir_unwritable",
                                           extra={"state": "off" if message is None else "on", "output": "fhir",
                                                  "message": message or f"{self.path}: writing again"}))

    def report(self) -> dict[str, Any] | None:
        w = self._writer
        return None if w is None else {"output": "fhir", "path": str(self.path), "written": w.written,
                                       "not_written": w.not_written, "fault": w.fault, "faults": w.faults}

    def _write(self, res: dict[str, Any]) -> None:
        self._writer.write(json.dumps(res, separators=(",", ":")))
        self.count += 1

    def emit(self, event: MonitorEvent) -> None:
        if self._writer is None or event.kind not in ("call", "alarm_on", "alarm_off"):
            return
        if event.kind == "call":
            now = time.monotonic()
            last = self._last_obs.get(event.stream)
            if self.observation_interval_s <= 0 or (last is not None and now - last < self.observation_interval_s):
                return
            self._last_obs[event.stream] = now
        if event.stream not in self._patients:
            self._patients.add(event.stream)
            self._write(patient_resource(event.stream))
        # the onset of each alarm by its alarm_id (the lifecycle layer's), else by stream and label
        key = str(event.extra.get("alarm_id") or f"{event.stream}\x00{event.label}")
        alarm_id, onset = None, None
        if event.kind == "alarm_on":
            alarm_id = str(event.extra.get("alarm_id") or uuid.uuid4().hex[:16])
            self._alarms[key] = (alarm_id, _event_time(event).isoformat())
        elif event.kind == "alarm_off":
            alarm_id, onset = self._alarms.pop(key, (event.extra.get("alarm_id"), None))
        for res in fhir_resources_for(event, device=self.device, alarm_id=alarm_id, onset=onset):
            self._write(res)
