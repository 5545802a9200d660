"""HL7 v2 over MLLP (IHE PCD-04 ORU^R40 alarms, PCD-01 ORU^R01 observations), FHIR R4 NDJSON and EDF+
recording: a real MLLP listener on 127.0.0.1 parses what arrives; `pedstream run` end to end."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import numpy as np
import pytest

hl7 = pytest.importorskip("hl7")  # the integrations extra (make test installs it)
pyedflib = pytest.importorskip("pyedflib")
pytest.importorskip("fhir.resources")
import hl7.mllp  # noqa: E402

from pedstream.config import load_config  # noqa: E402
from pedstream.outputs.integrations import FHIRSink, HL7Sink  # noqa: E402
from pedstream.events import MonitorEvent  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("private_state_home")  # the HL7 outbox's default place, per test
DEMO = ROOT / "pedstream" / "assets" / "demo_records"


class Listener:
    """An MLLP receiver (python-hl7's asyncio server): parses every message, answers AA (or AE)."""

    def __init__(self, answer: str = "AA") -> None:
        self.messages: list = []
        self.answer = answer
        self.got = asyncio.Event()
        self.server = None
        self.port = 0

    async def __aenter__(self) -> "Listener":
        self.server = await hl7.mllp.start_hl7_server(lambda r, w: _serve(self, r, w), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def wait_count(self, n: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while len(self.messages) < n:
                self.got.clear()
                await self.got.wait()


def obx(msg, code: str) -> list:
    return [seg for seg in msg.segments("OBX") if str(seg[3]).split("^")[0] == code]


async def test_hl7_sink_sends_pcd04_alarms_and_pcd01_observations_over_mllp():
    async with Listener() as lis:
        cfg = load_config(overrides=[f"hl7.port={lis.port}", "hl7.observation_interval_s=0.001"]).hl7
        async with HL7Sink(cfg=cfg) as sink:
            sink.emit(MonitorEvent(stream="bed|7", kind="alarm_on", label="vt", p=0.9, hr=221.0,
                                   extra={"priority": "high"}, t_signal=12.5, clock="lsl"))
            sink.emit(MonitorEvent(stream="bed|7", kind="call", label="vt", p=0.93, hr=219.4))
            sink.emit(MonitorEvent(stream="bed|7", kind="alarm_off", label="vt", p=0.2, hr=120.0,
                                   extra={"priority": "high"}))
            sink.emit(MonitorEvent(stream="bed|7", kind="signal_ok"))  # not an HL7 message
            await lis.wait_count(3, timeout=20)
            await sink.wait_for(lambda s: s.acked == 3, timeout=20)
        assert (sink.sent, sink.acked, sink.rejected, sink.summary()["pending"]) == (3, 3, 0, 0)
    on, obs, off = lis.messages
    assert str(on.segment("MSH")[9]) == "ORU^R40^ORU_R40" and str(on.segment("MSH")[12]) == "2.6"
    assert str(on.segment("MSH")[21]).startswith("IHE_PCD_ACM_001")
    pid = str(on.segment("PID")[3]).split("^")[0]
    assert pid == "bed\\F\\7" and on.unescape(pid) == "bed|7"  # HL7-escaped on the wire
    assert str(on.segment("OBR")[4]).startswith("196616^MDC_EVT_ALARM")
    ev = obx(on, "199874")[0]  # MDC_EVT_ECG_ARRHY (MDC has no VT event code we rely on), the label as alternate code
    assert str(ev[3]).split("^")[3] == "vt" and str(ev[8]).split("~")[0] == "PH"
    assert str(ev[18]).startswith("pedstream^PEDSTREAM") and str(on.segment("PV1")[2]) == "I"
    assert str(obx(on, "147842")[0][5]) == "221" and str(obx(on, "68481")[0][5]) == "start"
    assert str(obx(on, "68482")[0][5]) == "active"
    assert str(off.segment("MSH")[9]) == "ORU^R40^ORU_R40" and str(obx(off, "68481")[0][5]) == "end"
    assert str(obx(off, "68482")[0][5]) == "inactive"
    assert str(off.segment("OBR")[3]) == str(on.segment("OBR")[3])  # the same alarm: one filler id
    assert str(obs.segment("MSH")[9]) == "ORU^R01^ORU_R01" and str(obs.segment("MSH")[21]).startswith("IHE_PCD_001")
    assert str(obx(obs, "RHYTHM")[0][5]).split("^")[0] == "vt" and str(obx(obs, "147842")[0][5]) == "219"


async def test_hl7_sink_counts_rejections_and_waits_for_a_late_receiver():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = load_config(overrides=[f"hl7.port={port}", "hl7.timeout_s=1"]).hl7
    async with HL7Sink(cfg=cfg) as sink:
        sink.emit(MonitorEvent(stream="b", kind="alarm_on", label="hr_high", hr=230.0, extra={"priority": "medium"}))
        await asyncio.sleep(0)  # nobody listens yet: the message waits
        assert sink.summary()["pending"] == 1 and sink.sent == 0
        lis = Listener(answer="AE")
        server = await hl7.mllp.start_hl7_server(lambda r, w: _serve(lis, r, w), "127.0.0.1", port)
        try:
            await lis.wait_count(1, timeout=30)
            await sink.wait_for(lambda s: s.rejected == 1, timeout=10)  # the ACK travels back
        finally:
            server.close()
    assert sink.rejected == 1 and sink.acked == 0 and sink.undelivered == 1


async def _serve(lis: Listener, reader, writer) -> None:
    try:
        while not reader.at_eof():
            msg = await reader.readmessage()
            lis.messages.append(msg)
            lis.got.set()
            writer.writemessage(msg.create_ack(ack_code=lis.answer))
            await writer.drain()
    except asyncio.IncompleteReadError:
        pass
    finally:
        writer.close()


async def test_fhir_sink_writes_validated_r4_resources(tmp_path):
    from fhir.resources.R4B.detectedissue import DetectedIssue
    from fhir.resources.R4B.observation import Observation

    path = tmp_path / "out" / "fhir.ndjson"
    async with FHIRSink(path, observation_interval_s=3600) as sink:
        sink.emit(MonitorEvent(stream="bed1", kind="call", label="avnrt", p=0.81, hr=231.0))
        sink.emit(MonitorEvent(stream="bed1", kind="call", label="avnrt", p=0.85, hr=230.0))  # within the interval
        sink.emit(MonitorEvent(stream="bed1", kind="alarm_on", label="avnrt", p=0.8, hr=231.0,
                               extra={"priority": "medium"}, t_signal=100.0, clock="mqtt"))
        sink.emit(MonitorEvent(stream="bed1", kind="alarm_off", label="avnrt", extra={"priority": "medium"}))
    lines = [json.loads(ln) for ln in path.read_text().splitlines()]
    assert [r["resourceType"] for r in lines] == ["Device", "Patient", "Observation", "DetectedIssue", "DetectedIssue"]
    lines = lines[2:]
    obs = Observation.model_validate(lines[0])
    assert obs.code.coding[0].code == "8867-4" and obs.valueQuantity.value == 231.0
    assert obs.component[0].valueCodeableConcept.coding[0].code == "avnrt"
    on, off = (DetectedIssue.model_validate(r) for r in lines[1:])
    assert (on.status, on.severity, off.status) == ("preliminary", "moderate", "final")
    assert on.id == off.id and off.identifiedPeriod.start == on.identifiedPeriod.start  # the end updates the onset
    assert on.patient.reference == obs.subject.reference == "Patient/" + lines[0]["subject"]["reference"].split("/")[1]
    assert "signal time 100.000 s (mqtt clock)" in on.detail


async def test_run_sends_hl7_writes_fhir_and_records_edf(tmp_path):
    """`pedstream run --hl7 --fhir --record` on a replayed record that raises heart-rate alarms."""
    async with Listener() as lis:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pedstream.cli", "run", "--source", "replay", "--records", str(DEMO / "x003"),
            "--headless", "--duration", "60", "--set", "replay.speed=8", "--hl7", "--set", f"hl7.port={lis.port}",
            "--set", "hl7.observation_interval_s=0.001", "--fhir", "fhir.ndjson", "--record", "rec",
            "--events", "events.jsonl", cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    events = [json.loads(ln) for ln in (tmp_path / "events.jsonl").read_text().splitlines()]
    calls = [e for e in events if e["kind"] == "call"]
    alarms = [e for e in events if e["kind"] in ("alarm_on", "alarm_off")]
    assert calls and alarms, "x003 raises heart-rate alarms"
    types = [str(m.segment("MSH")[9]) for m in lis.messages]
    assert types.count("ORU^R01^ORU_R01") == len(calls) and types.count("ORU^R40^ORU_R40") == len(alarms)
    assert "hl7: %d messages delivered, 0 undelivered" % len(types) in err.decode()
    fhir = [json.loads(ln) for ln in (tmp_path / "fhir.ndjson").read_text().splitlines()]
    assert sum(r["resourceType"] == "DetectedIssue" for r in fhir) == len(alarms)
    (edf,) = (tmp_path / "rec").glob("x003_*.edf")
    with pyedflib.EdfReader(str(edf)) as f:
        assert f.getSampleFrequency(0) == 977.0 and f.getSignalLabels()[:2] == ["ECG I", "ECG II"]
        n = f.getNSamples()[0]
        sig = f.readSignal(1)
        onsets, _, texts = f.readAnnotations()
    assert n >= 977 * 20  # the 24 s record, in whole 1 s data records
    from pedstream.data.loader import open_record

    rec = open_record(DEMO / "x003", load_config().signal)
    ii = rec.read(0, 977 * 20).data[:, 1]
    assert np.abs(sig[:977 * 20] - ii).max() < 10.0 / 32767 * 2  # 16-bit over +-10 mV
    call_texts = [t for t in texts if t.startswith("call ")]
    assert len(call_texts) == len(calls)
    call_onsets = np.array([o for o, t in zip(onsets, texts) if t.startswith("call ")])
    t_signal = np.array([c["t_signal"] for c in calls])  # the publisher's clock
    assert np.allclose(call_onsets - call_onsets[0], t_signal - t_signal[0], atol=1e-3)
    assert 2.0 <= call_onsets[0] <= 3.0  # the first window after the 2 s filter warm-up, on the file's time axis
    assert any(t.startswith("alarm_on ") for t in texts)


async def test_record_captures_mqtt_streams(tmp_path, mosquitto):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pedstream.cli", "run", "--source", "mqtt", "--demo", "--headless", "--duration", "8",
        "--set", f"mqtt.port={mosquitto.port}", "--set", "demo.speed=2", "--record", "rec", cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()[-2000:]
    files = sorted((tmp_path / "rec").glob("*.edf"))
    assert {p.name.split("_")[0] for p in files} == {"x001", "x002", "x003"}, err.decode()[-1500:]
    for p in files:
        with pyedflib.EdfReader(str(p)) as f:
            assert f.getNSamples()[0] > 0 and "mqtt" in f.getEquipment()
