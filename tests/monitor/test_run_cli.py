"""`pedstream run` / `pedstream demo` as a user runs them (subprocesses, real model file, real transports)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pedstream.config import load_config
from tests.support.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "pedstream" / "assets" / "demo_records"


def pedstream(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "pedstream.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx", load_config())


def parse_lines(text: str) -> list[dict]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return [json.loads(ln) for ln in lines]  # every stdout line must be one JSON object


def test_headless_replay_prints_json_lines_and_summary(model, tmp_path):
    events = tmp_path / "events.jsonl"
    r = pedstream("run", "--source", "replay", "--records", str(DEMO / "x002"), "--model", str(model), "--headless",
                  "--events", str(events), "--duration", "60", "--set", "replay.speed=8", "--capture", "final.txt",
                  cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    banner = "Model · trained on SIMULATED data · not for clinical use"  # a user's model: not "DEMO MODEL"
    assert r.stderr.splitlines()[0] == banner and r.stderr.count(banner) == 1  # once, on stderr
    assert f"alarm strips (PNG) go to {tmp_path / 'alarms'}/run-" in r.stderr  # where strips land is said (per run)
    capture = (tmp_path / "final.txt").read_text(encoding="utf-8")
    row = next(ln for ln in capture.splitlines() if ln.startswith("x002"))
    # an annotated record: a truth column instead of the source, the agreement and the strip folder below
    assert "truth" in capture and "14/19" in row and capture.splitlines()[0].strip() == banner
    assert "agreement with the annotations" in capture and f"{tmp_path / 'alarms'}/run-" in capture.replace("\n", "")
    out = parse_lines(r.stdout)
    assert out and {"t", "stream", "kind", "label", "p", "hr", "latency_ms"} <= set(out[0])
    calls = [e for e in out if e["kind"] == "call"]
    assert len(calls) >= 15 and all(e["stream"] == "x002" for e in calls)
    assert sum("truth" in e for e in calls) >= len(calls) - 2  # the reference label of nearly every window
    assert parse_lines(events.read_text()) == out  # the file holds the same events
    assert "summary: streams 1, windows classified" in r.stderr


def test_model_mismatch_is_refused_with_one_line(tmp_path):
    bad = build_tiny_model(tmp_path / "bad.onnx", load_config(overrides=["filters.mains_hz=60"]))
    r = pedstream("run", "--source", "replay", "--records", str(DEMO / "x002"), "--model", str(bad), "--headless",
                  cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"error: model {bad}: metadata field 'filters.mains_hz' is 60.0, configuration expects 50.0"]


def test_missing_model_is_one_line(tmp_path):
    r = pedstream("run", "--source", "replay", "--records", str(DEMO), "--model", str(tmp_path / "nope.onnx"), cwd=tmp_path)
    assert r.returncode == 2 and "no such model file" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_demo_over_lsl_headless(model, tmp_path, lsl_config):
    """`pedstream demo` (LSL, bundled records, looping) for a few seconds, in its own LSL session."""
    r = pedstream("demo", "--headless", "--duration", "12", "--model", str(model), *lsl_config.overrides,
                  "--set", "demo.speed=3", cwd=tmp_path, timeout=90)
    assert r.returncode == 0, r.stderr
    out = parse_lines(r.stdout)
    streams = {e["stream"] for e in out if e["kind"] == "call"}
    assert streams == {"x001", "x002", "x003"}, (streams, r.stderr[-2000:])
    assert "summary: streams 3" in r.stderr
    # the engine's inlets close before the replay outlets: liblsl has nothing to complain about
    assert "Stream transmission broke off" not in r.stderr and " ERR|" not in r.stderr, r.stderr[-2000:]


def test_dashboard_run_shows_banner_once_and_captures_svg(model, tmp_path):
    r = pedstream("run", "--source", "replay", "--records", str(DEMO / "x002"), "--model", str(model), "--duration", "60",
                  "--set", "replay.speed=8", "--capture", "dash.svg", "--capture", "dash.txt", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    banner = "Model · trained on SIMULATED data · not for clinical use"
    assert r.stdout.count(banner) == 1  # once (stdout is a pipe: printed frames leave it out)
    # not a terminal (| tee log): frames are printed as the run goes, each ending in a newline
    assert "the dashboard is printed every 5 s" in r.stdout and r.stdout.count("classified") >= 2
    assert "\nsummary: streams 1" in r.stdout and "dashboard capture written to dash.svg" in r.stdout
    svg = (tmp_path / "dash.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<svg") and "x002" in svg and "SIMULATED" in svg
    txt = (tmp_path / "dash.txt").read_text(encoding="utf-8")  # the same final frame as text
    assert any(ln.startswith("x002") for ln in txt.splitlines()) and "classified" in txt


def test_demo_model_banner_and_alarms_dir(tmp_path):
    r = pedstream("run", "--source", "replay", "--records", str(DEMO / "x002"), "--headless", "--duration", "1",
                  "--alarms-dir", "strips", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("DEMO MODEL · trained on simulated Leipzig-format data + MIT-BIH ECG, not for clinical use")  # the packaged model is the demo model
    assert f"alarm strips (PNG) go to {tmp_path / 'strips'}/run-" in r.stderr


def test_mqtt_without_a_broker_says_how_to_start_one_and_fails(model, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = pedstream("run", "--source", "mqtt", "--model", str(model), "--headless", "--duration", "1.5",
                  "--set", f"mqtt.port={port}", cwd=tmp_path)
    assert r.returncode == 3 and r.stdout == ""  # exit 3: nothing could be monitored
    assert f"warning: no MQTT broker at 127.0.0.1:{port}: start one (e.g. `mosquitto -p {port}`)" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: mqtt: no MQTT broker")
    assert '"mqtt_connected": false' in r.stderr


def test_exit_3_when_no_stream_is_ever_seen(model, tmp_path, mosquitto):
    r = pedstream("run", "--source", "mqtt", "--model", str(model), "--headless", "--duration", "1.5",
                  "--set", f"mqtt.port={mosquitto.port}", cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "error: no stream was seen during the run (--source mqtt, topics pedstream/v1/+/meta)"
    assert "summary: streams 0" in r.stderr


def test_ctrl_c_exits_130_after_the_summary(model, tmp_path):
    import selectors
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "pedstream.cli", "run", "--source", "replay", "--records",
                             str(DEMO / "x002"), "--model", str(model), "--headless", "--duration", "60",
                             "--events", str(tmp_path / "ev.jsonl")],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=60), "no event within 60 s"  # the monitor is running: an event came out
        proc.stdout.readline()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert time.monotonic() - t0 < 20
    assert "summary: streams 1" in err and err.strip().splitlines()[-1] == "interrupted"


def test_capture_needs_svg_or_txt(tmp_path):
    r = pedstream("run", "--capture", "dash.png", cwd=tmp_path)
    assert r.returncode == 2 and "expected a .svg or .txt file name" in r.stderr


async def test_publish_mqtt_sends_every_event_to_rhythm_topics(model, tmp_path, mosquitto):
    """`pedstream run --publish-mqtt`: each event, as in the events file, on <prefix>/<stream>/rhythm."""
    import aiomqtt
    from paho.mqtt.client import MQTTv5

    events = tmp_path / "events.jsonl"
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, protocol=MQTTv5) as client:
        await client.subscribe("pedstream/v1/+/rhythm")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pedstream.cli", "run", "--source", "replay", "--records", str(DEMO / "x002"),
            "--model", str(model), "--events", str(events), "--headless", "--publish-mqtt", "--duration", "60",
            "--set", "replay.speed=8", "--set", f"mqtt.port={mosquitto.port}", cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        lines = events.read_text().splitlines()
        assert len(lines) >= 15
        got: list[tuple[str, str]] = []
        async with asyncio.timeout(15):
            async for msg in client.messages:
                got.append((str(msg.topic), msg.payload.decode()))
                if len(got) == len(lines):
                    break
    assert got == [(f"pedstream/v1/{json.loads(ln)['stream']}/rhythm", ln) for ln in lines]


async def test_lsl_markers_carry_the_events(model, tmp_path, lsl_config):
    """`pedstream run --lsl-markers`: an LSL marker stream (named from config) carrying each event's JSON line."""
    import pylsl

    name = f"pedstream-events-{lsl_config.session_id}"
    events = tmp_path / "events.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pedstream.cli", "run", "--source", "replay", "--records", str(DEMO / "x001"),
        "--model", str(model), "--events", str(events), "--headless", "--lsl-markers", "--duration", "60",
        "--set", "replay.speed=4", *lsl_config.overrides, "--set", f'lsl.marker_stream="{name}"', cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        infos = await asyncio.to_thread(pylsl.resolve_byprop, "name", name, 1, 30.0)
        assert infos, "marker stream not found"
        assert infos[0].type() == "Markers" and infos[0].channel_format() == pylsl.cf_string
        inlet = pylsl.StreamInlet(infos[0])
        await asyncio.to_thread(inlet.open_stream, 10.0)
        received: list[str] = []
        while proc.returncode is None:
            sample, _ = await asyncio.to_thread(inlet.pull_sample, 0.5)
            if sample is not None:
                received.append(sample[0])
            elif proc.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 0.01)
        while (sample := inlet.pull_sample(0.0)[0]) is not None:
            received.append(sample[0])
        inlet.close_stream()
    finally:
        if proc.returncode is None:
            proc.terminate()
        _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    lines = events.read_text().splitlines()
    assert len(received) >= 5, (len(received), len(lines))
    i = lines.index(received[0])  # LSL delivers from the moment the inlet connected: a contiguous run of events
    assert received == lines[i:i + len(received)]
    assert any(json.loads(m)["kind"] == "call" for m in received)


