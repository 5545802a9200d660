"""Beat scheduling: turn a stream of Leipzig labels into timed electrophysiological events.

Each beat label is rendered by the mechanism it names: the scheduler decides *when* the atria and
ventricles activate (sinus clock with age-dependent rate and respiratory/LF variability, premature
coupling, re-entry cycle lengths, pacing cycles, AV dissociation...) and *how* (QRS kind, atrial
activation origin along the coronary sinus, pacing stimuli). Rendering into samples happens in
:mod:`morphology` and :mod:`iegm`. All times are in seconds from the record start.

Atrial activation origins are positions along the coronary-sinus axis in electrode-pair units:
0 = CS12 (distal, lateral mitral annulus) ... 4 = CS90 (proximal, ostium); > 4 is septum / right
atrium (it reaches the CS through the ostium, i.e. concentric proximal-to-distal activation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from pedstream.data.synth.subject import Subject

__all__ = ["VBeat", "AEvent", "Schedule", "schedule_labels", "SINUS_ORIGIN", "NODAL_ORIGIN"]

Label = tuple[str, str]
SINUS_ORIGIN = 6.5      # high right atrium
NODAL_ORIGIN = 4.3      # retrograde exit over the AV node: septum near the CS ostium
CS_PACE_ORIGIN = 4.0    # atrial pacing from the proximal CS pair (CS90)
WIDE_KINDS = ("pvc", "vt", "vpaced", "lbbb", "ivr", "rbbb", "preex", "fusion", "pfusion")


@dataclass
class VBeat:
    """One ventricular activation. ``t``: QRS onset (s); ``kind``: morphology key; ``variant``: focus id."""

    t: float
    kind: str
    variant: int = 0
    spike: bool = False          # ventricular pacing stimulus at t
    rr: float = 0.6              # preceding RR (s), sets the QT
    label: Label | None = None   # None = not annotated (a beat inside a noisy stretch)
    artefact: bool = False       # Q: unclassifiable, an artefact transient rides on it


@dataclass
class AEvent:
    """One atrial activation. ``t``: activation onset at the origin (s); ``origin``: CS-axis position.

    ``p``: surface P-wave kind (sinus, ectopic, retro, paced, flutter, none); ``spike``: atrial pacing
    stimulus at ``t``; ``cycle``: flutter cycle length (s) for flutter waves.
    """

    t: float
    origin: float
    p: str = "sinus"
    spike: bool = False
    cycle: float = 0.0


@dataclass
class Schedule:
    """Everything the renderers need, plus the annotations ``(time_s, symbol, aux)`` in time order."""

    beats: list[VBeat] = field(default_factory=list)
    atria: list[AEvent] = field(default_factory=list)
    af_spans: list[tuple[float, float]] = field(default_factory=list)
    noise_spans: list[tuple[float, float]] = field(default_factory=list)
    annotations: list[tuple[float, str, str]] = field(default_factory=list)


def fiducial_offset(kind: str, width: float) -> float:
    """Seconds from QRS onset to the annotated R peak."""
    return (0.06 if kind in WIDE_KINDS and kind not in ("rbbb",) else 0.036) * width


class _Scheduler:
    def __init__(self, *, subject: Subject, rng: np.random.Generator, duration: float) -> None:
        self.s = subject
        self.rng = rng
        self.duration = duration
        self.out = Schedule()
        self.t_v = 0.15                     # last QRS onset
        self.a_last = 0.0
        self.next_sinus = 0.25 + rng.uniform(0, 0.3)
        self.rhythm = "N"
        self.mech: str | None = None        # mechanism of the previous beat
        self.ep: dict = {}                  # parameters of the current episode
        self.af_start: float | None = None
        self.noise_start: float | None = None
        self.pending: list[Label] = []      # + markers waiting for their beat
        self.lf_phase = rng.uniform(0, 2 * math.pi)
        self.resp_phase = rng.uniform(0, 2 * math.pi)
        self.pvc_foci = int(rng.integers(1, 3))
        self.pac_foci = [float(rng.uniform(-0.5, 7.5)) for _ in range(2)]
        self.vt_variant = 10
        self.last_fid = 0.0
        self.last_handler: tuple | None = None

    # ---------------------------------------------------------------- helpers
    def sinus_rr(self, t: float) -> float:
        s = self.s
        base = 60.0 / s.sinus_hr
        mod = (0.6 * math.sin(2 * math.pi * s.resp_hz * t + self.resp_phase)
               + 0.4 * math.sin(2 * math.pi * 0.09 * t + self.lf_phase))
        return base * (1.0 + s.hrv * mod + 0.01 * self.rng.normal())

    def add_atrium(self, ev: AEvent) -> None:
        self.out.atria.append(ev)
        self.a_last = max(self.a_last, ev.t)

    def reset_sinus(self, a: float, factor: float = 1.0) -> None:
        self.next_sinus = a + self.sinus_rr(a) * factor

    def sinus_p_until(self, t: float) -> None:
        """Dissociated sinus P waves (not conducted) up to time t (VT, IVR, PVC)."""
        while self.next_sinus < t:
            self.add_atrium(AEvent(self.next_sinus, SINUS_ORIGIN, "sinus"))
            self.next_sinus += self.sinus_rr(self.next_sinus)

    def episode(self, mech: str) -> dict:
        """Parameters of the current episode of ``mech`` (drawn when the mechanism changes)."""
        if self.mech != mech or not self.ep:
            r = self.rng
            s = self.s
            young = 1.0 - (min(max(s.age, 5), 18) - 5) / 13
            ep: dict = {"mech": mech}
            if mech == "AVNRT":
                ep["cl"] = 60.0 / r.uniform(180, 250)
                ep["va"] = r.uniform(-0.012, 0.015)
            elif mech == "AVRT":
                if s.pjrt:
                    ep["cl"] = 60.0 / r.uniform(130, 165)
                    ep["va"] = ep["cl"] * r.uniform(0.55, 0.65)
                else:
                    ep["cl"] = 60.0 / r.uniform(165 + 25 * young, 220 + 20 * young)
                    ep["va"] = max(0.08, min(r.uniform(0.09, 0.14), 0.42 * ep["cl"]))  # short RP: RP < RR/2
            elif mech == "VT":
                ep["cl"] = 60.0 / r.uniform(150, 220)
                self.vt_variant += 1
                ep["variant"] = self.vt_variant
            elif mech == "IVR":
                ep["cl"] = 60.0 / r.uniform(60, 90)
                ep["variant"] = 5
            elif mech in ("AFIB",):
                ep["mean_rr"] = 60.0 / r.uniform(120, 170)
            elif mech == "AFL":
                ep["fl"] = 60.0 / r.uniform(250, 300)
                ep["ratio"] = 2 if r.random() < 0.7 else 3
                ep["av"] = r.uniform(0.14, 0.2)
                ep["next_f"] = self.a_last + 0.25
            elif mech in ("EAT", "X"):
                ep["cl"] = 60.0 / r.uniform(140, 190)
                ep["origin"] = float(r.uniform(-0.5, 7.5))
            elif mech == "/A":
                ep["cl"] = float(r.choice([0.6, 0.5, 0.45, 0.4, 0.35]))
            elif mech == "/V":
                ep["cl"] = float(r.choice([0.6, 0.5, 0.45, 0.4]))
                ep["va"] = (r.uniform(0.09, 0.13) if s.mechanism == "AVRT" else r.uniform(0.14, 0.2))
                ep["retro"] = r.random() < 0.85
            elif mech == "J":
                ep["cl"] = 60.0 / (s.sinus_hr * r.uniform(0.9, 1.2))
            self.ep = ep
        self.mech = mech
        return self.ep

    # ---------------------------------------------------------------- mechanisms
    def sinus(self, kind: str = "normal", pr: float | None = None, variant: int = 0) -> VBeat:
        self.episode("N")
        pr = self.s.pr_s if pr is None else pr
        if kind == "preex":
            pr = min(pr, 0.085)
        # blocked sinus P waves (refractory after a PVC) leave a compensatory pause
        while self.next_sinus + pr < self.t_v + 0.28:
            self.add_atrium(AEvent(self.next_sinus, SINUS_ORIGIN, "sinus"))
            self.next_sinus += self.sinus_rr(self.next_sinus)
        a = self.next_sinus
        self.add_atrium(AEvent(a, SINUS_ORIGIN, "sinus"))
        self.next_sinus = a + self.sinus_rr(a)
        return VBeat(a + pr, kind, variant)

    def pac(self, kind: str = "normal", rhythm: bool = False) -> VBeat:
        self.episode("A" if rhythm else "N")
        rr = self.sinus_rr(self.a_last)
        c = rr * (self.rng.uniform(0.9, 1.0) if rhythm else self.rng.uniform(0.6, 0.78))
        a = max(self.a_last + c, self.t_v + 0.2)
        origin = self.pac_foci[0 if rhythm or self.rng.random() < 0.7 else 1]
        self.add_atrium(AEvent(a, origin, "ectopic"))
        self.reset_sinus(a)
        pr = (0.085 if kind == "preex" else self.s.pr_s * self.rng.uniform(1.05, 1.3))
        return VBeat(a + pr, kind)

    def junctional(self, premature: bool, escape: bool = False) -> VBeat:
        rr = self.sinus_rr(self.t_v)
        if escape:
            t = self.t_v + rr * self.rng.uniform(1.25, 1.5)
        elif premature:
            t = self.t_v + rr * self.rng.uniform(0.62, 0.8)
        else:
            t = self.t_v + self.episode("J")["cl"]
        a = t + self.rng.uniform(-0.01, 0.04)
        self.add_atrium(AEvent(a, NODAL_ORIGIN, "retro"))
        self.reset_sinus(a)
        return VBeat(t, "normal")

    def pvc(self, fusion: bool = False) -> VBeat:
        rr = self.sinus_rr(self.t_v)
        variant = int(self.rng.integers(0, self.pvc_foci))
        if fusion:
            b = self.sinus()
            b.t -= 0.02
            b.kind, b.variant = "fusion", variant
            return b
        t = self.t_v + rr * self.rng.uniform(0.55, 0.72)
        self.sinus_p_until(t)  # sinus P waves go on; the next one is blocked -> compensatory pause
        return VBeat(t, "pvc", variant)

    def tachy(self, mech: str, kind: str = "normal", block: bool = False) -> VBeat:
        first = self.mech != mech
        ep = self.episode(mech)
        cl = ep["cl"] * (1 + self.rng.normal(0, 0.008 if mech == "AVRT" else 0.012))
        t = self.t_v + (max(cl * 1.15, 0.3) if first else cl)
        if block:  # AVNRT with 2:1 block below the His: the atria keep the re-entry rate
            t = self.t_v + 2 * cl
            self.add_atrium(AEvent(self.t_v + cl + ep["va"], NODAL_ORIGIN, "retro"))
        if mech == "AVNRT":
            self.add_atrium(AEvent(t + ep["va"], NODAL_ORIGIN, "retro"))
        else:
            self.add_atrium(AEvent(t + ep["va"], self.s.ap_pos, "retro"))
        self.reset_sinus(self.a_last, 1.15)
        return VBeat(t, kind)

    def vt(self, mech: str = "VT") -> VBeat:
        ep = self.episode(mech)
        first = self.ep.get("n", 0) == 0
        ep["n"] = ep.get("n", 0) + 1
        cl = ep["cl"] * (1 + self.rng.normal(0, 0.01))
        t = self.t_v + (max(cl, 0.35) if first else cl)
        self.sinus_p_until(t)  # AV dissociation: the sinus node marches through
        return VBeat(t, "vt" if mech == "VT" else "ivr", ep["variant"])

    def af(self, kind: str) -> VBeat:
        ep = self.episode("AFIB")
        if self.af_start is None:
            self.af_start = max(self.a_last, self.t_v) + 0.05
        rr = ep["mean_rr"] * self.rng.uniform(0.65, 1.4)
        t = self.t_v + max(rr, 0.26)
        self.reset_sinus(t, 1.3)
        self.a_last = t
        return VBeat(t, kind)

    def flutter(self, kind: str) -> VBeat:
        ep = self.episode("AFL")
        fl = ep["fl"]
        nf = max(ep["next_f"], self.t_v + 0.05)
        for _ in range(ep["ratio"] - 1):
            self.add_atrium(AEvent(nf, 4.6, "flutter", cycle=fl))
            nf += fl
        while nf + ep["av"] < self.t_v + 0.25:
            self.add_atrium(AEvent(nf, 4.6, "flutter", cycle=fl))
            nf += fl
        self.add_atrium(AEvent(nf, 4.6, "flutter", cycle=fl))
        ep["next_f"] = nf + fl
        self.reset_sinus(nf, 1.2)
        return VBeat(nf + ep["av"], kind)

    def eat(self, mech: str) -> VBeat:
        ep = self.episode(mech)
        a = max(self.a_last + ep["cl"] * (1 + self.rng.normal(0, 0.02)), self.t_v + 0.15)
        self.add_atrium(AEvent(a, ep["origin"], "ectopic"))
        self.reset_sinus(a, 1.2)
        return VBeat(a + self.s.pr_s * 1.1, "normal")

    def apace(self) -> VBeat:
        first = self.mech != "/A"
        ep = self.episode("/A")
        a = (max(self.a_last, self.t_v - 0.05) + ep["cl"]) if not first else max(self.t_v + 0.35, self.a_last + ep["cl"])
        self.add_atrium(AEvent(a, CS_PACE_ORIGIN, "paced", spike=True))
        self.reset_sinus(a, 1.15)
        pr = (0.09 if self.s.wpw else self.s.pr_s + 0.03 + 0.12 * max(0.0, 0.55 - ep["cl"]))
        return VBeat(a + pr, "preex" if self.s.wpw else "normal")

    def vpace(self, fusion: bool = False) -> VBeat:
        first = self.mech != "/V"
        ep = self.episode("/V")
        t = self.t_v + (max(ep["cl"], 0.4) if first else ep["cl"])
        if ep["retro"]:
            origin = NODAL_ORIGIN if self.s.mechanism == "AVNRT" else self.s.ap_pos
            self.add_atrium(AEvent(t + ep["va"], origin, "retro"))
            self.reset_sinus(self.a_last, 1.15)
        else:
            self.sinus_p_until(t)
        return VBeat(t, "pfusion" if fusion else "vpaced", spike=True)

    # ---------------------------------------------------------------- label dispatch
    def handler(self, label: Label) -> tuple:
        s, a = label
        if s == "X":
            if a in ("AVRT", "avrt"):
                return ("tachy", "AVRT", "normal" if a == "AVRT" else "rbbb")
            if a in ("AVNRT", "avnrt"):
                return ("tachy", "AVNRT", "normal" if a == "AVNRT" else "rbbb")
            if a == "AVNRT+BII":
                return ("tachy_block",)
            if a in ("VT", "IVR"):
                return ("vt", a)
            if a == "AFIB":
                return ("af", "preex" if self.s.wpw else "normal")
            if a == "AFL":
                return ("flutter", "normal")
            return ("eat", a or "X")
        if s == "/":
            return ("vpace",) if a == "/V" else ("apace",)
        if s == "f":
            return ("vpace_fusion",)
        if s == "N":
            return ("sinus", "preex" if a == "N-Prex" else "normal")
        if s == "A":
            return ("pac", "preex" if a == "A-Prex" else "normal", self.rhythm == "A")
        if s == "a":
            return ("pac", "rbbb", False)
        if s == "J":
            return ("junctional", self.rhythm != "J")
        if s == "j":
            return ("junctional_escape",)
        if s == "V":
            return ("pvc",)
        if s == "F":
            return ("pvc_fusion",)
        if s == "R":
            return ("sinus", "rbbb")
        if s == "L":
            return ("af", "lbbb") if self.mech == "AFIB" else ("sinus", "lbbb")
        if s == "b":
            return ("sinus_long_pr",)
        if s == "Q":
            return self.last_handler or ("sinus", "normal")
        return ("sinus", "normal")

    def run_handler(self, h: tuple) -> VBeat:
        name = h[0]
        if name == "tachy":
            return self.tachy(h[1], h[2])
        if name == "tachy_block":
            return self.tachy("AVNRT", "normal", block=True)
        if name == "vt":
            return self.vt(h[1])
        if name == "af":
            return self.af(h[1])
        if name == "flutter":
            return self.flutter(h[1])
        if name == "eat":
            return self.eat(h[1])
        if name == "vpace":
            return self.vpace()
        if name == "vpace_fusion":
            return self.vpace(fusion=True)
        if name == "apace":
            return self.apace()
        if name == "sinus":
            return self.sinus(h[1])
        if name == "sinus_long_pr":
            return self.sinus("normal", pr=self.rng.uniform(0.22, 0.28))
        if name == "pac":
            return self.pac(h[1], h[2])
        if name == "junctional":
            return self.junctional(h[1])
        if name == "junctional_escape":
            return self.junctional(False, escape=True)
        if name == "pvc":
            return self.pvc()
        if name == "pvc_fusion":
            return self.pvc(fusion=True)
        raise ValueError(name)

    def place(self, beat: VBeat, label: Label | None) -> None:
        beat.t = max(beat.t, self.t_v + 0.2)          # ventricular refractoriness
        beat.rr = beat.t - self.t_v
        if self.af_start is not None and self.mech != "AFIB":
            self.out.af_spans.append((self.af_start, max(self.af_start, min(self.t_v + 0.25, beat.t - 0.1))))
            self.af_start = None
        self.t_v = beat.t
        beat.label = label
        self.out.beats.append(beat)
        fid = beat.t + fiducial_offset(beat.kind, self.s.qrs_width)
        if label is not None:
            first = min([beat.t] + [e.t for e in self.out.atria[-3:] if e.t > self.last_fid])
            for k, m in enumerate(self.pending):
                self.ann(max(first - 0.02 * (len(self.pending) - k), self.last_fid + 0.002), m[0], m[1])
            self.pending.clear()
            self.ann(fid, label[0], label[1])
        self.last_fid = max(self.last_fid, fid)

    def ann(self, t: float, sym: str, aux: str) -> None:
        prev = self.out.annotations[-1][0] if self.out.annotations else -1.0
        t = max(t, prev + 0.0015)
        self.out.annotations.append((t, sym, aux))
        self.last_fid = max(self.last_fid, t)

    def quality(self) -> None:
        """A ``~`` label: open a noisy stretch (beats go on, unannotated) or close the open one."""
        if self.noise_start is None:
            t0 = self.last_fid + 0.15
            self.ann(t0, "~", "")
            self.noise_start = t0
            stop = t0 + self.rng.uniform(1.0, 4.0)
            h = self.last_handler or ("sinus", "normal")
            while self.t_v < stop - 0.3 and self.t_v < self.duration:
                self.place(self.run_handler(h), None)
        else:
            t1 = max(self.last_fid + 0.15, self.t_v + 0.15)
            self.ann(t1, "~", "")
            self.out.noise_spans.append((self.noise_start, t1))
            self.noise_start = None

    def feed(self, labels: Iterator[Label]) -> Schedule:
        stop = self.duration - 0.8
        for label in labels:
            if self.t_v >= stop or (self.out.annotations and self.out.annotations[-1][0] >= stop):
                break
            s, a = label
            if s == "+":
                self.rhythm = a.lstrip("(") or "N"
                self.pending.append(label)
                continue
            if s == "~":
                self.quality()
                continue
            if self.noise_start is not None:  # an unpaired ~: the noisy stretch ends here
                self.out.noise_spans.append((self.noise_start, self.t_v + 0.1))
                self.noise_start = None
            h = self.handler(label)
            beat = self.run_handler(h)
            if s == "Q":
                beat.artefact = True
            self.last_handler = h
            if beat.t >= stop:
                break
            self.place(beat, label)
        if self.noise_start is not None:
            self.out.noise_spans.append((self.noise_start, self.duration))
        if self.af_start is not None:
            self.out.af_spans.append((self.af_start, self.duration))
        # drop activations past the end and annotations beyond the record
        self.out.annotations = [x for x in self.out.annotations if x[0] < self.duration - 0.05]
        return self.out


def schedule_labels(labels: Iterable[Label], *, subject: Subject, rng: np.random.Generator,
                    duration: float) -> Schedule:
    """Schedule beats for ``duration`` seconds following ``labels`` (consumed lazily)."""
    return _Scheduler(subject=subject, rng=rng, duration=duration).feed(iter(labels))
