"""Heart-rate alarms scored like rhythm alarms: reference rate episodes from the annotated beats.

A record's reference rate is computed from its annotated beats (every symbol that is a beat, see
:data:`pedstream.data.annotations.BEAT_SYMBOLS`) with the monitor's own averaging
(:meth:`pedstream.dsp.qrs.OnlineQRSDetector.beat_rates`: the mean of the last 8 RR intervals, of
the last 4 above 120 bpm). A reference episode of ``hr_high`` (``hr_low``) runs from the beat where
that rate first went beyond the stream's age-band limit to the last beat before it came back, and
counts only when it lasted at least ``[alarms] hr_onset_s`` (a shorter excursion is not expected to
alarm). The monitor's ``hr_high``/``hr_low`` alarms are scored against these episodes with the EC57
episode rules of :mod:`pedstream.score.episodes`: episode Se/+P, time to alarm (reference crossing to
the end of the window the alarm went out with), false alarms per monitored hour.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pedstream.score.episodes import RecordScore, Span, alarm_episodes, score_record
from pedstream.config import Config

__all__ = ["RATE_LABELS", "rate_reference", "score_rates"]

RATE_LABELS = ("hr_high", "hr_low")
_HR_BEATS, _HR_BEATS_FAST, _FAST_RR_S = 8, 4, 0.5


def _beat_rates(t: np.ndarray) -> np.ndarray:
    """The averaged rate (bpm) at each beat time ``t`` (s; NaN for the first two beats)."""
    out = np.full(t.shape, np.nan)
    for j in range(2, len(t)):
        rr = np.diff(t[max(0, j - _HR_BEATS): j + 1])
        fast = rr[-_HR_BEATS_FAST:]
        if len(fast) == _HR_BEATS_FAST and fast.mean() < _FAST_RR_S:
            rr = fast
        out[j] = 60.0 / rr.mean()
    return out


def rate_reference(beat_times_s: Sequence[float], *, low: float, high: float, onset_s: float) -> list[Span]:
    """Reference ``hr_high``/``hr_low`` spans from the annotated beat times (seconds, in order)."""
    t = np.asarray(beat_times_s, dtype=np.float64)
    hr = _beat_rates(t)
    spans: list[Span] = []
    for label, beyond in (("hr_high", hr > high), ("hr_low", hr < low)):
        j = 0
        while j < len(t):
            if not beyond[j]:
                j += 1
                continue
            k = j
            while k + 1 < len(t) and beyond[k + 1]:
                k += 1
            if t[k] - t[j] >= onset_s:
                spans.append(Span(float(t[j]), float(t[k]), label))
            j = k + 1
    return sorted(spans, key=lambda s: (s.start, s.label))


def _annotations(record: Any) -> Any:
    """The record's beat annotations (a loader Record, or anything with ``path``), or None."""
    from pathlib import Path

    from pedstream.data.annotations import read_annotations

    get = getattr(record, "annotations", None)
    if callable(get):
        return get()
    path = Path(record.path)
    return read_annotations(path) if path.with_name(path.name + ".atr").is_file() else None


def score_rates(plan: Any, events: Sequence[Any], *, cfg: Config, window_s: float) -> RecordScore | None:
    """One replayed record's rate alarms against its rate reference (None: no beat annotations)."""
    from pedstream.data.annotations import BEAT_SYMBOLS
    from pedstream.monitor.alarms import hr_limits_for_age

    ann = _annotations(plan.record)
    if ann is None:
        return None
    fs = float(ann.fs or plan.fs)
    beats = [s / fs for s, sym in zip(ann.sample, ann.symbol) if sym in BEAT_SYMBOLS]
    if len(beats) < 3:
        return None
    low, high, _ = hr_limits_for_age(getattr(plan, "age_years", None), cfg.alarms)
    ref = rate_reference(beats, low=low, high=high, onset_s=cfg.alarms.hr_onset_s)
    start_s, end_s = plan.start / plan.fs, plan.stop / plan.fs
    transitions = [(e.kind, str(e.label), float(e.t_signal)) for e in events
                   if e.kind in ("alarm_on", "alarm_off") and e.label in RATE_LABELS and e.t_signal is not None]
    alarms = alarm_episodes(transitions, evidence_s=0.0, window_s=window_s, end_s=end_s, labels=RATE_LABELS)
    whole = Span(beats[0], beats[-1], "rate_known")  # the rate is known wherever beats are annotated
    return score_record([whole, *ref], alarms, RATE_LABELS, start_s=start_s, end_s=end_s)
