"""A broker that is not there (yet, or any more) is said, not hidden behind "(waiting for streams)":
the MQTT source's status line and one event per outage name HOST:PORT and say it is retrying; the
monitor keeps retrying, so it outlives a broker restart. Real mosquitto, started late and stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pedstream.transports.mqtt import MQTTPublisher, MQTTSource
from pedstream.transports.mqtt.wire import encode_binary, encode_meta
from pedstream.events import ChunkReceived
from tests.conftest import MOSQUITTO, Broker, free_port
from tests.support.helpers import wait_for

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs mosquitto (apt-get install mosquitto)")]
PREFIX = "pedstream/status"


def late_broker(d: Path) -> Broker:
    """A mosquitto configured on a free loopback port, not started."""
    port = free_port()
    conf = d / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n",
                    encoding="utf-8")
    return Broker(conf=conf, log=d / "mosquitto.log", port=port)


async def until(pred, timeout: float = 8.0) -> None:
    async def loop() -> None:
        while not pred():
            await asyncio.sleep(0.05)  # poll of a bounded wait on the source's own state
    await asyncio.wait_for(loop(), timeout)


async def test_source_says_the_broker_is_unreachable_and_recovers_when_it_starts_and_restarts(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="pedstream.transports.mqtt.source")
    broker = late_broker(tmp_path)
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    where = f"127.0.0.1:{broker.port}"
    try:
        async with MQTTSource(events=events, host=broker.host, port=broker.port, topic_prefix=PREFIX, timeout_s=2.0,
                              reconnect_min_s=0.05, reconnect_max_s=0.5, probe_interval_s=0.05) as src:
            await until(lambda: src.broker_state == "unreachable")
            line = src.status_line()
            assert line is not None and where in line and "unreachable" in line and "retrying" in line
            broker.start()  # started late: the source connects by itself
            await asyncio.wait_for(src.connected.wait(), 10)
            assert src.status_line() is None
            broker.stop()  # a broker restart: said again, and retried
            await until(lambda: src.status_line() is not None and "unreachable" in src.status_line())
            broker.start()
            await asyncio.wait_for(src.connected.wait(), 10)
            async with MQTTPublisher(host=broker.host, port=broker.port, prefix=PREFIX, timeout_s=2.0) as pub:
                await pub.publish_meta("bed", encode_meta(fs=250.0, channels=["II"]))
                await pub.publish_data("bed", encode_binary(np.ones((5, 1), np.float32), seq=0, first_sample=0, t=0))
                await wait_for(events, lambda e: isinstance(e, ChunkReceived), log=log, timeout=8)
            assert src.connects == 2
    finally:
        broker.stop()
    outages = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outages) == 2  # one status line per outage, not one per attempt


def run_cli(port: int, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="100")
    return subprocess.run([sys.executable, "-c", "from pedstream.cli import main; main()", "run", "--source", "mqtt",
                           "--duration", "4", "--set", f"mqtt.port={port}", "--set", "mqtt.reconnect_max_s=0.5",
                           *extra], capture_output=True, text=True, timeout=50, env=env)


@pytest.mark.parametrize("headless", [False, True])
def test_run_without_a_broker_says_so_while_it_retries(headless):
    port = free_port()
    p = run_cli(port, *(["--headless"] if headless else []))
    where = f"127.0.0.1:{port}"
    status = f"MQTT broker {where} unreachable"
    if headless:  # stdout carries the streams' events only; stderr has one status line for the outage
        assert p.stdout == ""
        said = [ln for ln in p.stderr.splitlines() if status in ln]
        assert len(said) == 1 and "retrying" in said[0]
    else:  # the dashboard frames say it, not only "(waiting for streams)"
        assert status in p.stdout and "retrying" in p.stdout
        assert sum(status in ln for ln in p.stderr.splitlines()) <= 1
    assert "Traceback" not in p.stderr
