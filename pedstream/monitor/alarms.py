"""Per-stream rhythm calls and alarms: smoothing, hysteresis, priorities, age-banded heart-rate limits.

The rhythm call is the class with the highest smoothed probability, held: another class replaces it
only after leading for ``call_hold_windows`` consecutive windows, so one window never flips it; its
``p`` is the held class's smoothed probability.

One :class:`AlarmTracker` per stream consumes the model's class probabilities for each classified
window (``(C,)`` float, summing to 1) and the current heart rate (bpm, or ``None``), and returns the
smoothed rhythm call plus any alarm transitions. All decisions are per window, so the tracker is
deterministic and needs no clock: windows are cut on the stream's own sample grid and the heart rate
given with a window is the rate when that window was complete, so alarms follow the stream clock,
not the wall clock, whatever the pace of a replay (``pedstream score episodes`` replays as fast as
the CPU allows; ``tests/score/test_score_episodes.py`` checks speed 1 and full speed agree).

Rhythm alarms (per class with a priority other than ``none``):

- **onset**: the smoothed probability of the class is ``>= onset_p`` for ``onset_windows``
  consecutive windows;
- **offset**: it stays ``< offset_p`` (``offset_p <= onset_p``: hysteresis) for ``offset_windows``
  consecutive windows.

Heart-rate alarms (``hr_high`` / ``hr_low``, :meth:`AlarmTracker.rates`) use the limits of the
child's age band (:func:`hr_limits_for_age`) and are judged beat by beat, not per window: each
detected beat brings the averaged rate as it stood at that beat (``(t, bpm)``, stream seconds). The
alarm goes on once the rate has stayed beyond the limit for ``hr_onset_s`` (2 s) of beats and off
once it has stayed back inside by ``hr_hysteresis_bpm`` for ``hr_offset_s``; ``alarm_on`` carries the
rate that triggered it and ``at_s``, the beat where the rate first crossed. A 4 s run at 240 bpm is
announced while it runs (about 1 s of averaging plus ``hr_onset_s``), well inside the 10 s that
bedside monitors disclose.

PVC run (``pvc_run``, with a beat model, :meth:`AlarmTracker.beat`): on at the ``pvc_run_beats``-th
(3) consecutive V beat, off at the first non-V beat after it (the same hysteresis counted in beats);
priority ``pvc_run_priority`` (advisory); ``detail`` says how many V beats in a row.

:func:`pedstream.outputs.strips.save_strip` draws the alarm printout.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from pedstream.config import AlarmsSection, HRBand

__all__ = [
    "Priority",
    "PRIORITY_RANK",
    "RhythmCall",
    "AlarmTransition",
    "ProbabilitySmoother",
    "AlarmTracker",
    "hr_limits_for_age",
]

Priority = Literal["high", "medium", "advisory", "none"]
PRIORITY_RANK: dict[str, int] = {"none": 0, "advisory": 1, "medium": 2, "high": 3}


@dataclass(frozen=True, slots=True)
class RhythmCall:
    """The smoothed call for one window: ``label`` with confidence ``p`` (smoothed probability)."""

    label: str
    p: float
    probs: tuple[float, ...]  # (C,) smoothed class probabilities


@dataclass(frozen=True, slots=True)
class AlarmTransition:
    """An alarm turning on or off. ``label`` is a class name or ``hr_high``/``hr_low``."""

    kind: Literal["alarm_on", "alarm_off"]
    label: str
    priority: str
    p: float | None = None
    hr: float | None = None
    detail: str = ""
    windows_back: int = 0  # alarm_on of a window-driven alarm: its episode's first window, this many back
    at_s: float | None = None  # rate alarms: stream time (s) of the beat where the rate first crossed


class ProbabilitySmoother:
    """Temporal smoothing of per-window class probabilities.

    ``method="mean"``: moving average over the last ``n`` windows. ``method="ema"``: exponential
    moving average with ``alpha = 2 / (n + 1)`` (the usual span convention), seeded with the first
    window.
    """

    def __init__(self, *, n_classes: int, n: int, method: Literal["mean", "ema"] = "mean") -> None:
        self.n_classes = n_classes
        self.n = max(1, int(n))
        self.method = method
        self._hist: deque[np.ndarray] = deque(maxlen=self.n)
        self._ema: np.ndarray | None = None

    def reset(self) -> None:
        self._hist.clear()
        self._ema = None

    def update(self, probs: np.ndarray) -> np.ndarray:
        """Add one window's ``(C,)`` probabilities; return the smoothed ``(C,)`` float64 vector."""
        p = np.asarray(probs, dtype=np.float64).reshape(self.n_classes)
        if self.method == "ema":
            alpha = 2.0 / (self.n + 1.0)
            self._ema = p.copy() if self._ema is None else alpha * p + (1.0 - alpha) * self._ema
            return self._ema.copy()
        self._hist.append(p)
        return np.mean(np.stack(self._hist), axis=0)


