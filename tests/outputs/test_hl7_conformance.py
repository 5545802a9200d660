"""Strict conformance and complete alarm lifecycles: every HL7 message type passes hl7apy's STRICT
validation, every FHIR resource validates with fhir.resources (R4B, version declared), every event
validates against the shipped JSON Schema, and every alarm that started ends (cleared, signal lost or
monitoring stopped) in every output of a real `pedstream run`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("hl7")
pytest.importorskip("hl7apy")
pytest.importorskip("fhir.resources")

from hl7apy.exceptions import ValidationError  # noqa: E402

from pedstream.config import load_config  # noqa: E402
from pedstream.outputs.hl7msg import build_oru_r01, build_oru_r40, validate_strict  # noqa: E402
from pedstream.outputs.integrations import FHIR_VERSION, device_resource, fhir_resources_for, patient_resource  # noqa: E402
from pedstream.outputs.lifecycle import AlarmLifecycle  # noqa: E402
from pedstream.events import MonitorEvent  # noqa: E402
from tests.support.helpers import events_validator  # noqa: E402
from tests.support.mllp_listener import Listener  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
X003 = ROOT / "pedstream" / "assets" / "demo_records" / "x003"
LABELS = ["vt", "hr_high", "hr_low", "af_afl", "pac", "pjc", "avrt", "avnrt", "pvc", "pvc_run"]


pytestmark = pytest.mark.usefixtures("private_state_home")  # the HL7 outbox's default place, per test


def _events() -> list[MonitorEvent]:
    """Engine-like events of every kind, through the lifecycle (which adds alarm ids and ends)."""
    life = AlarmLifecycle()
    raw = [MonitorEvent(stream="bed|7^a", kind="call", label="sinus", p=0.91, hr=121.0, extra={"window_start": 0}),
           MonitorEvent(stream="bed|7^a", kind="call", label="sinus", extra={"window_start": 1221}),
           *[MonitorEvent(stream="bed|7^a", kind="alarm_on", label=lab, p=0.8, hr=230.0,
                          extra={"priority": "high"}, t_signal=1.7e9, clock="mqtt") for lab in LABELS],
           MonitorEvent(stream="bed|7^a", kind="alarm_off", label="vt", p=0.1, hr=120.0, extra={"priority": "high"}),
           MonitorEvent(stream="bed|7^a", kind="signal_loss", extra={"reason": "timeout"}),
           MonitorEvent(stream="bed|7^a", kind="alarm_off", label="pac", extra={"priority": "high"})]
    out = [e for ev in raw for e in life.process(ev)]
    return out + life.close()


def test_every_hl7_message_type_passes_hl7apy_strict():
    cfg = load_config().hl7
    n = 0
    for ev in _events():
        if ev.kind == "call":
            msg = build_oru_r01(ev, cfg)
        elif ev.kind in ("alarm_on", "alarm_off"):
            msg = build_oru_r40(ev, cfg, alarm_id=ev.extra["alarm_id"])
        else:
            continue
        validate_strict(msg)
        n += 1
        assert str(msg.segment("MSH")[12]) == "2.6" and str(msg.segment("PID")[5]) == "^^^^^^U"
        assert all(str(o[18]).startswith("pedstream^PEDSTREAM") for o in msg.segments("OBX"))
    assert n == 2 + 2 * len(LABELS)
    on = build_oru_r40(MonitorEvent(stream="b", kind="alarm_on", label="hr_high", hr=230.0,
                                    extra={"priority": "medium"}), cfg, alarm_id="a1")
    first = on.segments("OBX")[0]
    assert str(first[3]).startswith("196648^MDC_EVT_HI^MDC") and str(first[5]).startswith("147842^MDC_ECG_HEART_RATE")
    hr = [o for o in on.segments("OBX") if str(o[3]).startswith("147842")][0]
    assert str(hr[6]) == "264864^MDC_DIM_BEAT_PER_MIN^MDC"


def test_the_validator_is_strict():
    cfg = load_config().hl7
    good = str(build_oru_r01(MonitorEvent(stream="b", kind="call", label="sinus", hr=100.0), cfg))
    with pytest.raises(ValidationError):
        validate_strict(good.replace("||^^^^^^U", "||"))  # without PID-5
    with pytest.raises(ValidationError):
        validate_strict(good.replace("\rPV1||I|", "\rPV1|||"))  # without PV1-2 (patient class)


def test_every_fhir_resource_validates_and_declares_its_version():
    from fhir.resources.R4B import get_fhir_model_class

    resources = [device_resource(), patient_resource("bed|7^a")]
    for ev in _events():
        resources += fhir_resources_for(ev)
    kinds = {r["resourceType"] for r in resources}
    assert kinds == {"Device", "Patient", "Observation", "DetectedIssue"}
    for r in resources:
        get_fhir_model_class(r["resourceType"]).model_validate(r)  # raises on an invalid resource
        assert {"system": "http://hl7.org/fhir/FHIR-version", "code": FHIR_VERSION} in r["meta"]["tag"]
    issues = [r for r in resources if r["resourceType"] == "DetectedIssue"]
    by_id: dict[str, list[str]] = {}
    for r in issues:
        by_id.setdefault(r["id"], []).append(r["status"])
        assert r["patient"]["reference"].startswith("Patient/") and r["author"]["reference"].startswith("Device/")
    assert all(v == ["preliminary", "final"] for v in by_id.values()) and len(by_id) == len(LABELS)


def test_lifecycle_ends_every_alarm_once_and_raises_it_again_when_the_signal_returns():
    life = AlarmLifecycle()
    v = events_validator()
    seq = [MonitorEvent(stream="s", kind="alarm_on", label="vt", extra={"priority": "high"}, t_signal=1.0),
           MonitorEvent(stream="s", kind="signal_loss", extra={"reason": "timeout"}, t_signal=2.0),
           MonitorEvent(stream="s", kind="signal_ok", extra={"reason": "data"}, t_signal=9.0),
           MonitorEvent(stream="s", kind="alarm_off", label="vt", extra={"priority": "high"}, t_signal=12.0),
           MonitorEvent(stream="s", kind="alarm_on", label="hr_high", extra={"priority": "medium"}, t_signal=13.0),
           MonitorEvent(stream="s", kind="signal_loss", extra={"reason": "timeout"}, t_signal=14.0),
           MonitorEvent(stream="s", kind="alarm_off", label="hr_high", extra={"priority": "medium"}, t_signal=14.5)]
    out = [e for ev in seq for e in life.process(ev)] + life.close()
    alarms = [(e.kind, e.label, e.extra.get("end_reason") or e.extra.get("reason"), e.extra["alarm_id"])
              for e in out if e.kind.startswith("alarm")]
    assert [a[:3] for a in alarms] == [("alarm_on", "vt", None), ("alarm_off", "vt", "signal_lost"),
                                       ("alarm_on", "vt", "signal_restored"), ("alarm_off", "vt", "cleared"),
                                       ("alarm_on", "hr_high", None), ("alarm_off", "hr_high", "signal_lost")]
    assert alarms[0][3] == alarms[1][3] != alarms[2][3] == alarms[3][3]  # one id per alarm episode
    for e in out:
        v.validate(e.to_dict())
    life2 = AlarmLifecycle()
    life2.process(MonitorEvent(stream="s", kind="alarm_on", label="vt", extra={"priority": "high"}))
    (end,) = life2.close()
    assert end.kind == "alarm_off" and end.extra["end_reason"] == "monitoring_stopped"


async def test_run_ends_every_alarm_in_every_output_and_every_message_is_strict(tmp_path):
    """x003 replayed to its end: the alarm active when the record ends is ended (signal lost) in the
    events, the HL7 messages (each strict-valid) and the FHIR file, with one alarm id throughout."""
    async with Listener() as lis:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pedstream.cli", "run", "--source", "replay", "--records", str(X003), "--headless",
            "--duration", "60", "--set", "replay.speed=8", "--set", "alarms.strips=false", "--hl7",
            "--set", f"hl7.port={lis.port}", "--set", "hl7.observation_interval_s=5", "--fhir", "fhir.ndjson",
            "--events", "events.jsonl", cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    v = events_validator()
    events = [json.loads(ln) for ln in (tmp_path / "events.jsonl").read_text().splitlines()]
    for ev in events:
        v.validate(ev)
    on = {e["alarm_id"] for e in events if e["kind"] == "alarm_on"}
    off = [e for e in events if e["kind"] == "alarm_off"]
    assert on and on == {e["alarm_id"] for e in off} and len(off) == len(on)
    assert any(e["end_reason"] == "signal_lost" for e in off)  # x003 ends in an alarm
    for m in lis.messages:
        validate_strict(m)
    r40 = [m for m in lis.messages if str(m.segment("MSH")[9]).startswith("ORU^R40")]
    assert {str(m.segment("OBR")[3]).split("^")[0] for m in r40} == on and len(r40) == 2 * len(on)
    assert len(set(str(m.segment("MSH")[10]) for m in lis.messages)) == len(lis.messages)
    fhir = [json.loads(ln) for ln in (tmp_path / "fhir.ndjson").read_text().splitlines()]
    issues = [r for r in fhir if r["resourceType"] == "DetectedIssue"]
    assert {r["id"] for r in issues} == on
    assert sorted(r["status"] for r in issues) == ["final"] * len(on) + ["preliminary"] * len(on)


def test_times_are_signal_times_in_hl7_and_fhir():
    """An alarm about a window 30 s ago (LSL clock = this machine's monotonic clock) or at a publisher's
    Unix time is dated at that time, not when it was sent."""
    import time
    from datetime import datetime, timezone

    cfg = load_config().hl7
    ago = MonitorEvent(stream="b", kind="alarm_on", label="vt", extra={"priority": "high", "alarm_id": "a"},
                       t_signal=time.monotonic() - 30.0, clock="lsl")
    obx14 = str(build_oru_r40(ago, cfg, alarm_id="a").segments("OBX")[0][14])
    when = datetime.strptime(obx14, "%Y%m%d%H%M%S.%f%z")
    assert abs((datetime.now(timezone.utc) - when).total_seconds() - 30.0) < 2.0
    unix = MonitorEvent(stream="b", kind="alarm_on", label="vt", extra={"priority": "high", "alarm_id": "a"},
                        t_signal=1767268800.25, clock="mqtt")
    (issue,) = fhir_resources_for(unix)
    assert issue["identifiedPeriod"]["start"].startswith("2026-01-01T12:00:00.25")
