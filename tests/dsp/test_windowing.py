"""window_samples, Windower, normalize_window (THE normalisation), normalize_split, split_modalities."""

from __future__ import annotations

import numpy as np
import pytest

from pedstream.dsp.windowing import (
    NORM_CLIP,
    NORM_EPS,
    NORMALIZATION,
    Windower,
    NormWork,
    normalize_split,
    normalize_window,
    split_modalities,
    window_samples,
)
from pedstream.errors import ConfigError, StreamError


def test_window_samples() -> None:
    assert window_samples(2.5, 977.0) == 2442
    assert window_samples(1.25, 977.0) == 1221
    assert window_samples(2.0, 360.0) == 720
    with pytest.raises(ConfigError, match="window_s"):
        window_samples(0.0, 977.0)


@pytest.mark.parametrize("chunk", [1, 7, 49, 977, 10_000])
def test_windower_yields_each_start_once_whatever_the_arrival(chunk: int) -> None:
    w = Windower(window=2442, hop=1221)
    starts = []
    for total in range(chunk, 10_000 + chunk, chunk):
        starts += w.update(min(total, 10_000))
    expected = list(range(0, 10_000 - 2442 + 1, 1221))
    assert starts == expected


def test_windower_start_and_reset() -> None:
    w = Windower(window=10, hop=4, start=5)
    assert w.update(14) == []
    assert w.update(15) == [5]
    assert w(30) == [9, 13, 17]
    w.reset(100)
    assert w.update(109) == [] and w.update(120) == [100, 104, 108]
    with pytest.raises(ConfigError, match="hop"):
        Windower(window=10, hop=0)


def test_normalize_window_zscore_absent_flat_and_clip() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(19, 500))
    x[4] = 7.0  # flat channel
    x[5, 100] = 1e6  # a huge spike
    present = np.ones(19, dtype=bool)
    present[15] = False
    z = normalize_window(x, present)
    assert NORMALIZATION == "window_zscore"
    assert z.dtype == np.float32 and z.shape == x.shape
    ok = [c for c in range(19) if c not in (4, 5, 15)]
    np.testing.assert_allclose(z[ok].mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(z[ok].std(axis=1), 1.0, atol=1e-5)
    assert (z[4] == 0).all() and (z[15] == 0).all()
    assert z[5].max() == NORM_CLIP and np.abs(z).max() <= NORM_CLIP


def test_normalize_batch_equals_per_window_and_scale_invariance() -> None:
    rng = np.random.default_rng(1)
    xb = rng.standard_normal((4, 19, 300))
    present = rng.random((4, 19)) > 0.2
    zb = normalize_window(xb, present)
    for b in range(4):
        np.testing.assert_array_equal(zb[b], normalize_window(xb[b], present[b]))
    np.testing.assert_allclose(normalize_window(xb * 1000 + 5, present), zb, atol=1e-5)
    # float32 input (the engine) and float64 input (offline) agree
    np.testing.assert_allclose(normalize_window(xb.astype(np.float32), present), zb, atol=1e-5)
    # one (19,) mask applies to every window of a batch
    np.testing.assert_array_equal(normalize_window(xb, present[0])[2], normalize_window(xb[2], present[0]))


def _plain_zscore(x: np.ndarray, present: np.ndarray) -> np.ndarray:
    """The definition written as plain numpy (the way the module first computed it)."""
    x64 = x.astype(np.float64)
    mean, std = x64.mean(axis=-1, keepdims=True), x64.std(axis=-1, keepdims=True)
    ok = (std >= NORM_EPS) & np.broadcast_to(present, x.shape[:-1])[..., None]
    z = (x64 - mean) / np.where(ok, std, 1.0)
    return np.where(ok, np.clip(z, -NORM_CLIP, NORM_CLIP), 0.0).astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
def test_normalize_is_bit_for_bit_the_plain_definition_and_split_its_channels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    b, t = int(rng.integers(1, 6)), int(rng.integers(2, 2500))
    x = (rng.standard_normal((b, 19, t)) * rng.uniform(1e-3, 20) + rng.uniform(-3, 3)).astype(np.float32)
    x[:, 4] = 0.25  # flat
    x[:, 7] *= 1e-8  # below NORM_EPS
    x[0, 9, : t // 2] *= 1e4  # clipped
    present = rng.random((b, 19)) < 0.8
    ref = _plain_zscore(x, present)
    z = normalize_window(x, present)
    assert np.array_equal(z.view(np.uint32), ref.view(np.uint32))
    ecg, iegm = normalize_split(x, present, 12)
    assert ecg.flags.c_contiguous and iegm.flags.c_contiguous and ecg.dtype == iegm.dtype == np.float32
    assert np.array_equal(ecg.view(np.uint32), ref[:, :12].view(np.uint32))
    assert np.array_equal(iegm.view(np.uint32), ref[:, 12:].view(np.uint32))
    ecg_l, iegm_l = normalize_split(list(x), present, 12)  # a list of (C, T) windows: no stacked copy
    assert np.array_equal(ecg_l.view(np.uint32), ecg.view(np.uint32)) and np.array_equal(iegm_l, iegm)
    work = NormWork()
    for xs in (x[:1], x, list(x)):  # kept work arrays, grown for the larger batch: the same bits
        ecg_w, iegm_w = normalize_split(xs, present[: len(xs)], 12, work)
        assert np.array_equal(ecg_w.view(np.uint32), ecg[: len(xs)].view(np.uint32))
        assert np.array_equal(iegm_w.view(np.uint32), iegm[: len(xs)].view(np.uint32))
    ecg_1, _ = normalize_split(x, present[0], 12)  # one (C,) mask for every window
    assert np.array_equal(ecg_1.view(np.uint32), _plain_zscore(x, present[0])[:, :12].view(np.uint32))
    with pytest.raises(StreamError, match="ECG channels"):
        normalize_split(x[0], present[0], 12)


def test_normalize_rejects_bad_input() -> None:
    with pytest.raises(StreamError, match="present mask"):
        normalize_window(np.zeros((19, 10)), np.ones(18, dtype=bool))
    with pytest.raises(StreamError, match=r"\(C, T\) or \(B, C, T\)"):
        normalize_window(np.zeros(10))
    bad = np.zeros((19, 10))
    bad[0, 0] = np.inf
    with pytest.raises(StreamError, match="non-finite"):
        normalize_window(bad)
    with pytest.raises(StreamError, match="non-finite"):
        normalize_split([np.zeros((19, 10)), bad], None, 12)
    with pytest.raises(StreamError, match="window 1 shaped"):
        normalize_split([np.zeros((19, 10)), np.zeros((19, 9))], None, 12)
    with pytest.raises(StreamError, match="present mask"):
        normalize_split(np.zeros((2, 19, 10)), np.ones((3, 19), dtype=bool), 12)


def test_split_modalities() -> None:
    x = np.arange(2 * 19 * 5, dtype=np.float32).reshape(2, 19, 5)
    ecg, iegm = split_modalities(x)
    assert ecg.shape == (2, 12, 5) and iegm.shape == (2, 7, 5)
    np.testing.assert_array_equal(np.concatenate([ecg, iegm], axis=1), x)
    e1, i1 = split_modalities(x[0], n_ecg=3)
    assert e1.shape == (3, 5) and i1.shape == (16, 5)
    with pytest.raises(StreamError):
        split_modalities(x, n_ecg=20)
