"""`pedstream central --source mqtt` as a user runs it: a real mosquitto, events published as workers
publish them; the events file and stdout (--headless) hold every event with its worker, the capture
shows alarms first and the workers' presence; SIGTERM ends it normally."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import aiomqtt

from pedstream.cluster.topics import alarm_topic, encode_json, presence_topic, rhythm_topic

PREFIX = "pedstream/v1"


def _call(stream: str, k: int, worker: str) -> bytes:
    return encode_json({"schema_version": 3, "t": "2026-01-01T00:00:00+00:00", "t_signal": float(k), "clock": "mqtt",
                        "stream": stream, "kind": "call", "label": "sinus", "p": 0.9, "hr": 120.0, "latency_ms": 5.0,
                        "window_start": k, "worker": worker})


async def test_central_cli_headless_events_file_and_capture(mosquitto, tmp_path):
    events, capture = tmp_path / "ward.jsonl", tmp_path / "central.txt"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from pedstream.cli import main; main()", "central", "--source", "mqtt", "--headless",
        "--duration", "60", "--events", str(events), "--capture", str(capture), "--set", f"mqtt.port={mosquitto.port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out: list[dict] = []
    try:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            await client.publish(presence_topic(PREFIX, "w0"), encode_json(
                {"worker": "w0", "state": "up", "pid": 1, "host": "h", "streams": 2}), qos=1, retain=True)
            await client.publish(alarm_topic(PREFIX, "bed01"), encode_json(
                {"stream": "bed01", "worker": "w0", "alarms": [{"label": "vt", "priority": "high"}]}), qos=1, retain=True)

            stop = asyncio.Event()

            async def probe() -> None:  # until the station is subscribed: a call every 0.2 s
                # (a flag as well as the cancellation: on Python 3.11 a cancel that arrives as aiomqtt's
                # wait_for completes is swallowed, and the probe then ran on; CI hung here once)
                k = 0
                while not stop.is_set():
                    await client.publish(rhythm_topic(PREFIX, "bed00"), _call("bed00", k, "w0"), qos=1)
                    k += 1
                    await asyncio.sleep(0.2)  # the probe's cadence

            prober = asyncio.create_task(probe())
            try:
                async with asyncio.timeout(30):
                    out.append(json.loads(await proc.stdout.readline()))
            finally:
                stop.set()
                prober.cancel()
                async with asyncio.timeout(10):
                    await asyncio.gather(prober, return_exceptions=True)
            for k in range(3):
                await client.publish(rhythm_topic(PREFIX, "bed01"), _call("bed01", k, "w1"), qos=1)
            async with asyncio.timeout(10):
                while sum(d["stream"] == "bed01" for d in out) < 3:
                    out.append(json.loads(await proc.stdout.readline()))
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            rest, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    out += [json.loads(x) for x in rest.decode().splitlines()]
    written = [json.loads(x) for x in events.read_text().splitlines()]
    assert written == out  # the events file holds what stdout showed, every event once
    assert [(d["window_start"], d["worker"]) for d in written if d["stream"] == "bed01"] == [(0, "w1"), (1, "w1"), (2, "w1")]
    table = capture.read_text()
    lines = [x for x in table.splitlines() if x.startswith("bed")]
    assert lines[0].startswith("bed01") and "HIGH vt" in lines[0]  # alarms first
    assert "w0 (up, 2 streams" in table
    assert "summary: " in err.decode()
