"""HL7 v2.6 messages of the monitor: ``ORU^R40`` alarms (IHE PCD-04 *Report Alarm*) and ``ORU^R01``
observations (IHE PCD-01 *Communicate PCD Data*), and their strict check with hl7apy.

Every message has ``MSH`` (v2.6, the IHE profile in MSH-21, a unique MSH-10 control id), ``PID``
(PID-3 the stream id as patient identifier in the ``PEDSTREAM`` namespace, PID-5 an unnamed patient
``^^^^^^U``: the monitor knows no names), ``PV1`` (PV1-2 patient class from ``[hl7] patient_class``,
PV1-3 the assigned location ``[hl7] point_of_care``, its ``^`` separating point of care, room and
bed), ``OBR`` and ``OBX`` rows; every OBX carries the
device in OBX-18 (``[hl7] device_id^PEDSTREAM``) and its observation time in OBX-14 (the signal time
of the window when the stream's clock is wall time or this machine's LSL clock, else the emission
time).

Alarms (``ORU^R40``): OBR-3 is the alarm's id (the same for its onset and its end, so the alarm
manager pairs them); OBR-4 ``196616^MDC_EVT_ALARM^MDC``; OBX 1 is the event identification: OBX-3 the
MDC event code where one exists (``196648^MDC_EVT_HI`` / ``196670^MDC_EVT_LO`` for ``hr_high`` /
``hr_low``, ``199736^MDC_EVT_ECG_ATR_FIB`` for ``af_afl``, ``199798^MDC_EVT_ECG_SV_P_C`` for
``pac``/``pjc``, else ``199874^MDC_EVT_ECG_ARRHY``, arrhythmia), always with the pedstream label as
the alternate code (``99PEDSTREAM``), OBX-5 the source (heart rate or ECG rhythm), OBX-8 priority
(``PH``/``PM``/``PL``) and type (``SP``); then the heart rate (``147842^MDC_ECG_HEART_RATE^MDC``,
``264864^MDC_DIM_BEAT_PER_MIN^MDC``), the event phase (``68481^MDC_ATTR_EVENT_PHASE^MDC``:
``start``/``end``), the alarm state (``68482^MDC_ATTR_ALARM_STATE^MDC``: ``active``/``inactive``),
the end reason (local ``END_REASON``: ``cleared``, ``signal_lost``, ``monitoring_stopped``) and the
smoothed probability (local).

MDC has no codes for most pediatric rhythm classes (AVRT, AVNRT, pre-excitation...), so rhythm
values and labels stay local codes (``99PEDSTREAM``) beside the MDC codes.

hl7apy (the strict validator) has no ``ORU_R40`` structure: PCD-04 lays ``ORU^R40`` out on the
``ORU_R01`` abstract message (MSH, PID, PV1, OBR, OBX...), so :func:`validate_strict` checks an
``ORU^R40`` against hl7apy's v2.6 ``ORU_R01`` grammar (segments, cardinality, data types, lengths).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any

from pedstream.events import MonitorEvent
from pedstream.config import HL7Section

__all__ = ["build_oru_r40", "build_oru_r01", "oru_r40_text", "oru_r01_text", "validate_strict", "message_id", "alarm_codes", "HL7_VERSION"]

CR = "\r"
LOCAL = "99PEDSTREAM"
HL7_VERSION = "2.6"
HR_CODE = "147842^MDC_ECG_HEART_RATE^MDC"
BPM = "264864^MDC_DIM_BEAT_PER_MIN^MDC"
_PRIORITY_FLAG = {"high": "PH", "medium": "PM", "advisory": "PL", "none": "PN"}
# MDC event codes (ISO/IEEE 11073-10101 partition 3: 196608 + term code) of the alarms that have one
_MDC_EVENT = {
    "hr_high": ("196648", "MDC_EVT_HI"),
    "hr_low": ("196670", "MDC_EVT_LO"),
    "af_afl": ("199736", "MDC_EVT_ECG_ATR_FIB"),
    "pac": ("199798", "MDC_EVT_ECG_SV_P_C"),
    "pjc": ("199798", "MDC_EVT_ECG_SV_P_C"),
}
_ARRHY = ("199874", "MDC_EVT_ECG_ARRHY")


def _esc(value: Any) -> str:
    """HL7 escaping of a field value (the default encoding characters |^~\\&)."""
    text = "" if value is None else str(value)
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("~", "\\R\\")
    return out.replace("&", "\\T\\").replace("\r", " ").replace("\n", " ")


def _ts(when: datetime) -> str:
    """HL7 DTM with milliseconds and offset: 20250101120000.123+0000."""
    return when.strftime("%Y%m%d%H%M%S.") + f"{when.microsecond // 1000:03d}" + when.strftime("%z")


def _event_time(ev: MonitorEvent) -> datetime:
    """The observation time: the signal time when it is wall-clock time (MQTT/replay publishers stamp
    Unix time) or on this machine's LSL clock (liblsl's ``local_clock`` is the monotonic clock, mapped
    to wall time here), else the emission time."""
    if ev.t_signal is not None:
        t = float(ev.t_signal)
        if ev.clock in ("mqtt", "replay", "python") and 1e9 < t < 1e11:
            return datetime.fromtimestamp(t, tz=timezone.utc)
        if ev.clock == "lsl" and -86_400.0 < t - time.monotonic() < 60.0:
            return datetime.fromtimestamp(time.time() - (time.monotonic() - t), tz=timezone.utc)
    try:
        return datetime.fromisoformat(ev.t)
    except (TypeError, ValueError):
        return datetime.now(timezone.utc)


def message_id() -> str:
    """A fresh MSH-10 control id (20 hex characters)."""
    return uuid.uuid4().hex[:20]


def alarm_codes(label: str) -> tuple[str, str]:
    """(OBX-3 event identification CWE, OBX-5 source CWE) of an alarm label."""
    code, name = _MDC_EVENT.get(label, _ARRHY)
    event = f"{code}^{name}^MDC^{_esc(label)}^{_esc(label.replace('_', ' '))}^{LOCAL}"
    source = HR_CODE if label in ("hr_high", "hr_low") else f"RHYTHM^Rhythm call^{LOCAL}"
    return event, source


def _msh(cfg: HL7Section, kind: str, profile: str, control_id: str, when: datetime) -> str:
    return "|".join(["MSH", "^~\\&", _esc(cfg.sending_application), _esc(cfg.sending_facility),
                     _esc(cfg.receiving_application), _esc(cfg.receiving_facility), _ts(when), "", kind,
                     control_id, "P", HL7_VERSION, "", "", "NE", "AL", "", "UNICODE UTF-8", "", "", profile])


def _patient(cfg: HL7Section, stream: str) -> list[str]:
    return [f"PID|||{_esc(stream)}^^^PEDSTREAM^U||^^^^^^U",
            f"PV1||{_esc(cfg.patient_class)}|{'^'.join(_esc(c) for c in str(cfg.point_of_care).split('^'))}"]


def _obx(n: int, vtype: str, code: str, sub: str, value: str, cfg: HL7Section, when: datetime, *, units: str = "",
         flags: str = "", status: str = "F") -> str:
    device = f"{_esc(cfg.device_id)}^PEDSTREAM"
    return "|".join(["OBX", str(n), vtype, code, sub, value, units, "", flags, "", "", status, "", "", _ts(when),
                     "", "", "", device])


def _parse(text: str) -> Any:
    """The message through python-hl7's parser (the object the MLLP writer sends)."""
    import hl7

    return hl7.parse(text)


