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
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import welch

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
    n = rr.size
    if n < 3:
        return 0.0
    x1 = rr[:-1]
    d1 = np.abs(x1[:, None] - x1[None, :]) <= r  # templates of length 1 (n-1 of them)
    d2 = d1 & (np.abs(rr[1:, None] - rr[None, 1:]) <= r)  # length 2
    iu = np.triu_indices(n - 1, k=1)
    b, a = float(d1[iu].sum()), float(d2[iu].sum())
    return -math.log((a + 0.5) / (b + 0.5))


def rr_context_features(beats: np.ndarray, t_now: float, context_s: float) -> np.ndarray:
    """``(len(RR_CONTEXT_FEATURES),)`` float32 of the beats (seconds) in ``[t_now - context_s, t_now]``."""
    b = np.asarray(beats, dtype=np.float64)
    b = b[(b >= t_now - context_s) & (b <= t_now)]
    out = np.zeros(len(RR_CONTEXT_FEATURES), dtype=np.float64)
    out[0] = b.size
    since = t_now - b[-1] if b.size else context_s
    out[16] = since
    rr = np.diff(b)
    out[17] = max(float(rr.max()) if rr.size else 0.0, since)
    if rr.size < 2:
        return out.astype(np.float32)
    med, mean = float(np.median(rr)), float(rr.mean())
    d = np.diff(rr)
    out[1] = 60.0 / med
    out[2] = 60.0 / float(rr[-4:].mean())
    out[3] = float(rr.std()) / mean
    out[4] = float(np.sqrt(np.mean(d * d))) / mean
    out[5] = float(np.mean(np.abs(d) > 0.1 * med))
    clean, ectopic = clean_intervals(rr)
    if clean.size >= 3:
        dc = np.diff(clean)
        out[6] = float(np.mean(np.abs(dc) > 0.1 * float(np.median(clean))))
        out[7] = float(np.sqrt(np.mean(dc * dc))) / float(clean.mean())
    out[8] = ectopic
    se = _sampen(rr)
    out[9] = se
    out[10] = se + math.log(2 * _R) - math.log(mean)
    if d.size >= 2:
        out[11] = float(np.mean((d[:-1] * d[1:]) < 0))  # turning points of the RR series
        nz = d[d != 0]
        out[12] = float(np.mean(np.sign(nz[:-1]) != np.sign(nz[1:]))) if nz.size >= 2 else 0.0
    out[13] = float(rr.min()) / med
    out[14] = float(rr.max()) / med
    q1, q3 = np.percentile(rr, [25, 75])
    out[15] = float(q3 - q1) / med
    out[18] = float(rr[-4:].mean()) / med
    return out.astype(np.float32)


