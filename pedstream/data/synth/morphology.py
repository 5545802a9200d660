"""12-lead surface ECG synthesis from a dipole model.

Each wave (P, QRS components, delta wave, T) is a Gaussian pulse in time carrying a 3-D cardiac
vector (x = left, y = inferior, z = anterior); a lead's voltage is the projection of that vector on
the lead's axis (:data:`LEAD_MATRIX`, Einthoven/Goldberger limb leads + Wilson precordial leads), so
the limb leads obey Einthoven's law (III = II - I) exactly. Templates are built once per subject and
beat kind and added at each beat's time by array slicing. Amplitudes in mV, times in seconds.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from pedstream.data.synth.subject import Subject, axis_vector

__all__ = ["LEAD_MATRIX", "EcgModel", "add_template", "gaussian"]

_limb = {
    "I": (1.0, 0.0, 0.0),
    "II": (0.5, math.sqrt(3) / 2, 0.0),
}
_I = np.array(_limb["I"])
_II = np.array(_limb["II"])
_III = _II - _I
# (12, 3) lead axes in the order I II III aVR aVL aVF V1..V6 (precordial gains include proximity).
LEAD_MATRIX: np.ndarray = np.stack([
    _I, _II, _III, -(_I + _II) / 2, (_I - _III) / 2, (_II + _III) / 2,
    1.2 * np.array([-0.45, 0.10, 0.85]),
    1.5 * np.array([-0.10, 0.10, 1.00]),
    1.5 * np.array([0.35, 0.15, 0.90]),
    1.4 * np.array([0.65, 0.20, 0.70]),
    1.2 * np.array([0.88, 0.15, 0.40]),
    1.0 * np.array([0.98, 0.10, 0.05]),
])


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def gaussian(t: np.ndarray, c: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - c) / sigma) ** 2)


def add_template(out: np.ndarray, i0: int, tmpl: np.ndarray, scale: float = 1.0) -> None:
    """``out[i0:i0+len(tmpl)] += scale * tmpl`` clipped to ``out``'s bounds (first axis = time)."""
    n = out.shape[0]
    L = tmpl.shape[0]
    a, b = max(i0, 0), min(i0 + L, n)
    if a >= b:
        return
    if scale == 1.0:
        out[a:b] += tmpl[a - i0:b - i0]
    else:
        out[a:b] += scale * tmpl[a - i0:b - i0]


def _origin_p_vector(origin: float) -> np.ndarray:
    """P-wave vector of an atrial rhythm starting at CS-axis position ``origin`` (see rhythm.py)."""
    pts = np.array([-0.5, 2.0, 4.0, 5.5, 6.5, 7.5])
    vecs = np.array([
        [-0.75, 0.45, 0.45],    # lateral left atrium: negative in I/aVL, positive V1
        [-0.2, -0.4, 0.3],      # posterior left atrium
        [0.3, -0.9, 0.2],       # CS ostium / low septum: negative inferior P
        [0.6, 0.2, 0.2],        # mid right atrium
        [0.5, 0.85, 0.1],       # high right atrium (sinus)
        [0.9, 0.6, -0.2],       # right atrial appendage
    ])
    o = float(np.clip(origin, pts[0], pts[-1]))
    v = np.array([np.interp(o, pts, vecs[:, k]) for k in range(3)])
    return _unit(v)