def build_oru_r40(ev: MonitorEvent, cfg: Any, *, alarm_id: str, control_id: str | None = None) -> Any:
    """The ``ORU^R40`` (IHE PCD-04 Report Alarm) message of one ``alarm_on``/``alarm_off`` event (parsed)."""
    return _parse(oru_r40_text(ev, cfg, alarm_id=alarm_id, control_id=control_id))


def oru_r40_text(ev: MonitorEvent, cfg: Any, *, alarm_id: str, control_id: str | None = None) -> str:
    """:func:`build_oru_r40` as ER7 text (what the sink sends: no parse on the event loop)."""
    when = _event_time(ev)
    control_id = control_id or message_id()
    start = ev.kind == "alarm_on"
    prio = str(ev.extra.get("priority", "none"))
    label = ev.label or "alarm"
    event_code, source = alarm_codes(label)
    segs = [
        _msh(cfg, "ORU^R40^ORU_R40", "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4^ISO", control_id, when),
        *_patient(cfg, ev.stream),
        f"OBR|1|{_esc(alarm_id)}^PEDSTREAM|{_esc(alarm_id)}^PEDSTREAM|196616^MDC_EVT_ALARM^MDC|||{_ts(when)}",
        _obx(1, "CWE", event_code, "1.0.0.0.1", source, cfg, when, flags=f"{_PRIORITY_FLAG.get(prio, 'PN')}~SP"),
    ]
    n = 2
    if ev.hr is not None:
        segs.append(_obx(n, "NM", HR_CODE, "1.0.0.0.2", f"{float(ev.hr):.0f}", cfg, when, units=BPM))
        n += 1
    segs.append(_obx(n, "ST", "68481^MDC_ATTR_EVENT_PHASE^MDC", "1.0.0.0.3", "start" if start else "end", cfg, when))
    segs.append(_obx(n + 1, "ST", "68482^MDC_ATTR_ALARM_STATE^MDC", "1.0.0.0.4", "active" if start else "inactive",
                     cfg, when))
    n += 2
    if not start:
        segs.append(_obx(n, "ST", f"END_REASON^Alarm end reason^{LOCAL}", "1.0.0.0.5",
                         _esc(ev.extra.get("end_reason", "cleared")), cfg, when))
        n += 1
    if ev.p is not None:
        segs.append(_obx(n, "NM", f"PROB^Smoothed class probability^{LOCAL}", "1.0.0.0.6", f"{float(ev.p):.3f}",
                         cfg, when))
    return CR.join(segs)


