"""``python -m pedstream.bench.mqttcost``'s measurement for one N, run small: a real publisher process, a
real mosquitto (:class:`pedstream.bench.mosquitto.Mosquitto`) and the in-process source. Speed is not
checked (the machine is shared); that every stream arrives and the figures agree with each other is."""

from __future__ import annotations

import pytest

from pedstream.bench.mosquitto import Mosquitto
from pedstream.bench.mqttcost import mqtt_cost_one

pytestmark = [pytest.mark.service("mosquitto"), pytest.mark.timeout(60)]


async def test_two_streams_arrive_and_the_cost_figures_agree() -> None:
    broker = Mosquitto().start()
    try:
        r = await mqtt_cost_one(2, 1.0, broker=broker, fs=977.0)
    finally:
        broker.stop()
    assert broker.proc is None
    assert r["streams"] == 2 and r["streams_ready"] == 2, r["publisher_stderr_tail"]
    assert r["seconds"] >= 1.0 and 0 < r["realtime_ratio"] and r["events_per_s"] > 0
    assert r["source_totals"]["rejected_messages"] == 0 and r["source_totals"]["queue_full_drops"] == 0
    cpu = r["cpu_s"]
    assert set(cpu) == {"publisher", "broker", "source"} and min(cpu.values()) >= 0 and cpu["source"] > 0
    # each process's ms per stream-second is its CPU over the same stream-seconds delivered
    stream_s = r["realtime_ratio"] * 2 * r["seconds"]
    assert r["source_ms_per_stream_s"] == pytest.approx(1000 * cpu["source"] / stream_s, rel=0.05, abs=0.05)
    assert r["lag_ms_p50"] is not None and r["lag_ms_p99"] >= r["lag_ms_p50"]
