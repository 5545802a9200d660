"""Causal rhythm-context features of one stream: the RR series of the last ``context_s`` seconds and
the last ``signal_s`` seconds of the QRS lead. Shared by training and serving (no train/serve skew).

Inputs, at one instant ``t_now`` (seconds on the stream's clock):

- ``beats``: R-peak times in seconds (increasing) reported by the causal QRS detector
  (:class:`pedstream.dsp.qrs.OnlineQRSDetector`) up to ``t_now``; only those in
  ``[t_now - context_s, t_now]`` are used;
- ``lead``: the filtered QRS lead (serving filters, :mod:`pedstream.dsp.filters`) over the last
  ``signal_s`` seconds, decimated by :func:`decimation_step` to about 125 Hz (``fs_lead``).

:func:`context_features` returns ``(K,)`` float32 in the order of :data:`CONTEXT_FEATURES`:

RR part (intervals in seconds; ``median`` = median RR of the context)
    ``n_beats`` beats in the context; ``hr_bpm`` 60 / median RR; ``hr_fast_bpm`` from the last 4 RR;
    ``rr_cv`` std / mean; ``nrmssd`` RMS successive difference / mean; ``pdiff10`` fraction of
    successive differences above 10 % of the median; ``pdiff10_clean`` / ``nrmssd_clean`` the same
    with short/compensatory pairs left out (:func:`pedstream.dsp.rr_rule.clean_intervals`, the RR
    rule's statistics); ``ectopic_frac`` fraction of intervals in such pairs; ``sampen`` sample
    entropy (m = 1, r = 30 ms, +0.5 counts so it is finite); ``cosen`` its coefficient form
    (Lake & Moorman 2011: SampEn + ln(2r) - ln(mean RR)); ``tpr`` turning-point ratio;
    ``alternation`` fraction of sign changes of successive differences (bigeminy);
    ``rr_min_rel`` / ``rr_max_rel`` / ``rr_iqr_rel`` relative to the median; ``since_last_s`` time
    since the newest beat (asystole, VF); ``max_gap_s`` longest interval including that one;
    ``rr_trend`` mean of the last 4 RR / median (onset).
Signal part (``lead``, mV)
    ``amp_range`` 1st-99th percentile range; ``amp_var`` spread of the per-second ranges / their
    mean (artefact); ``kurtosis``; ``zcr_hz`` zero crossings per second; ``dom_hz`` dominant
    frequency 0.5-20 Hz of the Welch spectrum; ``conc`` its power within +/-1 Hz over 0.5-20 Hz
    (VF is narrow-band); ``hf_frac`` power above 20 Hz; ``lf_frac`` power below 1 Hz;
    ``flat_frac`` near-constant samples; ``vf_leak`` a VF-filter leakage after Kuo & Dillman, but with
    the lead shifted by a quarter of its mean period where they shift by half (feature version 1 has it
    so: training and serving agree; the half-period form is the next version's);
    ``beat_snr`` median R amplitude / MAD of the lead; ``qrs_width_s`` median width at half the
    R amplitude of the beats in the lead.

Version-2 RR part (:data:`EXTRA_RR_FEATURES`)
    ``pnn50`` fraction of successive differences above 50 ms; ``sd1_sd2`` Poincare SD1 / SD2;
    ``rr_shannon`` normalised Shannon entropy of the RR / median histogram (0.3-2.0, 0.05 bins);
    ``fast_run`` longest run of intervals below 0.8 x the median (runs of ectopic beats, VT);
    ``rr_last_rel`` newest interval / median; and the RR part over the last 10 s of the context (multi-scale):
    ``n_beats_10``, ``hr_bpm_10``, ``rr_cv_10``, ``nrmssd_10``, ``pdiff10_clean_10``, ``nrmssd_clean_10``,
    ``sampen_10``, ``pnn50_10``.
Version-2 morphology part (:data:`MORPH_FEATURES`, the lead and the beats in it)
    ``tmpl_corr_mean`` / ``tmpl_corr_std`` / ``tmpl_low_frac`` correlation of each QRS (+/-80 ms) with
    the median QRS (ectopy, VT, artefact); ``qrs_width_last_s`` half-amplitude width of the newest two
    beats, ``qrs_width_iqr_s`` its spread over the last 12; ``p_corr`` mean correlation of each beat's
    P-wave window (250-80 ms before R) with their mean (P waves present and alike in sinus rhythm, absent
    in AF); ``aa_4_9_frac`` fraction of 1-30 Hz power in 4-9 Hz of the residual after QRST cancellation
    (median beat -250..+450 ms scaled and subtracted: fibrillatory waves), ``aa_conc`` the residual's
    power within +/-0.5 Hz of its 3-10 Hz peak; ``spec_entropy`` normalised spectral entropy 0.5-20 Hz;
    ``vf_band_frac`` power 2-8 Hz / 0.5-40 Hz; ``vf_leak_half`` Kuo & Dillman's VF-filter leakage with
    their half-period shift; ``beat_free_frac`` fraction of the lead farther than 0.3 s from any beat.
Version-3 beat-run part (:data:`BEAT_RUN_FEATURES`, each beat of the lead; the fast VT path)
    A beat is *ventricular-like* when its QRS (+/-80 ms, best of +/-3 samples of lag) correlates with the
    median QRS of the lead below a threshold, or its half-amplitude width is at least 1.5 x the median
    width and 100 ms; it is *fast* when the interval from the beat before it is under 0.6 s (above
    100 bpm). ``vt_run_70`` / ``vt_run_50``: the longest run of consecutive ventricular-like fast beats in
    the lead (correlation threshold 0.7 / 0.5); ``vt_run_rate_bpm`` 60 / mean interval of the longest
    ``vt_run_70`` run, ``vt_run_end_s`` seconds from its last beat to now (``signal_s`` when there is
    none), ``vt_run_len_s`` its first to last beat; ``vent_fast_frac`` the share of the lead's beats that
    are ventricular-like and fast (threshold 0.7).

:data:`ALL_FEATURES` (version 1 + 2 + 3, the training tables' columns) = :data:`V1_FEATURES` +
:data:`EXTRA_RR_FEATURES` + :data:`MORPH_FEATURES` + :data:`BEAT_RUN_FEATURES`; :data:`CONTEXT_FEATURES`
is the served vector (what :func:`context_features` returns; the packaged model takes its first
:data:`MODEL_FEATURES`, the alarm logic reads the beat-run columns).

Features of an empty context are defined (0 beats: intervals 0, entropy 0) so the model sees them.

Cost: a call runs every hop per stream on short arrays, so what the lead's parts share is computed once
(``_Lead``: the centred and sorted lead, its spectra, the QRS widths) and the per-call library calls are
replaced by the hand-written kernels of :mod:`pedstream.dsp.rhythm_kernels` (SciPy's Welch, NumPy's
median/percentile/histogram, loops over beats); the values are those of the plain library calls bit for
bit (tests/fixtures/rhythm_features_ref.npz, the outputs the shipped model's features were computed with).
"""

