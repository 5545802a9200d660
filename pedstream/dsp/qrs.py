"""Causal online QRS detector and bedside-style heart rate (Pan-Tompkins family).

Pipeline on one lead at any ``fs`` (all time constants are in seconds and converted to samples):

1. Butterworth band-pass ``band_hz`` (default 5-15 Hz, order 2), delay line primed on the first
   sample like :class:`~pedstream.dsp.filters.FilterBank` (no start-up step from a DC offset);
2. five-point derivative (mV/s), squaring, moving-window integration over ``integration_s``
   (0.15 s) -> the integrated signal ``mwi``. The integration is an exact int64 running sum of the
   squared slope quantised to 1/1024 (mV/s)^2, so chunking cannot change a single bit;
3. peak candidates: samples of ``mwi`` that are the maximum of ``mwi`` within +/- ``lookahead``
   (default ``refractory_s / 2``); a candidate at ``i`` is decided once sample ``i + lookahead``
   has arrived (the fixed look-ahead);
4. adaptive thresholds (``SPKI``/``NPKI``, THRESHOLD1 = NPKI + 0.25 (SPKI - NPKI), THRESHOLD2 =
   THRESHOLD1 / 2) learnt over the first ``learn_s`` seconds (no beats are reported there: warm-up);
   a refractory period ``refractory_s`` (0.2 s; lower it to ~0.15 s for rates above ~300 bpm);
   T-wave rejection (a candidate within ``twave_s`` of the previous beat whose maximal slope is below
   half of that beat's is noise); search-back: when no beat was found ``searchback_factor`` x the
   mean RR after the last one, the largest candidate above THRESHOLD2 in between is taken
   (decided ``lookahead`` after that deadline, the wait capped at ``searchback_max_s``);
5. the R peak is placed at the largest deviation from the local median of the input lead within the
   QRS search window that the ``mwi`` peak implies (band-pass group delay compensated).

Delay: a beat is reported once the input has advanced ``lookahead + integration`` + band-pass
delay past it for normal detections (about 0.28 s at the defaults, ``report_delay_s``); search-back
beats come later (at most ``searchback_factor`` x RR + that delay). Every decision depends only on
absolute sample indices, so the detections are identical for any chunking of the input.

Heart rate (:meth:`OnlineQRSDetector.heart_rate`) is averaged the way bedside monitors do: the mean
of the last ``hr_beats`` (8) RR intervals, or of the last ``hr_beats_fast`` (4) when those are
shorter than ``fast_rr_s`` (0.5 s, i.e. above 120 bpm); None until ``hr_min_intervals`` intervals
exist, and None again when no beat was seen for ``hr_timeout_s`` seconds.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal as sps

from pedstream.dsp.ringbuffer import RingBuffer
from pedstream.errors import ConfigError, StreamError

__all__ = ["OnlineQRSDetector"]

_Q_SCALE = 1024.0  # squared slope quantum: 1/1024 (mV/s)^2
_SQ_MAX = 1e9  # (mV/s)^2; larger squared slopes (absurd artefacts) saturate


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
        searchback_factor: float = 1.66,
        searchback_max_s: float = 2.5,
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
        need = 2 * self.lookahead + self.integration + self.filter_delay + 2 * self._margin + 8
        self._max_sub = max(1, int(fs))  # process at most 1 s at a time (the ring must hold it)
        self._capacity = max(self.learn, need + self.searchback_max) + self._max_sub + 8
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything; the next sample is sample 0."""
        self._zi_bp = np.zeros_like(self._sos_zi)
        self._zi_der = np.zeros(len(self._der_b) - 1)
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
        self._sb_anchor = 0  # search-back deadline counts from here
        self._sb_best: tuple[int, float] | None = None  # best sub-threshold candidate since the anchor
        self._rr_mwi: deque[int] = deque(maxlen=8)  # recent intervals between accepted mwi peaks
        self.beats: deque[int] = deque(maxlen=64)  # recent R-peak sample indices
        self.n_beats = 0

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
        x = x.astype(np.float64, copy=False)
        if not np.isfinite(x).all():
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
        d, self._zi_der = sps.lfilter(self._der_b, [1.0], bp, zi=self._zi_der)
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
        end = self.samples_seen

        if not self._learned and end >= self.learn:
            seg, _ = self._hist.read(self.learn_skip, self.learn)
            self.spki = 0.6 * float(seg[:, 2].max())
            self.npki = 0.5 * float(seg[:, 2].mean())
            self._learned = True
            self._sb_anchor = self.learn
            self._next_check = max(self._next_check, self.learn)

        cands: list[tuple[int, float]] = []
        stop = end - self.lookahead  # candidates i < stop can be decided now
        if self._learned and stop > self._next_check:
            lo = self._next_check - self.lookahead
            seg, _ = self._hist.read(lo - 1, end)
            m = seg[:, 2]  # mwi[lo - 1 : end]
            win_max = sliding_window_view(m[1:], 2 * self.lookahead + 1).max(axis=1)  # for i in [next_check, stop)
            centre = m[1 + self.lookahead : 1 + self.lookahead + len(win_max)]
            prev = m[self.lookahead : self.lookahead + len(win_max)]
            is_peak = (centre >= win_max) & (centre > prev) & (centre > 0)
            for k in np.flatnonzero(is_peak):
                cands.append((self._next_check + int(k), float(centre[k])))
            self._next_check = stop

        found: list[int] = []
        ptr = 0
        while True:
            t_cand = cands[ptr][0] + self.lookahead if ptr < len(cands) else math.inf
            t_sb = self._searchback_time() if self._learned else math.inf
            if t_sb < end and t_sb <= t_cand:
                self._searchback(found)
            elif ptr < len(cands):
                self._decide(*cands[ptr], found)
                ptr += 1
            else:
                break
        return found

    def _rr_avg(self) -> float:
        return float(np.mean(self._rr_mwi)) if self._rr_mwi else self.fs  # default 1 s

    def _searchback_time(self) -> float:
        wait = min(math.ceil(self.searchback_factor * self._rr_avg()), self.searchback_max)
        return self._sb_anchor + wait + self.lookahead

    def _slope(self, i: int) -> float:
        seg, _ = self._hist.read(i - self.integration + 1, i + 1)
        return float(seg[:, 1].max())

    def _decide(self, i: int, v: float, found: list[int]) -> None:
        last = self._last_peak
        if last is not None and i - last < self.refractory:
            return
        if v > self.threshold1:
            slope = self._slope(i)
            if last is not None and i - last < self.twave and slope < 0.5 * self._last_slope:
                self.npki = 0.125 * v + 0.875 * self.npki  # a T wave
                return
            self.spki = 0.125 * v + 0.875 * self.spki
            self._accept(i, slope, found)
        else:
            self.npki = 0.125 * v + 0.875 * self.npki
            if v > 0.5 * self.threshold1 and (self._sb_best is None or v > self._sb_best[1]):
                self._sb_best = (i, v)

    def _searchback(self, found: list[int]) -> None:
        best = self._sb_best
        if best is not None:
            i, v = best
            self.spki = 0.25 * v + 0.75 * self.spki
            self._accept(i, self._slope(i), found)
        else:  # nothing plausible: relax the signal level so a lower-amplitude rhythm is picked up
            self.spki = self.npki + 0.5 * (self.spki - self.npki)
            self._sb_anchor = self._searchback_time() - self.lookahead

    def _accept(self, i: int, slope: float, found: list[int]) -> None:
        if self._last_peak is not None:
            self._rr_mwi.append(i - self._last_peak)
        self._last_peak = i
        self._last_slope = slope
        self._sb_anchor = i
        self._sb_best = None
        r = self._locate_r(i)
        if self.beats and r <= self.beats[-1]:
            r = self.beats[-1] + 1
        self.beats.append(r)
        self.n_beats += 1
        found.append(r)

    def _locate_r(self, i: int) -> int:
        """R peak in the input lead inside the QRS window implied by the mwi peak at ``i``."""
        hi = i - self.filter_delay + self._margin
        lo = hi - self.integration - 2 * self._margin
        lo = max(lo, self._hist.oldest, 0)
        hi = min(max(hi, lo + 1), self.samples_seen)
        seg, _ = self._hist.read(lo, hi)
        raw = seg[:, 0]
        return lo + int(np.argmax(np.abs(raw - np.median(raw))))

    # ------------------------------------------------------------------ heart rate
    def heart_rate(self, now_sample: int | None = None) -> float | None:
        """Heart rate in beats per minute at ``now_sample`` (default: samples seen so far), or None."""
        now = self.samples_seen if now_sample is None else int(now_sample)
        if len(self.beats) < 2 or now - self.beats[-1] > self.hr_timeout:
            return None
        b = np.asarray(self.beats, dtype=np.float64)
        rr = np.diff(b[-(self.hr_beats + 1) :])  # samples
        if len(rr) < self.hr_min_intervals:
            return None
        fast = rr[-self.hr_beats_fast :]
        if len(fast) == self.hr_beats_fast and fast.mean() < self.fast_rr:
            rr = fast
        return 60.0 * self.fs / float(rr.mean())