def signal_features(lead: np.ndarray, fs_lead: float, beat_idx: np.ndarray | None = None) -> np.ndarray:
    """``(len(SIGNAL_FEATURES),)`` float32 of the decimated lead (mV) at ``fs_lead``; ``beat_idx``:
    sample indices of the detected R peaks inside it."""
    x = np.asarray(lead, dtype=np.float64)
    out = np.zeros(len(SIGNAL_FEATURES), dtype=np.float64)
    n = x.size
    if n < int(2 * fs_lead):
        return out.astype(np.float32)
    x = x - float(np.median(x))
    p1, p99 = np.percentile(x, [1, 99])
    out[0] = p99 - p1
    sec = int(fs_lead)
    blocks = x[: n // sec * sec].reshape(-1, sec)
    rng = blocks.max(1) - blocks.min(1)
    out[1] = float(rng.std() / (rng.mean() + 1e-6))
    sd = float(x.std())
    out[2] = float(np.mean(((x - x.mean()) / sd) ** 4) - 3.0) if sd > 1e-9 else 0.0
    xm = x - x.mean()
    out[3] = float(np.count_nonzero(np.diff(np.signbit(xm)))) * fs_lead / n
    f, p = welch(x, fs=fs_lead, nperseg=min(n, int(2 * fs_lead)))
    tot = float(p.sum()) + 1e-12
    band = (f >= 0.5) & (f <= 20.0)
    if band.any() and p[band].sum() > 0:
        fb, pb = f[band], p[band]
        k = int(np.argmax(pb))
        out[4] = fb[k]
        out[5] = float(pb[np.abs(fb - fb[k]) <= 1.0].sum() / pb.sum())
    out[6] = float(p[f > 20.0].sum()) / tot
    out[7] = float(p[f < 1.0].sum()) / tot
    dx = np.abs(np.diff(x))
    out[8] = float(np.mean(dx < 1e-4))
    out[9] = _vf_leak(x)
    mad = float(np.median(np.abs(x))) + 1e-6
    if beat_idx is not None and len(beat_idx):
        bi = np.asarray(beat_idx, dtype=np.int64)
        bi = bi[(bi >= 0) & (bi < n)]
        if bi.size:
            amp = np.abs(x[bi])
            out[10] = float(np.median(amp)) / mad
            out[11] = _qrs_width(x, bi, fs_lead)
    return out.astype(np.float32)


def _vf_leak(x: np.ndarray) -> float:
    """VF-filter leakage after Kuo & Dillman with a quarter-period shift (see the module docstring)."""
    den = float(np.abs(np.diff(x)).sum())
    if den <= 1e-9:
        return 1.0
    half = max(1, int(round(math.pi * float(np.abs(x).sum()) / den / 2)))
    if half >= x.size - 1:
        return 1.0
    a, b = x[half:], x[:-half]
    return float(np.abs(a + b).sum() / (np.abs(a).sum() + np.abs(b).sum() + 1e-12))


def _qrs_width(x: np.ndarray, bi: np.ndarray, fs: float) -> float:
    """Median width (s), over the newest 12 R peaks, of the run around each where |x| stays above half its R amplitude."""
    widths = [w for w in _qrs_widths(x, bi[-12:], fs) if w > 0]  # the newest 12 (a real width is at least one sample)
    return float(np.median(widths)) if widths else 0.0


def _qrs_widths(x: np.ndarray, bi: np.ndarray, fs: float) -> list[float]:
    """Half-amplitude widths (s) of the R peaks ``bi`` (0 for a peak of zero amplitude)."""
    half_win = int(0.12 * fs)
    widths = []
    ax = np.abs(x)
    for i in bi.tolist():
        a, b = max(0, i - half_win), min(x.size, i + half_win + 1)
        seg = ax[a:b]
        c = i - a
        thr = 0.5 * seg[c]
        if thr <= 0:
            widths.append(0.0)
            continue
        below = seg < thr
        left = np.flatnonzero(below[:c])
        right = np.flatnonzero(below[c:])
        lo = left[-1] + 1 if left.size else 0
        hi = c + right[0] if right.size else seg.size
        widths.append((hi - lo) / fs)
    return widths


def extra_rr_features(beats: np.ndarray, t_now: float, context_s: float) -> np.ndarray:
    """``(len(EXTRA_RR_FEATURES),)`` float32: more RR statistics of the context and the RR part over its
    last 10 s (multi-scale; see the module docstring)."""
    b = np.asarray(beats, dtype=np.float64)
    b = b[(b >= t_now - context_s) & (b <= t_now)]
    out = np.zeros(len(EXTRA_RR_FEATURES), dtype=np.float64)
    rr = np.diff(b)
    if rr.size >= 3:
        med = float(np.median(rr))
        d = np.diff(rr)
        out[0] = float(np.mean(np.abs(d) > 0.05))
        sd1 = float(np.std(d)) / math.sqrt(2.0)
        sd2 = math.sqrt(max(0.0, 2.0 * float(np.var(rr)) - sd1 * sd1))
        out[1] = sd1 / sd2 if sd2 > 1e-9 else 0.0
        h, _ = np.histogram(rr / med, bins=np.arange(0.3, 2.05, 0.05))
        if h.sum():
            q = h[h > 0] / h.sum()
            out[2] = float(-(q * np.log(q)).sum() / math.log(h.size))
        fast = rr < 0.8 * med
        run = best = 0
        for f in fast.tolist():
            run = run + 1 if f else 0
            best = max(best, run)
        out[3] = best
        out[4] = float(rr[-1]) / med
    short = rr_context_features(b, t_now, min(_SHORT_S, context_s))
    out[5:12] = short[[0, 1, 3, 4, 6, 7, 9]]
    b10 = b[b >= t_now - min(_SHORT_S, context_s)]
    d10 = np.diff(np.diff(b10))
    out[12] = float(np.mean(np.abs(d10) > 0.05)) if d10.size else 0.0
    return out.astype(np.float32)


def _band(f: np.ndarray, p: np.ndarray, lo: float, hi: float) -> float:
    return float(p[(f >= lo) & (f <= hi)].sum())


def morph_features(lead: np.ndarray, fs_lead: float, beat_idx: np.ndarray | None = None) -> np.ndarray:
    """``(len(MORPH_FEATURES),)`` float32 of the decimated lead (mV) and the R peaks in it: beat-template
    correlation (ectopy, VT, artefact), QRS width of the newest beats, P-wave consistency, atrial activity
    after QRST cancellation (4-9 Hz: fibrillatory waves), spectral shape (VF), beat-free fraction."""
    x = np.asarray(lead, dtype=np.float64)
    out = np.zeros(len(MORPH_FEATURES), dtype=np.float64)
    n = x.size
    if n < int(2 * fs_lead):
        return out.astype(np.float32)
    x = x - float(np.median(x))
    f, p = welch(x, fs=fs_lead, nperseg=min(n, int(4 * fs_lead)))
    band = (f >= 0.5) & (f <= 20.0)
    pb = p[band]
    if pb.sum() > 0:
        q = pb / pb.sum()
        q = q[q > 0]
        out[8] = float(-(q * np.log(q)).sum() / math.log(max(2, int(band.sum()))))
    tot = _band(f, p, 0.5, 40.0)
    out[9] = _band(f, p, 2.0, 8.0) / tot if tot > 0 else 0.0
    out[10] = _vf_leak_half(x)
    bi = np.zeros(0, np.int64) if beat_idx is None else np.asarray(beat_idx, dtype=np.int64)
    bi = bi[(bi >= 0) & (bi < n)]
    near = np.zeros(n, dtype=bool)
    w = int(0.3 * fs_lead)
    for i in bi.tolist():
        near[max(0, i - w): i + w + 1] = True
    out[11] = 1.0 - float(near.mean())
    pre, post = int(0.25 * fs_lead), int(0.45 * fs_lead)
    full = bi[(bi >= pre) & (bi + post < n)]
    if full.size >= 3:
        segs = np.stack([x[i - pre: i + post] for i in full.tolist()])
        qrs = segs[:, pre - int(0.08 * fs_lead): pre + int(0.08 * fs_lead)]
        tq = np.median(qrs, axis=0)
        c = _corr_rows(qrs, tq)
        out[0], out[1], out[2] = float(c.mean()), float(c.std()), float(np.mean(c < 0.8))
        pw = segs[:, pre - int(0.25 * fs_lead): pre - int(0.08 * fs_lead)]
        out[5] = float(_corr_rows(pw, pw.mean(0)).mean())
        # QRST cancellation: subtract the median beat (scaled per beat) and look at the residual
        tmpl = np.median(segs, axis=0)
        res = x.copy()
        for i, sg in zip(full.tolist(), segs):
            a = float(np.dot(sg, tmpl) / (np.dot(tmpl, tmpl) + 1e-12))
            res[i - pre: i + post] = sg - a * tmpl
        fr, pr = welch(res, fs=fs_lead, nperseg=min(n, int(4 * fs_lead)))
        tot_r = _band(fr, pr, 1.0, 30.0)
        if tot_r > 0:
            out[6] = _band(fr, pr, 4.0, 9.0) / tot_r
            m = (fr >= 3.0) & (fr <= 10.0)
            k = int(np.argmax(pr[m]))
            fk = fr[m][k]
            out[7] = _band(fr, pr, fk - 0.5, fk + 0.5) / (_band(fr, pr, 3.0, 10.0) + 1e-12)
    if bi.size:
        ws = _qrs_widths(x, bi[-12:], fs_lead)
        out[3] = float(np.median(ws[-2:]))
        out[4] = float(np.subtract(*np.percentile(ws, [75, 25]))) if len(ws) >= 4 else 0.0
    return out.astype(np.float32)


def _corr_rows(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with ``v`` (0 where either is flat)."""
    a = a - a.mean(1, keepdims=True)
    v = v - v.mean()
    den = np.sqrt((a * a).sum(1) * float((v * v).sum()))
    return np.where(den > 1e-12, (a @ v) / np.maximum(den, 1e-12), 0.0)


def _vf_leak_half(x: np.ndarray) -> float:
    """VF-filter leakage after Kuo & Dillman (1978) with their half-period shift."""
    den = float(np.abs(np.diff(x)).sum())
    if den <= 1e-9:
        return 1.0
    half = max(1, int(round(math.pi * float(np.abs(x).sum()) / den)))
    if half >= x.size - 1:
        return 1.0
    a, b = x[half:], x[:-half]
    return float(np.abs(a + b).sum() / (np.abs(a).sum() + np.abs(b).sum() + 1e-12))


def _lag_corr(a: np.ndarray, v: np.ndarray, lag: int) -> np.ndarray:
    """Best Pearson correlation of each row of ``a`` (length ``len(v) + 2 * lag``) with ``v`` over shifts
    of up to ``lag`` samples."""
    m = v.size
    return np.max(np.stack([_corr_rows(a[:, k: k + m], v) for k in range(2 * lag + 1)]), axis=0)


def beat_run_features(lead: np.ndarray, fs_lead: float, beat_idx: np.ndarray, beat_rr: np.ndarray,
                      t_now_idx: float) -> np.ndarray:
    """``(len(BEAT_RUN_FEATURES),)`` float32 (see the module docstring). ``beat_idx``: R-peak sample indices in
    the decimated ``lead`` (increasing); ``beat_rr``: the interval (s) from the beat before each of them (0 for
    none); ``t_now_idx``: now, in samples of the lead."""
    x = np.asarray(lead, dtype=np.float64)
    out = np.zeros(len(BEAT_RUN_FEATURES), dtype=np.float64)
    n = x.size
    out[3] = n / fs_lead
    if n < int(2 * fs_lead):
        return out.astype(np.float32)
    x = x - float(np.median(x))
    half, lag = int(0.08 * fs_lead), 3
    bi = np.asarray(beat_idx, dtype=np.int64)
    rr = np.asarray(beat_rr, dtype=np.float64)
    ok = (bi - half - lag >= 0) & (bi + half + lag + 1 <= n)
    bi, rr = bi[ok], rr[ok]
    if bi.size < 3:
        return out.astype(np.float32)
    segs = np.stack([x[i - half - lag: i + half + lag + 1] for i in bi.tolist()])
    core = segs[:, lag: segs.shape[1] - lag]
    corr = _lag_corr(segs, np.median(core, axis=0), lag)
    w = np.asarray(_qrs_widths(x, bi, fs_lead))
    wmed = float(np.median(w))
    wide = (w >= 1.5 * wmed) & (w >= 0.1)
    fast = (rr > 0) & (rr < VT_FAST_S)
    for col, thr in ((0, 0.7), (1, 0.5)):
        vent = ((corr < thr) | wide) & fast
        best, run, a_best, b_best, a = 0, 0, -1, -1, 0
        for j, v in enumerate(vent.tolist()):
            if v:
                if run == 0:
                    a = j
                run += 1
                if run >= best:  # the newest of equally long runs
                    best, a_best, b_best = run, a, j
            else:
                run = 0
        out[col] = best
        if col == 0:
            out[5] = float(vent.mean())
            if best:
                out[2] = 60.0 / float(rr[a_best: b_best + 1].mean())
                out[3] = (t_now_idx - bi[b_best]) / fs_lead
                out[4] = (bi[b_best] - bi[a_best]) / fs_lead
    return out.astype(np.float32)


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
    if lead is None or lead_t0 is None:
        sig = np.zeros(len(SIGNAL_FEATURES), dtype=np.float32)
        morph = np.zeros(len(MORPH_FEATURES), dtype=np.float32)
        runs = np.zeros(len(BEAT_RUN_FEATURES), dtype=np.float32)
    else:
        b = np.asarray(beats, dtype=np.float64)
        b = b[b <= t_now]
        inside = b >= lead_t0
        idx = np.round((b[inside] - lead_t0) * fs_lead).astype(np.int64)
        sig = signal_features(lead, fs_lead, idx)
        morph = morph_features(lead, fs_lead, idx)
        rr = np.diff(b, prepend=np.nan)[inside]
        runs = beat_run_features(lead, fs_lead, idx, np.nan_to_num(rr, nan=0.0), (t_now - lead_t0) * fs_lead)
    return {c: np.concatenate([rr_context_features(beats, t_now, c), sig, extra_rr_features(beats, t_now, c), morph,
                               runs]) for c in contexts}
