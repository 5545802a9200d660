"""Causal online QRS detector and bedside-style heart rate (Pan-Tompkins family).

Pipeline on one lead at any ``fs`` (all time constants are in seconds and converted to samples):

1. Butterworth band-pass ``band_hz`` (default 5-15 Hz, order 2), delay line primed on the first
   sample like :class:`~pedstream.dsp.filters.FilterBank` (no start-up step from a DC offset);
2. five-point derivative (mV/s), squaring, moving-window integration over ``integration_s``
   (0.15 s) -> the integrated signal ``mwi``. The band-pass runs sample by sample with its state,
   the derivative (:func:`derivative`) is the same elementwise sum in one order for every sample,
   and the integration is an exact int64 running sum of the squared slope quantised to 1/1024
   (mV/s)^2, so chunking cannot change a single bit;
3. peak candidates: samples of ``mwi`` that are the maximum of ``mwi`` within +/- ``lookahead``
   (default ``refractory_s / 2``); a candidate at ``i`` is decided once sample ``i + lookahead``
   has arrived (the fixed look-ahead);
4. adaptive thresholds (``SPKI``/``NPKI``, THRESHOLD1 = NPKI + 0.25 (SPKI - NPKI)) initialised from
   the first ``learn_s`` seconds (warm-up). Nothing is reported during warm-up; once the thresholds
   exist, every candidate since sample 0 is decided with them, so the beats of the warm-up are
   reported late (at ``learn_s``), not lost. A refractory period ``refractory_s`` (0.2 s; lower it
   to ~0.15 s for rates above ~300 bpm);
5. T-wave rejection: a candidate within ``twave_s`` of the previous beat is a T wave when its maximal
   slope is below half of that beat's *and* its integrated energy is below ``twave_energy`` (0.4) x
   that beat's. Pan-Tompkins uses the slope alone, which throws away early (R-on-T) wide ventricular
   beats: their slope is low, but their energy is of the order of the beat before them;
6. search-back: when no beat was found ``searchback_factor`` (1.4) x the mean RR after the last one,
   the largest candidate above ``searchback_level`` (0.3) x THRESHOLD1 in between (T waves excluded
   by the rule above) is taken, decided ``lookahead`` after that deadline (the wait capped at
   ``searchback_max_s``). Wide ventricular beats carry a fraction of a narrow beat's slope energy
   after the 5-15 Hz band-pass (often 30-50 % of THRESHOLD1, below Pan-Tompkins' THRESHOLD2 = 0.5 x
   THRESHOLD1); being premature with a compensatory pause, they are what the search-back finds. The
   three numbers were chosen on the 26 MIT-BIH records at hand (scored with ``pedstream score qrs``);
   with Pan-Tompkins' own (1.66, 0.5, slope-only T rule) 2.6 % of the ventricular beats were lost;
7. the R peak: the steepest slope inside the integration window of the ``mwi`` peak (band-pass and
   derivative delay compensated) marks the QRS; the R peak is the largest deviation from the local
   median of the input lead within ``r_search_s`` (60 ms) of it. (Anchoring on the window edge placed
   wide beats, whose ``mwi`` peak comes late, on their T wave.)

End of stream: :meth:`OnlineQRSDetector.flush` decides what is pending as if the signal stopped
there: candidates in the last ``lookahead`` samples are judged on the samples that exist (a peak must
have fallen by 10 % before the end), an overdue search-back runs, and a stream shorter than
``learn_s`` learns its thresholds from what it has.

Delay: a beat is reported once the input has advanced ``lookahead + integration`` + band-pass
delay past it for normal detections (about 0.28 s at the defaults, ``report_delay_s``); search-back
beats come later (at most ``searchback_factor`` x RR + that delay), warm-up beats at ``learn_s``.
Every decision depends only on absolute sample indices (events are handled in the order of the
sample at which each becomes due), so the detections are identical for any chunking of the input.
Many detectors at once (a monitor's streams): :func:`pedstream.dsp.qrs_bank.process_many` computes
the front end (steps 1-3) of those fed the same number of samples on one block, bit for bit this
class's own.

Heart rate (:meth:`OnlineQRSDetector.heart_rate`) is averaged the way bedside monitors do: the mean
of the last ``hr_beats`` (8) RR intervals, or of the last ``hr_beats_fast`` (4) when those are
shorter than ``fast_rr_s`` (0.5 s, i.e. above 120 bpm); None until ``hr_min_intervals`` intervals
exist, and None again when no beat was seen for ``hr_timeout_s`` seconds.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from scipy import signal as sps
from scipy.ndimage import maximum_filter1d

from pedstream.dsp.checks import all_finite
from pedstream.dsp.ringbuffer import RingBuffer
from pedstream.errors import ConfigError, StreamError

__all__ = ["OnlineQRSDetector", "derivative"]

_Q_SCALE = 1024.0  # squared slope quantum: 1/1024 (mV/s)^2
_SQ_MAX = 1e9  # (mV/s)^2; larger squared slopes (absurd artefacts) saturate


def _median(v: np.ndarray) -> float:
    """``float(np.median(v))`` of a finite 1-D array, without its per-call overhead: the middle
    element after a partition, or the mean of the two middle ones (as np.median computes it)."""
    n = len(v)
    k = n // 2
    if n % 2:
        return float(np.partition(v, k)[k])
    p = np.partition(v, (k - 1, k))
    return float((p[k - 1] + p[k]) / 2)


def derivative(b: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """The five-point derivative ``sum_k b[k] xx[i + 4 - k]`` of the last ``len(xx) - 4`` samples of ``xx``
    (rows of a 2-D ``xx`` each on their own), summed elementwise in one fixed order: every output is the
    same floating-point computation wherever a chunk boundary falls (``np.convolve``/``lfilter`` with
    state compute a chunk's first four outputs as partial sums plus the state, which can differ in the
    last bit). ``b[2]`` is 0 and left out."""
    n = xx.shape[-1] - 4
    d = xx[..., 0:n] * b[4]
    d += xx[..., 1:n + 1] * b[3]
    d += xx[..., 3:n + 3] * b[1]
    d += xx[..., 4:n + 4] * b[0]
    return d


class OnlineQRSDetector:
    """Causal R-peak detector on a single lead. ``process(chunk)`` -> absolute R-peak indices."""

    def __init__(
        self,
        *,
        fs: float,
        refractory_s: float = 0.2,
        band_hz: tuple[float, float] = (5.0, 15.0),
        integration_s: float = 0.15,
        lookahead_s: float | None = None,
        learn_s: float = 2.0,
        twave_s: float = 0.36,
        searchback_factor: float = 1.4,
        searchback_max_s: float = 2.5,
        searchback_level: float = 0.3,
        twave_energy: float = 0.4,
        r_search_s: float = 0.06,
        hr_beats: int = 8,
        hr_beats_fast: int = 4,
        fast_rr_s: float = 0.5,
        hr_min_intervals: int = 3,
        hr_timeout_s: float = 4.0,
        name: str = "qrs detector",
    ) -> None:
        problems: list[tuple[str, str]] = []
        if not np.isfinite(fs) or fs < 4 * band_hz[1]:
            problems.append(("fs", f"{fs!r} Hz is too low for a {band_hz[1]:g} Hz band edge (need >= {4 * band_hz[1]:g} Hz)"))
        if not 0 < band_hz[0] < band_hz[1]:
            problems.append(("band_hz", f"need 0 < low < high (got {band_hz})"))
        if not 0.05 <= refractory_s <= 0.5:
            problems.append(("refractory_s", f"{refractory_s!r} s is outside 0.05-0.5 s"))
        if integration_s <= 0 or learn_s <= 0 or searchback_factor <= 1:
            problems.append(("integration_s/learn_s/searchback_factor", "must be > 0, > 0 and > 1"))
        if not 0 < searchback_level < 1 or twave_energy < 0 or r_search_s <= 0:
            problems.append(("searchback_level/twave_energy/r_search_s", "need 0 < searchback_level < 1, "
                             "twave_energy >= 0 and r_search_s > 0"))
        if hr_beats < 1 or hr_beats_fast < 1 or hr_min_intervals < 1 or hr_timeout_s <= 0:
            problems.append(("hr_*", "beat counts must be >= 1 and hr_timeout_s > 0"))
        if problems:
            raise ConfigError(problems, source="qrs")
        self.fs = float(fs)
        self.name = name
        self.refractory = int(round(refractory_s * fs))
        self.integration = max(1, int(round(integration_s * fs)))
        look = refractory_s / 2 if lookahead_s is None else lookahead_s
        self.lookahead = max(1, int(round(look * fs)))
        self.learn = int(round(learn_s * fs))
        self.learn_skip = min(int(round(0.3 * fs)), self.learn // 2)
        self.twave = int(round(twave_s * fs))
        self.searchback_factor = float(searchback_factor)
        self.searchback_max = max(1, int(round(searchback_max_s * fs)))
        self.searchback_level = float(searchback_level)
        self.twave_energy = float(twave_energy)
        self._r_search = max(1, int(round(r_search_s * fs)))
        self.hr_beats, self.hr_beats_fast = int(hr_beats), int(hr_beats_fast)
        self.fast_rr = fast_rr_s * fs
        self.hr_min_intervals = int(hr_min_intervals)
        self.hr_timeout = hr_timeout_s * fs

        self._sos = sps.butter(2, band_hz, btype="bandpass", fs=fs, output="sos")
        self._sos_zi = sps.sosfilt_zi(self._sos)  # (n_sections, 2) unit-step steady state
        self._der_b = np.array([2.0, 1.0, 0.0, -1.0, -2.0]) * (fs / 8.0)
        # band-pass group delay at the band centre + 2 samples of the derivative, in samples
        b, a = sps.sos2tf(self._sos)
        _, gd = sps.group_delay((b, a), w=[math.sqrt(band_hz[0] * band_hz[1])], fs=fs)
        self.filter_delay = int(round(float(gd[0]))) + 2
        self._margin = max(1, int(round(0.03 * fs)))
        self.report_delay_s = (self.lookahead + self.integration + self.filter_delay) / fs
        # history needed behind the newest sample: candidate window, R search, learning stats
        need = 2 * self.lookahead + 2 * self.integration + self.filter_delay + self._r_search + 2 * self._margin + 8
        self._max_sub = max(1, int(fs))  # process at most 1 s at a time (the ring must hold it)
        self._capacity = max(self.learn, need + self.searchback_max) + self._max_sub + 8
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything; the next sample is sample 0."""
        self._zi_bp = np.zeros_like(self._sos_zi)
        self._zi_der = np.zeros(len(self._der_b) - 1)  # the band-passed signal's last four samples (0 before the start)
        # moving-window integration as an exact integer running sum (chunking cannot change a bit)
        self._csum = 0
        self._csum_hist = RingBuffer(n_channels=1, capacity=self.integration + self._max_sub + 1, dtype=np.int64, name=self.name)
        self._csum_hist.write(np.zeros((self.integration, 1), dtype=np.int64))  # C[-W..-1] = 0
        # columns: 0 raw lead, 1 squared derivative, 2 integrated (mwi)
        self._hist = RingBuffer(n_channels=3, capacity=self._capacity, dtype=np.float64, name=self.name)
        self.samples_seen = 0
        self._next_check = self.lookahead + 1  # next mwi index to examine as a candidate
        self._learned = False
        self.spki = 0.0
        self.npki = 0.0
        self._last_peak: int | None = None  # mwi index of the last accepted beat
        self._last_slope = 0.0
        self._last_v = 0.0
        self._sb_anchor = 0  # search-back deadline counts from here
        self._sb_best: tuple[int, float] | None = None  # best sub-threshold candidate since the anchor
        self._rr_mwi: deque[int] = deque(maxlen=8)  # recent intervals between accepted mwi peaks
        self.beats: deque[int] = deque(maxlen=64)  # recent R-peak sample indices
        self.n_beats = 0
        self._flushed = False

    @property
    def in_warmup(self) -> bool:
        return not self._learned

    @property
    def threshold1(self) -> float:
        return self.npki + 0.25 * (self.spki - self.npki)

    # ------------------------------------------------------------------ processing
    def process(self, x_lead: np.ndarray) -> list[int]:
        """Feed the next chunk of one lead (n,) in mV; returns newly detected R-peak sample indices."""
        x = np.asarray(x_lead)
        if x.ndim == 2 and 1 in x.shape:
            x = x.reshape(-1)
        if x.ndim != 1:
            raise StreamError(self.name, f"expected one lead shaped (n,), got {x.shape}")
        if self._flushed:
            raise StreamError(self.name, "process() after flush(): call reset() to start a new stream")
        x = x.astype(np.float64, copy=False)
        if not all_finite(x):
            raise StreamError(self.name, "non-finite samples in the QRS lead")
        found: list[int] = []
        for s in range(0, len(x), self._max_sub):
            found.extend(self._process_sub(x[s : s + self._max_sub]))
        return found

    def _process_sub(self, x: np.ndarray) -> list[int]:
        n = len(x)
        if n == 0:
            return []
        if self.samples_seen == 0:
            self._zi_bp = self._sos_zi * x[0]
        bp, self._zi_bp = sps.sosfilt(self._sos, x, zi=self._zi_bp)
        xx = np.concatenate([self._zi_der, bp])  # the last four band-passed samples, then the new ones
        d = derivative(self._der_b, xx)
        self._zi_der = xx[n:]
        sq = np.minimum(d * d, _SQ_MAX)  # (mV/s)^2
        q = np.rint(sq * _Q_SCALE).astype(np.int64)
        c = self._csum + np.cumsum(q)  # C[k] = sum of q[0..k], int64 (exact)
        c_back, _ = self._csum_hist.read(self._csum_hist.total_written - self.integration, self._csum_hist.total_written)
        c_lag = np.concatenate([c_back[:, 0], c])[: n]  # C[k - W]
        mwi = (c - c_lag) / (self.integration * _Q_SCALE)
        self._csum_hist.write(c[:, None])
        self._csum = int(c[-1])
        self._hist.write(np.stack([x, sq, mwi], axis=1))
        self.samples_seen += n
        return self._advance()

    def _advance(self, cands: list[tuple[int, float]] | None = None) -> list[int]:
        """The decisions once the front end has taken a sub-chunk (``samples_seen`` is its end):
        learning, the candidates up to ``end - lookahead`` (``cands``: already found by
        :func:`pedstream.dsp.qrs_bank.process_many`, which then moved ``_next_check``) and the beats."""
        end = self.samples_seen
        if not self._learned and end >= self.learn:
            self._learn_thresholds(self.learn)
        if not self._learned:
            return []
        found: list[int] = []
        if cands is None:
            cands = self._candidates(end - self.lookahead, end)
        self._run(cands, end, found, final=False)
        return found

    def flush(self) -> list[int]:
        """End of stream: decide what is still pending as if the signal stopped here.

        Candidates within ``lookahead`` of the last sample are judged on the samples that exist
        (their look-ahead window is cut at the end), a search-back whose deadline has passed is
        run, and a stream shorter than ``learn_s`` learns its thresholds from what it has. Returns
        the R peaks this adds. Idempotent: a second call returns ``[]``; ``process`` after
        ``flush`` raises :class:`StreamError` until :meth:`reset`.
        """
        if self._flushed:
            return []
        self._flushed = True
        end = self.samples_seen
        if end <= self.lookahead + 1:
            return []
        if not self._learned:
            self._learn_thresholds(end)
        found: list[int] = []
        self._run(self._candidates(end, end), end, found, final=True)
        return found

    def _learn_thresholds(self, stop: int) -> None:
        """Initial SPKI/NPKI from ``mwi[learn_skip:stop]``; then every candidate since sample 0 is decided."""
        skip = self.learn_skip if stop > 2 * self.learn_skip else 0
        seg, _ = self._hist.read(skip, stop)
        self.spki = 0.6 * float(seg[:, 2].max())
        self.npki = 0.5 * float(seg[:, 2].mean())
        self._learned = True
        self._sb_anchor = 0

    def _candidates(self, stop: int, end: int) -> list[tuple[int, float]]:
        """Local maxima ``i`` of ``mwi`` in ``[next_check, stop)`` over ``[i - lookahead, i + lookahead]``
        (the window cut at ``end``, the last sample + 1); advances ``next_check``."""
        if stop <= self._next_check:
            return []
        la = self.lookahead
        lo = self._next_check - la
        seg, _ = self._hist.read(lo - 1, end)
        m = np.concatenate([seg[:, 2], np.full(la, -np.inf)])  # mwi[lo - 1 : end], then nothing
        count = stop - self._next_check
        # max over [i - la, i + la]: a running max filter, O(n) (the exact values of a sliding max)
        win_max = maximum_filter1d(m[1:1 + 2 * la + count], 2 * la + 1, mode="nearest")[la:la + count]
        centre = m[1 + la : 1 + la + count]
        prev = m[la : la + count]
        is_peak = (centre >= win_max) & (centre > prev) & (centre > 0)
        if stop > end - la:  # flush: the look-ahead is cut; a peak must have fallen by 10 % before the end
            tail = m[1 + la : 1 + la + (end - self._next_check)]  # mwi[next_check : end]
            after_min = np.minimum.accumulate(tail[::-1])[::-1]  # min of mwi[i:end]
            is_peak &= np.concatenate([after_min[1:], [np.inf]])[:count] < 0.9 * centre
        cands = [(self._next_check + int(k), float(centre[k])) for k in np.flatnonzero(is_peak)]
        self._next_check = stop
        return cands

    def _run(self, cands: list[tuple[int, float]], end: int, found: list[int], *, final: bool) -> None:
        """Decide candidates and search-backs in the order of the sample at which each becomes due."""
        ptr = 0
        while True:
            t_cand = cands[ptr][0] + self.lookahead if ptr < len(cands) else math.inf
            t_sb = self._searchback_time()
            due = (t_sb - self.lookahead < end) if final else (t_sb < end)
            if due and t_sb <= t_cand:
                self._searchback(found)
            elif ptr < len(cands):
                self._decide(*cands[ptr], found)
                ptr += 1
            else:
                break

    def _rr_avg(self) -> float:
        # (sum / len of at most 8 ints: exactly np.mean's value, without its per-call overhead)
        return sum(self._rr_mwi) / len(self._rr_mwi) if self._rr_mwi else self.fs  # default 1 s

    def _searchback_time(self) -> float:
        wait = min(math.ceil(self.searchback_factor * self._rr_avg()), self.searchback_max)
        return self._sb_anchor + wait + self.lookahead

    def _col(self, lo: int, hi: int, col: int) -> np.ndarray:
        """Column ``col`` of the history (0 lead, 1 squared slope, 2 mwi), absolute samples
        ``[lo, hi)`` (:meth:`RingBuffer.rows`: a view when the range does not wrap)."""
        return self._hist.rows(lo, hi)[:, col]

    def _slope(self, i: int) -> float:
        return float(self._col(i - self.integration + 1, i + 1, 1).max())

    def _is_twave(self, i: int, v: float, slope: float) -> bool:
        """Within ``twave_s`` of the last beat, with less than half its maximal slope *and* less
        integrated energy than it: a T wave. (A premature wide ventricular beat has a low slope too,
        but at least the energy of the beat before it.)"""
        last = self._last_peak
        return (last is not None and i - last < self.twave and slope < 0.5 * self._last_slope
                and v < self.twave_energy * self._last_v)

    def _decide(self, i: int, v: float, found: list[int]) -> None:
        last = self._last_peak
        if last is not None and i - last < self.refractory:
            return
        if v > self.threshold1:
            slope = self._slope(i)
            if self._is_twave(i, v, slope):
                self.npki = 0.125 * v + 0.875 * self.npki
                return
            self.spki = 0.125 * v + 0.875 * self.spki
            self._accept(i, v, slope, found)
        else:
            self.npki = 0.125 * v + 0.875 * self.npki
            if v > self.searchback_level * self.threshold1 and (self._sb_best is None or v > self._sb_best[1]):
                slope = self._slope(i)
                if not self._is_twave(i, v, slope):
                    self._sb_best = (i, v)

    def _searchback(self, found: list[int]) -> None:
        best = self._sb_best
        if best is not None:
            i, v = best
            self.spki = 0.25 * v + 0.75 * self.spki
            self._accept(i, v, self._slope(i), found)
        else:  # nothing plausible: relax the signal level so a lower-amplitude rhythm is picked up
            self.spki = self.npki + 0.5 * (self.spki - self.npki)
            self._sb_anchor = self._searchback_time() - self.lookahead

    def _accept(self, i: int, v: float, slope: float, found: list[int]) -> None:
        if self._last_peak is not None:
            self._rr_mwi.append(i - self._last_peak)
        self._last_peak = i
        self._last_slope = slope
        self._last_v = v
        self._sb_anchor = i
        self._sb_best = None
        r = self._locate_r(i)
        if self.beats and r <= self.beats[-1]:
            r = self.beats[-1] + 1
        self.beats.append(r)
        self.n_beats += 1
        found.append(r)

    def _locate_r(self, i: int) -> int:
        """R peak in the input lead for the ``mwi`` peak at ``i``.

        The steepest slope inside the integration window ``[i - integration + 1, i]`` marks the QRS
        (moved back by the band-pass + derivative delay); the R peak is the largest deviation from
        the local median of the lead within ``r_search_s`` of that point. Anchoring on the steepest
        slope rather than on the window edge keeps wide ventricular beats (whose ``mwi`` peak comes
        late) from being placed on their T wave."""
        lo = max(i - self.integration + 1, self._hist.oldest, 0)
        steep = lo + int(np.argmax(self._col(lo, i + 1, 1))) - self.filter_delay
        # the samples that exist at the candidate's decision time, however the input was chunked
        # (a later decision, or a larger chunk, must not see more of the lead)
        have = min(self.samples_seen, i + self.lookahead + 1)
        a = max(steep - self._r_search, self._hist.oldest, 0)
        b = min(max(steep + self._r_search + 1, a + 1), have)
        ctx_lo = max(steep - self.integration, self._hist.oldest, 0)
        ctx_hi = min(max(steep + self.integration + 1, ctx_lo + 1), have)
        base = _median(self._col(ctx_lo, ctx_hi, 0))
        return a + int(np.argmax(np.abs(self._col(a, b, 0) - base)))

    # ------------------------------------------------------------------ heart rate
    def heart_rate(self, now_sample: int | None = None) -> float | None:
        """Heart rate in beats per minute at ``now_sample`` (default: samples seen so far), or None."""
        now = self.samples_seen if now_sample is None else int(now_sample)
        if len(self.beats) < 2 or now - self.beats[-1] > self.hr_timeout:
            return None
        return self._rate_ending(list(self.beats), len(self.beats))

    def beat_rates(self, after: int) -> list[tuple[int, float]]:
        """``(beat sample, bpm)`` for each detected beat later than sample ``after``: the rate as it
        stood at that beat (the same averaging as :meth:`heart_rate`), for alarms judged beat by beat.
        Beats that left the history (``self.beats`` keeps 64) are not reported."""
        b = list(self.beats)
        out: list[tuple[int, float]] = []
        for j, beat in enumerate(b):
            if beat > after:
                hr = self._rate_ending(b, j + 1)
                if hr is not None:
                    out.append((int(beat), hr))
        return out

    def _rate_ending(self, b: list[int], n: int) -> float | None:
        """The averaged rate over the beats ``b[:n]`` (sample indices; None: too few intervals).
        The intervals are integers, so their sums are exact and a mean is one correctly rounded
        division, whatever the order of the additions (numpy's mean gives the same float)."""
        lo = max(0, n - self.hr_beats - 1)
        rr = [b[j + 1] - b[j] for j in range(lo, n - 1)]  # samples
        if len(rr) < self.hr_min_intervals:
            return None
        fast = rr[-self.hr_beats_fast :]
        if len(fast) == self.hr_beats_fast and sum(fast) / len(fast) < self.fast_rr:
            rr = fast
        return 60.0 * self.fs / (sum(rr) / len(rr))
