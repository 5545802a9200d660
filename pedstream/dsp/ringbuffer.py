"""Fixed-capacity multichannel ring buffer addressed by absolute sample index.

The buffer owns a (capacity, n_channels) array, a (capacity,) float64 timestamp array and the
write position. Writes copy at most two slices (no ``np.roll``). Absolute sample ``k`` (0 = first
sample ever written) lives at row ``k % capacity`` until ``capacity`` newer samples overwrite it.
"""

from __future__ import annotations

import numpy as np

from pedstream.errors import ConfigError, StreamError

__all__ = ["RingBuffer", "BufferOverrunError"]


class BufferOverrunError(StreamError):
    """A read asked for samples that were already overwritten (or not yet written)."""


class RingBuffer:
    """Ring of ``capacity`` samples x ``n_channels`` with per-sample timestamps (seconds, float64).

    Missing timestamps (``write(samples, None)``) are stored as NaN.
    """

    def __init__(self, *, n_channels: int, capacity: int, dtype: np.dtype | type = np.float32, name: str = "ring buffer") -> None:
        if int(n_channels) < 1:
            raise ConfigError([("n_channels", f"must be >= 1 (got {n_channels})")], source="ring buffer")
        if int(capacity) < 1:
            raise ConfigError([("capacity", f"must be >= 1 sample (got {capacity})")], source="ring buffer")
        self.n_channels = int(n_channels)
        self.capacity = int(capacity)
        self.dtype = np.dtype(dtype)
        self.name = name
        self._data = np.zeros((self.capacity, self.n_channels), dtype=self.dtype)  # (capacity, C)
        self._ts = np.full(self.capacity, np.nan)  # (capacity,) seconds
        self.total_written = 0

    @property
    def write_index(self) -> int:
        """Row the next sample goes to."""
        return self.total_written % self.capacity

    @property
    def oldest(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self.total_written - self.capacity)

    def __len__(self) -> int:
        return min(self.total_written, self.capacity)

    def clear(self) -> None:
        """Drop everything (the absolute index restarts at 0)."""
        self._ts[:] = np.nan
        self.total_written = 0

    def write(self, samples: np.ndarray, timestamps: np.ndarray | None = None) -> None:
        """Append samples (n, n_channels) with timestamps (n,) seconds or None."""
        samples = np.asarray(samples)
        if samples.ndim != 2 or samples.shape[1] != self.n_channels:
            raise StreamError(self.name, f"expected samples shaped (n, {self.n_channels}), got {samples.shape}")
        n = samples.shape[0]
        if timestamps is not None:
            timestamps = np.asarray(timestamps, dtype=np.float64)
            if timestamps.shape != (n,):
                raise StreamError(self.name, f"expected {n} timestamps, got shape {timestamps.shape}")
        if n == 0:
            return
        if n > self.capacity:  # only the newest `capacity` samples survive
            skip = n - self.capacity
            self.total_written += skip
            samples = samples[skip:]
            timestamps = None if timestamps is None else timestamps[skip:]
            n = self.capacity
        start = self.total_written % self.capacity
        first = min(n, self.capacity - start)
        if first == n:  # no wrap (the usual write): one slice each
            self._data[start : start + n] = samples
            self._ts[start : start + n] = np.nan if timestamps is None else timestamps
            self.total_written += n
            return
        self._data[start : start + first] = samples[:first]
        self._data[: n - first] = samples[first:]
        if timestamps is None:
            self._ts[start : start + first] = np.nan
            self._ts[: n - first] = np.nan
        else:
            self._ts[start : start + first] = timestamps[:first]
            self._ts[: n - first] = timestamps[first:]
        self.total_written += n

    def read(self, start_abs: int, stop_abs: int) -> tuple[np.ndarray, np.ndarray]:
        """Copy of absolute samples [start_abs, stop_abs): ((n, C) data, (n,) timestamps).

        Raises :class:`BufferOverrunError` if part of the range was overwritten or not written yet.
        """
        start_abs, stop_abs = int(start_abs), int(stop_abs)
        if stop_abs < start_abs:
            raise BufferOverrunError(self.name, f"read range [{start_abs}, {stop_abs}) is reversed")
        if start_abs < self.oldest or stop_abs > self.total_written:
            raise BufferOverrunError(
                self.name,
                f"samples [{start_abs}, {stop_abs}) are not all held; the buffer holds [{self.oldest}, {self.total_written})"
                + (" (older samples were overwritten)" if start_abs < self.oldest else " (newer samples not written yet)"),
            )
        n = stop_abs - start_abs
        i = start_abs % self.capacity
        first = min(n, self.capacity - i)
        data = np.empty((n, self.n_channels), dtype=self.dtype)
        ts = np.empty(n)
        data[:first] = self._data[i : i + first]
        data[first:] = self._data[: n - first]
        ts[:first] = self._ts[i : i + first]
        ts[first:] = self._ts[: n - first]
        return data, ts

    def rows(self, start_abs: int, stop_abs: int) -> np.ndarray:
        """The data of absolute samples [start_abs, stop_abs) ``(n, C)``, read-only by contract: a view of
        the ring when the range does not wrap (valid until the next write), else :meth:`read`'s copy (and
        its errors)."""
        if self.oldest <= start_abs <= stop_abs <= self.total_written:
            i = start_abs % self.capacity
            if i + (stop_abs - start_abs) <= self.capacity:
                return self._data[i : i + (stop_abs - start_abs)]
        return self.read(start_abs, stop_abs)[0]

    def read_channels_first(self, start_abs: int, stop_abs: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`read` with the data transposed: ``((C, n) C-contiguous, (n,) timestamps)``, the
        same values as ``np.ascontiguousarray(read(...)[0].T)`` in one copy instead of two."""
        start_abs, stop_abs = int(start_abs), int(stop_abs)
        if stop_abs < start_abs or start_abs < self.oldest or stop_abs > self.total_written:
            self.read(start_abs, stop_abs)  # raises its BufferOverrunError
        n = stop_abs - start_abs
        i = start_abs % self.capacity
        first = min(n, self.capacity - i)
        data = np.empty((self.n_channels, n), dtype=self.dtype)
        ts = np.empty(n)
        data[:, :first] = self._data[i : i + first].T
        ts[:first] = self._ts[i : i + first]
        if first < n:
            data[:, first:] = self._data[: n - first].T
            ts[first:] = self._ts[: n - first]
        return data, ts

    def latest(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The newest ``n`` samples: ((n, C) data, (n,) timestamps), oldest first."""
        n = int(n)
        if n < 0 or n > len(self):
            raise BufferOverrunError(self.name, f"asked for the latest {n} samples, {len(self)} are held")
        return self.read(self.total_written - n, self.total_written)
