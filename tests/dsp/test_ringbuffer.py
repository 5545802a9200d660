"""RingBuffer: absolute indexing, wrap-around, oversize writes, overwritten reads."""

from __future__ import annotations

import numpy as np
import pytest

from pedstream.dsp.ringbuffer import BufferOverrunError, RingBuffer
from pedstream.errors import ConfigError, StreamError


def _ramp(start: int, n: int, ch: int = 3) -> np.ndarray:
    """Sample k carries the value k in every channel (so contents identify their absolute index)."""
    return np.repeat(np.arange(start, start + n, dtype=np.float64)[:, None], ch, axis=1)


def test_wrap_around_latest_and_read() -> None:
    rb = RingBuffer(n_channels=3, capacity=10)
    pos = 0
    for n in (4, 4, 4, 5, 1, 9):  # several wraps with chunks that straddle the end
        rb.write(_ramp(pos, n), np.arange(pos, pos + n) * 0.5)
        pos += n
        assert rb.total_written == pos
        data, ts = rb.latest(min(pos, 10))
        np.testing.assert_array_equal(data[:, 0], np.arange(pos - len(data), pos))
        np.testing.assert_array_equal(ts, np.arange(pos - len(data), pos) * 0.5)
    assert rb.dtype == np.float32 and data.dtype == np.float32
    data, ts = rb.read(pos - 7, pos - 2)
    np.testing.assert_array_equal(data[:, 1], np.arange(pos - 7, pos - 2))


def test_write_larger_than_capacity_keeps_newest() -> None:
    rb = RingBuffer(n_channels=3, capacity=8, dtype=np.float64)
    rb.write(_ramp(0, 3))
    rb.write(_ramp(3, 21), np.arange(3, 24, dtype=float))
    assert rb.total_written == 24 and len(rb) == 8 and rb.oldest == 16
    data, ts = rb.latest(8)
    np.testing.assert_array_equal(data[:, 2], np.arange(16, 24))
    np.testing.assert_array_equal(ts, np.arange(16, 24))


def test_missing_timestamps_are_nan() -> None:
    rb = RingBuffer(n_channels=1, capacity=4)
    rb.write(np.ones((2, 1)), np.array([1.0, 2.0]))
    rb.write(np.ones((3, 1)), None)
    _, ts = rb.latest(4)
    assert ts[0] == 2.0 and np.isnan(ts[1:]).all()


def test_overwritten_or_future_reads_raise_clear_errors() -> None:
    rb = RingBuffer(n_channels=2, capacity=5, name="stream x7")
    rb.write(np.zeros((12, 2)))
    with pytest.raises(BufferOverrunError, match=r"stream x7: samples \[3, 9\) are not all held; the buffer holds \[7, 12\) \(older samples were overwritten\)"):
        rb.read(3, 9)
    with pytest.raises(BufferOverrunError, match="not written yet"):
        rb.read(10, 13)
    with pytest.raises(BufferOverrunError, match="latest 6"):
        rb.latest(6)
    assert isinstance(BufferOverrunError("s", "r"), StreamError)


def test_bad_input() -> None:
    rb = RingBuffer(n_channels=2, capacity=5)
    with pytest.raises(StreamError, match=r"expected samples shaped \(n, 2\)"):
        rb.write(np.zeros((3, 3)))
    with pytest.raises(StreamError, match="expected 3 timestamps"):
        rb.write(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ConfigError, match="capacity"):
        RingBuffer(n_channels=2, capacity=0)
    rb.write(np.zeros((0, 2)))
    assert rb.total_written == 0


def test_read_channels_first_is_the_transposed_read_and_writes_are_unchanged() -> None:
    rng = np.random.default_rng(3)
    rb = RingBuffer(n_channels=5, capacity=97)
    ref = np.zeros((0, 5), np.float32)
    ref_ts = np.zeros(0)
    for k in range(60):
        n = int(rng.integers(0, 130))
        x = rng.standard_normal((n, 5)).astype(np.float32)
        ts = None if k % 7 == 3 else rng.standard_normal(n)
        rb.write(x, ts)
        ref = np.concatenate([ref, x])[-97:]
        ref_ts = np.concatenate([ref_ts, np.full(n, np.nan) if ts is None else ts])[-97:]
        held = len(rb)
        data, t = rb.read(rb.oldest, rb.total_written)  # everything held, as written (wrap or not)
        assert np.array_equal(data, ref[-held:]) and np.array_equal(t, ref_ts[-held:], equal_nan=True)
        a = int(rng.integers(rb.oldest, rb.total_written + 1))
        b = int(rng.integers(a, rb.total_written + 1))
        xt, tt = rb.read_channels_first(a, b)
        d, t = rb.read(a, b)
        assert xt.flags.c_contiguous and xt.shape == (5, b - a) and xt.dtype == np.float32
        assert np.array_equal(xt, np.ascontiguousarray(d.T)) and np.array_equal(tt, t, equal_nan=True)
    with pytest.raises(BufferOverrunError):
        rb.read_channels_first(rb.total_written - 5, rb.total_written + 1)
    with pytest.raises(BufferOverrunError):
        rb.read_channels_first(0, 3)


def test_rows_is_the_read_a_view_when_the_range_does_not_wrap() -> None:
    rb = RingBuffer(n_channels=3, capacity=10)
    rb.write(np.arange(36, dtype=np.float32).reshape(12, 3))  # holds samples [2, 12), row 12 % 10 next
    for lo, hi in [(2, 10), (3, 7), (8, 12), (2, 12), (5, 5)]:
        got = rb.rows(lo, hi)
        np.testing.assert_array_equal(got, rb.read(lo, hi)[0])
        wraps = lo // 10 != (hi - 1) // 10 and hi > lo
        assert np.shares_memory(got, rb._data) == (not wraps and hi > lo), (lo, hi)
    with pytest.raises(BufferOverrunError):
        rb.rows(1, 5)
    with pytest.raises(BufferOverrunError):
        rb.rows(10, 13)
