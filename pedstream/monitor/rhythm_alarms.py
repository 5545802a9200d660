"""Alarms of the rhythm-context layer, one :class:`RhythmAlarmLogic` per stream (the same object
scores the records offline: ``bench/rhythm_context_cv.py``).

Each rhythm call brings the class probabilities ``(C,)`` (class names ``classes``), the time since
the newest QRS (s) and whether the lead is readable. Rules, in this order:

- **artefact** ("check leads", technical, priority ``priorities["artefact"]``): on after
  ``onset_calls["artefact"]`` consecutive calls with ``p(artefact) >= onset_p``, off after
  ``offset_calls`` calls below ``offset_p``. While it is on no rhythm alarm (asystole included)
  is raised; rhythm alarms already on stay until their own offset.
- **asystole**: on at once when no QRS for ``asystole_s`` and the lead is readable (not flat, artefact
  not on) - the beat stream, whatever the model says - or after ``onset_calls["asystole"]`` calls with
  ``p(asystole) >= onset_p`` (the detector's search-back can pick noise as beats in asystole); off
  after ``offset_calls`` calls with QRS again and ``p(asystole) < offset_p``.
- **rhythm classes** with a priority other than ``none`` (not artefact, not asystole): on after
  ``onset_calls[c]`` (default 3) consecutive calls with ``p(c) >= onset_p``; off after
  ``offset_calls`` consecutive calls with ``p(c) < offset_p``.
- **VT from the beats** (the fast path, ``vt_run_beats`` > 0): a run of at least ``vt_run_beats``
  consecutive ventricular-like beats above 100 bpm (``vt_run``, from
  :func:`pedstream.dsp.rhythm_features.beat_run_features`) whose last beat is at most
  :data:`VT_RUN_RECENT_S` old (``vt_run_end_s``) raises ``vt`` at once on a readable lead (not while
  artefact is on), whatever the model says; such a call counts as ``p(vt) = 1`` for the offset too. Its
  evidence began at the run's first beat (``evidence_calls`` = the calls of ``hop_s`` back to it).

``step`` returns ``[(kind, label, priority, evidence_calls)]`` transitions (``alarm_on``/``alarm_off``);
``evidence_calls`` = how many calls back the onset's evidence began.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = ["RhythmAlarmLogic", "Transition", "VT_RUN_RECENT_S"]

Transition = tuple[str, str, str, int]
VT_RUN_RECENT_S = 3.0  # a beat run counts for the VT fast path while its last beat is at most this old (s)


class RhythmAlarmLogic:
    def __init__(self, *, classes: Sequence[str], onset_p: float, offset_p: float, onset_calls: Mapping[str, int],
                 offset_calls: int, priorities: Mapping[str, str], asystole_s: float, vt_run_beats: int = 0, hop_s: float = 1.25) -> None:
        self.classes = list(classes)
        self.onset_p, self.offset_p = float(onset_p), float(offset_p)
        self.offset_calls = int(offset_calls)
        self.asystole_s = float(asystole_s)
        self.vt_run_beats = int(vt_run_beats)
        self.hop_s = float(hop_s)
        self.priorities = {c: priorities.get(c, "none") for c in self.classes}
        self.priorities.setdefault("asystole", priorities.get("asystole", "high"))
        self.onset = {c: int(onset_calls.get(c, 3)) for c in self.classes}
        self.watch = [c for c in self.classes if self.priorities[c] != "none" and c not in ("asystole", "artefact")]
        self._idx = {c: i for i, c in enumerate(self.classes)}
        self.active: set[str] = set()
        self._on: dict[str, int] = {}
        self._off: dict[str, int] = {}

    def _hyst(self, c: str, p: float, allowed: bool, out: list[Transition], at_once: int = 0) -> None:
        if c not in self.active:
            self._on[c] = self._on.get(c, 0) + 1 if (p >= self.onset_p and allowed) else 0
            if self._on[c] >= self.onset[c] or (at_once and allowed):
                self.active.add(c)
                out.append(("alarm_on", c, self.priorities[c], at_once if at_once else self.onset[c]))
                self._on[c], self._off[c] = 0, 0
        else:
            self._off[c] = self._off.get(c, 0) + 1 if p < self.offset_p else 0
            if self._off[c] >= self.offset_calls:
                self.active.discard(c)
                out.append(("alarm_off", c, self.priorities[c], 0))
                self._off[c] = 0

    def step(self, probs: np.ndarray, *, since_beat_s: float, readable: bool, vt_run: float = 0.0,
             vt_run_end_s: float = float("inf"), vt_run_len_s: float = 0.0) -> list[Transition]:
        """One call's transitions. ``vt_run`` / ``vt_run_end_s`` / ``vt_run_len_s``: the longest run of
        ventricular-like fast beats in the lead, the age of its last beat and its length (the VT fast path;
        ignored when ``vt_run_beats`` is 0)."""
        out: list[Transition] = []
        p = np.asarray(probs, dtype=np.float64)
        if "artefact" in self._idx and self.priorities.get("artefact", "none") != "none":
            self._hyst("artefact", float(p[self._idx["artefact"]]), True, out)
        quiet = "artefact" in self.active
        self._asystole(since_beat_s >= self.asystole_s and readable and not quiet,
                       float(p[self._idx["asystole"]]) if "asystole" in self._idx else 0.0, quiet, out)
        run = (self.vt_run_beats > 0 and vt_run >= self.vt_run_beats and vt_run_end_s <= VT_RUN_RECENT_S
               and readable)
        for c in self.watch:
            if c == "vt" and run:
                back = max(1, int(np.ceil((vt_run_end_s + vt_run_len_s) / self.hop_s)))
                self._hyst(c, 1.0, not quiet, out, at_once=back)
            else:
                self._hyst(c, float(p[self._idx[c]]), not quiet, out)
        return out

    def _asystole(self, no_qrs: bool, p: float, quiet: bool, out: list[Transition]) -> None:
        """On at once when no QRS for ``asystole_s`` on a readable lead, or after ``onset_calls["asystole"]``
        model calls; off when there are QRS again and the model's probability has fallen."""
        prio = self.priorities["asystole"]
        if prio == "none":
            return
        if "asystole" not in self.active:
            self._on["asystole"] = self._on.get("asystole", 0) + 1 if (p >= self.onset_p and not quiet) else 0
            if no_qrs or self._on["asystole"] >= self.onset.get("asystole", 3):
                self.active.add("asystole")
                out.append(("alarm_on", "asystole", prio, 0 if no_qrs else self._on["asystole"]))
                self._on["asystole"], self._off["asystole"] = 0, 0
            return
        cold = not no_qrs and p < self.offset_p
        self._off["asystole"] = self._off.get("asystole", 0) + 1 if cold else 0
        if self._off["asystole"] >= self.offset_calls:
            self.active.discard("asystole")
            out.append(("alarm_off", "asystole", prio, 0))
            self._off["asystole"] = 0

    def reset(self) -> list[Transition]:
        """Forget the state (signal lost); the alarms on are turned off."""
        out = [("alarm_off", c, self.priorities.get(c, "none"), 0) for c in sorted(self.active)]
        self.active.clear()
        self._on.clear()
        self._off.clear()
        return out
