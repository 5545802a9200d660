"""[stream] workers = 2: the DSP of the streams in two worker processes, windows back through shared
memory. Same calls as offline inference (train/serve parity through the worker path), streams spread
by assign(); a killed worker's streams move to the one left and are classified again."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from pedstream.config import load_config
from pedstream.errors import ConfigError
from pedstream.monitor.assign import assign
from pedstream.monitor.engine import Engine
from pedstream.transports.replay import ReplaySource
from tests.monitor.test_engine_e2e import DEMO, offline_record_calls
from tests.support.tiny_model import build_tiny_model, open_session


@pytest.fixture(scope="module")
def cfg():
    return load_config(overrides=["alarms.smoothing_windows=1", "stream.queue_windows=10000", "stream.max_batch=16",
                                  "stream.workers=2", "stream.ingest_queue_s=1000"])  # speed inf: nothing dropped while workers catch up


@pytest.fixture(scope="module")
def session(tmp_path_factory, cfg):
    return open_session(build_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx", cfg), cfg, max_batch=16)


async def _drain(eng, sub):
    async with asyncio.timeout(60):
        while (eng.batcher.pending or eng.batcher.busy or eng.workers._pending
               or any(w.outstanding for w in eng.workers.workers.values())):
            await asyncio.sleep(0.05)  # bounded by the timeout: waiting for the workers' last answers


async def test_worker_path_calls_equal_offline_inference(cfg, session, tmp_path):
    records = [DEMO / "x001", DEMO / "x002", DEMO / "x003"]
    refs = {}
    for r in records:
        ref, sid = offline_record_calls(r, cfg, session)
        refs[sid] = ref
    q: asyncio.Queue = asyncio.Queue()
    src = ReplaySource(events=q, records=records, signal_cfg=cfg.signal, speed=float("inf"), chunk_ms=49 * 1000.0 / 977)
    eng = Engine(cfg=cfg, session=session, sources=[src], alarms_dir=tmp_path / "alarms")
    sub = eng.subscribe()
    async with eng:
        ends = set()
        async with asyncio.timeout(90):
            async for ev in sub:
                if ev.kind == "signal_loss" and ev.extra.get("reason") == "end of record":
                    ends.add(ev.stream)
                    if len(ends) == len(records):
                        break
        await _drain(eng, sub)
        owners = dict(eng.workers.owner)
    sub.drain()
    assert owners == {sid: assign(sid, ["dsp0", "dsp1"]) for sid in refs}
    settle = int(round(cfg.filters.settle_s * 977.0))
    for sid, ref in refs.items():
        calls = {e.extra["window_start"]: (e.extra["raw_label"], e.extra["raw_p"])
                 for e in sub.seen if e.kind == "call" and e.stream == sid}
        assert set(calls) == {s for s in ref if s >= settle} and len(calls) >= 15, sid
        for s, (label, p) in calls.items():
            assert label == ref[s][0] and p == pytest.approx(ref[s][1], abs=1e-3), (sid, s)
    errors = [e.extra["message"] for e in sub.seen if e.kind == "error"]
    assert eng.summary()["dropped_windows"] == 0 and not errors, errors
    assert all(e.hr is not None for e in sub.seen if e.kind == "call" and e.extra["window_start"] > 5 * 977)


async def test_killed_worker_streams_move_and_are_classified_again(cfg, session, tmp_path):
    records = [DEMO / "x001", DEMO / "x002", DEMO / "x003"]
    q: asyncio.Queue = asyncio.Queue()
    src = ReplaySource(events=q, records=records, signal_cfg=cfg.signal, speed=4.0, loop=True)
    eng = Engine(cfg=cfg, session=session, sources=[src], alarms_dir=tmp_path / "alarms")
    sub = eng.subscribe()
    async with eng:
        await sub.wait_for(lambda e: e.kind == "call", timeout=60)
        sid = sorted(eng.workers.owner)[0]
        dead = eng.workers.owner[sid]
        other = ({"dsp0", "dsp1"} - {dead}).pop()
        os.kill(eng.workers.workers[dead].proc.pid, signal.SIGKILL)
        loss = await sub.wait_for(lambda e: e.kind == "signal_loss" and e.stream == sid
                                  and f"DSP worker {dead} stopped" in e.extra.get("reason", ""), timeout=30)
        assert f"moved to {other}" in loss.extra["reason"]
        # the stream warms up again on the other worker and is classified (speed 4: a few seconds)
        await sub.wait_for(lambda e: e.kind == "call" and e.stream == sid and e.t > loss.t, timeout=60)
        assert set(eng.workers.owner.values()) == {other} and eng.workers.names == [other]


def test_beat_model_with_workers_is_refused(cfg, session):
    with pytest.raises(ConfigError, match="stream.workers"):
        Engine(cfg=cfg, session=session, beat_session=session)
