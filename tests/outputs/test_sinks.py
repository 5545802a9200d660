"""Event sinks: JSON lines file/stdout, MQTT through a real broker, LSL marker outlet."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from pedstream.transports.lsl.outlet import LSLMarkerSink
from pedstream.transports.mqtt.publisher import MQTTSink
from pedstream.events import SCHEMA_VERSION, MonitorEvent
from pedstream.outputs.jsonlines import JsonLinesSink

KEYS = {"t", "stream", "kind", "label", "p", "hr", "latency_ms"}


async def test_jsonl_file_appends_and_flushes_per_event(tmp_path):
    path = tmp_path / "ev" / "events.jsonl"
    async with JsonLinesSink(path) as sink:
        sink.emit(MonitorEvent(stream="s1", kind="call", label="sinus", p=0.912345, hr=101.26, latency_ms=12.3456))
        await sink.wait_written(1)  # written by its own thread, readable before the sink closes
        first = json.loads(path.read_text().splitlines()[0])
        sink.emit(MonitorEvent(stream="s1", kind="alarm_on", label="vt", p=0.8, extra={"priority": "high"}))
    async with JsonLinesSink(path) as sink:  # appends
        sink.emit(MonitorEvent(stream="s2", kind="error", extra={"message": "bad"}))
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 3 and KEYS <= set(first)
    assert first["p"] == 0.9123 and first["hr"] == 101.3 and first["latency_ms"] == 12.35
    assert lines[1]["priority"] == "high" and lines[2]["message"] == "bad" and lines[2]["label"] is None
    from datetime import datetime
    datetime.fromisoformat(lines[0]["t"])


async def test_jsonl_stdout_stream():
    buf = io.StringIO()
    async with JsonLinesSink(stream=buf) as sink:
        sink.emit(MonitorEvent(stream="x", kind="signal_loss"))
    assert json.loads(buf.getvalue())["kind"] == "signal_loss"


async def test_mqtt_sink_publishes_to_rhythm_topic(mosquitto):
    import aiomqtt
    from paho.mqtt.client import MQTTv5

    async with aiomqtt.Client(mosquitto.host, mosquitto.port, protocol=MQTTv5) as client:
        await client.subscribe("pedstream/v1/+/rhythm")
        async with MQTTSink(host=mosquitto.host, port=mosquitto.port) as sink:
            sink.emit(MonitorEvent(stream="bed7", kind="call", label="avrt", p=0.7))
            async with asyncio.timeout(10):
                async for msg in client.messages:
                    assert str(msg.topic) == "pedstream/v1/bed7/rhythm"
                    body = json.loads(msg.payload)
                    assert body["label"] == "avrt" and body["kind"] == "call"
                    break
        assert sink.published == 1


async def test_lsl_marker_sink(lsl_config):
    import pylsl

    async with LSLMarkerSink(name="pedstream-events-test", source_id="ev-test-1") as sink:
        infos = await asyncio.to_thread(pylsl.resolve_byprop, "source_id", "ev-test-1", 1, 10.0)
        assert infos, "marker stream not found"
        inlet = pylsl.StreamInlet(infos[0])
        await asyncio.to_thread(inlet.open_stream, 10.0)
        sink.emit(MonitorEvent(stream="s", kind="alarm_on", label="vt"))
        sample, _ = await asyncio.to_thread(inlet.pull_sample, 10.0)
        assert sample is not None and json.loads(sample[0])["label"] == "vt"
        inlet.close_stream()


async def test_mqtt_sink_publishes_queued_events_before_exit(mosquitto):
    """Events emitted just before the sink closes still reach the broker (drained on exit)."""
    import aiomqtt
    from paho.mqtt.client import MQTTv5

    n = 300
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, protocol=MQTTv5) as client:
        await client.subscribe("pedstream/v1/+/rhythm")
        async with MQTTSink(host=mosquitto.host, port=mosquitto.port) as sink:
            await asyncio.wait_for(sink.connected.wait(), 10)
            for i in range(n):
                sink.emit(MonitorEvent(stream="bed8", kind="call", label="sinus", p=i / n))
        assert sink.published == n and sink.dropped == 0
        got = []
        async with asyncio.timeout(10):
            async for msg in client.messages:
                got.append(json.loads(msg.payload)["p"])
                if len(got) == n:
                    break
    assert got == [round(i / n, 4) for i in range(n)]


async def test_lsl_markers_are_stamped_with_the_windows_lsl_time(lsl_config):
    """A call about an LSL stream is stamped at its window's end on the LSL clock (where it sits in an
    XDF recording), not when it was pushed; events on another clock are stamped when pushed."""
    import pylsl

    async with LSLMarkerSink(name="pedstream-events-stamp", source_id="ev-test-stamp") as sink:
        infos = await asyncio.to_thread(pylsl.resolve_byprop, "source_id", "ev-test-stamp", 1, 10.0)
        assert infos, "marker stream not found"
        inlet = pylsl.StreamInlet(infos[0])
        await asyncio.to_thread(inlet.open_stream, 10.0)
        now = pylsl.local_clock()
        window_start = now - 30.0  # a window classified long after it was recorded
        sink.emit(MonitorEvent(stream="s", kind="call", label="sinus", t_signal=window_start, clock="lsl",
                               extra={"t_signal_end": window_start + 2.5}))
        sink.emit(MonitorEvent(stream="m", kind="call", label="sinus", t_signal=12.0, clock="mqtt"))
        (s1, ts1), (s2, ts2) = [await asyncio.to_thread(inlet.pull_sample, 10.0) for _ in range(2)]
        inlet.close_stream()
    e1 = json.loads(s1[0])
    assert e1["schema_version"] == SCHEMA_VERSION and e1["clock"] == "lsl" and abs(e1["t_signal"] - window_start) < 1e-5
    assert abs(ts1 - (window_start + 2.5)) < 1e-3  # the window's end on the LSL clock
    assert abs(ts2 - now) < 5.0 and json.loads(s2[0])["t_signal"] == 12.0  # publisher clock: stamped when pushed


def test_event_json_carries_schema_version_and_signal_time():
    d = json.loads(MonitorEvent(stream="s", kind="signal_ok", t_signal=3.25, clock="replay").to_json())
    assert d["schema_version"] == SCHEMA_VERSION and d["t_signal"] == 3.25 and d["clock"] == "replay" and d["t"].endswith("+00:00")
