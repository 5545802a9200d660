"""Sliding windows and THE window normalisation used by both training and serving.

``normalize_window`` is a per-window, per-channel z-score (``NORMALIZATION = "window_zscore"``,
the name written into the model metadata): for each channel of each window, subtract its mean and
divide by its standard deviation over time; absent channels (``present`` False) are exactly 0;
flat channels (std < ``NORM_EPS``, in the input's units, mV) are exactly 0; the result is clipped to
+/- ``NORM_CLIP``. Statistics are computed in float64, the result is float32.
"""

from __future__ import annotations

from collections.abc import Sequence

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from pedstream.dsp.checks import all_finite
from pedstream.errors import ConfigError, StreamError

__all__ = [
    "NORMALIZATION",
    "NORM_EPS",
    "NORM_CLIP",
    "window_samples",
    "WindowGeometry",
    "Windower",
    "normalize_window",
    "normalize_split",
    "NormWork",
    "split_modalities",
]

NORMALIZATION = "window_zscore"
NORM_EPS = 1e-6  # mV: a channel whose std over the window is below this is treated as flat
NORM_CLIP = 10.0  # z-scores are clipped to +/- this


def window_samples(window_s: float, fs: float) -> int:
    """Samples in a window of ``window_s`` seconds at ``fs`` Hz: ``int(round(window_s * fs))`` (2.5 s at 977 Hz = 2442)."""
    if not (window_s > 0 and fs > 0):
        raise ConfigError([("window_s", f"window ({window_s!r} s) and fs ({fs!r} Hz) must be positive")], source="windowing")
    n = int(round(window_s * fs))
    if n < 1:
        raise ConfigError([("window_s", f"{window_s!r} s at {fs!r} Hz is less than one sample")], source="windowing")
    return n


