"""State freed: stream ids that come and go do not grow the monitor's memory.

Six waves of 250 fresh stream ids (1,500 in all; one meta and one chunk each, as a publisher that
starts and leaves) go through a real mosquitto into the MQTT source and the engine (real ONNX
Runtime, the tiny model). After each wave has been reported lost, its pipelines are released; the
resident memory after the last wave is back near what it was after the first, and the engine's and
the source's tables stay bounded.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time

import numpy as np
import pytest

from pedstream.config import load_config
from pedstream.data.channels import CANONICAL_CHANNELS
from pedstream.monitor.engine import Engine
from pedstream.transports.mqtt import MQTTPublisher, MQTTSource
from pedstream.transports.mqtt.wire import encode_binary, encode_meta
from pedstream.monitor.release import KEEP_RELEASED
from tests.support.tiny_model import build_tiny_model, open_session

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]
PREFIX = "pedstream/churn"
WAVES, PER_WAVE = 6, 250
FS = 977.0


def rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def test_rss_stays_flat_under_1500_rotating_ids(tmp_path, mosquitto):
    cfg = load_config(overrides=["alarms.strips=false", "stream.watchdog_s=0"])
    session = open_session(build_tiny_model(tmp_path / "tiny.onnx", cfg), cfg)
    events: asyncio.Queue = asyncio.Queue()
    src = MQTTSource(events=events, host=mosquitto.host, port=mosquitto.port, topic_prefix=PREFIX, timeout_s=5.0,
                     lost_timeout_s=0.5, meta_wait_s=0.5, max_streams=256, stale_meta_s=1.0, forget_after_s=2.0)
    eng = Engine(cfg=cfg, session=session, sources=[src], alarms_dir=tmp_path)
    meta = encode_meta(fs=FS, channels=list(CANONICAL_CHANNELS), dtype="int16", scale=0.001)
    x = np.zeros((200, len(CANONICAL_CHANNELS)), np.int16)
    rss: list[float] = []
    t0 = time.monotonic()
    async with eng:
        await asyncio.wait_for(src.connected.wait(), 10)
        for w in range(WAVES):
            ids = [f"w{w}s{i:03d}" for i in range(PER_WAVE)]
            async with MQTTPublisher(host=mosquitto.host, port=mosquitto.port, prefix=PREFIX, timeout_s=5.0) as pub:
                for sid in ids:
                    await pub.publish_meta(sid, meta)
                    await pub.publish_data(sid, encode_binary(x, seq=0, first_sample=0, t=0.0))
                deadline = time.monotonic() + 20
                while sum(sid in eng.status for sid in ids) < PER_WAVE * 0.9:  # the wave was monitored
                    assert time.monotonic() < deadline, "wave not announced"
                    await asyncio.sleep(0.05)  # poll of a bounded wait on the engine's own table
            # the publisher left (its metas cleared): the wave is lost, its pipelines released
            deadline = time.monotonic() + 20
            while any(sid in eng.pipelines for sid in ids):
                assert time.monotonic() < deadline, "pipelines not released"
                await asyncio.sleep(0.05)  # poll of a bounded wait
            gc.collect()
            deadline = time.monotonic() + 8  # freed memory goes back to the system within seconds
            while rss and rss_mib() - rss[0] > 30 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # poll of a bounded wait
            rss.append(rss_mib())
            assert len(eng.streams) <= KEEP_RELEASED + PER_WAVE + 8
            assert len(src.stream_ids) <= 256
        summary = eng.summary()
    elapsed = time.monotonic() - t0
    print(f"RSS after each wave (MiB): {[round(r) for r in rss]}; {elapsed:.1f} s")
    assert summary["streams_released"] >= WAVES * PER_WAVE * 0.9
    assert rss[-1] - rss[0] < 40, rss  # flat: ~1.5 MiB per id was kept before (+2,000 MiB for 1,500 ids)
    assert max(rss[1:]) - rss[0] < 60, rss
