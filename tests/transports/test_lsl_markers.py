"""The LSL marker outlet (`pedstream run --lsl-markers`) through a real LSL inlet: stamps never go
backwards (a call stamped at its window's end, then an alarm about the same window's start), the
stream carries its metadata (source, model, schema version) and the configured source_id."""

from __future__ import annotations

import asyncio
import json

import pytest

pylsl = pytest.importorskip("pylsl")

from pedstream.transports.lsl.outlet import LSLMarkerSink  # noqa: E402
from pedstream.events import SCHEMA_VERSION, MonitorEvent, event_schema  # noqa: E402


async def test_markers_are_monotonic_and_the_stream_says_what_it_is(lsl_config):
    import jsonschema

    model = {"file": "monitor_model.onnx", "class_names": ["sinus", "vt"], "window_s": 2.5, "fs": 977.0}
    async with LSLMarkerSink(name="pedstream-events-mono", source_id="ward3-monitor-a", model=model) as sink:
        infos = await asyncio.to_thread(pylsl.resolve_byprop, "source_id", "ward3-monitor-a", 1, 10.0)
        assert infos, "marker stream not found by its configured source_id"
        inlet = pylsl.StreamInlet(infos[0])
        full = await asyncio.to_thread(inlet.info, 10.0)
        await asyncio.to_thread(inlet.open_stream, 10.0)
        t0 = pylsl.local_clock() - 20.0
        evs = []
        for k in range(4):  # a call stamped at its window end, then the alarm it raised at the window start
            start = t0 + 1.25 * k
            evs.append(MonitorEvent(stream="s", kind="call", label="vt", p=0.9, t_signal=start, clock="lsl",
                                    extra={"t_signal_end": start + 2.5, "window_start": k * 1221}))
            evs.append(MonitorEvent(stream="s", kind="alarm_on" if k == 1 else "signal_ok", label="vt" if k == 1 else None,
                                    t_signal=start, clock="lsl",
                                    extra={"priority": "high", "alarm_id": "a1"} if k == 1 else {"reason": "data"}))
        evs.append(MonitorEvent(stream="m", kind="error", extra={"message": "x"}))  # stamped when pushed
        for ev in evs:
            sink.emit(ev)
        got = [await asyncio.to_thread(inlet.pull_sample, 10.0) for _ in evs]
        inlet.close_stream()
    stamps = [ts for _, ts in got]
    assert all(b >= a for a, b in zip(stamps, stamps[1:]))  # never backwards
    assert sink.raised >= 3 and abs(stamps[0] - (t0 + 2.5)) < 1e-3
    v = jsonschema.Draft202012Validator(event_schema())
    for (sample, _), ev in zip(got, evs):
        d = json.loads(sample[0])
        v.validate(d)
        assert d["t_signal"] == (None if ev.t_signal is None else round(ev.t_signal, 6))  # the exact time stays
    desc = full.desc()
    assert full.source_id() == "ward3-monitor-a" and full.type() == "Markers"
    assert desc.child("source").child_value("name") == "pedstream"
    assert desc.child("model").child_value("file") == "monitor_model.onnx"
    assert desc.child("model").child_value("class_names") == "sinus,vt"
    assert desc.child("events").child_value("schema_version") == str(SCHEMA_VERSION)