from __future__ import annotations

import math

import numpy as np

from pedstream.dsp.rhythm_kernels import (band_slice, longest_run, median_rows, median_sorted, near_fraction,
                                          newest_longest_run, percentile_sorted, qrs_widths, sampen_counts,
                                          var_given_mean, welch_psd)
from pedstream.dsp.rr_rule import clean_intervals

__all__ = ["ALL_FEATURES", "BEAT_RUN_FEATURES", "CONTEXT_FEATURES", "MODEL_FEATURES", "beat_run_features", "EXTRA_RR_FEATURES", "MORPH_FEATURES", "RR_CONTEXT_FEATURES", "SIGNAL_FEATURES",
           "FEATURE_FS", "V1_FEATURES", "context_features", "context_features_multi", "decimation_step", "extra_rr_features",
           "morph_features", "rr_context_features", "signal_features"]

FEATURE_FS = 125.0  # target rate of the decimated lead (Hz)
_R = 0.03  # sample-entropy tolerance, seconds

RR_CONTEXT_FEATURES: tuple[str, ...] = (
    "n_beats", "hr_bpm", "hr_fast_bpm", "rr_cv", "nrmssd", "pdiff10", "pdiff10_clean", "nrmssd_clean",
    "ectopic_frac", "sampen", "cosen", "tpr", "alternation", "rr_min_rel", "rr_max_rel", "rr_iqr_rel",
    "since_last_s", "max_gap_s", "rr_trend")
