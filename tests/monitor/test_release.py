"""Freeing the state of streams that ended (:mod:`pedstream.monitor.release`), in a running engine (real
ONNX Runtime with the tiny model, the engine's own tasks): a lost stream's pipeline is freed once its
delay has passed, its row stays, a stream back at once keeps its pipeline, a stream announced again is
revived, and ids that only ever had error events cannot grow the engine's tables. The sweeps are run
with explicit clocks, so no test waits for the delay. (At scale, with mosquitto and 1500 rotating ids:
tests/monitor/test_state_freed.py.)"""

from __future__ import annotations

import asyncio
import time

import pytest

from pedstream.config import load_config
from pedstream.data.channels import CANONICAL_CHANNELS
from pedstream.events import StreamAdded, StreamFailed, StreamInfo, StreamLost
from pedstream.monitor.engine import Engine
from pedstream.monitor.release import (
    KEEP_RELEASED,
    RELEASE_AFTER_S,
    released_count,
    sweep_released,
)
from tests.support.helpers import ArraySource, StreamSpec, make_signal
from tests.support.tiny_model import build_tiny_model, open_session

pytestmark = pytest.mark.timeout(60)
FS = 977.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx", load_config())


def _engine(tiny, tmp_path, sources) -> Engine:
    cfg = load_config(overrides=["alarms.strips=false"])
    return Engine(cfg=cfg, session=open_session(tiny, cfg), sources=sources, alarms_dir=tmp_path)


def _info(sid: str) -> StreamInfo:
    return StreamInfo(stream_id=sid, source="replay", fs=FS, channel_names=list(CANONICAL_CHANNELS), units=["mV"] * 19)


async def test_a_lost_stream_is_freed_after_its_delay_and_its_row_stays(tiny, tmp_path) -> None:
    ending = ArraySource(events=asyncio.Queue(), lose_at_end=True,
                         streams=[StreamSpec("gone", make_signal(fs=FS, seconds=4.0), FS)])
    staying = ArraySource(events=asyncio.Queue(), streams=[StreamSpec("stays", make_signal(fs=FS, seconds=4.0), FS)])
    eng = _engine(tiny, tmp_path, [ending, staying])
    sub = eng.subscribe()
    async with eng:
        await sub.wait_for(lambda e: e.kind == "signal_loss" and e.stream == "gone", timeout=20)
        t_lost = time.monotonic()
        assert eng.streams["gone"].pipe is not None  # not at once: its last windows are classified first
        assert sweep_released(eng, t_lost + 0.5 * RELEASE_AFTER_S) is not None
        assert eng.streams["gone"].pipe is not None and released_count(eng) == 0
        sweep_released(eng, t_lost + RELEASE_AFTER_S + 2.0)
        assert eng.streams["gone"].pipe is None and eng.streams["stays"].pipe is not None
        assert released_count(eng) == 1 and eng.summary()["streams_released"] == 1
        rows = {s.stream_id: s for s in eng.snapshot().streams}
        assert set(rows) >= {"gone", "stays"} and rows["gone"].quality != "warm-up"  # the loss is still shown
        # the stream announced again gets a new pipeline and is no longer among the released ones
        eng._enqueue(StreamAdded(_info("gone")), time.monotonic())
        eng._serve_round()
        assert eng.streams["gone"].pipe is not None and "gone" not in eng._released_streams
        assert "gone" not in eng._streams_release_due


async def test_a_stream_lost_and_back_at_once_keeps_its_pipeline(tiny, tmp_path) -> None:
    eng = _engine(tiny, tmp_path, [])
    async with eng:
        eng._enqueue(StreamAdded(_info("meta-changed")), time.monotonic())
        eng._serve_round()
        pipe = eng.streams["meta-changed"].pipe
        now = time.monotonic()
        eng._enqueue(StreamLost("meta-changed", "meta withdrawn"), now)
        eng._enqueue(StreamAdded(_info("meta-changed")), now)  # already queued behind the loss
        eng._serve_round()
        sweep_released(eng, time.monotonic() + RELEASE_AFTER_S + 2.0)
        assert eng.streams["meta-changed"].pipe is pipe and released_count(eng) == 0


async def test_ids_that_only_had_errors_are_bounded(tiny, tmp_path) -> None:
    """A publisher refused again and again under new ids: each id's state is kept among the released ones,
    the oldest dropped whole beyond ``KEEP_RELEASED``."""
    eng = _engine(tiny, tmp_path, [])
    sub = eng.subscribe()
    n = KEEP_RELEASED + 100
    async with eng:
        for k in range(n):
            eng._enqueue(StreamFailed(f"refused{k:04d}", "not authorised"), time.monotonic())
            eng._serve_round()
        errors = [e for e in sub.drain() if e.kind == "error"]
        assert len(eng.streams) <= KEEP_RELEASED and "refused0000" not in eng.streams
        assert f"refused{n - 1:04d}" in eng.streams
    assert len(errors) >= 1  # the refusals were reported (throttled per id), not dropped silently
