"""Bipolar intracardiac electrograms (ABL12, RVA12, CS12..CS90) and the ABL_uni / ART extras.

A bipolar electrogram is a sharp bi- or multiphasic deflection at the *local activation time* of the
tissue between its two electrodes. The coronary-sinus catheter lies along the mitral annulus: CS12 is
distal (lateral left atrium), CS90 proximal (CS ostium, septum). So the order in which CS12..CS90
see an atrial activation says where it started: proximal-to-distal ("concentric") for sinus rhythm,
AV-nodal re-entry and retrograde nodal conduction; distal-first ("eccentric") for retrograde
conduction over a left lateral accessory pathway. The RV apex catheter (RVA12) sees a large local
ventricular deflection; the ablation catheter (ABL12) sits at the pathway (AVRT) or the slow-pathway
region (AVNRT). Amplitudes in mV, times in seconds.
"""

from __future__ import annotations

import numpy as np

from pedstream.data.synth.morphology import add_template, gaussian
from pedstream.data.synth.rhythm import Schedule
from pedstream.data.synth.subject import Subject

__all__ = ["IEGM_RENDERED", "IegmModel", "render_iegm", "CS_POSITION"]

IEGM_RENDERED = ("ABL12", "RVA12", "CS12", "CS34", "CS56", "CS78", "CS90")
CS_POSITION = {"CS12": 0.0, "CS34": 1.0, "CS56": 2.0, "CS78": 3.0, "CS90": 4.0}
_PRE = 0.012  # template time before the local activation (s)