SIGNAL_FEATURES: tuple[str, ...] = (
    "amp_range", "amp_var", "kurtosis", "zcr_hz", "dom_hz", "conc", "hf_frac", "lf_frac", "flat_frac",
    "vf_leak", "beat_snr", "qrs_width_s")
_SHORT_S = 10.0  # the short sub-context of the multi-scale RR features (seconds)
EXTRA_RR_FEATURES: tuple[str, ...] = (
    "pnn50", "sd1_sd2", "rr_shannon", "fast_run", "rr_last_rel",
    "n_beats_10", "hr_bpm_10", "rr_cv_10", "nrmssd_10", "pdiff10_clean_10", "nrmssd_clean_10", "sampen_10",
    "pnn50_10")
MORPH_FEATURES: tuple[str, ...] = (
    "tmpl_corr_mean", "tmpl_corr_std", "tmpl_low_frac", "qrs_width_last_s", "qrs_width_iqr_s", "p_corr",
    "aa_4_9_frac", "aa_conc", "spec_entropy", "vf_band_frac", "vf_leak_half", "beat_free_frac")
BEAT_RUN_FEATURES: tuple[str, ...] = (
    "vt_run_70", "vt_run_50", "vt_run_rate_bpm", "vt_run_end_s", "vt_run_len_s", "vent_fast_frac")
V1_FEATURES: tuple[str, ...] = RR_CONTEXT_FEATURES + SIGNAL_FEATURES
ALL_FEATURES: tuple[str, ...] = V1_FEATURES + EXTRA_RR_FEATURES + MORPH_FEATURES + BEAT_RUN_FEATURES  # tables' columns
CONTEXT_FEATURES: tuple[str, ...] = ALL_FEATURES  # the served vector (a prefix of ALL_FEATURES)
MODEL_FEATURES: tuple[str, ...] = V1_FEATURES + EXTRA_RR_FEATURES + MORPH_FEATURES  # the packaged model's input (a prefix)
VT_FAST_S = 0.6  # a beat is "fast" when the interval before it is shorter (100 bpm)


def decimation_step(fs: float) -> int:
    """Keep every k-th sample of the filtered lead: ``k = max(1, round(fs / 125))`` (the lead is
    already low-passed at 40 Hz by the serving filters)."""
    return max(1, int(round(float(fs) / FEATURE_FS)))


def _sampen(rr: np.ndarray, r: float = _R) -> float:
    """Sample entropy, m = 1, tolerance ``r`` (seconds), counts + 0.5 (finite for short series)."""
    if rr.size < 3:
        return 0.0
    b, a = sampen_counts(rr, r)
    return -math.log((a + 0.5) / (b + 0.5))


def _in_context(beats: np.ndarray, t_now: float, context_s: float) -> np.ndarray:
    b = np.asarray(beats, dtype=np.float64)
    return b[(b >= t_now - context_s) & (b <= t_now)]


def _rr_part(b: np.ndarray, t_now: float, context_s: float, full: bool = True) -> np.ndarray:
    """:data:`RR_CONTEXT_FEATURES` (float64) of the beats ``b`` already in the context; ``full=False`` leaves
    out what the 10 s sub-context does not use (cosen, tpr, alternation, the relative RR range, trend)."""
    out = np.zeros(len(RR_CONTEXT_FEATURES), dtype=np.float64)
    out[0] = b.size
    since = t_now - b[-1] if b.size else context_s
    out[16] = since
    rr = b[1:] - b[:-1]
    s = np.sort(rr)
    out[17] = max(float(s[-1]) if rr.size else 0.0, since)
    if rr.size < 2:
        return out
    med, mean = median_sorted(s), float(rr.mean())
    d = rr[1:] - rr[:-1]
    out[1] = 60.0 / med
    out[2] = 60.0 / float(rr[-4:].mean())
    out[3] = math.sqrt(var_given_mean(rr, mean)) / mean
    out[4] = math.sqrt(float((d * d).sum()) / d.size) / mean
    out[5] = np.count_nonzero(np.abs(d) > 0.1 * med) / d.size
    clean, ectopic = clean_intervals(rr)
    if clean.size >= 3:
        dc = clean[1:] - clean[:-1]
        out[6] = np.count_nonzero(np.abs(dc) > 0.1 * median_sorted(np.sort(clean))) / dc.size
        out[7] = math.sqrt(float((dc * dc).sum()) / dc.size) / float(clean.mean())
    out[8] = ectopic
    out[9] = se = _sampen(rr)
    if not full:
        return out
    out[10] = se + math.log(2 * _R) - math.log(mean)
    if d.size >= 2:
        out[11] = np.count_nonzero((d[:-1] * d[1:]) < 0) / (d.size - 1)  # turning points of the RR series
        sg = np.sign(d[d != 0])
        out[12] = np.count_nonzero(sg[:-1] != sg[1:]) / (sg.size - 1) if sg.size >= 2 else 0.0
    out[13] = float(s[0]) / med
    out[14] = float(s[-1]) / med
    out[15] = (percentile_sorted(s, 75) - percentile_sorted(s, 25)) / med
    out[18] = float(rr[-4:].mean()) / med
    return out


