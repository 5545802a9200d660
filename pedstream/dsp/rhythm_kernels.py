"""Per-call kernels of the rhythm-context features (:mod:`pedstream.dsp.rhythm_features`), hand-written for cost.

The features are computed per stream every hop on short arrays (~1000 samples, ~100 beats), where the cost of
a call is the number of NumPy/SciPy calls, not arithmetic. These kernels give the same values, bit for bit, as
the library calls they replace, with less per-call work:

- :func:`welch_psd`: ``scipy.signal.welch(x, fs, nperseg=m)`` (periodic Hann, half overlap, constant detrend,
  density, mean) with the window, its scale and the segment indices made once per ``(m, fs)`` and every
  segment transformed in one ``rfft``; the same operations in the same order as SciPy's ``ShortTimeFFT``;
- :func:`band_slice`: the contiguous index range of ``(f >= lo) & (f <= hi)`` on an increasing ``f`` (a sum
  over a slice is the sum over the masked copy);
- :func:`median_sorted` / :func:`percentile_sorted`: ``np.median`` / ``np.percentile`` (linear method) from
  an already sorted array (NumPy's interpolation, rounding included, in Python floats); :func:`median_rows`:
  ``np.median(a, axis=0)`` by one sort;
- :func:`qrs_widths`: the half-amplitude width of many R peaks at once (one gather instead of a loop);
- :func:`near_fraction`: the fraction of samples within ``w`` of any beat (a difference array);
- :func:`sampen_counts`: the template-match counts of sample entropy (m = 1) from the symmetric match matrix;
- :func:`var_given_mean`: ``np.var`` reusing the mean already computed; :func:`longest_run` /
  :func:`newest_longest_run`: runs of True (the fast-RR and ventricular-beat runs).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import scipy.fft
from scipy.signal import ShortTimeFFT, get_window

__all__ = ["band_slice", "longest_run", "median_rows", "median_sorted", "near_fraction", "newest_longest_run",
           "percentile_sorted", "qrs_widths", "sampen_counts", "var_given_mean", "welch_psd"]


@lru_cache(maxsize=32)
def _welch_plan(n: int, nperseg: int, fs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, slice]:
    """(segment index matrix, scaled window, frequencies, the doubled one-sided bins) of SciPy's welch."""
    noverlap = nperseg // 2
    sft = ShortTimeFFT(get_window("hann_periodic", nperseg), nperseg - noverlap, fs, fft_mode="onesided",
                       mfft=nperseg, scale_to="psd", phase_shift=None)
    nseg = (n - noverlap) // sft.hop
    idx = np.arange(nseg)[:, None] * sft.hop + np.arange(nperseg)[None, :]
    dbl = slice(1, -1 if nperseg % 2 == 0 else None)
    return idx, np.asarray(sft.win), np.asarray(sft.f), dbl


def welch_psd(x: np.ndarray, fs: float, nperseg: int) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.signal.welch(x, fs=fs, nperseg=nperseg)`` of float64 ``x`` ``(..., n)``, all rows in one
    transform (``nperseg <= n``)."""
    idx, win, f, dbl = _welch_plan(x.shape[-1], int(nperseg), float(fs))
    segs = np.ascontiguousarray(x[..., idx])  # (..., segment, sample); C order: the sums run as SciPy's
    segs = segs - np.add.reduce(segs, axis=-1, keepdims=True) / nperseg
    s = scipy.fft.rfft(segs * win, n=nperseg, axis=-1)
    p = s.real ** 2 + s.imag ** 2
    p[..., dbl] *= 2
    nseg = p.shape[-2]
    if nseg >= 8:  # SciPy's mean over the segments: pairwise from 8 on, in order below
        return f, np.ascontiguousarray(np.swapaxes(p, -1, -2)).mean(axis=-1)
    acc = p[..., 0, :]
    for k in range(1, nseg):
        acc = acc + p[..., k, :]
    return f, (acc / nseg if nseg > 1 else acc.copy())


def band_slice(f: np.ndarray, lo: float, hi: float) -> slice:
    """The indices where ``(f >= lo) & (f <= hi)`` on an increasing ``f``, as a slice."""
    return slice(int(np.searchsorted(f, lo, "left")), int(np.searchsorted(f, hi, "right")))


def median_rows(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=0)`` of a 2-D ``a`` with at least one row."""
    s = np.sort(a, axis=0)
    h = s.shape[0] // 2
    return s[h] if s.shape[0] % 2 else (s[h - 1] + s[h]) / 2.0


