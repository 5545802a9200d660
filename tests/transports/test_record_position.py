"""Calls and alarms of replayed records carry their place in the source record (``record``,
``record_s`` from the record's start, ``record_sample`` at the record's own rate), whatever the
stream clock: the in-process replay on the monotonic clock (the engine reads it from the stream
info), a looping replay, and a transport replay the reference sink was told about.

Signals: the bundled simulated record x003 (977 Hz; its AVRT run raises an alarm with the demo model),
replayed from 10 s, and the real MIT-BIH 203 excerpt (tests/fixtures/real, 360 Hz)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

import pedstream
from pedstream.config import load_config
from pedstream.monitor.engine import Engine
from pedstream.monitor.reference import ReferenceLabels
from pedstream.transports.replay import ReplaySource, plan_replay, record_position
from pedstream.events import MonitorEvent

pytestmark = pytest.mark.timeout(60)

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
DEMO = Path(pedstream.__file__).resolve().parent / "assets" / "demo_records"


class _Collect:
    def __init__(self) -> None:
        self.events: list[MonitorEvent] = []

    async def __aenter__(self) -> "_Collect":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def emit(self, ev: MonitorEvent) -> None:
        if ev.kind in ("call", "alarm_on", "alarm_off"):
            self.events.append(ev)


async def _replay(cfg, session, plans) -> list[MonitorEvent]:
    """An in-process replay on the monotonic clock, as fast as the engine takes it (nothing dropped)."""
    engine: Engine | None = None

    async def throttle(sid: str, final: bool) -> None:
        while engine is not None and (engine.ingest_depth(sid) > 1 or engine.batcher.queue_depth(sid) >= 2
                                      or (final and (engine.batcher.pending or engine.batcher.busy))):
            await asyncio.sleep(0.002)

    queue: asyncio.Queue = asyncio.Queue()
    src = ReplaySource(events=queue, plans=plans, speed=math.inf, chunk_ms=100, throttle=throttle)
    sink = _Collect()
    engine = Engine(cfg=cfg, session=session, sources=[src], sinks=[sink])
    async with engine:
        await asyncio.wait_for(src.finished.wait(), 45)
        async with asyncio.timeout(45):  # a bounded poll: the last windows through the model
            while engine.batcher.pending or engine.batcher.busy:
                await asyncio.sleep(0.01)
    return sink.events


@pytest.mark.parametrize("record, start_s, model_path", [
    (DEMO / "x003", 10.0, DEMO.parent / "demo_model.onnx"),  # simulated; the demo model raises the AVRT alarm
    (REAL / "203", 20.0, None),  # real MIT-BIH at 360 Hz (resampled to the model rate), the monitor model
])
def test_calls_and_alarms_carry_the_record_position(record, start_s, model_path):
    # dsp_defer_s = 0: the throttle sends a chunk at a time, each is processed at once (as score episodes)
    model = pedstream.load_model(model_path, overrides=["alarms.strips=false", "stream.dsp_defer_s=0"])
    cfg = model.config
    plans = plan_replay([record], cfg.signal, start_s=start_s)
    fs, end_s = plans[0].fs, plans[0].stop / plans[0].fs
    events = asyncio.run(_replay(cfg, model.session, plans))
    calls = [e for e in events if e.kind == "call"]
    assert len(calls) >= (end_s - start_s - 5.0) / model.hop_s
    offset = calls[0].t_signal - calls[0].extra["record_s"]  # the stream clock is the monotonic one
    assert abs(offset) > 1.0 and all(abs(c.t_signal - c.extra["record_s"] - offset) < 1e-3 for c in calls)
    for ev in calls:
        d = ev.to_dict()
        assert d["record"] == record.name
        # the window's place: the replay's start + its start in the stream (window_start at the model rate)
        assert abs(d["record_s"] - (start_s + d["window_start"] / model.fs)) < 0.05
        assert d["record_sample"] == round(d["record_s"] * fs)
        assert start_s < d["record_s"] < end_s
    alarms = [e for e in events if e.kind.startswith("alarm")]
    if record.name == "x003":
        assert any(e.kind == "alarm_on" and e.label == "avrt" for e in alarms)
    for ev in alarms:  # the same clock-to-record mapping as the calls
        assert abs(ev.extra["record_s"] - (ev.t_signal - offset)) < 1e-3 and ev.extra["record"] == record.name
        assert ev.extra["record_sample"] == round(ev.extra["record_s"] * fs)


def test_record_position_wraps_with_a_looping_replay_and_needs_a_replay():
    meta = {"record": "/data/203", "record_t0": 1000.0, "record_fs": 360.0, "start_sample": 7200,
            "stop_sample": 21600}  # a replay of 20-60 s
    assert record_position(meta, 1000.0) == {"record": "203", "record_s": 20.0, "record_sample": 7200}
    assert record_position(meta, 1000.0 + 45.5) == {"record": "203", "record_s": 25.5, "record_sample": 9180}  # 2nd pass
    assert record_position(meta, None) == {} and record_position({"transport": "python"}, 5.0) == {}
    assert record_position(None, 5.0) == {}


def test_the_reference_sink_places_events_of_a_transport_replay():
    cfg = load_config()
    plan = plan_replay([REAL / "203"], cfg.signal, start_s=10.0)[0]
    ref = ReferenceLabels.from_config(cfg)
    ref.add(plan, t0=5000.0)  # e.g. the LSL time of the first sample sent
    call = MonitorEvent(stream="203", kind="call", label="af_afl", t_signal=5002.5, extra={"t_signal_end": 5005.0})
    alarm = MonitorEvent(stream="203", kind="alarm_on", label="af_afl", t_signal=5002.5)
    other = MonitorEvent(stream="elsewhere", kind="call", label="sinus", t_signal=5002.5)
    for ev in (call, alarm, other):
        ref.emit(ev)
    for ev in (call, alarm):
        assert ev.extra["record"] == "203" and ev.extra["record_s"] == 12.5 and ev.extra["record_sample"] == 4500
    assert "record_s" not in other.extra
    engine_said = MonitorEvent(stream="203", kind="call", label="af_afl", t_signal=5002.5,
                               extra={"t_signal_end": 5005.0, "record": "203", "record_s": 12.49, "record_sample": 4496})
    ref.emit(engine_said)
    assert engine_said.extra["record_s"] == 12.49  # the engine's own figure is kept