def hr_limits_for_age(age_years: float | None, cfg: AlarmsSection) -> tuple[float, float, str]:
    """``(low_bpm, high_bpm, band_name)`` for a child of ``age_years``.

    The bands (``cfg.hr_bands``) are sorted by ``max_age_years``; a child belongs to the first band
    whose ``max_age_years`` is above its age. Unknown age (``None``): ``cfg.default_age_years`` when
    set, otherwise the widest limits over all bands (lowest low, highest high), so that no child gets
    a false rate alarm from a wrong age guess — the dashboard says the age is unknown.
    """
    bands: list[HRBand] = sorted(cfg.hr_bands, key=lambda b: b.max_age_years)
    if age_years is None:
        age_years = cfg.default_age_years
    if age_years is None:
        return (min(b.low_bpm for b in bands), max(b.high_bpm for b in bands), "age unknown")
    for b in bands:
        if age_years < b.max_age_years:
            return (b.low_bpm, b.high_bpm, b.name)
    last = bands[-1]
    return (last.low_bpm, last.high_bpm, last.name)


class _Hysteresis:
    """Window-count hysteresis: on after ``n_on`` consecutive ``hot``, off after ``n_off`` ``cold``."""

    __slots__ = ("n_on", "n_off", "active", "_on_run", "_off_run")

    def __init__(self, n_on: int, n_off: int) -> None:
        self.n_on, self.n_off = n_on, n_off
        self.active = False
        self._on_run = 0
        self._off_run = 0

    def step(self, hot: bool, cold: bool) -> Literal["on", "off"] | None:
        if not self.active:
            self._on_run = self._on_run + 1 if hot else 0
            if self._on_run >= self.n_on:
                self.active, self._on_run, self._off_run = True, 0, 0
                return "on"
        else:
            self._off_run = self._off_run + 1 if cold else 0
            if self._off_run >= self.n_off:
                self.active, self._on_run, self._off_run = False, 0, 0
                return "off"
        return None

    def reset(self) -> None:
        self.active = False
        self._on_run = self._off_run = 0


class _RateLimit:
    """Time hysteresis over beat-by-beat rates: on once ``hot`` has held for ``on_s`` seconds of beats,
    off once ``cold`` has held for ``off_s``. ``since`` is the time of the first beat of the current run."""

    __slots__ = ("on_s", "off_s", "active", "since", "_hot_t", "_cold_t")

    def __init__(self, on_s: float, off_s: float) -> None:
        self.on_s, self.off_s = on_s, off_s
        self.active = False
        self.since: float | None = None
        self._hot_t: float | None = None
        self._cold_t: float | None = None

    def step(self, t: float, hot: bool, cold: bool) -> Literal["on", "off"] | None:
        if not self.active:
            self._hot_t = (self._hot_t if self._hot_t is not None else t) if hot else None
            if self._hot_t is not None and t - self._hot_t >= self.on_s:
                self.active, self.since, self._hot_t, self._cold_t = True, self._hot_t, None, None
                return "on"
        else:
            self._cold_t = (self._cold_t if self._cold_t is not None else t) if cold else None
            if self._cold_t is not None and t - self._cold_t >= self.off_s:
                self.active, self.since, self._hot_t, self._cold_t = False, self._cold_t, None, None
                return "off"
        return None


