"""``pedstream.classify_rhythm`` gives the monitor's rhythm-context calls: a real vfdb VT excerpt
(tests/fixtures/real/rhythm/README.md) replayed through the live engine with the rhythm layer, and the
same samples through the API, with the shipped rhythm model (ONNX Runtime)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import wfdb

import pedstream
from pedstream.config import load_config
from pedstream.errors import StreamError
from pedstream.model.rhythm_runtime import RhythmModel
from pedstream.monitor.engine import Engine
from pedstream.transports.replay import ReplaySource
from tests.support.tiny_model import build_tiny_model

FIX = Path(__file__).resolve().parent / "fixtures" / "real" / "rhythm"
OVERRIDES = ["signal.aliases.ECG=II", "stream.queue_windows=10000", "alarms.strips=false", "replay.chunk_ms=50"]


@pytest.fixture(scope="module")
def cfg():
    return load_config(overrides=OVERRIDES)


@pytest.fixture(scope="module")
def model(tmp_path_factory, cfg):
    return pedstream.load_model(build_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx", cfg), config=cfg)


async def monitor_rhythm(cfg, model, tmp_path) -> list:
    q: asyncio.Queue = asyncio.Queue()
    src = ReplaySource(events=q, records=[FIX / "vfdb421_vt"], signal_cfg=cfg.signal, speed=6.0, chunk_ms=50.0)
    eng = Engine(cfg=cfg, session=model.session, sources=[src], alarms_dir=tmp_path, rhythm_model=RhythmModel.load())
    sub = eng.subscribe()
    async with eng:
        await sub.wait_for(lambda e: e.kind == "signal_loss", timeout=120)  # the end of the record
    sub.drain()
    return [e for e in sub.seen if e.kind == "rhythm"]


def test_the_api_gives_the_monitors_rhythm_calls(cfg, model, tmp_path) -> None:
    rec = wfdb.rdrecord(str(FIX / "vfdb421_vt"))
    calls = pedstream.classify_rhythm(rec.p_signal.astype(np.float32), fs=rec.fs, channels=rec.sig_name, model=model)
    events = asyncio.run(monitor_rhythm(cfg, model, tmp_path))
    # the monitor stops at the record's end: its last call may not be out when the stream is lost
    assert len(events) > 40 and 0 <= len(calls) - len(events) <= 1
    pairs = list(zip(calls, events))
    assert sum(c.label == e.label for c, e in pairs) >= 0.95 * len(pairs), [(c.label, e.label) for c, e in pairs]
    assert sum(abs(c.p - e.p) < 1e-4 and c.beats == e.extra["beats"] for c, e in pairs) >= 0.9 * len(pairs)
    assert "vt" in {c.label for c in calls}  # the record is VT from 0.7 s
    # how much context each call had: growing from the first beats, at most [rhythm_context] context_s
    had = [c.context_s for c in calls]
    assert had[0] < cfg.rhythm_context.context_s and had == sorted(had)
    assert max(had) <= cfg.rhythm_context.context_s
    assert all(abs(sum(c.probabilities.values()) - 1.0) < 1e-3 for c in calls)


def test_bad_signal_is_one_clear_error(model) -> None:
    with pytest.raises(StreamError, match="classify_rhythm.*does not match 2 channel names"):
        pedstream.classify_rhythm(np.zeros((1000, 3)), fs=250, channels=["I", "II"], model=model)