def test_lsl_run_says_which_streams_it_ignored_and_why(model, tmp_path, lsl_config):
    """`pedstream run --source lsl` next to an EEG stream only: one line naming it and why it is
    ignored, and the exit-3 error says other streams were seen (not '(waiting for streams)' forever)."""
    import uuid

    import pylsl

    sid = f"eeg-{uuid.uuid4().hex[:8]}"
    info = pylsl.StreamInfo(name="openbci-eeg", type="EEG", channel_count=2, nominal_srate=250.0,
                            channel_format=pylsl.cf_float32, source_id=sid)
    chans = info.desc().append_child("channels")
    for label in ("Fp1", "Cz"):
        chans.append_child("channel").append_child_value("label", label)
    outlet = pylsl.StreamOutlet(info)
    r = pedstream("run", "--source", "lsl", "--headless", "--duration", "3", "--model", str(model),
                  *lsl_config.overrides, cwd=tmp_path, timeout=90)
    assert r.returncode == 3, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if f"source_id {sid!r}" in ln and not ln.startswith("{")]
    assert lines == [f"LSL stream 'openbci-eeg' (type 'EEG', 2 ch, 250 Hz, source_id {sid!r}): ignored: type 'EEG' "
                     "is none of ECG, EKG, EXG, IEGM, EGM and none of its channel labels (Fp1, Cz) is an ECG lead "
                     "or IEGM channel"], r.stderr
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("error: no stream was seen during the run (--source lsl, [lsl] types ECG, EKG, EXG, IEGM, "
                          "EGM or ECG/IEGM channel labels; "), err
    assert "other LSL stream(s) seen and ignored, see the lines above" in err
    del outlet