def rr_context_features(beats: np.ndarray, t_now: float, context_s: float) -> np.ndarray:
    """``(len(RR_CONTEXT_FEATURES),)`` float32 of the beats (seconds) in ``[t_now - context_s, t_now]``."""
    return _rr_part(_in_context(beats, t_now, context_s), t_now, context_s).astype(np.float32)


_HIST_EDGES = np.arange(0.3, 2.05, 0.05)  # the RR / median histogram of rr_shannon


def _extra_part(b: np.ndarray, t_now: float, context_s: float) -> np.ndarray:
    """:data:`EXTRA_RR_FEATURES` (float64) of the beats ``b`` already in the context."""
    out = np.zeros(len(EXTRA_RR_FEATURES), dtype=np.float64)
    rr = b[1:] - b[:-1]
    if rr.size >= 3:
        med = median_sorted(np.sort(rr))
        d = rr[1:] - rr[:-1]
        out[0] = np.count_nonzero(np.abs(d) > 0.05) / d.size
        sd1 = math.sqrt(var_given_mean(d, float(d.mean()))) / math.sqrt(2.0)
        sd2 = math.sqrt(max(0.0, 2.0 * var_given_mean(rr, float(rr.mean())) - sd1 * sd1))
        out[1] = sd1 / sd2 if sd2 > 1e-9 else 0.0
        v = np.sort(rr / med)  # np.histogram's counts (last bin closed)
        h = np.diff(np.concatenate((v.searchsorted(_HIST_EDGES[:-1], "left"),
                                    v.searchsorted(_HIST_EDGES[-1:], "right"))))
        if h.sum():
            q = h[h > 0] / h.sum()
            out[2] = float(-(q * np.log(q)).sum() / math.log(h.size))
        out[3] = longest_run(rr < 0.8 * med)
        out[4] = float(rr[-1]) / med
    short_s = min(_SHORT_S, context_s)
    b10 = b[b >= t_now - short_s]
    short = _rr_part(b10, t_now, short_s, full=False).astype(np.float32)
    out[5:12] = short[[0, 1, 3, 4, 6, 7, 9]]
    d10 = np.diff(b10, 2)
    out[12] = np.count_nonzero(np.abs(d10) > 0.05) / d10.size if d10.size else 0.0
    return out


def extra_rr_features(beats: np.ndarray, t_now: float, context_s: float) -> np.ndarray:
    """``(len(EXTRA_RR_FEATURES),)`` float32: more RR statistics of the context and the RR part over its
    last 10 s (multi-scale; see the module docstring)."""
    return _extra_part(_in_context(beats, t_now, context_s), t_now, context_s).astype(np.float32)


class _Lead:
    """What the signal, morphology and beat-run parts share of one decimated lead: the lead less its median
    (``x``), ``|x|``, its sorted values and the QRS widths of the R peaks
    ``idx`` inside it (``w``; 0 for a peak outside)."""

    def __init__(self, lead: np.ndarray, fs: float, idx: np.ndarray | None) -> None:
        x = np.asarray(lead, dtype=np.float64)
        self.fs, self.n = float(fs), x.size
        self.idx = np.zeros(0, np.int64) if idx is None else np.asarray(idx, dtype=np.int64)
        self.ok = self.n >= int(2 * fs)
        if not self.ok:
            return
        s = np.sort(x)
        med = median_sorted(s)
        self.x, self.xs = x - med, s - med  # sorted(x - med) == sorted(x) - med
        self.ax = np.abs(self.x)
        self.adx = np.abs(self.x[1:] - self.x[:-1])
        self.den, self.asum = float(self.adx.sum()), float(self.ax.sum())
        self.inside = (self.idx >= 0) & (self.idx < self.n)
        self.bi = self.idx[self.inside]
        self.w = np.zeros(self.idx.size)
        self.w[self.inside] = qrs_widths(self.ax, self.bi, self.fs)

    def leak(self, div: float) -> float:
        """VF-filter leakage (Kuo & Dillman) with the shift of their half period / ``div`` (module docstring)."""
        if self.den <= 1e-9:
            return 1.0
        period = math.pi * self.asum / self.den
        half = max(1, int(round(period / div if div != 1 else period)))
        if half >= self.n - 1:
            return 1.0
        x, ax = self.x, self.ax
        return float(np.abs(x[half:] + x[:-half]).sum() / (ax[half:].sum() + ax[:-half].sum() + 1e-12))


