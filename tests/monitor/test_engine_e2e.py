"""The engine end to end with real components: ONNX Runtime, pipelines, batcher, alarms, sinks.

- train/serve parity: the engine's calls on a streamed record equal offline batch inference
  (filter_signal on the whole record + windows + normalize_window + ModelSession.run), whatever
  the chunk size;
- a stream with unknown channel names becomes an ``error`` event while another stream continues;
- replay -> LSL outlet -> engine and replay -> MQTT (real mosquitto) -> engine (further below).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from pedstream.config import load_config
from pedstream.dsp.filters import filter_signal
from pedstream.dsp.windowing import normalize_window
from pedstream.monitor.engine import Engine
from pedstream.outputs.jsonlines import JsonLinesSink
from tests.support.helpers import ArraySource, StreamSpec, make_signal
from tests.support.tiny_model import build_tiny_model, open_session

FS = 977.0


@pytest.fixture(scope="module")
def cfg():
    # no smoothing (calls = per-window argmax) and queues long enough that nothing is dropped
    return load_config(overrides=["alarms.smoothing_windows=1", "stream.queue_windows=10000", "stream.max_batch=16"])


@pytest.fixture(scope="module")
def session(tmp_path_factory, cfg):
    return open_session(build_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx", cfg), cfg, max_batch=16)


def offline_calls(x: np.ndarray, cfg, session) -> dict[int, tuple[str, float]]:
    win = session.window_samples
    hop = int(round(cfg.segments.hop_s * FS))
    filt = filter_signal(x, FS, cfg.filters)  # (n, 19)
    starts = list(range(0, len(x) - win + 1, hop))
    xs = normalize_window(np.stack([filt[s:s + win].T for s in starts]), np.ones((len(starts), 19), bool))
    logits, _ = session.run(xs[:, :12], xs[:, 12:], np.ones((len(starts), 19), np.float32))
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = z / z.sum(axis=1, keepdims=True)
    return {s: (session.class_names[int(np.argmax(p[i]))], float(p[i].max())) for i, s in enumerate(starts)}


async def run_engine(cfg, session, specs, tmp_path, *, expect_lost: int):
    q: asyncio.Queue = asyncio.Queue()
    src = ArraySource(events=q, streams=specs, lose_at_end=True)
    events_path = tmp_path / "events.jsonl"
    eng = Engine(cfg=cfg, session=session, sources=[src], sinks=[JsonLinesSink(events_path)], alarms_dir=tmp_path / "alarms")
    sub = eng.subscribe()
    async with eng:
        lost = 0
        async with asyncio.timeout(60):
            async for ev in sub:
                if ev.kind == "signal_loss" and ev.extra.get("reason") == "end of data":
                    lost += 1
                    if lost == expect_lost:
                        break
        # every window submitted before the end has been classified once the queues are empty
        async with asyncio.timeout(30):
            while eng.batcher.pending or eng.batcher.busy:
                await sub.wait_for(lambda e: e.kind == "call", timeout=30)
    sub.drain()
    return eng, sub.seen, [json.loads(line) for line in events_path.read_text().splitlines()]


DEMO = Path(__file__).resolve().parents[2] / "pedstream" / "assets" / "demo_records"


def offline_record_calls(record: Path, cfg, session) -> tuple[dict[int, tuple[str, float]], str]:
    """Offline batch inference on a whole WFDB record, exactly as training cuts windows."""
    from pedstream.transports.replay import plan_replay

    plan = plan_replay([record], cfg.signal)[0]
    x = plan.record.read(plan.start, plan.stop).data  # (n, 19) mV
    present = np.zeros(19, bool)
    present[plan.columns] = True
    x = np.where(present[None, :], x, 0.0).astype(np.float32)
    win, hop = session.window_samples, int(round(cfg.segments.hop_s * FS))
    filt = filter_signal(x, FS, cfg.filters)  # (n, 19)
    starts = list(range(0, len(x) - win + 1, hop))
    xs = normalize_window(np.stack([filt[s:s + win].T for s in starts]), np.broadcast_to(present, (len(starts), 19)))
    mask = np.broadcast_to(present.astype(np.float32), (len(starts), 19))
    logits, _ = session.run(xs[:, :12], xs[:, 12:], mask)
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = z / z.sum(axis=1, keepdims=True)
    return {s: (session.class_names[int(np.argmax(p[i]))], float(p[i].max())) for i, s in enumerate(starts)}, plan.stream_id


@pytest.mark.parametrize("chunk", [7, 49, 977])
async def test_train_serve_parity_replayed_record_any_chunk_size(cfg, session, tmp_path, chunk):
    from pedstream.transports.replay import ReplaySource

    record = DEMO / "x002"
    ref, sid = offline_record_calls(record, cfg, session)
    q: asyncio.Queue = asyncio.Queue()
    src = ReplaySource(events=q, records=[record], signal_cfg=cfg.signal, speed=float("inf"),
                       chunk_ms=chunk * 1000.0 / FS)
    eng = Engine(cfg=cfg, session=session, sources=[src], alarms_dir=tmp_path / "alarms")
    sub = eng.subscribe()
    async with eng:
        await sub.wait_for(lambda e: e.kind == "signal_loss" and e.stream == sid, timeout=60)  # end of record
        async with asyncio.timeout(30):
            while eng.batcher.pending or eng.batcher.busy:
                await sub.wait_for(lambda e: e.kind == "call", timeout=30)
    sub.drain()
    calls = {e.extra["window_start"]: (e.extra["raw_label"], e.extra["raw_p"]) for e in sub.seen if e.kind == "call"}
    settle = int(round(cfg.filters.settle_s * FS))
    expected = {s for s in ref if s >= settle}
    assert set(calls) == expected and len(expected) >= 15
    for s, (label, p) in calls.items():
        assert label == ref[s][0], s
        assert p == pytest.approx(ref[s][1], abs=1e-3)
    assert eng.summary()["dropped_windows"] == 0 and eng.counts.get("error", 0) == 0


async def test_synthetic_stream_parity_chunk_7(cfg, session, tmp_path):
    x = make_signal(fs=FS, seconds=20, hr=110, seed=11)
    ref = offline_calls(x, cfg, session)
    eng, seen, lines = await run_engine(cfg, session, [StreamSpec("rec", x, FS, chunk=7)], tmp_path, expect_lost=1)
    calls = {e.extra["window_start"]: (e.extra["raw_label"], e.extra["raw_p"], e.label) for e in seen if e.kind == "call"}
    settle = int(round(cfg.filters.settle_s * FS))
    assert set(calls) == {s for s in ref if s >= settle} and len(calls) == 13
    for s, (label, p, smoothed) in calls.items():
        assert label == ref[s][0] and smoothed == label
        assert p == pytest.approx(ref[s][1], abs=1e-3)
    assert [ln["kind"] for ln in lines].count("call") == 13


async def test_unknown_channels_error_while_other_stream_continues(cfg, session, tmp_path):
    good = StreamSpec("good", make_signal(fs=FS, seconds=10, seed=1), FS, chunk=200)
    bad = StreamSpec("bad", make_signal(fs=FS, seconds=10, n_ch=3, seed=2), FS, chunk=200,
                     channel_names=["foo", "bar", "baz"])
    eng, seen, lines = await run_engine(cfg, session, [bad, good], tmp_path, expect_lost=1)
    errors = [e for e in seen if e.kind == "error"]
    assert len(errors) == 1 and errors[0].stream == "bad"
    assert "none of the channel names ['foo', 'bar', 'baz']" in errors[0].extra["message"]
    assert any(e.kind == "call" and e.stream == "good" for e in seen)
    assert not any(e.kind == "call" and e.stream == "bad" for e in seen)
    assert eng.status["bad"].quality == "error" and eng.status["good"].windows > 0
    assert {ln["kind"] for ln in lines} >= {"error", "call"}


async def test_alarm_onset_writes_strip_png(tmp_path):
    # a model biased towards vt raises a high-priority alarm; its strip is drawn in a thread
    cfg = load_config(overrides=["stream.queue_windows=10000", "alarms.onset_windows=2"])
    sess = open_session(build_tiny_model(tmp_path / "vt.onnx", cfg, bias={"vt": 50.0}), cfg)
    eng, seen, lines = await run_engine(cfg, sess, [StreamSpec("bed", make_signal(fs=FS, seconds=12, seed=3), FS, chunk=300)],
                                        tmp_path, expect_lost=1)
    on = [e for e in seen if e.kind == "alarm_on"]
    assert [(e.label, e.extra["priority"]) for e in on] == [("vt", "high")]
    strip = tmp_path / "alarms" / on[0].extra["strip"].rsplit("/", 1)[-1]
    assert strip.is_file() and strip.read_bytes()[:4] == b"\x89PNG"
    assert eng.summary()["alarms"] == 1 and eng.summary()["strips"] == 1


async def _collect_calls(sub, sid: str, n: int, timeout: float = 60.0) -> list:
    calls = []
    async with asyncio.timeout(timeout):
        while len(calls) < n:
            calls.append(await sub.wait_for(lambda e: e.kind == "call" and e.stream == sid, timeout=timeout))
    return calls


async def test_replay_to_lsl_outlet_to_engine(cfg, session, tmp_path, lsl_config):
    from pedstream.transports.lsl.inlet import LSLSource
    from pedstream.transports.lsl.outlet import replay_to_lsl
    from pedstream.transports.replay import plan_replay

    sid = f"e2e-lsl-{lsl_config.session_id[-6:]}"
    plans = plan_replay([DEMO / "x003"], cfg.signal, stream_id=sid, seconds=16)
    q: asyncio.Queue = asyncio.Queue()
    eng = Engine(cfg=cfg, session=session, sources=[LSLSource(events=q, predicate=f"name='{sid}'")],
                 sinks=[JsonLinesSink(tmp_path / "ev.jsonl")], alarms_dir=tmp_path / "alarms")
    sub = eng.subscribe()
    async with eng:
        feeder = asyncio.create_task(replay_to_lsl(plans, speed=4.0, chunk_ms=40.0, wait_for_consumers_s=15.0))
        calls = await _collect_calls(sub, sid, 6)
        sent = await asyncio.wait_for(feeder, timeout=60)
    assert sent[sid] == plans[0].stop - plans[0].start
    st = eng.status[sid]
    assert st.source == "lsl" and st.n_present == len(plans[0].channel_names)
    assert all(c.latency_ms is not None and c.latency_ms >= 0 for c in calls)
    assert all(c.label in session.class_names and 0 < c.p <= 1 for c in calls)
    assert any(c.hr is not None and 40 < c.hr < 260 for c in calls)
    lines = [json.loads(x) for x in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert sum(1 for x in lines if x["kind"] == "call" and x["stream"] == sid) >= 6


async def test_replay_to_mqtt_broker_to_engine(cfg, session, tmp_path, mosquitto):
    from pedstream.transports.mqtt import MQTTSource
    from pedstream.transports.mqtt.publisher import replay_to_mqtt
    from pedstream.transports.replay import plan_replay

    sid = "e2e-mqtt"
    plans = plan_replay([DEMO / "x001"], cfg.signal, stream_id=sid, seconds=16, age_years=0.5)
    q: asyncio.Queue = asyncio.Queue()
    src = MQTTSource(events=q, host=mosquitto.host, port=mosquitto.port, topic_prefix="pedstream/v1")
    eng = Engine(cfg=cfg, session=session, sources=[src], alarms_dir=tmp_path / "alarms")
    sub = eng.subscribe()
    async with eng:
        await asyncio.wait_for(src.connected.wait(), timeout=15)
        feeder = asyncio.create_task(replay_to_mqtt(plans, host=mosquitto.host, port=mosquitto.port, speed=4.0,
                                                    chunk_ms=40.0))
        calls = await _collect_calls(sub, sid, 6)
        await asyncio.wait_for(feeder, timeout=60)
    st = eng.status[sid]
    assert st.source == "mqtt" and st.age_years == 0.5 and st.hr_band.startswith("<1 y")
    assert [c.extra["window_start"] for c in calls] == sorted(c.extra["window_start"] for c in calls)
    assert eng.counts.get("error", 0) == 0