def build_oru_r01(ev: MonitorEvent, cfg: Any, *, control_id: str | None = None) -> Any:
    """The ``ORU^R01`` (IHE PCD-01) message of one ``call`` event: heart rate and rhythm call (parsed)."""
    return _parse(oru_r01_text(ev, cfg, control_id=control_id))


def oru_r01_text(ev: MonitorEvent, cfg: Any, *, control_id: str | None = None) -> str:
    """:func:`build_oru_r01` as ER7 text."""
    when = _event_time(ev)
    control_id = control_id or message_id()
    segs = [
        _msh(cfg, "ORU^R01^ORU_R01", "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO", control_id, when),
        *_patient(cfg, ev.stream),
        f"OBR|1|{control_id}^PEDSTREAM|{control_id}^PEDSTREAM|182777000^monitoring of patient^SCT|||{_ts(when)}",
    ]
    n = 1
    if ev.hr is not None:
        segs.append(_obx(n, "NM", HR_CODE, "1.0.0.1", f"{float(ev.hr):.0f}", cfg, when, units=BPM, status="R"))
        n += 1
    if ev.label is not None:
        segs.append(_obx(n, "CWE", f"RHYTHM^Rhythm call^{LOCAL}", "1.0.0.2",
                         f"{_esc(ev.label)}^{_esc(ev.label.replace('_', ' '))}^{LOCAL}", cfg, when, status="R"))
        n += 1
    if ev.p is not None:
        segs.append(_obx(n, "NM", f"PROB^Smoothed class probability^{LOCAL}", "1.0.0.3", f"{float(ev.p):.3f}",
                         cfg, when, status="R"))
    return CR.join(segs)


def validate_strict(message: Any) -> None:
    """Parse and validate ``message`` (text or python-hl7 message) with hl7apy at its STRICT level
    (raises hl7apy's ``ValidationError`` / ``ParserError``). ``ORU^R40`` is checked against the v2.6
    ``ORU_R01`` grammar (module docstring)."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    text = str(message).replace("|ORU^R40^ORU_R40|", "|ORU^R40^ORU_R01|", 1)
    parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, force_validation=True)
