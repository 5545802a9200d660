"""The RR-irregularity rule: a fixed-threshold AF detector over the last ``beats`` RR intervals.

No training, thresholds fixed in advance (the named baseline every rhythm table shows beside the
learned model). Over the last 64 RR intervals (seconds):

1. short/compensatory pairs are left out (:func:`clean_intervals`): an interval shorter than
   ``short`` (0.85) x the median followed by one longer than ``long`` (1.15) x the median is a
   premature beat and its pause; both intervals are dropped;
2. ``irregularity`` = fraction of the remaining successive differences larger than 10 % of their
   median; ``nrmssd`` = RMS of those differences / mean interval;
3. AF when at least ``min_intervals`` (32) intervals remain, ``irregularity >= 0.5`` and
   ``nrmssd >= 0.1``.

Sinus arrhythmia changes RR smoothly (small successive differences); bigeminy and single ectopics
are the pairs of step 1; AF gives large, uncorrelated successive differences. The rule's known
failure: frequent multifocal ectopy and pauses that step 1 does not catch look irregular too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RRIrregularityRule", "RuleStats", "clean_intervals"]


def clean_intervals(rr: np.ndarray, *, short: float = 0.85, long: float = 1.15) -> tuple[np.ndarray, float]:
    """``(intervals without short/compensatory pairs, fraction of intervals dropped)``."""
    rr = np.asarray(rr, dtype=np.float64)
    if rr.size < 3:
        return rr, 0.0
    med = float(np.median(rr))
    pair = (rr[:-1] < short * med) & (rr[1:] > long * med)
    drop = np.zeros(rr.size, dtype=bool)
    drop[:-1] |= pair
    drop[1:] |= pair
    return rr[~drop], float(drop.mean())


@dataclass(frozen=True, slots=True)
class RuleStats:
    n: int  # intervals kept
    irregularity: float
    nrmssd: float
    af: bool


class RRIrregularityRule:
    """``rule.stats(beat_times_s)`` -> :class:`RuleStats` of the last ``beats`` intervals."""

    name = "rr_irregularity_rule"

    def __init__(self, *, beats: int = 64, min_intervals: int = 32, irregularity: float = 0.5,
                 nrmssd: float = 0.1, short: float = 0.85, long: float = 1.15) -> None:
        if beats < 4 or min_intervals < 3 or min_intervals > beats:
            raise ValueError(f"need 4 <= beats and 3 <= min_intervals <= beats, got {beats}, {min_intervals}")
        self.beats, self.min_intervals = int(beats), int(min_intervals)
        self.irregularity, self.nrmssd = float(irregularity), float(nrmssd)
        self.short, self.long = float(short), float(long)

    def stats(self, beat_times: np.ndarray) -> RuleStats:
        b = np.asarray(beat_times, dtype=np.float64)[-(self.beats + 1):]
        rr = np.diff(b)
        rr = rr[(rr > 0.15) & (rr < 3.0)]
        clean, _ = clean_intervals(rr, short=self.short, long=self.long)
        if clean.size < max(3, self.min_intervals):
            return RuleStats(int(clean.size), 0.0, 0.0, False)
        d = np.diff(clean)
        irr = float(np.mean(np.abs(d) > 0.1 * float(np.median(clean))))
        nr = float(np.sqrt(np.mean(d * d)) / clean.mean())
        return RuleStats(int(clean.size), irr, nr, irr >= self.irregularity and nr >= self.nrmssd)

    def is_af(self, beat_times: np.ndarray) -> bool:
        return self.stats(beat_times).af