class IegmModel:
    """Per-subject catheter geometry, amplitudes and deflection shapes."""

    def __init__(self, *, subject: Subject, fs: float, seed: int) -> None:
        self.s = subject
        self.fs = fs
        self.seed = seed
        rng = np.random.default_rng([seed, 13])
        self.rng = rng
        self.cv = float(rng.uniform(0.007, 0.011))        # s per CS electrode pair (atrial)
        abl = subject.ap_pos if subject.mechanism == "AVRT" else 4.5
        self.pos = {**CS_POSITION, "ABL12": float(abl + rng.normal(0, 0.15))}
        self.a_amp = {c: float(rng.uniform(0.6, 2.5)) for c in CS_POSITION}
        # CS pairs lie on the atrial side of the AV groove: local A is larger than local V
        self.v_amp = {c: float(rng.uniform(0.12, 0.3) + 0.15 * (4 - CS_POSITION[c]) / 4) for c in CS_POSITION}
        self.a_amp["ABL12"] = float(rng.uniform(0.5, 2.5))
        self.v_amp["ABL12"] = float(rng.uniform(0.5, 3.0))
        self.a_amp["RVA12"] = float(rng.uniform(0.03, 0.12))   # far-field atrium
        big = rng.random() < 0.2
        self.v_amp["RVA12"] = float(rng.uniform(10.5, 14.0) if big else rng.uniform(3.0, 9.0))
        self.a_tmpl = {c: self._deflection(rng, int(rng.integers(1, 4)), (0.0022, 0.0045), 0.012)
                       for c in IEGM_RENDERED}
        self.v_tmpl = {c: self._deflection(rng, int(rng.integers(1, 3)), (0.003, 0.006), 0.01)
                       for c in IEGM_RENDERED}
        self.af_tmpl = {c: [self._deflection(rng, int(rng.integers(2, 5)), (0.002, 0.004), 0.025)
                            for _ in range(4)] for c in IEGM_RENDERED}
        self.ff_v = self._farfield()
        self.spike_sign = {c: float(rng.choice([-1.0, 1.0])) for c in IEGM_RENDERED}
        self.vt_focus = {}

    def _deflection(self, rng: np.random.Generator, k: int, sig: tuple[float, float], spread: float) -> np.ndarray:
        """A bipolar deflection: sum of ``k`` Gaussian-derivative pulses, peak |amplitude| 1."""
        t = np.arange(int(round((_PRE + 0.05) * self.fs))) / self.fs - _PRE
        y = np.zeros_like(t)
        for j in range(k):
            c = rng.uniform(0, spread) if j else 0.0
            s = rng.uniform(*sig)
            y += rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0) * -(t - c) / s * gaussian(t, c, s)
        return y / (np.abs(y).max() + 1e-12)

    def _farfield(self) -> np.ndarray:
        t = np.arange(int(round(0.12 * self.fs))) / self.fs
        y = -(t - 0.04) / 0.012 * gaussian(t, 0.04, 0.012)
        return 0.15 * y / np.abs(y).max()

    # ---------------------------------------------------------------- activation timing
    def atrial_delay(self, ch: str, p: str, origin: float) -> float:
        """Seconds from an atrial event's onset to local activation at catheter ``ch``."""
        if ch == "RVA12":
            return 0.05
        base = {"sinus": 0.02, "retro": 0.0, "ectopic": 0.005, "paced": 0.012, "flutter": 0.0}.get(p, 0.0)
        cv = self.cv * (1.8 if p == "flutter" else 1.0)
        return base + abs(self.pos[ch] - origin) * cv

    def ventricular_delay(self, ch: str, kind: str, variant: int) -> float:
        """Seconds from QRS onset to local ventricular activation at catheter ``ch``."""
        if kind in ("fusion", "pfusion"):
            other = "pvc" if kind == "fusion" else "vpaced"
            return min(self.ventricular_delay(ch, "normal", 0), self.ventricular_delay(ch, other, variant))
        ap = self.s.ap_pos
        if ch == "RVA12":
            return {"normal": 0.015, "rbbb": 0.05, "lbbb": 0.012, "vpaced": 0.003,
                    "preex": 0.04 if ap < 4.5 else 0.012}.get(kind, self._focus(kind, variant)[1])
        p = self.pos[ch]
        if kind == "normal":
            return 0.03 + (4.0 - min(p, 4.0)) * 0.005
        if kind == "rbbb":
            return 0.03 + (4.0 - min(p, 4.0)) * 0.005
        if kind == "lbbb":
            return 0.06 + (4.0 - min(p, 4.0)) * 0.012
        if kind == "preex":
            return -0.004 + abs(p - ap) * 0.011
        if kind == "vpaced":
            return 0.06 + (4.0 - min(p, 4.0)) * 0.01
        f, _ = self._focus(kind, variant)
        return 0.008 + abs(p - f) * 0.012

    def _focus(self, kind: str, variant: int) -> tuple[float, float]:
        """(CS-axis position of a ventricular ectopic focus, RVA delay)."""
        key = (kind, variant)
        if key not in self.vt_focus:
            r = np.random.default_rng([self.seed, 17, variant, len(kind)])
            if r.random() < 0.5:   # left ventricular focus
                self.vt_focus[key] = (float(r.uniform(-0.5, 4.0)), float(r.uniform(0.04, 0.07)))
            else:                  # right ventricular focus
                self.vt_focus[key] = (float(r.uniform(5.0, 7.0)), float(r.uniform(0.005, 0.02)))
        return self.vt_focus[key]

    def spike(self, ch: str, chamber: str) -> np.ndarray:
        """Pacing artefact on ``ch`` (the pacing pair itself saturates the amplifier)."""
        if chamber == "A":
            amp = {"CS90": 25.0, "CS78": 6.0, "CS56": 2.5, "CS34": 1.2, "CS12": 0.8, "ABL12": 1.0, "RVA12": 0.6}[ch]
        else:
            amp = 30.0 if ch == "RVA12" else (2.0 if ch == "ABL12" else 1.0)
        n = int(round(0.03 * self.fs))
        y = np.zeros(n)
        y[0], y[1] = 1.0, 0.55
        y[2:] = -0.2 * np.exp(-np.arange(n - 2) / (0.005 * self.fs))
        return self.spike_sign[ch] * amp * y


