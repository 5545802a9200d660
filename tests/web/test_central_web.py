"""``pedstream central --web`` parts over a real mosquitto: the ward from the workers' events and
retained alarm states, waveforms from the streams on the broker (a real MQTT replay of a record),
an acknowledgement recorded in the central events file and pushed to the screen."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
from pathlib import Path
from urllib.parse import urlencode

import aiomqtt
import websockets

from pedstream.cluster.topics import alarm_topic, encode_json
from pedstream.config import load_config
from pedstream.outputs.jsonlines import JsonLinesSink

RECORD = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "aami" / "208"


def _login(port: int, password: str) -> str:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/login")
    page = c.getresponse().read()
    token = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
    c.request("POST", "/login", body=urlencode({"user": "demo", "password": password, "csrf": token}),
              headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"pedstream_login={token}"})
    r = c.getresponse()
    r.read()
    assert r.status == 303
    return r.getheader("set-cookie").split(";", 1)[0]


def _act(port: int, cookie: str, csrf: str, body: dict) -> tuple[int, dict]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/api/alarm", body=json.dumps(body), headers={"Cookie": cookie, "X-CSRF-Token": csrf,
                                                                    "Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, json.loads(r.read())


async def test_central_web_ward_waveforms_and_acknowledgement(mosquitto, tmp_path):
    from pedstream.transports.mqtt.publisher import replay_to_mqtt
    from pedstream.transports.replay import plan_replay
    from pedstream.cluster.web import serve_central
    from pedstream.web.server import WebService

    cfg = load_config(overrides=[f"mqtt.port={mosquitto.port}", "mqtt.host=127.0.0.1"])
    prefix = cfg.mqtt.topic_prefix
    events = tmp_path / "ward.jsonl"
    svc = WebService(cfg, bind="127.0.0.1:0")
    stop = asyncio.Event()
    central = asyncio.create_task(serve_central(cfg, svc, sinks=[JsonLinesSink(events)], stop=stop, duration=60))
    plans = plan_replay([RECORD], cfg.signal, stream_id="bed01")
    feeder = asyncio.create_task(replay_to_mqtt(plans, host="127.0.0.1", port=mosquitto.port, prefix=prefix, speed=1.0,
                                                chunk_ms=50, loop=True, timeout_s=5))
    try:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:  # a worker's retained alarm state
            await client.publish(alarm_topic(prefix, "bed01"), encode_json(
                {"stream": "bed01", "worker": "w0", "alarms": [{"label": "vt", "priority": "high"}]}), qos=1, retain=True)
        cookie = await asyncio.to_thread(_login, svc.port, svc.password)
        url = f"ws://127.0.0.1:{svc.port}/ws"
        async with websockets.connect(url, additional_headers={"Cookie": cookie}, open_timeout=10) as ws:
            seen: dict = {}
            async with asyncio.timeout(40):
                while not ("tile" in seen and seen.get("frames", 0) >= 3):
                    m = await ws.recv()
                    if isinstance(m, bytes):
                        seen["frames"] = seen.get("frames", 0) + 1
                        continue
                    msg = json.loads(m)
                    if msg["t"] == "layout" and any(b["stream"] == "bed01" for b in msg["beds"]):
                        await ws.send(json.dumps({"t": "look", "visible": ["bed01"], "bed": None}))
                    if msg["t"] == "state":
                        tile = next((b for b in msg["beds"] if b["stream"] == "bed01"), None)
                        if tile and tile["top"] == "high" and tile["bed"] >= 0:
                            seen["tile"] = tile
            assert seen["tile"]["alarms"][0]["label"] == "vt" and seen["tile"]["alarms"][0]["state"] == "sounding"
            csrf = json.loads(await asyncio.to_thread(_session, svc.port, cookie))["csrf"]
            status, ev = await asyncio.to_thread(_act, svc.port, cookie, csrf,
                                                 {"stream": "bed01", "label": "vt", "action": "silence", "seconds": 900})
            assert status == 200 and ev["kind"] == "alarm_silence" and ev["seconds"] == 120.0  # capped: high priority
            async with asyncio.timeout(10):
                while True:
                    m = await ws.recv()
                    if isinstance(m, str) and json.loads(m)["t"] == "event" and json.loads(m)["ev"]["kind"] == "alarm_silence":
                        break
    finally:
        stop.set()
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        await asyncio.wait_for(central, 30)
    written = [json.loads(x) for x in events.read_text().splitlines()]
    assert [(e["kind"], e["user"], e["label"]) for e in written if e["kind"] == "alarm_silence"] == [
        ("alarm_silence", "demo", "vt")]


def _session(port: int, cookie: str) -> str:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/api/session", headers={"Cookie": cookie})
    return c.getresponse().read().decode()
