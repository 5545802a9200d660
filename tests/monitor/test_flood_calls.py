"""Under a JSON flood and a meta flood from other publishers, two genuine replayed streams keep their
calls, and the summary counts what was refused and names who sent it.

The whole path is real: mosquitto with the documented ACL, two ``replay --to mqtt`` publishers of
the bundled records (977 Hz, 19 channels, real time), two flooding publishers in their own
processes, the MQTT source, the engine and ONNX Runtime (the tiny model)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pedstream.config import load_config
from pedstream.monitor.engine import Engine
from pedstream.transports.mqtt import MQTTPublisher, MQTTSource
from pedstream.transports.mqtt.wire import encode_meta
from tests.support.acl_broker import PREFIX, USERS, acl_broker, needs_mosquitto
from tests.support.tiny_model import build_tiny_model, open_session

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow, needs_mosquitto]
ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "pedstream" / "assets" / "demo_records"
SECONDS = 60.0  # each genuine replay (stopped once the floods are over)
FLOOD_S = 10.0


def flood(b, user: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.support.flood", "--port", str(b.port), "--user", user,
                             "--password", USERS[user], *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


async def test_genuine_streams_keep_their_calls_under_floods_and_the_summary_counts_them(tmp_path):
    cfg = load_config(overrides=["alarms.strips=false", f"mqtt.topic_prefix='{PREFIX}'"])
    session = open_session(build_tiny_model(tmp_path / "tiny.onnx", cfg), cfg)
    calls: dict[str, list[float]] = {"x001": [], "x002": []}
    with acl_broker(tmp_path / "broker") as b:
        for user in ("evil", "evil2"):  # two streams declaring 10 kHz x 64 channels, retained
            async with MQTTPublisher(host=b.host, port=b.port, prefix=PREFIX, auth=b.auth(user),
                                     clear_meta_on_exit=False) as pe:
                await pe.publish_meta(user, encode_meta(fs=10_000.0, channels=[f"c{i}" for i in range(64)]))
        src = MQTTSource(cfg.mqtt, events=asyncio.Queue(), host=b.host, port=b.port,
                                     auth=b.auth("monitor"))
        eng = Engine(cfg=cfg, session=session, sources=[src], alarms_dir=tmp_path)
        eng.add_listener(lambda e: e.kind == "call" and e.stream in calls and calls[e.stream].append(time.monotonic()))
        procs: list = []
        async with eng:
            await asyncio.wait_for(src.connected.wait(), 10)
            replays = [await asyncio.create_subprocess_exec(  # the genuine publishers: their own processes
                sys.executable, "-c", "from pedstream.cli import main; main()", "replay", "--to", "mqtt",
                str(DEMO / rec), "--seconds", str(SECONDS), "--set", f"mqtt.port={b.port}",
                "--set", f"mqtt.topic_prefix='{PREFIX}'", "--set", f"mqtt.username='{rec}'",
                "--set", f"mqtt.password='{USERS[rec]}'", cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE) for rec in ("x001", "x002")]
            try:
                async with asyncio.timeout(30):  # both monitored (calls coming) before the floods start
                    while not all(calls.values()):
                        await asyncio.sleep(0.1)  # poll of a bounded wait on the listener's record
                t0 = time.monotonic()
                procs = [*(flood(b, user, "--topic", f"{PREFIX}/{user}/data", "--kind", "json", "--speed", "3",
                                 "--seconds", str(FLOOD_S)) for user in ("evil", "evil2")),
                         flood(b, "gw", "--topic", f"{PREFIX}/gw/meta", "--kind", "meta", "--rate", "200",
                               "--seconds", str(FLOOD_S))]
                for p in procs:
                    await asyncio.wait_for(asyncio.to_thread(p.wait), FLOOD_S + 20)
                t_end = time.monotonic()
                assert all(r.returncode is None for r in replays)  # the replays ran throughout the floods
            finally:
                for p in procs:
                    p.kill()
                    p.wait(10)
                for r in replays:
                    if r.returncode is None:
                        r.kill()
                        await r.wait()
            summary = eng.summary()
    for sid, ts in calls.items():
        during = [t0] + [t for t in ts if t0 <= t <= t_end] + [t_end]  # the calls while the floods ran
        gaps = [b - a for a, b in zip(during, during[1:])]
        print(f"{sid}: {len(during) - 2} calls in {t_end - t0:.1f} s of floods, largest gap {max(gaps):.2f} s")
        assert max(gaps) <= 6.0, (sid, max(gaps))
    refused = summary.get("ingest_refused", {})
    print("summary:", {k: summary[k] for k in ("rejected_messages", "dropped_samples", "errors")}, refused,
          summary.get("publishers_flagged"))
    assert refused.get("throttled", 0) > 0 and refused.get("throttled_metas", 0) > 0
    assert summary["rejected_messages"] >= refused["throttled"] + refused["throttled_metas"]
    assert {"evil", "evil2", "gw"} <= set(summary.get("publishers_flagged", []))
