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

False-alarm rules (each off at its constructor default; ``[rhythm_context]`` sets them, chosen by nested
record-wise CV in ``bench/rhythm_context_false_alarms.py``):

- **one ventricular alarm** (``one_ventricular``): ``"hold"``: while ``vf`` is on, ``vt`` is not raised (the
  VF alarm already covers the ventricular arrhythmia); ``"escalate"``: that, and a ``vf`` onset while ``vt`` is
  on ends the VT alarm (``alarm_off vt``) as VF goes on; ``"off"``: both may be on. They are ordinary alarm
  episodes for the scorer: an escalated VT alarm ends where VF begins, nothing is relabelled after the fact.
- **re-alarm refractory time** (``refractory_s``): after an alarm of a class ends, the same class is not
  raised again for this long (counted in calls of ``hop_s``); its onset evidence keeps counting, so it goes on
  at the first call after the refractory time when the evidence is still there.
- **VT fast path gates**: the beat run raises ``vt`` only when ``p(artefact) < vt_run_max_artefact_p`` (a
  signal-quality gate: the model's artefact probability) and the run's mean rate is at least
  ``vt_run_min_rate_bpm`` (``vt_run_rate_bpm``).
- **asystole amplitude gate** (``asystole_max_amp_mv`` > 0): asystole from the beat stream only when the
  lead's peak-to-peak range over the signal window (``amp_mv``, the ``amp_range`` feature) is at most this:
  a lead with large deflections and no detected QRS is noise or missed beats, not asystole. The model's own
  asystole calls are not gated.
- **asystole on a readable signal** (``asystole_max_organized_p`` < 1): asystole from the beat stream only while
  the model's probability of an organized rhythm (sinus + af_afl + svt + other: QRS complexes in the 8 s of the
  lead it reads) is at most this; a lead the model reads as beating is beats the detector missed. Held back, the
  alarm goes on at the first call where the model no longer reads beats (or by the model's own asystole onset).
- **AF confirmed by the RR rule** (``af_rr_confirm``): ``af_afl`` goes on only at a call where the
  RR-irregularity rule (:class:`pedstream.dsp.rr_rule.RRIrregularityRule` over the context's beats, ``rr_af``)
  also says AF; its onset count keeps running meanwhile. ``af_rr_confirm_max_p`` < 1: the confirmation is
  asked for only while the model's p(af_afl) is at most this (a confident AF call goes on without it).
- **model VT confirmed by a beat run** (``vt_confirm_run`` > 0): the model's ``vt`` onset (not the fast path,
  which is a run itself) goes on only at a call where the lead shows a run of at least ``vt_confirm_run``
  consecutive ventricular-like fast beats (``vt_run``, any age inside the signal window), or where the model's
  p(vt) is above ``vt_confirm_max_p`` (a sustained VT whose beats are the lead's median QRS has no such run);
  the onset count keeps running meanwhile. What a bedside monitor asks of a VT call: beats that differ from
  the patient's dominant QRS, several in a row.

``step`` returns ``[(kind, label, priority, evidence_calls)]`` transitions (``alarm_on``/``alarm_off``);
``evidence_calls`` = how many calls back the onset's evidence began.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["RhythmAlarmLogic", "Transition", "VT_RUN_RECENT_S"]

Transition = tuple[str, str, str, int]
ORGANIZED = ("sinus", "af_afl", "svt", "other")  # rhythm classes with QRS complexes (the asystole readable-signal rule)
VT_RUN_RECENT_S = 3.0  # a beat run counts for the VT fast path while its last beat is at most this old (s)


class RhythmAlarmLogic:
    def __init__(self, *, classes: Sequence[str], onset_p: float, offset_p: float, onset_calls: Mapping[str, int],
                 offset_calls: int, priorities: Mapping[str, str], asystole_s: float, vt_run_beats: int = 0, hop_s: float = 1.25,
                 one_ventricular: str = "off", refractory_s: float = 0.0, vt_run_max_artefact_p: float = 1.0,
                 vt_run_min_rate_bpm: float = 0.0, asystole_max_amp_mv: float = 0.0, af_rr_confirm: bool = False,
                 af_rr_confirm_max_p: float = 1.0, vt_confirm_run: int = 0, vt_confirm_max_p: float = 1.0,
                 asystole_max_organized_p: float = 1.0) -> None:
        self.classes = list(classes)
        if one_ventricular not in ("off", "hold", "escalate"):
            raise ValueError(f"one_ventricular must be 'off', 'hold' or 'escalate', not {one_ventricular!r}")
        self.one_ventricular = one_ventricular
        self.refractory_calls = int(np.ceil(float(refractory_s) / float(hop_s) - 1e-9)) if refractory_s > 0 else 0
        self.vt_run_max_artefact_p = float(vt_run_max_artefact_p)
        self.vt_run_min_rate_bpm = float(vt_run_min_rate_bpm)
        self.asystole_max_amp_mv = float(asystole_max_amp_mv)
        self.af_rr_confirm = bool(af_rr_confirm)
        self.af_rr_confirm_max_p = float(af_rr_confirm_max_p)
        self.vt_confirm_run = int(vt_confirm_run)
        self.vt_confirm_max_p = float(vt_confirm_max_p)
        self.asystole_max_organized_p = float(asystole_max_organized_p)
        self._since_off: dict[str, int] = {}  # calls since each class's alarm last went off
        self.onset_p, self.offset_p = float(onset_p), float(offset_p)
        self.offset_calls = int(offset_calls)
        self.asystole_s = float(asystole_s)
        self.vt_run_beats = int(vt_run_beats)
        self.hop_s = float(hop_s)
        self.priorities = {c: priorities.get(c, "none") for c in self.classes}
        self.priorities.setdefault("asystole", priorities.get("asystole", "high"))
        self.onset = {c: int(onset_calls.get(c, 3)) for c in self.classes}
        self.watch = [c for c in self.classes if self.priorities[c] != "none" and c not in ("asystole", "artefact")]
        if self.one_ventricular != "off" and "vf" in self.watch and "vt" in self.watch:  # VF first: a VT onset at the same call is held
            self.watch.remove("vf")
            self.watch.insert(self.watch.index("vt"), "vf")
        self._idx = {c: i for i, c in enumerate(self.classes)}
        self.active: set[str] = set()
        self._on: dict[str, int] = {}
        self._off: dict[str, int] = {}

    @classmethod
    def from_section(cls, rc: Any, *, classes: Sequence[str], hop_s: float) -> "RhythmAlarmLogic":
        """The logic of a ``[rhythm_context]`` section (:class:`pedstream.config.RhythmContextSection`)."""
        return cls(classes=classes, onset_p=rc.onset_p, offset_p=rc.offset_p, onset_calls=rc.onset_calls,
                   offset_calls=rc.offset_calls, priorities=rc.priorities, asystole_s=rc.asystole_s,
                   vt_run_beats=rc.vt_run_beats, hop_s=hop_s, one_ventricular=rc.one_ventricular,
                   refractory_s=rc.refractory_s, vt_run_max_artefact_p=rc.vt_run_max_artefact_p,
                   vt_run_min_rate_bpm=rc.vt_run_min_rate_bpm, asystole_max_amp_mv=rc.asystole_max_amp_mv,
                   af_rr_confirm=rc.af_rr_confirm, af_rr_confirm_max_p=rc.af_rr_confirm_max_p,
                   vt_confirm_run=rc.vt_confirm_run, vt_confirm_max_p=rc.vt_confirm_max_p,
                   asystole_max_organized_p=rc.asystole_max_organized_p)

    def _refractory(self, c: str) -> bool:
        """``c`` ended less than ``refractory_s`` ago."""
        return self.refractory_calls > 0 and self._since_off.get(c, self.refractory_calls) < self.refractory_calls

    def _hyst(self, c: str, p: float, allowed: bool, out: list[Transition], at_once: int = 0, hold: bool = False) -> None:
        """Hysteresis of class ``c``; ``hold``: the onset may count but not raise now (refractory time, a veto)."""
        if c not in self.active:
            self._on[c] = self._on.get(c, 0) + 1 if (p >= self.onset_p and allowed) else 0
            if (self._on[c] >= self.onset[c] or (at_once and allowed)) and not hold:
                self.active.add(c)
                out.append(("alarm_on", c, self.priorities[c], at_once if at_once else self.onset[c]))
                self._on[c], self._off[c] = 0, 0
        else:
            self._off[c] = self._off.get(c, 0) + 1 if p < self.offset_p else 0
            if self._off[c] >= self.offset_calls:
                self._end(c, out)

    def _end(self, c: str, out: list[Transition]) -> None:
        self.active.discard(c)
        out.append(("alarm_off", c, self.priorities.get(c, "none"), 0))
        self._off[c] = 0
        self._since_off[c] = 0

    def step(self, probs: np.ndarray, *, since_beat_s: float, readable: bool, vt_run: float = 0.0,
             vt_run_end_s: float = float("inf"), vt_run_len_s: float = 0.0, vt_run_rate_bpm: float | None = None,
             amp_mv: float = 0.0, rr_af: bool | None = None) -> list[Transition]:
        """One call's transitions. ``vt_run`` / ``vt_run_end_s`` / ``vt_run_len_s`` / ``vt_run_rate_bpm``: the
        longest run of ventricular-like fast beats in the lead, the age of its last beat, its length and mean rate
        (the VT fast path; ignored when ``vt_run_beats`` is 0; a rate of None, not known, is not gated). ``amp_mv``: the lead's peak-to-peak range over the
        signal window (the asystole gate). ``rr_af``: the RR rule's AF decision on the context's beats (None: not
        computed, which with ``af_rr_confirm`` holds AF back)."""
        out: list[Transition] = []
        p = np.asarray(probs, dtype=np.float64)
        for c in list(self._since_off):
            self._since_off[c] += 1
        if "artefact" in self._idx and self.priorities.get("artefact", "none") != "none":
            self._hyst("artefact", float(p[self._idx["artefact"]]), True, out)
        quiet = "artefact" in self.active
        no_qrs = since_beat_s >= self.asystole_s and readable and not quiet
        if self.asystole_max_amp_mv > 0:
            no_qrs = no_qrs and amp_mv <= self.asystole_max_amp_mv
        if self.asystole_max_organized_p < 1.0:
            no_qrs = no_qrs and sum(float(p[self._idx[c]]) for c in ORGANIZED if c in self._idx) <= self.asystole_max_organized_p
        self._asystole(no_qrs, float(p[self._idx["asystole"]]) if "asystole" in self._idx else 0.0, quiet, out)
        p_art = float(p[self._idx["artefact"]]) if "artefact" in self._idx else 0.0
        run = (self.vt_run_beats > 0 and vt_run >= self.vt_run_beats and vt_run_end_s <= VT_RUN_RECENT_S
               and readable and p_art < self.vt_run_max_artefact_p
               and (vt_run_rate_bpm is None or vt_run_rate_bpm >= self.vt_run_min_rate_bpm))
        for c in self.watch:
            hold = self._refractory(c) or self._unconfirmed(c, float(p[self._idx[c]]), rr_af, vt_run, run)
            if self.one_ventricular != "off" and c == "vt" and "vf" in self.active:
                hold = True
            if self.one_ventricular == "escalate" and c == "vf" and "vt" in self.active and "vf" not in self.active:
                before = len(out)
                self._hyst(c, float(p[self._idx[c]]), not quiet, out, hold=hold)
                if len(out) > before:  # VF raised: the VT alarm ends there (escalation)
                    self._end("vt", out)
                    out[before], out[-1] = out[-1], out[before]  # vt off first, then vf on
                continue
            if c == "vt" and run:
                back = max(1, int(np.ceil((vt_run_end_s + vt_run_len_s) / self.hop_s)))
                self._hyst(c, 1.0, not quiet, out, at_once=back, hold=hold)
            else:
                self._hyst(c, float(p[self._idx[c]]), not quiet, out, hold=hold)
        return out

    def _unconfirmed(self, c: str, p: float, rr_af: bool | None, vt_run: float, run: bool) -> bool:
        """The onset of ``c`` lacks the confirmation a rule asks for (AF: the RR rule; model VT: a beat run)."""
        if c == "af_afl":
            return self.af_rr_confirm and not rr_af and p <= self.af_rr_confirm_max_p
        if c == "vt":
            return self.vt_confirm_run > 0 and not run and vt_run < self.vt_confirm_run and p <= self.vt_confirm_max_p
        return False

    def _asystole(self, no_qrs: bool, p: float, quiet: bool, out: list[Transition]) -> None:
        """On at once when no QRS for ``asystole_s`` on a readable lead, or after ``onset_calls["asystole"]``
        model calls; off when there are QRS again and the model's probability has fallen."""
        prio = self.priorities["asystole"]
        if prio == "none":
            return
        if "asystole" not in self.active:
            self._on["asystole"] = self._on.get("asystole", 0) + 1 if (p >= self.onset_p and not quiet) else 0
            if (no_qrs or self._on["asystole"] >= self.onset.get("asystole", 3)) and not self._refractory("asystole"):
                self.active.add("asystole")
                out.append(("alarm_on", "asystole", prio, 0 if no_qrs else self._on["asystole"]))
                self._on["asystole"], self._off["asystole"] = 0, 0
            return
        cold = not no_qrs and p < self.offset_p
        self._off["asystole"] = self._off.get("asystole", 0) + 1 if cold else 0
        if self._off["asystole"] >= self.offset_calls:
            self._end("asystole", out)

    def reset(self) -> list[Transition]:
        """Forget the state (signal lost); the alarms on are turned off."""
        out = [("alarm_off", c, self.priorities.get(c, "none"), 0) for c in sorted(self.active)]
        self.active.clear()
        self._on.clear()
        self._off.clear()
        self._since_off.clear()
        return out
