"""Deferred DSP ([stream] dsp_defer_s): a stream's chunks wait in its ingest queue until they
complete its next window (then at once, the window carrying its last chunk's arrival) or until the
oldest has waited dsp_defer_s. Driven step by step with explicit arrival times: no sleeping."""

from __future__ import annotations

import numpy as np
import pytest

from pedstream.config import load_config
from pedstream.data.channels import CANONICAL_CHANNELS
from pedstream.monitor.engine import Engine
from pedstream.events import Chunk, ChunkReceived, StreamAdded, StreamInfo
from tests.support.helpers import make_signal
from tests.support.tiny_model import build_tiny_model, open_session

FS = 977.0


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    cfg = load_config(overrides=["alarms.strips=false", "stream.dsp_defer_s=0.5"])
    tiny = build_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx", cfg)
    return Engine(cfg=cfg, session=open_session(tiny, cfg), sources=[], alarms_dir=tmp_path_factory.mktemp("a"))


def test_chunks_wait_until_a_window_completes_or_the_deadline(engine):
    eng = engine
    windows: list = []
    eng.batcher.submit = windows.append  # the windows the DSP cuts (no inference needed here)
    info = StreamInfo(stream_id="d", source="replay", fs=FS, channel_names=list(CANONICAL_CHANNELS), units=["mV"] * 19)
    x = make_signal(fs=FS, seconds=10, seed=2)
    t = 100.0

    def step(ev, now):
        eng._enqueue(ev, now)
        eng._release_due(now)
        eng._serve_round()

    step(StreamAdded(info), t)
    pipe = eng.streams["d"].pipe
    i, n = 0, 49
    step(ChunkReceived(Chunk(stream_id="d", data=x[:n], timestamps=np.arange(n) / FS, first_index=0)), t)
    assert pipe.ring.total_written == n  # the first chunk: nothing known yet, processed at once
    i = n
    deferred = served = 0
    while i + n <= len(x):
        t += n / FS
        need = pipe.samples_to_window()
        before = pipe.ring.total_written
        c = Chunk(stream_id="d", data=x[i:i + n], timestamps=(i + np.arange(n)) / FS, first_index=i)
        step(ChunkReceived(c), t)
        i += n
        s = eng.streams["d"]
        if pipe.ring.total_written == before:  # deferred: neither a window's end nor the deadline
            deferred += 1
            assert s.pending_samples < need and t - s.pending[0][1] < 0.5
        else:
            served += 1
            assert pipe.ring.total_written == i and not s.pending  # everything queued, merged
    assert deferred > 5 * served > 0
    assert len(windows) >= 3
    for w in windows:  # each window carries the arrival of the chunk that held its last sample
        last = w.start + eng.window - 1  # ring index = stream index here (977 Hz, no gap)
        k = (last - 49) // 49  # chunks after the first: chunk k arrived at 100 + (k + 1) * 49 / FS
        assert w.t_received == pytest.approx(100.0 + (k + 1) * 49 / FS)
