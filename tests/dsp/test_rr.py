"""RR-interval features: hand-checked values, streaming equals offline for any way of feeding."""

from __future__ import annotations

import numpy as np
import pytest

from pedstream.dsp.rr import RR_FEATURES, RRFeatures, rr_features

FS = 360.0


def test_values_of_a_premature_beat():
    # 1 s rhythm, a beat 0.5 s early, then a 1.5 s compensatory pause
    beats = np.array([0, 360, 720, 900, 1440, 1800])
    f = rr_features(beats, fs=FS)
    col = {n: i for i, n in enumerate(RR_FEATURES)}
    early = f[3]
    assert early[col["pre_rr"]] == pytest.approx(0.5)
    assert early[col["post_rr"]] == pytest.approx(1.5)
    assert early[col["local_rr"]] == pytest.approx((1 + 1 + 0.5) / 3)
    assert early[col["pre_local"]] < -0.3 and early[col["post_pre"]] == pytest.approx(np.log(3.0))
    assert f[0, col["pre_rr"]] == pytest.approx(1.0)  # first beat: pre_rr := post_rr
    assert f[-1, col["post_rr"]] == f[-1, col["pre_rr"]]  # last beat: post_rr := pre_rr


def test_intervals_are_clipped():
    f = rr_features(np.array([0, 10, 5000]), fs=FS)
    assert f[:, :4].min() >= 0.15 - 1e-6 and f[:, :4].max() <= 3.0 + 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_equals_offline(seed):
    rng = np.random.default_rng(seed)
    beats = np.cumsum(rng.integers(100, 700, size=600))
    offline = rr_features(beats, fs=FS, local_beats=10, long_beats=50)
    stream = RRFeatures(fs=FS, local_beats=10, long_beats=50)
    got: list[tuple[int, np.ndarray]] = []
    # feed in random-sized groups, as a detector reports beats in bursts
    i = 0
    while i < beats.size:
        n = int(rng.integers(1, 6))
        for r in beats[i:i + n]:
            got.extend(stream.push(int(r)))
        i += n
    got.extend(stream.flush())
    assert [b for b, _ in got] == beats.tolist()
    np.testing.assert_array_equal(np.stack([v for _, v in got]), offline)
    assert stream.flush() == []


def test_bad_input():
    with pytest.raises(ValueError, match="must increase"):
        rr_features(np.array([5, 5]), fs=FS)
    with pytest.raises(ValueError, match="fs"):
        RRFeatures(fs=0)
    assert rr_features(np.array([], dtype=np.int64), fs=FS).shape == (0, len(RR_FEATURES))