@dataclass(frozen=True, slots=True)
class WindowGeometry:
    """The window grid of a model, computed once: ``fs`` (Hz), ``window`` and ``hop`` (samples at ``fs``),
    ``settle`` (samples of filter warm-up before the first window of a segment). The model session builds
    it from its checked metadata (:meth:`from_metadata`); the engine, the API, the workers and the
    benchmarks read it instead of turning seconds into samples themselves."""

    fs: float
    window: int
    hop: int
    settle: int = 0

    def __post_init__(self) -> None:
        if not self.fs > 0 or self.window < 1 or self.hop < 1 or self.settle < 0:
            raise ConfigError([("window", f"fs {self.fs!r} Hz, window {self.window!r}, hop {self.hop!r}, "
                                          f"settle {self.settle!r} samples: expected fs > 0, window and hop >= 1, "
                                          "settle >= 0")], source="windowing")

    @classmethod
    def from_seconds(cls, fs: float, window_s: float, hop_s: float, settle_s: float = 0.0) -> "WindowGeometry":
        return cls(float(fs), window_samples(window_s, fs), window_samples(hop_s, fs), int(round(settle_s * fs)))

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], settle_s: float = 0.0) -> "WindowGeometry":
        """From a model's metadata (``fs``, ``window_samples``, ``hop_s``; ``pedstream.model.metadata``)."""
        fs = float(meta["fs"])
        return cls(fs, int(meta["window_samples"]), window_samples(float(meta["hop_s"]), fs), int(round(settle_s * fs)))

    @property
    def window_s(self) -> float:
        return self.window / self.fs

    @property
    def hop_s(self) -> float:
        return self.hop / self.fs

    def first_start(self, segment_start: int) -> int:
        """The first window start of a segment beginning at ``segment_start``: on the segment's hop grid,
        after the filters settled."""
        return int(segment_start) + -(-self.settle // self.hop) * self.hop


class Windower:
    """Yields the absolute start index of each sliding window as it becomes complete.

    Windows start at ``start, start + hop, start + 2 * hop, ...`` and span ``window`` samples. Call
    :meth:`update` with the total number of samples available so far; it returns the starts of the
    windows that became complete since the last call (``s + window <= total``), in order.
    :meth:`reset` restarts the grid at a later sample (e.g. after a gap, or after warm-up).
    """

    def __init__(self, *, window: int, hop: int, start: int = 0) -> None:
        if int(window) < 1:
            raise ConfigError([("window", f"must be >= 1 sample (got {window})")], source="windowing")
        if int(hop) < 1:
            raise ConfigError([("hop", f"must be >= 1 sample (got {hop})")], source="windowing")
        if int(start) < 0:
            raise ConfigError([("start", f"must be >= 0 (got {start})")], source="windowing")
        self.window = int(window)
        self.hop = int(hop)
        self.next_start = int(start)

    def reset(self, start: int) -> None:
        """The next window starts at absolute sample ``start``."""
        self.next_start = int(start)

    def update(self, total_samples: int) -> list[int]:
        """Starts of the windows completed now that ``total_samples`` samples exist."""
        last_start = int(total_samples) - self.window  # largest start whose window is complete
        if last_start < self.next_start:
            return []
        starts = list(range(self.next_start, last_start + 1, self.hop))
        self.next_start = starts[-1] + self.hop
        return starts

    __call__ = update


def normalize_window(x: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """Per-window per-channel z-score of (C, T) or (B, C, T) -> float32 of the same shape.

    ``present``: (C,) or (B, C) bool (None = all present); absent channels come out exactly 0.
    """
    return _zscore64(x, present).astype(np.float32)


class NormWork:
    """Work arrays of :func:`normalize_split`, kept from call to call (grown as needed): a batch's float64
    z-scores and squares, and its two float32 outputs. Allocating them anew each batch cost more than the
    arithmetic (megabytes of fresh pages per call). One per thread; the outputs of a call are valid until
    the next call with the same ``NormWork``."""

    def __init__(self) -> None:
        self._shape: tuple[int, int, int, int] = (0, 0, 0, 0)
        self._z = self._sq = self._ecg = self._iegm = np.empty(0)

    def arrays(self, b: int, c: int, t: int, n_ecg: int) -> tuple[np.ndarray, ...]:
        """``(z, sq, ecg, iegm)`` for ``b`` windows of ``(c, t)`` (views of the kept arrays)."""
        cap, c0, t0, e0 = self._shape
        if b > cap or (c, t, n_ecg) != (c0, t0, e0):
            cap = max(b, cap if (c, t, n_ecg) == (c0, t0, e0) else 0)
            self._z, self._sq = np.empty((cap, c, t)), np.empty((cap, c, t))
            self._ecg = np.empty((cap, n_ecg, t), dtype=np.float32)
            self._iegm = np.empty((cap, c - n_ecg, t), dtype=np.float32)
            self._shape = (cap, c, t, n_ecg)
        return self._z[:b], self._sq[:b], self._ecg[:b], self._iegm[:b]


def normalize_split(x: np.ndarray | Sequence[np.ndarray], present: np.ndarray | None, n_ecg: int,
                    work: NormWork | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``normalize_window`` of (B, C, T) windows (an array, or a sequence of B (C, T) arrays, gathered
    straight into the float64 work array) as the model's two contiguous float32 inputs: ``(ecg (B, n_ecg,
    T), iegm (B, C - n_ecg, T))``, bit for bit the channels of ``normalize_window(x, present)``. With
    ``work`` (:class:`NormWork`) its arrays are used and the outputs are views of them."""
    shape = np.shape(x) if isinstance(x, np.ndarray) else (len(x), *(np.shape(x[0]) if len(x) else ()))
    if len(shape) != 3 or not 0 <= n_ecg <= shape[1]:
        raise StreamError("normalize_split", f"cannot take {n_ecg} ECG channels from windows shaped {shape}")
    b, c, t = shape
    if t < 1:
        raise StreamError("normalize_window", f"window has no samples (shape {shape})")
    p = None if present is None else np.asarray(present, dtype=bool)
    if p is not None and p.shape != (b, c) and p.shape != (c,):
        raise StreamError("normalize_window", f"present mask shaped {p.shape} does not match window {shape}")
    if work is None:
        z, sq = np.empty((b, c, t)), None
        ecg, iegm = np.empty((b, n_ecg, t), dtype=np.float32), np.empty((b, c - n_ecg, t), dtype=np.float32)
    else:
        z, sq, ecg, iegm = work.arrays(b, c, t, n_ecg)
    if isinstance(x, np.ndarray):
        np.copyto(z, x)
    else:
        bad = next((k for k, w in enumerate(x) if np.shape(w) != (c, t)), None)
        if bad is not None:
            raise StreamError("normalize_split", f"window {bad} shaped {np.shape(x[bad])}, expected {(c, t)}")
        np.stack(x, out=z)
    _zscore_in_place(z, p, sq)
    np.copyto(ecg, z[:, :n_ecg])
    np.copyto(iegm, z[:, n_ecg:])
    return ecg, iegm


def _zscore64(x: np.ndarray, present: np.ndarray | None) -> np.ndarray:
    """The z-score in float64, clipped, absent and flat channels 0, of (C, T) or (B, C, T): one float64 copy
    of ``x`` through :func:`_zscore_in_place`."""
    x = np.asarray(x)
    if x.ndim not in (2, 3):
        raise StreamError("normalize_window", f"expected a window shaped (C, T) or (B, C, T), got {x.shape}")
    if x.shape[-1] < 1:
        raise StreamError("normalize_window", f"window has no samples (shape {x.shape})")
    p = None
    if present is not None:
        p = np.asarray(present, dtype=bool)
        if p.shape != x.shape[:-1] and p.shape != x.shape[-2:-1]:
            raise StreamError("normalize_window", f"present mask shaped {p.shape} does not match window {x.shape}")
    return _zscore_in_place(np.array(x, dtype=np.float64), p, None)


def _zscore_in_place(z: np.ndarray, present: np.ndarray | None, sq: np.ndarray | None) -> np.ndarray:
    """``z`` (float64, (..., C, T)) z-scored in place; ``present`` checked by the caller; ``sq``: a work
    array shaped like ``z`` for the squares (None: a new one).

    The same operations in the same order as ``(x - x.mean(-1)) / x.std(-1)`` (numpy's ``std`` is a sum of
    squared deviations over ``n``, square-rooted), so the result is bit for bit that of the plain numpy
    expression, with about half its passes over memory and half its numpy calls (each of which waits for
    the interpreter lock in the batcher's thread). A finite sum of a channel means every sample of it is
    finite (NaN and inf propagate; float32 samples cannot overflow a float64 sum), so the samples are
    checked one by one only when a sum is not finite.
    """
    n = z.shape[-1]
    mean = np.add.reduce(z, axis=-1, keepdims=True)
    mean /= n
    if not np.isfinite(mean).all() and not all_finite(z):
        raise StreamError("normalize_window", "window contains non-finite samples")
    z -= mean
    var = np.add.reduce(np.multiply(z, z, out=sq), axis=-1, keepdims=True)
    var /= n
    std = np.sqrt(var, out=var)  # (..., C, 1)
    ok = std >= NORM_EPS
    if present is not None:
        ok &= np.broadcast_to(present, z.shape[:-1])[..., None]
    z /= np.where(ok, std, 1.0)
    np.clip(z, -NORM_CLIP, NORM_CLIP, out=z)
    if not ok.all():
        z[~ok[..., 0]] = 0.0
    return z


def split_modalities(x: np.ndarray, n_ecg: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """(..., 19, T) -> (ecg (..., n_ecg, T), iegm (..., 19 - n_ecg, T)) views along the channel axis."""
    x = np.asarray(x)
    if x.ndim < 2 or not 0 <= n_ecg <= x.shape[-2]:
        raise StreamError("split_modalities", f"cannot take {n_ecg} ECG channels from an array shaped {x.shape}")
    return x[..., :n_ecg, :], x[..., n_ecg:, :]
