"""The window geometry ``score episodes`` replays with (pedstream/score/replay_events.py): one call per
hop over the whole replayed span, on record time, nothing dropped, at any length (a span longer than
``[stream] ring_seconds``), the same windows as ``pedstream.classify`` on the same samples.

Signal: the real MIT-BIH 203 excerpt (tests/fixtures/real, 60 s at 360 Hz)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import pedstream
from pedstream.score.replay_events import run_replay

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("start_s", [0.0, 12.0])
def test_one_call_per_hop_over_the_whole_replay_on_record_time(start_s):
    model = pedstream.load_model(overrides=["stream.ring_seconds=10"])  # a ring far shorter than the replay
    cfg = model.config
    run = run_replay(cfg, model.session, [REAL / "203"], start_s=start_s)
    assert not run.dropped_windows and not run.dropped_samples
    calls = [e for e in run.events["203"] if e.kind == "call"]
    settle = math.ceil(cfg.filters.settle_s / run.hop_s - 1e-9) * run.hop_s  # first window: after the warm-up
    n = int((60.0 - start_s - settle - run.window_s) // run.hop_s) + 1
    assert len(calls) == n
    t = np.asarray([e.t_signal for e in calls])
    assert abs(t[0] - (start_s + settle)) < 0.05  # record time (the replay's own clock), from the warm-up on
    assert np.allclose(np.diff(t), run.hop_s, atol=1e-3)
    assert abs(run.window_s - cfg.segments.window_s) < 1e-3 and abs(run.hop_s - cfg.segments.hop_s) < 1e-3
    # the same windows, and the same raw calls, as classify on the samples replayed
    rec = pedstream.read_record(REAL / "203", start_s=start_s)
    direct = pedstream.classify(rec.signal[:, rec.present], fs=rec.fs, channels=rec.present_channels, model=model)
    assert len(direct) == len(calls)
    for c, e in zip(direct, calls):
        assert e.extra["raw_label"] == c.label and abs(e.extra["raw_p"] - round(c.p, 4)) < 1e-3
        assert abs(e.extra["record_s"] - start_s - c.start_s) < 0.05
