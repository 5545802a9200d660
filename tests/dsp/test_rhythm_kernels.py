"""The rhythm-feature kernels equal the library calls they replace, bit for bit, on random short inputs."""

from __future__ import annotations

import numpy as np
from scipy.signal import welch

from pedstream.dsp.rhythm_kernels import (band_slice, longest_run, median_rows, median_sorted, near_fraction,
                                          newest_longest_run, percentile_sorted, qrs_widths, sampen_counts,
                                          var_given_mean, welch_psd)


def test_welch_band_median_percentile_equal_scipy_numpy() -> None:
    rng = np.random.default_rng(5)
    for _ in range(150):
        fs = float(rng.choice([122.125, 125.0, 120.0, 100.0]))
        n = int(rng.integers(int(2 * fs), int(10 * fs)))
        x = rng.normal(size=n) * rng.uniform(0.01, 3) + rng.normal(size=n).cumsum() * 0.05
        for m in (min(n, int(2 * fs)), min(n, int(4 * fs))):
            f0, p0 = welch(x, fs=fs, nperseg=m)
            f1, p1 = welch_psd(x, fs, m)
            assert np.array_equal(f0, f1) and np.array_equal(p0, p1)
            lo, hi = sorted(rng.uniform(0, fs / 2, 2))
            assert p1[band_slice(f1, lo, hi)].sum() == p0[(f0 >= lo) & (f0 <= hi)].sum()
            y = x[::-1] * 0.5
            f2, p2 = welch_psd(np.stack([x, y]), fs, m)  # rows at once
            assert np.array_equal(p2[0], p0) and np.array_equal(p2[1], welch(y, fs=fs, nperseg=m)[1])
        a = rng.normal(size=(int(rng.integers(1, 40)), 21))
        assert np.array_equal(median_rows(a), np.median(a, axis=0))
        for v in (x, x[: int(rng.integers(1, 14))], np.round(x[:40], 1)):
            s = np.sort(v)
            assert median_sorted(s) == np.median(v)
            assert [percentile_sorted(s, q) for q in (1, 25, 75, 99)] == list(np.percentile(v, [1, 25, 75, 99]))


def _widths_loop(ax: np.ndarray, bi: np.ndarray, fs: float) -> list[float]:
    half_win, out = int(0.12 * fs), []
    for i in bi.tolist():
        a, b = max(0, i - half_win), min(ax.size, i + half_win + 1)
        seg, c = ax[a:b], i - a
        if 0.5 * seg[c] <= 0:
            out.append(0.0)
            continue
        left, right = np.flatnonzero(seg[:c] < 0.5 * seg[c]), np.flatnonzero(seg[c:] < 0.5 * seg[c])
        out.append(((c + right[0] if right.size else seg.size) - (left[-1] + 1 if left.size else 0)) / fs)
    return out


def test_widths_near_fraction_and_sampen_counts_equal_loops() -> None:
    rng = np.random.default_rng(6)
    for _ in range(200):
        n, fs = int(rng.integers(50, 1200)), 122.125
        ax = np.abs(rng.normal(size=n))
        bi = np.sort(rng.choice(n, size=int(rng.integers(0, min(n, 30))), replace=False))
        if bi.size:
            ax[bi[0]] = 0.0  # a peak of zero amplitude
            ax[bi[-1]] = 5.0
        assert np.array_equal(qrs_widths(ax, bi, fs), np.asarray(_widths_loop(ax, bi, fs)).reshape(-1))
        near = np.zeros(n, dtype=bool)
        for i in bi.tolist():
            near[max(0, i - 36): i + 37] = True
        assert near_fraction(bi, n, 36) == near.mean()
        rr = np.round(rng.uniform(0.3, 1.2, int(rng.integers(3, 100))), 2)
        d1 = np.abs(rr[:-1, None] - rr[None, :-1]) <= 0.03
        d2 = d1 & (np.abs(rr[1:, None] - rr[None, 1:]) <= 0.03)
        iu = np.triu_indices(rr.size - 1, k=1)
        assert sampen_counts(rr, 0.03) == (float(d1[iu].sum()), float(d2[iu].sum()))


def test_runs_and_variance() -> None:
    f = np.array([0, 1, 1, 0, 1, 1, 0, 1], dtype=bool)
    assert longest_run(f) == 2 and newest_longest_run(f) == (2, 4, 5)
    assert longest_run(np.zeros(3, dtype=bool)) == 0 and newest_longest_run(np.zeros(0, dtype=bool)) == (0, -1, -1)
    v = np.random.default_rng(7).uniform(0.3, 1.2, 77)
    assert var_given_mean(v, float(v.mean())) == np.var(v)
