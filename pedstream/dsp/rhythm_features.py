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

Features of an empty context are defined (0 beats: intervals 0, entropy 0) so the model sees them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import welch

from pedstream.dsp.rr_rule import clean_intervals

__all__ = ["CONTEXT_FEATURES", "RR_CONTEXT_FEATURES", "SIGNAL_FEATURES", "FEATURE_FS", "context_features",
           "decimation_step", "rr_context_features", "signal_features"]

FEATURE_FS = 125.0  # target rate of the decimated lead (Hz)
_R = 0.03  # sample-entropy tolerance, seconds

RR_CONTEXT_FEATURES: tuple[str, ...] = (
    "n_beats", "hr_bpm", "hr_fast_bpm", "rr_cv", "nrmssd", "pdiff10", "pdiff10_clean", "nrmssd_clean",
    "ectopic_frac", "sampen", "cosen", "tpr", "alternation", "rr_min_rel", "rr_max_rel", "rr_iqr_rel",
    "since_last_s", "max_gap_s", "rr_trend")
SIGNAL_FEATURES: tuple[str, ...] = (
    "amp_range", "amp_var", "kurtosis", "zcr_hz", "dom_hz", "conc", "hf_frac", "lf_frac", "flat_frac",
    "vf_leak", "beat_snr", "qrs_width_s")
CONTEXT_FEATURES: tuple[str, ...] = RR_CONTEXT_FEATURES + SIGNAL_FEATURES


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
    """Median width (s) of the run around each R peak where |x| stays above half its R amplitude."""
    half_win = int(0.12 * fs)
    widths = []
    for i in bi[-12:].tolist():
        a, b = max(0, i - half_win), min(x.size, i + half_win + 1)
        seg = np.abs(x[a:b])
        c = i - a
        thr = 0.5 * seg[c]
        if thr <= 0:
            continue
        below = seg < thr
        left = np.flatnonzero(below[:c])
        right = np.flatnonzero(below[c:])
        lo = left[-1] + 1 if left.size else 0
        hi = c + right[0] if right.size else seg.size
        widths.append((hi - lo) / fs)
    return float(np.median(widths)) if widths else 0.0


def context_features(beats: np.ndarray, t_now: float, context_s: float, lead: np.ndarray | None, fs_lead: float,
                     lead_t0: float | None = None) -> np.ndarray:
    """All :data:`CONTEXT_FEATURES` ``(K,)`` float32. ``lead`` starts at ``lead_t0`` seconds (same clock
    as ``beats``); without a lead the signal part is 0."""
    rr = rr_context_features(beats, t_now, context_s)
    if lead is None or lead_t0 is None:
        sig = np.zeros(len(SIGNAL_FEATURES), dtype=np.float32)
    else:
        b = np.asarray(beats, dtype=np.float64)
        idx = np.round((b[(b >= lead_t0) & (b <= t_now)] - lead_t0) * fs_lead).astype(np.int64)
        sig = signal_features(lead, fs_lead, idx)
    return np.concatenate([rr, sig])