def median_sorted(s: np.ndarray) -> float:
    """``np.median`` of the values of the sorted 1-D ``s`` (non-empty)."""
    n = s.size
    h = n // 2
    return float(s[h]) if n % 2 else float((s[h - 1] + s[h]) / 2.0)


def percentile_sorted(s: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear method) of the values of the sorted 1-D ``s`` (non-empty)."""
    n = s.size
    v = (n - 1) * (q / 100.0)
    if v >= n - 1:
        return float(s[-1])
    lo = math.floor(v)
    g = v - lo
    a, b = float(s[lo]), float(s[lo + 1])
    d = b - a
    return b - d * (1 - g) if g >= 0.5 else a + d * g


def qrs_widths(ax: np.ndarray, bi: np.ndarray, fs: float) -> np.ndarray:
    """Half-amplitude widths (s) of the R peaks ``bi`` (indices into ``ax = |x|``, inside it): the run around
    each peak, at most ``int(0.12 * fs)`` samples either side, where ``ax`` stays at or above half the peak
    value; 0 for a peak of zero amplitude."""
    hw, n = int(0.12 * fs), ax.size
    if bi.size == 0:
        return np.zeros(0)
    pad = np.concatenate([np.full(hw, np.inf), ax, np.full(hw, np.inf)])
    win = pad[bi[:, None] + np.arange(2 * hw + 1)[None, :]]  # columns: i - hw .. i + hw
    thr = 0.5 * ax[bi]
    below = win < thr[:, None]
    rows = np.arange(bi.size)
    jl, jr = np.argmax(below[:, hw - 1::-1], 1), np.argmax(below[:, hw:], 1)  # nearest sample below, either side
    lo = np.where(below[rows, hw - 1 - jl], bi - jl, np.maximum(0, bi - hw))
    hi = np.where(below[rows, hw + jr], bi + jr, np.minimum(n, bi + hw + 1))
    return np.where(thr <= 0, 0.0, (hi - lo) / fs)


def near_fraction(bi: np.ndarray, n: int, w: int) -> float:
    """``near.mean()`` of a length-``n`` mask set True at ``[max(0, i - w), i + w]`` around each beat ``i``."""
    if bi.size == 0:
        return 0.0
    starts, ends = np.maximum(0, bi - w), np.minimum(n, bi + w + 1)
    cover = np.cumsum(np.bincount(starts, minlength=n + 1) - np.bincount(ends, minlength=n + 1))[:n]
    return np.count_nonzero(cover) / n


def sampen_counts(rr: np.ndarray, r: float) -> tuple[float, float]:
    """``(B, A)``: pairs ``i < j`` of templates of length 1 / 2 within ``r`` (Chebyshev) of the series ``rr``."""
    x1 = rr[:-1]
    d1 = np.abs(x1[:, None] - x1[None, :]) <= r
    d2 = d1 & (np.abs(rr[1:, None] - rr[None, 1:]) <= r)
    k = x1.size  # the diagonal (a template matches itself) is in both counts once
    return float((np.count_nonzero(d1) - k) // 2), float((np.count_nonzero(d2) - k) // 2)


def var_given_mean(v: np.ndarray, mean: float) -> float:
    """``np.var(v)`` given ``mean = v.mean()`` (the same operations)."""
    c = v - mean
    return float((c * c).sum()) / v.size


def longest_run(flags: np.ndarray) -> int:
    """Length of the longest run of True in the 1-D bool ``flags``."""
    e = np.diff(np.concatenate(([0], flags.view(np.int8), [0])))
    starts, ends = np.flatnonzero(e == 1), np.flatnonzero(e == -1)
    return int((ends - starts).max()) if starts.size else 0


def newest_longest_run(flags: np.ndarray) -> tuple[int, int, int]:
    """(length, first, last) of the newest of the longest runs of True in ``flags`` (0, -1, -1 without one)."""
    best, run, a_best, b_best, a = 0, 0, -1, -1, 0
    for j, v in enumerate(flags.tolist()):
        if v:
            if run == 0:
                a = j
            run += 1
            if run >= best:  # the newest of equally long runs
                best, a_best, b_best = run, a, j
        else:
            run = 0
    return best, a_best, b_best
