"""StreamResampler: equals scipy's causal upfirdn, chunk invariance, sine frequency/amplitude, delay."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from pedstream.dsp.resample import StreamResampler
from pedstream.errors import ConfigError, StreamError


def _feed(rs: StreamResampler, x: np.ndarray, chunk: int) -> np.ndarray:
    parts = [rs.process(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    return np.concatenate(parts, axis=0)


def _noise(n: int, ch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, ch))


@pytest.mark.parametrize(("fs_in", "fs_out", "up", "down"), [(1000.0, 977.0, 977, 1000), (360.0, 977.0, 977, 360), (500.0, 250.0, 1, 2)])
def test_matches_causal_upfirdn(fs_in: float, fs_out: float, up: int, down: int) -> None:
    x = _noise(1500, 3)
    rs = StreamResampler(fs_in=fs_in, fs_out=fs_out, n_channels=3)
    assert (rs.up, rs.down) == (up, down)
    y = rs.process(x)
    ref = sps.upfirdn(rs.h, x, up=up, down=down, axis=0)[: len(y)]
    assert len(y) == -(-len(x) * up // down)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 7, 49, 977])
@pytest.mark.parametrize("fs_in", [1000.0, 360.0])
def test_chunk_size_invariant(fs_in: float, chunk: int) -> None:
    x = _noise(2100, 19, seed=2)
    whole = StreamResampler(fs_in=fs_in, fs_out=977.0, n_channels=19).process(x)
    rs = StreamResampler(fs_in=fs_in, fs_out=977.0, n_channels=19)
    got = _feed(rs, x, chunk)
    assert got.shape == whole.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-6)
    assert rs.samples_in == len(x) and rs.samples_out == len(got)


@pytest.mark.parametrize("fs_in", [1000.0, 360.0, 977.0])
def test_sine_keeps_frequency_and_amplitude(fs_in: float) -> None:
    f0, amp, fs_out = 7.3, 1.7, 977.0
    t = np.arange(int(8 * fs_in)) / fs_in
    x = (amp * np.sin(2 * np.pi * f0 * t))[:, None]
    rs = StreamResampler(fs_in=fs_in, fs_out=fs_out, n_channels=1)
    y = _feed(rs, x, 64)[:, 0].astype(np.float64)
    m = np.arange(len(y))
    keep = m > 2 * rs.delay_out_samples + 10  # past the start-up transient
    # the output is the input sine delayed by delay_s on the output clock
    expected = amp * np.sin(2 * np.pi * f0 * rs.output_time(m))
    np.testing.assert_allclose(y[keep], expected[keep], atol=0.01 * amp)
    # frequency from the spectrum peak
    seg = y[keep]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    f_peak = np.fft.rfftfreq(len(seg), 1 / fs_out)[np.argmax(spec)]
    assert abs(f_peak - f0) < fs_out / len(seg) * 1.01


def test_group_delay_documented_values() -> None:
    assert StreamResampler(fs_in=1000, fs_out=977, n_channels=1).delay_s == pytest.approx(10000 / (977 * 1000))
    assert StreamResampler(fs_in=360, fs_out=977, n_channels=1).delay_s == pytest.approx(9770 / (977 * 360))


def test_anti_alias_removes_content_above_new_nyquist() -> None:
    fs_in, fs_out = 1000.0, 250.0
    t = np.arange(int(4 * fs_in)) / fs_in
    x = np.sin(2 * np.pi * 200.0 * t)[:, None]  # would alias to 50 Hz
    y = StreamResampler(fs_in=fs_in, fs_out=fs_out, n_channels=1).process(x)[200:, 0]
    assert np.abs(y).max() < 1e-2


def test_identity_pass_through() -> None:
    x = _noise(100, 4)
    rs = StreamResampler(fs_in=977.0, fs_out=977.0, n_channels=4)
    assert rs.identity and rs.delay_s == 0.0
    y = rs.process(x)
    np.testing.assert_array_equal(y, x.astype(np.float32))
    assert rs.samples_out == 100


def test_reset_and_validation() -> None:
    x = _noise(500, 2)
    rs = StreamResampler(fs_in=1000.0, fs_out=977.0, n_channels=2, name="stream p1")
    first = rs.process(x)
    rs.reset()
    np.testing.assert_array_equal(rs.process(x), first)
    with pytest.raises(StreamError, match=r"stream p1: expected samples shaped \(n, 2\)"):
        rs.process(np.zeros((5, 3)))
    with pytest.raises(ConfigError, match="fs_in"):
        StreamResampler(fs_in=0.0, fs_out=977.0, n_channels=1)
    with pytest.raises(ConfigError, match="n_channels"):
        StreamResampler(fs_in=100.0, fs_out=977.0, n_channels=0)


@pytest.mark.parametrize("fs_in", [360.0, 500.0, 977.0, 1000.0])
def test_n_in_for_is_the_least_input_count_for_that_many_outputs(fs_in):
    r = StreamResampler(fs_in=fs_in, fs_out=977.0, n_channels=1)
    for m in range(1, 3000):
        n = r.n_in_for(m)
        assert r.n_out_for(n) >= m and (n == 1 or r.n_out_for(n - 1) < m)


@pytest.mark.parametrize("fs_in, fs_out", [(977.0, 977.0), (1000.0, 977.0), (360.0, 977.0), (250.0, 977.0), (2000.0, 500.0)])
def test_output_times_are_output_time_bit_for_bit(fs_in: float, fs_out: float) -> None:
    r = StreamResampler(fs_in=fs_in, fs_out=fs_out, n_channels=1)
    rng = np.random.default_rng(5)
    for first, count in [(0, 0), (0, 1), (0, 977), (12345, 400), (10**9, 50), (2**53 // r.down - 3, 5)]:
        offset = float(rng.uniform(-1e6, 1e9)) if first else 0.0
        want = offset + np.asarray(r.output_time(np.arange(first, first + count)), dtype=np.float64)
        got = r.output_times(first, count, offset)
        assert got.dtype == np.float64 and got.view(np.int64).tolist() == want.view(np.int64).tolist()


def test_identity_copy_false_returns_the_float32_input_itself() -> None:
    r = StreamResampler(fs_in=977.0, fs_out=977.0, n_channels=2)
    x = _noise(10, 2).astype(np.float32)
    assert r.process(x, copy=False) is x and r.process(x) is not x
    y = r.process(x.astype(np.float64), copy=False)
    assert y.dtype == np.float32 and np.array_equal(y, x) and r.samples_in == r.samples_out == 30
