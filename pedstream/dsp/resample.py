"""Causal, chunk-size invariant streaming resampler (rational polyphase FIR).

The rate ratio ``fs_out / fs_in`` is approximated by ``up / down`` with
:meth:`fractions.Fraction.limit_denominator` (``max_denominator``, default 1000: 1000 -> 977 Hz is
exactly 977/1000, 360 -> 977 Hz exactly 977/360). The anti-alias/anti-image filter is the one
:func:`scipy.signal.resample_poly` uses: ``firwin(2 * 10 * max(up, down) + 1, 1 / max(up, down),
window=("kaiser", 5.0)) * up``.

Output sample ``m`` is the causal polyphase convolution
``y[m] = sum_n h[m * down - n * up] * x[n]`` (identical to ``scipy.signal.upfirdn(h, x, up,
down)``), evaluated as soon as every input it needs has arrived, so after ``N`` input samples exactly
``ceil(N * up / down)`` outputs exist whatever the chunking. Group delay (linear-phase FIR):
``10 * max(up, down) / (up * fs_in)`` seconds (``delay_s``): 10.2 ms for 1000 -> 977 Hz,
27.8 ms for 360 -> 977 Hz. Output sample ``m`` represents the input instant
``m / fs_out - delay_s`` (see :meth:`StreamResampler.output_time`).

When ``fs_in == fs_out`` it is an identity pass-through (no delay). Arithmetic in float64, output
float32.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy import signal as sps

from pedstream.errors import ConfigError, StreamError

__all__ = ["StreamResampler"]


class StreamResampler:
    """Stateful resampler for (n, n_channels) chunks from ``fs_in`` Hz to ``fs_out`` Hz."""

    def __init__(
        self,
        *,
        fs_in: float,
        fs_out: float,
        n_channels: int,
        max_denominator: int = 1000,
        name: str = "resampler",
    ) -> None:
        for key, v in (("fs_in", fs_in), ("fs_out", fs_out)):
            if not np.isfinite(v) or v <= 0:
                raise ConfigError([(key, f"sampling rate must be a positive number of Hz (got {v!r})")], source="resampler")
        if n_channels < 1:
            raise ConfigError([("n_channels", f"need at least one channel (got {n_channels})")], source="resampler")
        self.fs_in = float(fs_in)
        self.fs_out = float(fs_out)
        self.n_channels = int(n_channels)
        self.name = name
        ratio = Fraction(self.fs_out / self.fs_in).limit_denominator(max_denominator)
        if ratio <= 0:
            raise ConfigError([("fs_out", f"ratio {self.fs_out:g}/{self.fs_in:g} is too small to represent")], source="resampler")
        self.up = ratio.numerator
        self.down = ratio.denominator
        self.identity = self.up == self.down
        if self.identity:
            self.h = np.ones(1)
            self.half_len = 0
            self._poly = np.ones((1, 1))
            self._taps = 1
        else:
            max_rate = max(self.up, self.down)
            self.half_len = 10 * max_rate
            # h: (2 * half_len + 1,) anti-alias low-pass with gain `up` (compensates zero stuffing)
            self.h = sps.firwin(2 * self.half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self.up
            self._taps = math.ceil(len(self.h) / self.up)
            padded = np.zeros(self._taps * self.up)
            padded[: len(self.h)] = self.h
            # _poly[p, j] = h[p + j * up]: the taps phase p applies to x[n0], x[n0 - 1], ...
            self._poly = padded.reshape(self._taps, self.up).T.copy()  # (up, taps)
        self.reset()

    @property
    def delay_s(self) -> float:
        """Group delay added, in seconds."""
        return 0.0 if self.identity else self.half_len / (self.up * self.fs_in)

    @property
    def delay_out_samples(self) -> float:
        """Group delay in output samples (may be fractional)."""
        return self.delay_s * self.fs_out

    def output_time(self, m: int | np.ndarray) -> float | np.ndarray:
        """Input-clock time in seconds (from the first input sample) that output sample ``m`` represents."""
        return np.asarray(m) * self.down / (self.up * self.fs_in) - self.delay_s

    def output_times(self, first: int, count: int, offset: float = 0.0) -> np.ndarray:
        """``offset + output_time(np.arange(first, first + count))`` as float64, bit for bit, in one
        array (the integers are exact in float64 below 2**53, so they are made there directly)."""
        if (first + count) * self.down < 2**53:
            v = np.arange(first, first + count, dtype=np.float64)
            if self.down != 1:
                v *= self.down
            v /= self.up * self.fs_in
            v -= self.delay_s
            v += offset
            return v
        return offset + np.asarray(self.output_time(np.arange(first, first + count)), dtype=np.float64)

    def reset(self) -> None:
        """Forget the history; the next sample is input sample 0."""
        # _hist: the last `taps` input samples, (taps, C) float64; zeros stand for "before the stream"
        self._hist = np.zeros((self._taps, self.n_channels))
        self.samples_in = 0
        self.samples_out = 0

    def n_out_for(self, n_in_total: int) -> int:
        """Outputs that exist once ``n_in_total`` inputs have arrived: ceil(n_in_total * up / down)."""
        return -((-n_in_total * self.up) // self.down)

    def n_in_for(self, n_out_total: int) -> int:
        """Inputs needed before ``n_out_total`` outputs exist (the least ``n`` with
        ``n_out_for(n) >= n_out_total``; ``n_out_total`` >= 1)."""
        return n_out_total if self.identity else (n_out_total - 1) * self.down // self.up + 1

    def process(self, x: np.ndarray, *, copy: bool = True) -> np.ndarray:
        """Resample the next chunk. x: (n, n_channels) -> (k, n_channels) float32 (k may be 0).

        ``copy=False``: at equal rates a float32 ``x`` comes back itself, not a copy (for a caller
        that owns ``x`` and changes neither)."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise StreamError(self.name, f"expected samples shaped (n, {self.n_channels}), got {x.shape}")
        n = x.shape[0]
        if self.identity:
            self.samples_in += n
            self.samples_out += n
            return x.astype(np.float32, copy=copy)
        x64 = x.astype(np.float64, copy=False)
        # ext: (taps + n, C), ext[k] is absolute input sample (samples_in - taps + k)
        ext = np.concatenate([self._hist, x64], axis=0)
        base = self.samples_in - self._taps
        total = self.samples_in + n
        m = np.arange(self.samples_out, self.n_out_for(total), dtype=np.int64)  # (k,)
        pos = m * self.down  # position in the up-sampled domain
        n0 = pos // self.up  # newest input sample each output uses
        phase = pos - n0 * self.up  # (k,)
        idx = (n0 - base)[:, None] - np.arange(self._taps)[None, :]  # (k, taps) rows of ext
        # y[m] = sum_j poly[phase, j] * x[n0 - j]
        y = np.einsum("kj,kjc->kc", self._poly[phase], ext[idx])  # (k, C)
        self._hist = ext[-self._taps :].copy()
        self.samples_in = total
        self.samples_out += len(m)
        return y.astype(np.float32)

    def __repr__(self) -> str:
        return f"StreamResampler({self.fs_in:g} Hz -> {self.fs_out:g} Hz, up={self.up}, down={self.down}, delay={self.delay_s * 1e3:.1f} ms)"