@pytest.mark.parametrize("headless", [False, True])
def test_bad_records_are_refused_before_anything_is_printed(tmp_path, headless):
    """Regression: the banner and the strip folder came out before the error for a missing record."""
    r = pedstream("run", "--source", "replay", "--records", str(tmp_path / "missing" / "rec"),
                  *(["--headless"] if headless else []), cwd=tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert lines == [f"error: record rec: header file {tmp_path / 'missing' / 'rec.hea'} does not exist"], lines


def test_mqtt_run_of_annotated_records_carries_truth_and_record_positions(model, tmp_path, mosquitto):
    """`pedstream run --source mqtt --records`: the records published on the broker are the reference of
    the calls (truth, truth_source) and every call says where in the record it lies, as over LSL."""
    r = pedstream("run", "--source", "mqtt", "--records", str(DEMO / "x002"), "--model", str(model), "--headless",
                  "--duration", "14", "--set", "demo.speed=3", "--set", f"mqtt.port={mosquitto.port}",
                  cwd=tmp_path, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    calls = [e for e in parse_lines(r.stdout) if e["kind"] == "call"]
    assert len(calls) >= 8, r.stderr[-2000:]
    assert sum(e.get("truth_source") == "rhythm" and e.get("truth") is not None for e in calls) >= len(calls) - 2
    assert all(e["record"].endswith("x002") and e["record_s"] >= 0 for e in calls)
