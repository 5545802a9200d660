"""Per-beat features for the inter-patient beat classifier, computed causally, one beat at a time.

A beat is judged against **this** stream's own rhythm and dominant beat, the way a Holter system does:

- RR: the :mod:`pedstream.dsp.rr` features (pre/post RR, local and long means, log ratios) plus the
  pre/post RR over the running median of the last ``median_beats`` intervals, the previous two beats'
  ratios (history: bigeminy alternates), the irregularity (std of successive log-RR changes over the
  last 10 and ``median_beats`` intervals, and the fraction of changes over 15 %: atrial fibrillation,
  whose irregular beats are N, against isolated premature beats);
- morphology at the native rate (360 Hz) of one lead (II / MLII), baseline = median of the 1 s window:
  21 bin means over -0.25..+0.45 s (33 ms bins), 12 bin means over the QRS (-0.1..+0.1 s, 17 ms bins),
  R amplitude, QRS max/min/peak-to-peak/area, QRS width (first..last sample where the slope exceeds
  15 % of its peak within +-0.15 s), T-wave extreme, P-region spread;
- the running dominant-beat template of the stream: correlation of the QRS (best of +-4 samples lag),
  of the whole window and of the P region, RMS difference over the template's amplitude, amplitude
  and width ratios, correlation of the QRS with the previous beat's.

Template (per stream, causal): the median of the first ``seed_beats`` beats, then an exponential mean
(``alpha``) over beats that match it (QRS correlation > ``match_corr``) and are not premature (pre-RR
over the local mean above ``premature``). If ``reseed_beats`` beats in a row match nothing, the
template restarts from the median of those beats (a changed lead position or rhythm).

``adapt=True`` adds the patient-relative features of :class:`DominantModel` (the dominant beat and RR
learnt from the stream's first minutes, see there).

``context=True`` adds :data:`CONTEXT_FEATURES`, the neighbouring beats as context (causal: only the
previous beats and this beat's own post-RR, so no extra latency): the previous beat's QRS width, amplitude
and correlation against the running template; RR over the running "sinus" RR (median of the last
``median_beats`` intervals that end on a beat matching the template and not premature: bigeminy or a
run of premature beats does not shorten it) for this beat, its next interval and the previous beat;
the change of pre-RR from the previous beat; the fraction of premature and of template-mismatching beats
among the last 10; the mean local RR ratio of the last 4 beats (history).

One implementation for training and serving: training pushes the annotated beats of a record through
:class:`BeatFeatures` (:func:`beat_feature_table`); the engine pushes its detector's beats, each with
the same 1 s window of the same filtered lead.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from pedstream.dsp.rr import RR_FEATURES, rr_features

__all__ = ["BEAT_FEATURES", "ADAPT_FEATURES", "CONTEXT_FEATURES", "FEATURE_VERSION", "BeatFeatures", "DominantModel",
           "beat_feature_table", "beat_windows", "feature_names"]

FEATURE_VERSION = "beat-features-4"
_FULL, _QRS, _P, _T = (-0.25, 0.45), (-0.10, 0.10), (-0.25, -0.08), (0.15, 0.45)
_N_COARSE, _N_FINE, _LAG = 21, 12, 4

BEAT_FEATURES: tuple[str, ...] = (
    *RR_FEATURES, "pre_med", "post_med", "prev_pre_local", "prev_post_local", "prev2_pre_local", "rr_irreg",
    "rr_irreg_long", "rr_irreg_frac",
    *(f"ds{k}" for k in range(_N_COARSE)), *(f"qrs{k}" for k in range(_N_FINE)),
    "r_amp", "qrs_max", "qrs_min", "qrs_ptp", "qrs_area", "qrs_width", "t_amp", "p_spread",
    "tpl_corr_qrs", "tpl_corr_full", "tpl_corr_p", "tpl_rmsd", "tpl_amp_ratio", "tpl_width_ratio",
    "tpl_lag", "prev_corr_qrs", "prev_tpl_corr",
)
ADAPT_FEATURES: tuple[str, ...] = (
    "dom_corr_qrs", "dom_corr_full", "dom_corr_p", "dom_rmsd", "dom_amp_ratio", "dom_pre", "dom_post",
    "z_r_amp", "z_qrs_ptp", "z_qrs_area", "z_qrs_width", "z_t_amp", "z_p_spread", "dom_learnt",
)
CONTEXT_FEATURES: tuple[str, ...] = (
    "prev_width_ratio", "prev_amp_ratio", "prev_corr_tpl_qrs", "pre_sinus", "post_sinus", "prev_pre_sinus",
    "pre_change", "frac_premature10", "frac_mismatch10", "mean_pre_local4",
)
_Z_FROM = ("r_amp", "qrs_ptp", "qrs_area", "qrs_width", "t_amp", "p_spread")


def feature_names(adapt: bool = False, context: bool = False) -> tuple[str, ...]:
    return BEAT_FEATURES + (ADAPT_FEATURES if adapt else ()) + (CONTEXT_FEATURES if context else ())


def _span(fs: float, half: int, a: float, b: float) -> slice:
    return slice(half + int(round(a * fs)), half + int(round(b * fs)))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    d = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / d if d > 1e-12 else 0.0


def _best_corr(m: np.ndarray, tpl: np.ndarray, sl: slice) -> tuple[float, int]:
    """Best correlation of ``m[sl]`` shifted by -LAG..LAG samples with ``tpl[sl]``, and that lag."""
    ref = tpl[sl] - tpl[sl].mean()
    seg = np.lib.stride_tricks.sliding_window_view(m[sl.start - _LAG: sl.stop + _LAG], sl.stop - sl.start)
    seg = seg - seg.mean(axis=1, keepdims=True)
    den = np.sqrt((seg * seg).sum(axis=1) * float(ref @ ref))
    c = np.where(den > 1e-12, seg @ ref / np.maximum(den, 1e-12), 0.0)
    k = int(np.argmax(c))
    return float(c[k]), k - _LAG


class _Shape:
    """Morphology of one beat window (lead samples, baseline removed)."""

    def __init__(self, w: np.ndarray, fs: float) -> None:
        half = w.shape[0] // 2
        self.m = np.asarray(w, dtype=np.float64) - float(np.median(w))
        self.full, self.qrs = _span(fs, half, *_FULL), _span(fs, half, *_QRS)
        self.p, self.t = _span(fs, half, *_P), _span(fs, half, *_T)
        m, q = self.m, self.m[self.qrs]
        self.r_amp = float(m[half])
        self.ptp = float(q.max() - q.min())
        slope = np.abs(np.diff(m[_span(fs, half, -0.15, 0.15)]))
        above = np.flatnonzero(slope > 0.15 * slope.max()) if slope.max() > 0 else np.zeros(1, dtype=int)
        self.width = float(above[-1] - above[0] + 1) / fs
        t = m[self.t]
        self.values = [self.r_amp, float(q.max()), float(q.min()), self.ptp, float(np.abs(q).sum() / fs),
                       self.width, float(t[np.argmax(np.abs(t))]), float(m[self.p].std())]

    def bins(self) -> list[float]:
        f, q = self.m[self.full], self.m[self.qrs]
        nf, nq = len(f) // _N_COARSE, len(q) // _N_FINE
        return (f[:nf * _N_COARSE].reshape(_N_COARSE, nf).mean(axis=1).tolist()
                + q[:nq * _N_FINE].reshape(_N_FINE, nq).mean(axis=1).tolist())

    def versus(self, tpl: np.ndarray, tpl_ptp: float, tpl_width: float) -> list[float]:
        c_qrs, lag = _best_corr(self.m, tpl, self.qrs)
        diff = self.m[self.qrs] - tpl[self.qrs]
        return [c_qrs, _corr(self.m[self.full], tpl[self.full]), _corr(self.m[self.p], tpl[self.p]),
                float(np.sqrt((diff * diff).mean())) / max(tpl_ptp, 1e-3), self.ptp / max(tpl_ptp, 1e-3),
                self.width / max(tpl_width, 1e-3), float(lag)]


class DominantModel:
    """The stream's dominant beat and RR, learnt from its first ``learn_beats`` beats, then adapted slowly.

    Learning: the beats of the first minutes that are not premature are the candidates; the dominant
    cluster is the candidate whose QRS correlates > 0.9 with the most other candidates (ties: the
    narrower QRS) together with those others, so the most frequent morphology wins even when ectopic
    beats are a third of the beats (the running template, seeded by the first beats, could be an ectopic
    beat); after ``learn_beats`` beats the dominant template is the cluster's median window, the
    dominant RR its median RR, and the baseline of six shape features its median and MAD (before that:
    the candidates so far).

    Guard (a sustained ectopic rhythm never becomes "normal"): after learning, only a beat whose QRS
    matches the *dominant* template itself (correlation > ``guard_corr``) **and** whose RR is not
    short for the dominant RR (pre-RR > ``guard_rr`` x dominant RR) updates it, with a small step
    (``alpha``, about 1/200 per beat); the dominant RR moves only with an interval between two such
    beats (never with the pause after an ectopic beat). Bigeminy, trigeminy, a ventricular run or an SVT fail one of
    the two conditions, so however long they last, the dominant beat and RR stay those of the learnt
    rhythm (a slow sinus rate change passes both and is followed).
    """

    def __init__(self, *, fs: float, learn_beats: int = 150, alpha: float = 0.005, guard_corr: float = 0.95,
                 guard_rr: float = 0.85) -> None:
        self.fs, self.learn_beats, self.alpha = fs, int(learn_beats), float(alpha)
        self.guard_corr, self.guard_rr = float(guard_corr), float(guard_rr)
        self.seen = 0
        self._prev_dominant = False
        self._cand: list[tuple[np.ndarray, float, list[float]]] = []
        self.tpl: np.ndarray | None = None
        self.rr = 0.0
        self.med = np.zeros(len(_Z_FROM))
        self.mad = np.ones(len(_Z_FROM))

    @property
    def learnt(self) -> bool:
        return self.seen >= self.learn_beats and self.tpl is not None

    def _fit(self, qrs: slice) -> None:
        """The densest cluster of the candidates: the beat whose QRS correlates > 0.9 with the most
        others (ties: the narrower QRS), and those others. The median of that cluster is the dominant beat."""
        ws = np.stack([c[0] for c in self._cand])
        q = ws[:, qrs] - ws[:, qrs].mean(axis=1, keepdims=True)
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        near = (q @ q.T) > 0.9
        width = np.asarray([c[2][3] for c in self._cand])
        best = int(np.lexsort((width, -near.sum(axis=1)))[0])
        members = np.flatnonzero(near[best])
        self.tpl = np.median(ws[members], axis=0)
        self.rr = float(np.median([self._cand[i][1] for i in members]))
        z = np.asarray([self._cand[i][2] for i in members])
        self.med = np.median(z, axis=0)
        self.mad = np.maximum(1.4826 * np.median(np.abs(z - self.med), axis=0), 1e-3 + 0.05 * np.abs(self.med))

    def features(self, s: _Shape, zvals: list[float], pre: float, post: float, fallback: np.ndarray,
                 long_rr: float) -> list[float]:
        tpl = self.tpl if self.tpl is not None else fallback
        rr = self.rr if self.tpl is not None else long_rr
        q = tpl[s.qrs]
        tpl_ptp = float(q.max() - q.min())
        c_qrs, _ = _best_corr(s.m, tpl, s.qrs)
        diff = s.m[s.qrs] - q
        z = (np.asarray(zvals) - self.med) / self.mad if self.tpl is not None else np.zeros(len(_Z_FROM))
        return [c_qrs, _corr(s.m[s.full], tpl[s.full]), _corr(s.m[s.p], tpl[s.p]),
                float(np.sqrt((diff * diff).mean())) / max(tpl_ptp, 1e-3),
                s.ptp / max(tpl_ptp, 1e-3), math.log(pre / rr), math.log(post / rr),
                *np.clip(z, -20, 20).tolist(), float(self.learnt)]

    def update(self, s: _Shape, zvals: list[float], pre: float, matches_running: bool, premature: bool) -> None:
        self.seen += 1
        if self.tpl is None or self.seen <= self.learn_beats:
            if not premature:
                self._cand.append((s.m.copy(), pre, zvals))
            if len(self._cand) >= 5 and (self.seen >= self.learn_beats or len(self._cand) % 10 == 5):
                self._fit(s.qrs)
            if self.seen >= self.learn_beats and self.tpl is not None:
                self._cand = []  # learning over: frees the windows
            return
        dominant = _best_corr(s.m, self.tpl, s.qrs)[0] > self.guard_corr and pre > self.guard_rr * self.rr
        if dominant:
            a = self.alpha
            self.tpl = (1 - a) * self.tpl + a * s.m
            self.med = (1 - a) * self.med + a * np.asarray(zvals)
            if self._prev_dominant:  # an interval between two dominant beats (no compensatory pause)
                self.rr = math.exp((1 - a) * math.log(self.rr) + a * math.log(pre))
        self._prev_dominant = dominant


class BeatFeatures:
    """Streaming per-beat features (:data:`BEAT_FEATURES`, plus :data:`ADAPT_FEATURES` when ``adapt``).

    ``context=True`` appends :data:`CONTEXT_FEATURES` (after the adapt ones).
    ``push(window, rr)``: ``window`` (T,) the filtered lead centred on the R peak (T = 1 s at ``fs``),
    ``rr`` the beat's :data:`~pedstream.dsp.rr.RR_FEATURES`; returns (F,) float32. Beats in order.
    """

    def __init__(self, *, fs: float, adapt: bool = False, seed_beats: int = 9, alpha: float = 0.05,
                 match_corr: float = 0.9, premature: float = 0.85, reseed_beats: int = 40, median_beats: int = 32,
                 learn_beats: int = 150, context: bool = False) -> None:
        if not (np.isfinite(fs) and fs > 0):
            raise ValueError(f"fs must be a positive number of Hz, got {fs!r}")
        self.fs, self.adapt = float(fs), bool(adapt)
        self.seed_beats, self.alpha, self.match_corr = int(seed_beats), float(alpha), float(match_corr)
        self.log_premature, self.reseed_beats = math.log(premature), int(reseed_beats)
        self.median_beats, self.learn_beats = int(median_beats), int(learn_beats)
        self.context = bool(context)
        self.names = feature_names(adapt, self.context)
        self.reset()

    def reset(self) -> None:
        self._seed: list[np.ndarray] = []
        self._miss: deque[np.ndarray] = deque(maxlen=self.reseed_beats)
        self.tpl: np.ndarray | None = None
        self._tpl_ptp = self._tpl_width = 1.0
        self._rr: deque[float] = deque(maxlen=self.median_beats)
        self._hist: deque[tuple[float, float]] = deque([(0.0, 0.0), (0.0, 0.0)], maxlen=2)
        self._prev_m: np.ndarray | None = None
        self._prev_tpl_corr = 1.0
        self.dominant = DominantModel(fs=self.fs, learn_beats=self.learn_beats) if self.adapt else None
        self._sinus: deque[float] = deque(maxlen=self.median_beats)  # intervals ending on a sinus-like beat
        self._prev_ctx = (1.0, 1.0, 1.0, 0.0)  # previous beat: width ratio, amp ratio, QRS corr, pre over sinus
        self._prev_pre = 0.0
        self._flags: deque[tuple[bool, bool]] = deque(maxlen=10)  # (premature, mismatching) of the last beats
        self._local_hist: deque[float] = deque(maxlen=4)

    def _context_part(self, rr: np.ndarray, vs: list[float], premature: bool) -> list[float]:
        pre, post = float(rr[0]), float(rr[1])
        sinus = float(np.median(self._sinus)) if self._sinus else float(rr[2])
        pw, pa, pc, pps = self._prev_ctx
        fl = np.asarray(self._flags, dtype=np.float64).reshape(-1, 2)
        out = [pw, pa, pc, math.log(pre / sinus), math.log(post / sinus), pps,
               math.log(pre / self._prev_pre) if self._prev_pre > 0 else 0.0,
               float(fl[:, 0].mean()) if fl.size else 0.0, float(fl[:, 1].mean()) if fl.size else 0.0,
               float(np.mean(self._local_hist)) if self._local_hist else 0.0]
        mismatch = vs[0] <= self.match_corr
        if not premature and not mismatch:
            self._sinus.append(pre)
        self._prev_ctx = (vs[5], vs[4], vs[0], out[3])
        self._prev_pre = pre
        self._flags.append((premature, mismatch))
        self._local_hist.append(float(rr[4]))
        return out

    def _rr_part(self, rr: np.ndarray) -> list[float]:
        pre, post = float(rr[0]), float(rr[1])
        self._rr.append(pre)
        med = float(np.median(self._rr))
        d = np.diff(np.log(np.fromiter(self._rr, dtype=np.float64))) if len(self._rr) > 2 else np.zeros(1)
        (pp, ppo), (p2, _) = self._hist[-1], self._hist[-2]
        self._hist.append((float(rr[4]), float(rr[5])))
        return [*map(float, rr), math.log(pre / med), math.log(post / med), pp, ppo, p2, float(np.std(d[-9:])),
                float(np.std(d)), float(np.mean(np.abs(d) > math.log(1.15)))]

    def _update_template(self, s: _Shape, c_qrs: float, premature: bool) -> None:
        if len(self._seed) < self.seed_beats:
            self._seed.append(s.m.copy())
            self.tpl = np.median(np.stack(self._seed), axis=0)
        elif c_qrs > self.match_corr and not premature:
            self.tpl = (1 - self.alpha) * self.tpl + self.alpha * s.m
            self._miss.clear()
        else:
            self._miss.append(s.m.copy())
            if len(self._miss) == self.reseed_beats:
                self.tpl = np.median(np.stack(self._miss), axis=0)
                self._miss.clear()
        q = self.tpl[s.qrs]
        self._tpl_ptp = float(q.max() - q.min())
        self._tpl_width = _Shape(self.tpl + 0.0, self.fs).width

    def push(self, window: np.ndarray, rr: np.ndarray) -> np.ndarray:
        s = _Shape(np.asarray(window, dtype=np.float64).reshape(-1), self.fs)
        rr = np.asarray(rr, dtype=np.float64).reshape(-1)
        rr_part = self._rr_part(rr)
        tpl = self.tpl if self.tpl is not None else s.m
        vs = s.versus(tpl, self._tpl_ptp if self.tpl is not None else s.ptp,
                      self._tpl_width if self.tpl is not None else s.width)
        prev = _best_corr(s.m, self._prev_m, s.qrs)[0] if self._prev_m is not None else 1.0
        out = [*rr_part, *s.bins(), *s.values, *vs, prev, self._prev_tpl_corr]
        premature = float(rr[4]) < self.log_premature
        if self.dominant is not None:
            zvals = [s.values[0], s.values[3], s.values[4], s.values[5], s.values[6], s.values[7]]
            out += self.dominant.features(s, zvals, float(rr[0]), float(rr[1]), tpl, float(rr[3]))
            self.dominant.update(s, zvals, float(rr[0]), vs[0] > 0.9, premature)
        if self.context:
            out += self._context_part(rr, vs, premature)
        self._update_template(s, vs[0], premature)
        self._prev_m, self._prev_tpl_corr = s.m, vs[0]
        return np.asarray(out, dtype=np.float32)


def beat_windows(lead: np.ndarray, beats: np.ndarray, fs: float) -> np.ndarray:
    """(n, T) windows of ``lead`` (1 s, ``T = round(fs)``, even) centred on each beat; edges padded."""
    half = int(round(fs)) // 2
    x = np.pad(np.asarray(lead, dtype=np.float32), (half, half), mode="edge")
    idx = np.asarray(beats, dtype=np.int64)[:, None] + np.arange(2 * half)[None, :]
    return x[idx]


def beat_feature_table(lead: np.ndarray, beats: np.ndarray, *, fs: float, adapt: bool = False,
                       local_beats: int = 10, long_beats: int = 250, context: bool = False) -> np.ndarray:
    """(n, F) features of every beat (increasing sample indices) of a filtered lead: the streaming
    code fed the whole list (the last beat takes ``post_rr = pre_rr``, as :func:`rr_features`)."""
    b = np.asarray(beats, dtype=np.int64).reshape(-1)
    rr = rr_features(b, fs=fs, local_beats=local_beats, long_beats=long_beats)
    f = BeatFeatures(fs=fs, adapt=adapt, context=context)
    w = beat_windows(lead, b, fs)
    rows = [f.push(w[i], rr[i]) for i in range(b.size)]
    return np.stack(rows) if rows else np.zeros((0, len(f.names)), dtype=np.float32)