def _band(f: np.ndarray, p: np.ndarray, lo: float, hi: float) -> float:
    return float(p[band_slice(f, lo, hi)].sum())


def _signal_part(L: _Lead) -> np.ndarray:
    out = np.zeros(len(SIGNAL_FEATURES), dtype=np.float64)
    if not L.ok:
        return out
    x, n, fs = L.x, L.n, L.fs
    out[0] = percentile_sorted(L.xs, 99) - percentile_sorted(L.xs, 1)
    sec = int(fs)
    blocks = x[: n // sec * sec].reshape(-1, sec)
    rng = blocks.max(1) - blocks.min(1)
    rng_mean = float(np.add.reduce(rng)) / rng.size
    out[1] = math.sqrt(var_given_mean(rng, rng_mean)) / (rng_mean + 1e-6)
    xm = x - float(np.add.reduce(x)) / n  # np.mean's operations, without its overhead
    sd = math.sqrt(float(np.add.reduce(xm * xm)) / n)
    out[2] = float(np.add.reduce((xm / sd) ** 4)) / n - 3.0 if sd > 1e-9 else 0.0
    out[3] = float(np.count_nonzero(np.diff(np.signbit(xm)))) * fs / n
    f, p = welch_psd(x, fs, min(n, int(2 * fs)))
    tot = float(p.sum()) + 1e-12
    band = band_slice(f, 0.5, 20.0)
    fb, pb = f[band], p[band]
    if pb.size and pb.sum() > 0:
        k = int(np.argmax(pb))
        out[4] = fb[k]
        out[5] = float(pb[np.abs(fb - fb[k]) <= 1.0].sum() / pb.sum())
    out[6] = float(p[int(np.searchsorted(f, 20.0, "right")):].sum()) / tot
    out[7] = float(p[: int(np.searchsorted(f, 1.0, "left"))].sum()) / tot
    out[8] = np.count_nonzero(L.adx < 1e-4) / L.adx.size
    out[9] = L.leak(2)
    mad = median_sorted(np.sort(L.ax)) + 1e-6
    if L.bi.size:
        out[10] = median_sorted(np.sort(L.ax[L.bi])) / mad
        w = L.w[L.inside][-12:]  # the newest 12 (a real width is at least one sample)
        w = w[w > 0]
        out[11] = median_sorted(np.sort(w)) if w.size else 0.0
    return out


def signal_features(lead: np.ndarray, fs_lead: float, beat_idx: np.ndarray | None = None) -> np.ndarray:
    """``(len(SIGNAL_FEATURES),)`` float32 of the decimated lead (mV) at ``fs_lead``; ``beat_idx``:
    sample indices of the detected R peaks inside it."""
    return _signal_part(_Lead(lead, fs_lead, beat_idx)).astype(np.float32)


def _corr_rows(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` (the last axis) with ``v`` (0 where either is flat)."""
    a = a - np.add.reduce(a, axis=-1, keepdims=True) / a.shape[-1]
    v = v - float(np.add.reduce(v)) / v.size
    den = np.sqrt((a * a).sum(-1) * float((v * v).sum()))
    return np.where(den > 1e-12, (a @ v) / np.maximum(den, 1e-12), 0.0)


def _residual(L: _Lead, full: np.ndarray, segs: np.ndarray, pre: int) -> np.ndarray:
    """QRST cancellation: the lead less the median beat scaled to each beat (``segs``, ``pre`` samples before the R
    peaks ``full``); where windows overlap, the later beat's."""
    tmpl = median_rows(segs)
    a = np.fromiter(map(tmpl.dot, segs), np.float64, len(segs)) / (np.dot(tmpl, tmpl) + 1e-12)  # per beat, as a dot
    w = segs.shape[1]
    keep = np.arange(w)[None, :] < np.append(np.diff(full), w)[:, None]
    res = L.x.copy()
    res[(full[:, None] + np.arange(-pre, w - pre)[None, :])[keep]] = (segs - a[:, None] * tmpl)[keep]
    return res


def _atrial(fr: np.ndarray, pr: np.ndarray, out: np.ndarray) -> None:
    """The residual's (QRST-cancelled lead's) spectral features."""
    tot_r = _band(fr, pr, 1.0, 30.0)
    if tot_r > 0:
        out[6] = _band(fr, pr, 4.0, 9.0) / tot_r
        m = band_slice(fr, 3.0, 10.0)
        fk = fr[m][int(np.argmax(pr[m]))]
        out[7] = _band(fr, pr, fk - 0.5, fk + 0.5) / (_band(fr, pr, 3.0, 10.0) + 1e-12)


def _morph_part(L: _Lead) -> np.ndarray:
    out = np.zeros(len(MORPH_FEATURES), dtype=np.float64)
    if not L.ok:
        return out
    x, n, fs, bi = L.x, L.n, L.fs, L.bi
    pre, post = int(0.25 * fs), int(0.45 * fs)
    full = bi[(bi >= pre) & (bi + post < n)]
    segs = x[full[:, None] + np.arange(-pre, post)[None, :]] if full.size >= 3 else None
    if segs is None:
        f, p = welch_psd(x, fs, min(n, int(4 * fs)))
    else:  # the lead's and the residual's spectra in one transform
        f, (p, pr) = welch_psd(np.stack([x, _residual(L, full, segs, pre)]), fs, min(n, int(4 * fs)))
        _atrial(f, pr, out)
    pb = p[band_slice(f, 0.5, 20.0)]
    if pb.sum() > 0:
        q = pb / pb.sum()
        q = q[q > 0]
        out[8] = float(-(q * np.log(q)).sum() / math.log(max(2, pb.size)))
    tot = _band(f, p, 0.5, 40.0)
    out[9] = _band(f, p, 2.0, 8.0) / tot if tot > 0 else 0.0
    out[10] = L.leak(1)
    out[11] = 1.0 - near_fraction(bi, n, int(0.3 * fs))
    if segs is not None:
        qrs = segs[:, pre - int(0.08 * fs): pre + int(0.08 * fs)]
        c = _corr_rows(qrs, median_rows(qrs))
        out[0], out[1], out[2] = float(c.mean()), float(c.std()), np.count_nonzero(c < 0.8) / c.size
        pw = segs[:, pre - int(0.25 * fs): pre - int(0.08 * fs)]
        out[5] = float(_corr_rows(pw, pw.mean(0)).mean())
    if bi.size:
        ws = L.w[L.inside][-12:]
        out[3] = median_sorted(np.sort(ws[-2:]))
        if ws.size >= 4:
            s = np.sort(ws)
            out[4] = percentile_sorted(s, 75) - percentile_sorted(s, 25)
    return out


def morph_features(lead: np.ndarray, fs_lead: float, beat_idx: np.ndarray | None = None) -> np.ndarray:
    """``(len(MORPH_FEATURES),)`` float32 of the decimated lead (mV) and the R peaks in it: beat-template
    correlation (ectopy, VT, artefact), QRS width of the newest beats, P-wave consistency, atrial activity
    after QRST cancellation (4-9 Hz: fibrillatory waves), spectral shape (VF), beat-free fraction."""
    return _morph_part(_Lead(lead, fs_lead, beat_idx)).astype(np.float32)


def _lag_corr(a: np.ndarray, v: np.ndarray, lag: int) -> np.ndarray:
    """Best Pearson correlation of each row of ``a`` (length ``len(v) + 2 * lag``) with ``v`` over shifts
    of up to ``lag`` samples (all shifts at once: ``(shift, row, sample)``)."""
    shifted = np.lib.stride_tricks.sliding_window_view(a, v.size, axis=1).transpose(1, 0, 2)
    return np.max(_corr_rows(np.ascontiguousarray(shifted), v), axis=0)


def _beat_run_part(L: _Lead, beat_rr: np.ndarray, t_now_idx: float) -> np.ndarray:
    out = np.zeros(len(BEAT_RUN_FEATURES), dtype=np.float64)
    out[3] = L.n / L.fs
    if not L.ok:
        return out
    half, lag = int(0.08 * L.fs), 3
    bi, rr = L.idx, np.asarray(beat_rr, dtype=np.float64)
    ok = (bi - half - lag >= 0) & (bi + half + lag + 1 <= L.n)
    bi, rr, w = bi[ok], rr[ok], L.w[ok]
    if bi.size < 3:
        return out
    segs = L.x[bi[:, None] + np.arange(-half - lag, half + lag + 1)[None, :]]
    corr = _lag_corr(segs, median_rows(segs[:, lag: segs.shape[1] - lag]), lag)
    wide = (w >= 1.5 * median_sorted(np.sort(w))) & (w >= 0.1)
    fast = (rr > 0) & (rr < VT_FAST_S)
    for col, thr in ((0, 0.7), (1, 0.5)):
        vent = ((corr < thr) | wide) & fast
        best, a_best, b_best = newest_longest_run(vent)
        out[col] = best
        if col == 0:
            out[5] = np.count_nonzero(vent) / vent.size
            if best:
                out[2] = 60.0 / float(rr[a_best: b_best + 1].mean())
                out[3] = (t_now_idx - bi[b_best]) / L.fs
                out[4] = (bi[b_best] - bi[a_best]) / L.fs
    return out


def beat_run_features(lead: np.ndarray, fs_lead: float, beat_idx: np.ndarray, beat_rr: np.ndarray,
                      t_now_idx: float) -> np.ndarray:
    """``(len(BEAT_RUN_FEATURES),)`` float32 (see the module docstring). ``beat_idx``: R-peak sample indices in
    the decimated ``lead`` (increasing); ``beat_rr``: the interval (s) from the beat before each of them (0 for
    none); ``t_now_idx``: now, in samples of the lead."""
    return _beat_run_part(_Lead(lead, fs_lead, beat_idx), beat_rr, t_now_idx).astype(np.float32)


def context_features(beats: np.ndarray, t_now: float, context_s: float, lead: np.ndarray | None, fs_lead: float,
                     lead_t0: float | None = None) -> np.ndarray:
    """The served :data:`CONTEXT_FEATURES` ``(K,)`` float32. ``lead`` starts at ``lead_t0`` seconds (same
    clock as ``beats``); without a lead the signal part is 0."""
    full = context_features_multi(beats, t_now, (context_s,), lead, fs_lead, lead_t0)[context_s]
    return full[: len(CONTEXT_FEATURES)]


def context_features_multi(beats: np.ndarray, t_now: float, contexts: tuple[float, ...] | list[float],
                           lead: np.ndarray | None, fs_lead: float,
                           lead_t0: float | None = None) -> dict[float, np.ndarray]:
    """:data:`ALL_FEATURES` ``(len(ALL_FEATURES),)`` float32 at several context lengths at once (the signal
    part computed once); :func:`context_features` is its served prefix."""
    b = np.asarray(beats, dtype=np.float64)
    b = b[b <= t_now]
    if lead is None or lead_t0 is None:
        lead_part = np.zeros(len(SIGNAL_FEATURES) + len(MORPH_FEATURES) + len(BEAT_RUN_FEATURES))
    else:
        inside = b >= lead_t0
        L = _Lead(lead, fs_lead, np.round((b[inside] - lead_t0) * fs_lead).astype(np.int64))
        rr = np.diff(b, prepend=np.nan)[inside]
        lead_part = np.concatenate([_signal_part(L), _morph_part(L),
                                    _beat_run_part(L, np.nan_to_num(rr, nan=0.0), (t_now - lead_t0) * fs_lead)])
    sig, morph, runs = np.split(lead_part, np.cumsum([len(SIGNAL_FEATURES), len(MORPH_FEATURES)]))
    out = {}
    for c in contexts:
        bc = b[b >= t_now - c]
        parts = [_rr_part(bc, t_now, c), sig, _extra_part(bc, t_now, c), morph, runs]
        out[c] = np.concatenate(parts).astype(np.float32)
    return out
