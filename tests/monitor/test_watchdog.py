"""The engine's watchdog (:class:`pedstream.monitor.watchdog.Watchdog`), its progress check run with explicit
clocks in a running engine (real ONNX Runtime with the tiny model): a stream without data while its source
has not reported it lost, and one whose queued data is not served, are flagged once with one error
event; the flag clears when the stream moves again or is reported lost; within the budget nothing is
flagged. (In real time, with a stalling source and a blocked event loop:
tests/monitor/test_engine_reliability.py.)"""

from __future__ import annotations

import time

import numpy as np
import pytest

from pedstream.config import load_config
from pedstream.data.channels import CANONICAL_CHANNELS
from pedstream.events import Chunk, ChunkReceived, StreamAdded, StreamInfo, StreamLost
from pedstream.monitor.engine import Engine
from tests.support.tiny_model import build_tiny_model, open_session

pytestmark = pytest.mark.timeout(60)
FS = 977.0
BUDGET = 5.0  # [stream] watchdog_s: the engine's own watchdog task sees nothing that old during a test


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx", load_config())


def _engine(tiny, tmp_path) -> Engine:
    # dsp_defer_s=0: each turn takes the data at once (no ingest task here releases deferred streams)
    cfg = load_config(overrides=[f"stream.watchdog_s={BUDGET}", "stream.dsp_defer_s=0", "alarms.strips=false"])
    return Engine(cfg=cfg, session=open_session(tiny, cfg), sources=[], alarms_dir=tmp_path)


def _added(sid: str) -> StreamAdded:
    return StreamAdded(StreamInfo(stream_id=sid, source="replay", fs=FS, channel_names=list(CANONICAL_CHANNELS),
                                  units=["mV"] * 19))


def _chunk(sid: str, first: int, n: int = 98) -> ChunkReceived:
    return ChunkReceived(Chunk(stream_id=sid, data=np.zeros((n, 19), np.float32),
                               timestamps=(first + np.arange(n)) / FS, first_index=first))


def _row(eng: Engine, sid: str):
    return next(s for s in eng.snapshot().streams if s.stream_id == sid)


async def test_a_stream_without_data_is_flagged_once_and_cleared_when_data_comes(tiny, tmp_path) -> None:
    eng = _engine(tiny, tmp_path)
    sub = eng.subscribe()
    async with eng:
        t0 = time.monotonic()
        for ev in (_added("quiet"), _chunk("quiet", 0)):
            eng._enqueue(ev, t0)
            eng._serve_round()
        eng.check_progress(t0 + 0.9 * BUDGET)
        assert _row(eng, "quiet").stalled is None and eng.watchdog_reports == 0
        eng.check_progress(t0 + BUDGET + 1.0)
        why = _row(eng, "quiet").stalled
        assert why is not None and why.startswith("no data for 6.0 s") and "not reported it lost" in why
        eng.check_progress(t0 + BUDGET + 2.0)  # still stalled: no second report
        errors = [e for e in sub.drain() if e.kind == "error"]
        assert len(errors) == 1 and eng.watchdog_reports == 1
        msg = errors[0].extra["message"]
        assert errors[0].stream == "quiet" and msg.startswith("watchdog: no data") and f"watchdog_s {BUDGET:g}" in msg
        t1 = t0 + BUDGET + 3.0
        eng._enqueue(_chunk("quiet", 98), t1)  # data again
        eng._serve_round()
        eng.check_progress(t1 + 0.5)
        assert _row(eng, "quiet").stalled is None and eng.summary()["watchdog_reports"] == 1


async def test_a_stream_reported_lost_is_not_a_stall(tiny, tmp_path) -> None:
    eng = _engine(tiny, tmp_path)
    async with eng:
        t0 = time.monotonic()
        for ev in (_added("gone"), _chunk("gone", 0), StreamLost("gone", "meta withdrawn")):
            eng._enqueue(ev, t0)
            eng._serve_round()
        eng.check_progress(t0 + 10 * BUDGET)
        assert _row(eng, "gone").stalled is None and eng.watchdog_reports == 0


async def test_queued_data_that_is_not_served_is_flagged(tiny, tmp_path) -> None:
    eng = _engine(tiny, tmp_path)
    sub = eng.subscribe()
    async with eng:
        t0 = time.monotonic()
        eng._enqueue(_added("stuck"), t0)
        eng._serve_round()
        eng._enqueue(_chunk("stuck", 0), t0)  # queued; no ingest task serves it (the engine has no source)
        eng._enqueue(_chunk("stuck", 98), t0)
        eng.check_progress(t0 + BUDGET + 0.5)
        why = _row(eng, "stuck").stalled
        assert why is not None and why.startswith("no progress: 2 event(s) queued, none processed for 5.5 s")
        [err] = [e for e in sub.drain() if e.kind == "error"]
        assert err.stream == "stuck" and "no progress" in err.extra["message"]
        eng._serve_round()  # served at last (the two contiguous chunks in one turn)
        assert not eng.streams["stuck"].pending
        eng.check_progress(time.monotonic())  # served now, and its last data is well within the budget
        assert _row(eng, "stuck").stalled is None and eng.watchdog_reports == 1