class AlarmTracker:
    """Per-stream smoothing, rhythm call and alarm state machine.

    ``update(probs, hr)`` -> ``(call, transitions)``. ``active`` maps each active alarm label to its
    priority; :attr:`top_alarm` is the highest-priority active one (for the dashboard).
    """

    def __init__(self, *, class_names: Sequence[str], cfg: AlarmsSection, age_years: float | None = None) -> None:
        self.class_names = list(class_names)
        self.cfg = cfg
        self.age_years = age_years
        self.hr_low, self.hr_high, self.hr_band = hr_limits_for_age(age_years, cfg)
        self.smoother = ProbabilitySmoother(n_classes=len(self.class_names), n=cfg.smoothing_windows,
                                            method=cfg.smoothing)
        self._rhythm: dict[str, _Hysteresis] = {}
        self.priorities: dict[str, str] = {}
        for name in self.class_names:
            prio = cfg.priorities.get(name, cfg.default_priority)
            self.priorities[name] = prio
            if prio != "none":
                self._rhythm[name] = _Hysteresis(cfg.onset_windows, cfg.offset_windows)
        self._hr_hi = _RateLimit(cfg.hr_onset_s, cfg.hr_offset_s)
        self._hr_lo = _RateLimit(cfg.hr_onset_s, cfg.hr_offset_s)
        self._hr_peak = 0.0  # the most extreme rate of the current crossing (for alarm_on)
        self._pvc_run = _Hysteresis(cfg.pvc_run_beats, 1)
        self._call: int | None = None  # class index of the held call
        self._challenger: int | None = None  # another class leading, for _challenger_n windows
        self._challenger_n = 0
        self.v_run = 0  # consecutive V beats up to the newest classified beat
        self.active: dict[str, str] = {}

    @property
    def top_alarm(self) -> tuple[str, str] | None:
        """``(label, priority)`` of the highest-priority active alarm, or ``None``."""
        if not self.active:
            return None
        label = max(self.active, key=lambda k: PRIORITY_RANK[self.active[k]])
        return label, self.active[label]

    def reset_smoothing(self) -> None:
        """Forget the probability history and the V-beat run (after a signal gap); active alarms stay
        until cleared."""
        self.smoother.reset()
        self._call, self._challenger, self._challenger_n = None, None, 0
        self.v_run = 0
        self._pvc_run._on_run = 0

    def beat(self, label: str, p: float | None = None) -> list[AlarmTransition]:
        """One classified beat (AAMI class ``label``; ``"V"`` = PVC) -> the ``pvc_run`` transitions."""
        is_v = label == "V"
        self.v_run = self.v_run + 1 if is_v else 0
        step = self._pvc_run.step(hot=is_v, cold=not is_v)
        if step is None:
            return []
        detail = f"{self.v_run} consecutive V beats" if step == "on" else f"run ended by a {label} beat"
        return [self._transition(step, "pvc_run", self.cfg.pvc_run_priority, p=p, hr=None, detail=detail)]

    def update(self, probs: np.ndarray, hr: float | None) -> tuple[RhythmCall, list[AlarmTransition]]:
        sm = self.smoother.update(probs)
        k = self._held(int(np.argmax(sm)))
        call = RhythmCall(label=self.class_names[k], p=float(sm[k]), probs=tuple(float(v) for v in sm))
        out: list[AlarmTransition] = []
        for name, hyst in self._rhythm.items():
            p = float(sm[self.class_names.index(name)])
            step = hyst.step(hot=p >= self.cfg.onset_p, cold=p < self.cfg.offset_p)
            if step is not None:
                out.append(self._transition(step, name, self.priorities[name], p=p, hr=hr,
                                            windows_back=self.cfg.onset_windows - 1))
        return call, out

    def rates(self, beats: Sequence[tuple[float, float]]) -> list[AlarmTransition]:
        """Beat-by-beat rates ``(t, bpm)`` (stream seconds, in time order) -> ``hr_high``/``hr_low``
        transitions. ``alarm_on`` carries the rate at the beat that triggered it and ``at_s``, where the
        rate first crossed the limit; ``alarm_off`` the rate and time at which it cleared."""
        out: list[AlarmTransition] = []
        margin = self.cfg.hr_hysteresis_bpm
        for t, hr in beats:
            if hr is None or not np.isfinite(hr):
                continue
            for label, lim, hot, cold in (
                ("hr_high", self._hr_hi, hr > self.hr_high, hr <= self.hr_high - margin),
                ("hr_low", self._hr_lo, hr < self.hr_low, hr >= self.hr_low + margin),
            ):
                step = lim.step(float(t), hot=hot, cold=cold)
                if step is None:
                    continue
                limit = self.hr_high if label == "hr_high" else self.hr_low
                tr = self._transition(step, label, self.cfg.hr_priority, p=None, hr=float(hr),
                                      detail=f"limit {limit:g} bpm ({self.hr_band})")
                out.append(AlarmTransition(tr.kind, tr.label, tr.priority, p=None, hr=tr.hr, detail=tr.detail,
                                           at_s=lim.since))
        return out

    def _held(self, lead: int) -> int:
        """The call after a window whose leading class is ``lead`` (see the module docstring)."""
        if self._call is None or lead == self._call:
            self._call, self._challenger, self._challenger_n = lead, None, 0
            return lead
        self._challenger_n = self._challenger_n + 1 if lead == self._challenger else 1
        self._challenger = lead
        if self._challenger_n >= self.cfg.call_hold_windows:
            self._call, self._challenger, self._challenger_n = lead, None, 0
        return self._call

    def _transition(self, step: str, label: str, priority: str, *, p: float | None, hr: float | None,
                    detail: str = "", windows_back: int = 0) -> AlarmTransition:
        if step == "on":
            self.active[label] = priority
            return AlarmTransition("alarm_on", label, priority, p=p, hr=hr, detail=detail,
                                   windows_back=windows_back)
        self.active.pop(label, None)
        return AlarmTransition("alarm_off", label, priority, p=p, hr=hr, detail=detail)