def _art_pulse(fs: float) -> np.ndarray:
    """Arterial pressure pulse (mmHg above diastolic) starting at QRS onset: upstroke, notch, runoff."""
    t = np.arange(int(round(0.9 * fs))) / fs
    up = 1.0 / (1.0 + np.exp(-(t - 0.14) / 0.012))
    decay = np.exp(-np.clip(t - 0.2, 0, None) / 0.28)
    notch = -0.12 * gaussian(t, 0.36, 0.012) + 0.08 * gaussian(t, 0.40, 0.02)
    return (up * decay + notch * up) * 40.0


def render_iegm(schedule: Schedule, model: IegmModel, n: int, *, ecg: np.ndarray,
                rng: np.random.Generator, extras: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Clean IEGM channels ``{name: (n,) mV}`` for the 7 canonical catheters plus requested ``extras``."""
    fs = model.fs
    pre = int(round(_PRE * fs))
    out = {c: np.zeros(n) for c in IEGM_RENDERED}
    need_uni = "ABL_uni" in extras
    uni = np.zeros(n) if need_uni else None
    uni_a = -gaussian(np.arange(int(0.05 * fs)) / fs - 0.015, 0.015, 0.005)
    uni_v = -gaussian(np.arange(int(0.07 * fs)) / fs - 0.02, 0.02, 0.008)
    for ev in schedule.atria:
        if ev.p == "none":
            continue
        for c in IEGM_RENDERED:
            d = model.atrial_delay(c, ev.p, ev.origin)
            i0 = int(round((ev.t + d) * fs)) - pre
            if c == "RVA12":
                add_template(out[c], i0, model.ff_v, model.a_amp[c] / 0.15)
            else:
                add_template(out[c], i0, model.a_tmpl[c], model.a_amp[c])
            if ev.spike:
                add_template(out[c], int(round(ev.t * fs)), model.spike(c, "A"))
        if need_uni:
            d = model.atrial_delay("ABL12", ev.p, ev.origin)
            add_template(uni, int(round((ev.t + d) * fs)) - int(0.015 * fs), uni_a, 2.0 * model.a_amp["ABL12"])
    for b in schedule.beats:
        for c in IEGM_RENDERED:
            d = model.ventricular_delay(c, b.kind, b.variant)
            i0 = int(round((b.t + d) * fs)) - pre
            add_template(out[c], i0, model.v_tmpl[c], model.v_amp[c])
            if c != "RVA12":  # far-field ventricular signal on the atrial catheters
                add_template(out[c], int(round(b.t * fs)), model.ff_v)
            if b.spike:
                add_template(out[c], int(round(b.t * fs)) - 2, model.spike(c, "V"))
        if need_uni:
            d = model.ventricular_delay("ABL12", b.kind, b.variant)
            add_template(uni, int(round((b.t + d) * fs)) - int(0.02 * fs), uni_v, 2.0 * model.v_amp["ABL12"])
    # atrial fibrillation: each atrial catheter sees its own chaotic, fractionated activations
    for t0, t1 in schedule.af_spans:
        for c in IEGM_RENDERED:
            if c == "RVA12":
                continue
            t = t0 + rng.uniform(0, 0.1)
            while t < t1:
                k = int(rng.integers(0, 4))
                add_template(out[c], int(round(t * fs)) - pre, model.af_tmpl[c][k],
                             model.a_amp[c] * rng.uniform(0.3, 1.0))
                t += float(np.clip(rng.normal(0.15, 0.03), 0.09, 0.22))  # 270-670 activations/min
    if need_uni:
        out["ABL_uni"] = uni + 0.8 * ecg[:, 1]  # far field: the unipolar electrode sees the whole heart
    if "ART" in extras:
        art = np.full(n, 55.0)
        pulse = _art_pulse(fs)
        for b in schedule.beats:
            filling = float(np.clip((b.rr - 0.2) / 0.5, 0.25, 1.1))  # short diastole, small stroke volume
            add_template(art, int(round(b.t * fs)), pulse, filling)
        tt = np.arange(n) / fs
        art += 3.0 * np.sin(2 * np.pi * model.s.resp_hz * tt)
        out["ART"] = 0.05 * art  # pressure monitor's analogue output: 0.05 mV per mmHg
    return out