class EcgModel:
    """Per-subject 12-lead templates. ``fs`` in Hz; templates are ``(L, 12)`` float64 mV arrays."""

    def __init__(self, *, subject: Subject, fs: float, seed: int) -> None:
        self.s = subject
        self.fs = fs
        self.seed = seed
        rng = np.random.default_rng([seed, 7])
        self.p_spike_dir = _unit(np.array([-0.2, 0.5, -0.8]) + rng.normal(0, 0.3, 3))
        self.v_spike_dir = _unit(np.array([-0.3, 0.6, 0.7]) + rng.normal(0, 0.3, 3))
        self.spike_amp = float(rng.uniform(1.0, 3.5))
        self._cache: dict = {}

    # ------------------------------------------------------------------ building blocks
    def _t(self, dur: float, pre: float = 0.0) -> np.ndarray:
        return np.arange(int(round((dur + pre) * self.fs))) / self.fs - pre

    def _components(self, comps: list[tuple[float, float, float, np.ndarray]], dur: float) -> np.ndarray:
        """Sum of Gaussian pulses (center s, sigma s, amplitude mV, 3-D direction) -> (L, 12)."""
        t = self._t(dur)
        out = np.zeros((t.size, 12))
        for c, sig, amp, d in comps:
            out += np.outer(amp * gaussian(t, c, sig), LEAD_MATRIX @ _unit(d))
        return out

    def _focus(self, variant: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 11, variant])
        d1 = _unit(rng.normal(0, 1, 3))
        d2 = _unit(d1 + rng.normal(0, 0.8, 3))
        return d1, d2

    def _qrs_comps(self, kind: str, variant: int) -> tuple[list, np.ndarray, float]:
        """QRS components, T-wave direction*amplitude (3,), and QT extension (s) for a beat kind."""
        s = self.s
        w = s.qrs_width
        g = s.qrs_gain
        main = axis_vector(s.qrs_axis_deg, -0.35)
        young_t = -0.1 - 0.5 * s.rv_dominance
        t_norm = 0.32 * s.t_gain * g * axis_vector(s.qrs_axis_deg - 10, young_t)
        normal = [
            (0.012 * w, 0.0055 * w, 0.22 * g, np.array([-0.5, 0.25, 0.8])),
            (0.034 * w, 0.0105 * w, 1.45 * g, main),
            (0.046 * w, 0.0100 * w, 0.75 * g * s.rv_dominance, np.array([-0.4, 0.2, 0.9])),
            (0.058 * w, 0.0080 * w, 0.35 * g, np.array([-0.4, -0.6, -0.5])),
        ]
        if kind == "normal":
            return normal, t_norm, 0.0
        if kind == "preex":
            pos = s.ap_pos
            if pos < 3.0:
                dd = np.array([-0.6, 0.35, 0.7])       # left free wall: type A, positive V1
            elif pos < 4.8:
                dd = np.array([0.45, -0.8, 0.4])       # posteroseptal: negative inferior delta
            else:
                dd = np.array([0.85, 0.2, -0.45])      # right free wall: type B, negative V1
            shifted = [(c + 0.028, sig * 1.2, a * 0.85, d) for c, sig, a, d in normal[1:]]
            comps = [(0.022, 0.015, 0.75 * g, dd)] + shifted
            return comps, 0.6 * t_norm - 0.12 * g * _unit(dd), 0.03
        if kind == "rbbb":
            comps = normal[:3] + [(0.088 * w, 0.017, 0.85 * g, np.array([-0.75, 0.0, 0.65]))]
            return comps, 0.6 * t_norm + 0.15 * g * _unit([0.5, 0.0, -0.7]), 0.03
        if kind == "lbbb":
            comps = [(0.015, 0.008, 0.2 * g, np.array([0.6, 0.0, -0.3])),
                     (0.055, 0.02, 1.3 * g, np.array([0.85, 0.1, -0.5])),
                     (0.105, 0.02, 1.1 * g, np.array([0.8, -0.1, -0.6]))]
            return comps, -0.45 * g * _unit([0.8, 0.0, -0.55]), 0.05
        if kind == "vpaced":
            comps = [(0.05, 0.022, 1.6 * g, np.array([0.45, -0.8, -0.4])),
                     (0.105, 0.02, 0.9 * g, np.array([0.7, -0.35, -0.6]))]
            return comps, -0.45 * g * _unit([0.5, -0.7, -0.5]), 0.05
        if kind in ("pvc", "vt", "ivr"):
            d1, d2 = self._focus(variant if kind != "ivr" else 99)
            amp = 1.9 if kind == "pvc" else 1.6
            comps = [(0.05, 0.023, amp * g, d1), (0.1, 0.021, 0.9 * g, d2)]
            return comps, -0.55 * g * d1, 0.06
        if kind in ("fusion", "pfusion"):
            other = "pvc" if kind == "fusion" else "vpaced"
            c2, t2, q2 = self._qrs_comps(other, variant)
            half = [(c, sig, 0.5 * a, d) for c, sig, a, d in normal] + [(c, sig, 0.5 * a, d) for c, sig, a, d in c2]
            return half, 0.5 * (t_norm + t2), 0.5 * q2
        raise ValueError(f"unknown beat kind {kind!r}")

    # ------------------------------------------------------------------ public templates
    def qrs(self, kind: str, variant: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
        """(QRS template (L,12) starting at QRS onset, T template (Lt,12) peaking at 0.2 s, QT extension s)."""
        key = ("qrs", kind, variant)
        if key not in self._cache:
            comps, tvec, q_ext = self._qrs_comps(kind, variant)
            q = self._components(comps, 0.2)
            t = self._t(0.4)
            shape = np.where(t < 0.2, gaussian(t, 0.2, 0.055), gaussian(t, 0.2, 0.042))
            tt = np.outer(shape, LEAD_MATRIX @ tvec)
            self._cache[key] = (q, tt, q_ext)
        return self._cache[key]

    def p_wave(self, p: str, origin: float, cycle: float = 0.0) -> np.ndarray:
        """Atrial wave template (L, 12) starting at the atrial activation onset."""
        key = ("p", p, round(origin, 1), round(cycle, 3))
        if key in self._cache:
            return self._cache[key]
        a = 0.12 * self.s.p_gain
        if p == "sinus":
            comps = [(0.035, 0.016, a, np.array([0.35, 0.8, 0.4])), (0.065, 0.016, 0.8 * a, np.array([0.6, 0.5, -0.5]))]
            tmpl = self._components(comps, 0.14)
        elif p == "flutter":
            n = max(int(round(cycle * self.fs)), 2)
            u = np.arange(n) / n
            saw = np.where(u < 0.75, 0.5 - u / 0.75, -0.5 + (u - 0.75) / 0.25)
            tmpl = np.outer(1.6 * a * saw, LEAD_MATRIX @ _unit([0.05, -1.0, 0.3]))
        elif p == "none":
            tmpl = np.zeros((1, 12))
        else:
            d = _origin_p_vector(NODAL if p == "retro" else origin)
            sig = 0.013 if p == "retro" else 0.02
            tmpl = self._components([(0.04, sig, a, d)], 0.12)
        self._cache[key] = tmpl
        return tmpl

    def spike(self, chamber: str) -> np.ndarray:
        """Pacing-stimulus artefact (L, 12): a 1-2 sample spike and its amplifier recovery tail."""
        key = ("spike", chamber)
        if key not in self._cache:
            d = self.p_spike_dir if chamber == "A" else self.v_spike_dir
            n = int(round(0.02 * self.fs))
            shape = np.zeros(n)
            shape[0], shape[1] = 1.0, 0.45
            shape[2:] = -0.12 * np.exp(-np.arange(n - 2) / (0.004 * self.fs))
            self._cache[key] = np.outer(self.spike_amp * shape, LEAD_MATRIX @ d)
        return self._cache[key]


NODAL = 4.3


def qt_peak(rr: float, q_ext: float) -> float:
    """Seconds from QRS onset to the T-wave peak (Bazett-like QT = 0.39*sqrt(RR))."""
    qt = min(max(0.39 * math.sqrt(max(rr, 0.2)), 0.24), 0.46) + q_ext
    return qt - 0.075


@lru_cache(maxsize=4)
def _af_filter(fs: float):
    from scipy.signal import butter

    return butter(2, [4.0, 9.0], btype="bandpass", fs=fs, output="sos")


def render_ecg(schedule, model: EcgModel, n: int, rng: np.random.Generator) -> np.ndarray:
    """Clean 12-lead ECG (n, 12) mV from a :class:`~pedstream.data.synth.rhythm.Schedule`."""
    from scipy.signal import sosfilt

    fs = model.fs
    out = np.zeros((n, 12))
    for ev in schedule.atria:
        i0 = int(round(ev.t * fs))
        add_template(out, i0, model.p_wave(ev.p, ev.origin, ev.cycle))
        if ev.spike:
            add_template(out, i0 - 1, model.spike("A"))
    for b in schedule.beats:
        q, tt, q_ext = model.qrs(b.kind, b.variant)
        i0 = int(round(b.t * fs))
        add_template(out, i0, q)
        tp = qt_peak(b.rr, q_ext)
        # faster rates shrink the T wave a little
        add_template(out, i0 + int(round((tp - 0.2) * fs)), tt, scale=float(np.clip(b.rr / 0.6, 0.6, 1.15)))
        if b.spike:
            add_template(out, i0 - 2, model.spike("V"))
    for t0, t1 in schedule.af_spans:
        a, b_ = int(t0 * fs), min(int(t1 * fs), n)
        if b_ - a < 10:
            continue
        src = sosfilt(_af_filter(fs), rng.normal(0, 1.0, (b_ - a + int(fs), 3)), axis=0)[int(fs):]
        src *= 0.09 * model.s.p_gain / (src.std() + 1e-9)
        ramp = np.minimum(1.0, np.minimum(np.arange(b_ - a), np.arange(b_ - a)[::-1]) / (0.2 * fs))
        out[a:b_] += (src * ramp[:, None]) @ LEAD_MATRIX.T
    return out
