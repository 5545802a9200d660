"""Rhythm alarms scored against reference rhythm episodes, as EC57 scores episodes (``epicmp``).

Inputs, per record, on one clock (record time, seconds):

- reference episodes :class:`Span` (``label`` a class, ``None`` = excluded: a rhythm the map
  leaves out), from the record's rhythm annotations (:mod:`pedstream.data.rhythm`); time that no
  span covers (before the first rhythm annotation) counts as excluded too;
- alarm episodes :class:`AlarmEpisode` of the monitor: ``start`` where the alarm's evidence began
  (the first window of its onset run: the strip's onset mark), ``raised`` when the alarm went on
  (the end of the window that completed the evidence), ``end`` when it went off (the end of the
  window that cleared it; the end of the replay if it never did).

Rules, per alarm class ``c`` (:func:`score_record`):

- a reference episode of ``c`` is *detected* when an alarm episode of ``c`` overlaps it (episode
  sensitivity = detected / episodes); an alarm episode of ``c`` is *true* when it overlaps a
  reference episode of ``c`` (episode positive predictivity = true / scored alarms);
- an alarm episode that is not true and lies mostly (more than half of it) in excluded time is not
  scored (the truth there is unknown); any other one is a *false alarm*;
- duration sensitivity = overlap / reference duration of ``c``; duration positive predictivity =
  overlap / alarm duration of ``c`` in non-excluded time (overlap = time both say ``c``);
- time to alarm of a detected episode = ``raised`` of the first overlapping alarm minus the
  episode's onset, 0 when that alarm was already on at the onset;
- monitored time = the non-excluded time; false alarms per monitored hour count every scored class.

Records add up as EC57 gross statistics (:meth:`ClassScore.__add__`). Ratios with an empty
denominator are ``None`` (JSON ``null``), never a made-up 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

__all__ = ["Span", "AlarmEpisode", "ClassScore", "RecordScore", "alarm_episodes", "score_record", "summarize"]


@dataclass(frozen=True, slots=True)
class Span:
    """Reference rhythm ``[start, end)`` seconds; ``label`` None = excluded."""

    start: float
    end: float
    label: str | None

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class AlarmEpisode:
    """One alarm of class ``label``: evidence from ``start``, on at ``raised``, off at ``end`` (seconds)."""

    label: str
    start: float
    raised: float
    end: float


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _union_overlap(a0: float, a1: float, spans: Iterable[tuple[float, float]]) -> float:
    """Length of ``[a0, a1)`` covered by the union of ``spans`` (which may overlap)."""
    pieces = sorted((max(a0, s0), min(a1, s1)) for s0, s1 in spans if min(a1, s1) > max(a0, s0))
    total, cur0, cur1 = 0.0, None, None
    for s0, s1 in pieces:
        if cur1 is None or s0 > cur1:
            if cur1 is not None:
                total += cur1 - cur0
            cur0, cur1 = s0, s1
        else:
            cur1 = max(cur1, s1)
    if cur1 is not None:
        total += cur1 - cur0
    return total


@dataclass
class ClassScore:
    """Counts and durations of one class (one record, or summed over records)."""

    episodes: int = 0
    detected: int = 0
    alarms: int = 0  # scored alarm episodes (true + false)
    true_alarms: int = 0
    false_alarms: int = 0
    unscored_alarms: int = 0  # mostly in excluded time
    ref_s: float = 0.0
    alarm_s: float = 0.0
    overlap_s: float = 0.0
    delays: list[float] = field(default_factory=list)  # time to alarm of each detected episode, s

    @property
    def missed(self) -> int:
        return self.episodes - self.detected

    @property
    def episode_se(self) -> float | None:
        return self.detected / self.episodes if self.episodes else None

    @property
    def episode_ppv(self) -> float | None:
        return self.true_alarms / self.alarms if self.alarms else None

    @property
    def duration_se(self) -> float | None:
        return self.overlap_s / self.ref_s if self.ref_s > 0 else None

    @property
    def duration_ppv(self) -> float | None:
        return self.overlap_s / self.alarm_s if self.alarm_s > 0 else None

    def delay(self, q: float) -> float | None:
        return float(np.percentile(self.delays, q)) if self.delays else None

    def __add__(self, o: "ClassScore") -> "ClassScore":
        return ClassScore(self.episodes + o.episodes, self.detected + o.detected, self.alarms + o.alarms,
                          self.true_alarms + o.true_alarms, self.false_alarms + o.false_alarms,
                          self.unscored_alarms + o.unscored_alarms, self.ref_s + o.ref_s, self.alarm_s + o.alarm_s,
                          self.overlap_s + o.overlap_s, self.delays + o.delays)

    def as_dict(self, monitored_h: float | None = None) -> dict:
        r = lambda v, n=4: None if v is None else round(float(v), n)  # noqa: E731
        out = {"episodes": self.episodes, "detected": self.detected, "missed": self.missed, "alarms": self.alarms,
               "false_alarms": self.false_alarms, "unscored_alarms": self.unscored_alarms,
               "episode_se": r(self.episode_se), "episode_ppv": r(self.episode_ppv),
               "duration_se": r(self.duration_se), "duration_ppv": r(self.duration_ppv),
               "time_to_alarm_s_median": r(self.delay(50), 2), "time_to_alarm_s_p95": r(self.delay(95), 2),
               "reference_s": round(self.ref_s, 1), "alarm_s": round(self.alarm_s, 1)}
        if monitored_h is not None:
            out["false_alarms_per_hour"] = r(self.false_alarms / monitored_h, 3) if monitored_h > 0 else None
        return out


@dataclass
class RecordScore:
    classes: dict[str, ClassScore]
    monitored_s: float
    replayed_s: float

    def __add__(self, o: "RecordScore") -> "RecordScore":
        names = list(dict.fromkeys([*self.classes, *o.classes]))
        return RecordScore({c: self.classes.get(c, ClassScore()) + o.classes.get(c, ClassScore()) for c in names},
                           self.monitored_s + o.monitored_s, self.replayed_s + o.replayed_s)

    @property
    def false_alarms(self) -> int:
        return sum(c.false_alarms for c in self.classes.values())


def alarm_episodes(events: Sequence[tuple[str, str, float]], *, evidence_s: float, window_s: float,
                   end_s: float, labels: Iterable[str] | None = None) -> list[AlarmEpisode]:
    """Alarm episodes from ``(kind, label, t_signal)`` events in order (``alarm_on``/``alarm_off``;
    ``t_signal`` = start of the window that raised or cleared the alarm, record time). ``evidence_s``:
    how far before that window's start the evidence began (``(onset_windows - 1) * hop``);
    ``window_s``: the window length (a window's end is when it was complete); ``end_s``: the end of
    the replay (closes alarms still on). Only ``labels`` (when given) are kept."""
    keep = None if labels is None else set(labels)
    open_: dict[str, tuple[float, float]] = {}
    out: list[AlarmEpisode] = []
    for kind, label, t in events:
        if keep is not None and label not in keep:
            continue
        if kind == "alarm_on" and label not in open_:
            open_[label] = (max(0.0, t - evidence_s), t + window_s)
        elif kind == "alarm_off" and label in open_:
            s, raised = open_.pop(label)
            out.append(AlarmEpisode(label, s, raised, max(raised, t + window_s)))
    for label, (s, raised) in open_.items():
        out.append(AlarmEpisode(label, s, raised, max(raised, end_s)))
    return sorted(out, key=lambda a: (a.start, a.label))


def score_record(reference: Sequence[Span], alarms: Sequence[AlarmEpisode], classes: Sequence[str], *,
                 start_s: float, end_s: float) -> RecordScore:
    """Score one record's alarms (see the module docstring). ``[start_s, end_s)``: the replayed span;
    reference episodes are clipped to it."""
    ref = [Span(max(s.start, start_s), min(s.end, end_s), s.label) for s in reference
           if min(s.end, end_s) > max(s.start, start_s)]
    known = [(s.start, s.end) for s in ref if s.label is not None]
    monitored = _union_overlap(start_s, end_s, known)
    out: dict[str, ClassScore] = {}
    for c in classes:
        cs = ClassScore()
        eps = [s for s in ref if s.label == c]
        mine = [a for a in alarms if a.label == c]
        cs.episodes = len(eps)
        cs.ref_s = sum(s.duration for s in eps)
        for s in eps:
            hits = [a for a in mine if _overlap(a.start, a.end, s.start, s.end) > 0]
            if hits:
                cs.detected += 1
                cs.delays.append(max(0.0, min(a.raised for a in hits) - s.start))
        ref_c = [(s.start, s.end) for s in eps]
        for a in mine:
            cs.overlap_s += _union_overlap(a.start, a.end, ref_c)
            in_known = _union_overlap(a.start, a.end, known)
            cs.alarm_s += in_known
            if any(_overlap(a.start, a.end, s0, s1) > 0 for s0, s1 in ref_c):
                cs.alarms += 1
                cs.true_alarms += 1
            elif in_known * 2 < (a.end - a.start):
                cs.unscored_alarms += 1
            else:
                cs.alarms += 1
                cs.false_alarms += 1
        out[c] = cs
    return RecordScore(out, monitored_s=monitored, replayed_s=max(0.0, end_s - start_s))


def summarize(total: RecordScore) -> dict:
    """The JSON block of a (summed) score: ``classes.<label>``, ``false_alarms``, ``false_alarms_per_hour``,
    ``monitored_h``."""
    h = total.monitored_s / 3600.0
    return {"classes": {c: s.as_dict(h) for c, s in total.classes.items()},
            "false_alarms": total.false_alarms,
            "false_alarms_per_hour": round(total.false_alarms / h, 3) if h > 0 else None,
            "monitored_h": round(h, 4), "replayed_h": round(total.replayed_s / 3600.0, 4)}
