"""Simulated subjects: the subject-table facts and the per-subject physiology knobs.

A :class:`Subject` carries what the real Leipzig subject table holds (id, file name, sex, age,
diagnosis, accessory-pathway location) plus the hidden parameters that make each simulated child
different (QRS axis, amplitudes, QRS width, catheter positions, electrogram amplitudes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Subject", "random_subject", "DIAGNOSES", "AP_LOCATIONS", "ap_position", "record_name"]

# Diagnoses of the 29 real children (counts: AVNRT 13, AVRT 9, AVRT-WPW 6, AVRT-PJRT 1).
DIAGNOSES: tuple[str, ...] = ("AVRT", "AVNRT", "AVRT-WPW", "AVRT-PJRT")
# Accessory-pathway locations that occur in the real subject table.
AP_LOCATIONS: tuple[str, ...] = (
    "left lateral", "left anterior", "left anterolateral", "left posterolateral", "left posterior",
    "left posteroseptal", "right posteroseptal", "right posterior", "right lateral", "right parahisian",
)
# Position of an atrial/ventricular site along the coronary sinus, in electrode-pair units:
# 0 = CS12 (distal, lateral mitral annulus) ... 4 = CS90 (proximal, CS ostium). Sites beyond 4 lie
# in the septum / right atrium and reach the CS through the ostium (concentric activation).
_AP_POS = {
    "left lateral": 0.3, "left anterior": -0.4, "left anterolateral": 0.0, "left posterolateral": 1.2,
    "left posterior": 2.0, "left posteroseptal": 3.5, "right posteroseptal": 4.6, "right posterior": 5.2,
    "right lateral": 6.5, "right parahisian": 5.0,
}


def ap_position(location: str) -> float:
    """CS position (electrode-pair units, 0 = CS12 ... 4 = CS90, >4 right side) of a pathway location."""
    return _AP_POS.get(location.strip().lower(), 4.6)


def record_name(index: int) -> str:
    """Real Leipzig naming: x001..x009, then x0010, x0011... (index is 0-based)."""
    k = index + 1
    return f"x{k:03d}" if k < 10 else f"x{k:04d}"


@dataclass
class Subject:
    """One simulated child. Times in seconds, amplitudes in mV, angles in degrees."""

    subject_id: str
    file_name: str
    gender: str
    age: float
    diagnosis: str
    ap_location: str = ""
    # hidden physiology (drawn by random_subject)
    qrs_axis_deg: float = 60.0
    qrs_gain: float = 1.0          # overall QRS amplitude factor
    qrs_width: float = 1.0         # QRS duration factor (1.0 ~ 70 ms)
    rv_dominance: float = 0.3      # 0..1, young children have larger anterior (V1) forces
    p_gain: float = 1.0
    t_gain: float = 1.0
    pr_s: float = 0.12             # sinus PR interval
    sinus_hr: float = 85.0         # resting sinus rate (bpm)
    hrv: float = 0.05              # relative RR variability
    resp_hz: float = 0.3
    extras: dict = field(default_factory=dict)

    @property
    def wpw(self) -> bool:
        return self.diagnosis == "AVRT-WPW"

    @property
    def pjrt(self) -> bool:
        return self.diagnosis == "AVRT-PJRT"

    @property
    def mechanism(self) -> str:
        """The re-entry the subject's tachycardia uses: ``AVRT`` or ``AVNRT``."""
        return "AVNRT" if self.diagnosis == "AVNRT" else "AVRT"

    @property
    def ap_pos(self) -> float:
        return ap_position(self.ap_location) if self.ap_location else 4.6

    def table_row(self, ecg_duration_s: float) -> dict[str, str]:
        """A row of the subject table, real column names (``ap_loacation`` typo included)."""
        ms = int(round(ecg_duration_s * 1000))
        h, rem = divmod(ms, 3_600_000)
        m, rem = divmod(rem, 60_000)
        s = rem / 1000
        dur = f"{h}:{m}:{s:g}" if s != int(s) else f"{h}:{m}:{int(s)}"
        age = f"{self.age:g}"
        return {"subject_id": self.subject_id, "file_name": self.file_name, "gender": self.gender,
                "age": age, "diagnosis": self.diagnosis, "ap_loacation": self.ap_location,
                "ecg_duration": dur}


def resting_rate(age: float) -> float:
    """Mean resting sinus rate (bpm) by age: ~95 bpm at 5 y falling to ~70 bpm at 18 y."""
    a = min(max(age, 5.0), 18.0)
    return 95.0 - (a - 5.0) * 25.0 / 13.0


def random_subject(rng: np.random.Generator, *, index: int, age: float | None = None,
                   gender: str | None = None, diagnosis: str | None = None,
                   ap_location: str | None = None) -> Subject:
    """Draw a child; fixed fields (from a real table) override the draws. ``index`` is 0-based."""
    name = record_name(index)
    sid = name[1:]
    if age is None:
        age = round(float(rng.uniform(5.0, 18.0)), 1)
    if gender is None:
        gender = "M" if rng.random() < 0.5 else "F"
    if diagnosis is None:
        diagnosis = str(rng.choice(DIAGNOSES, p=[9 / 29, 13 / 29, 6 / 29, 1 / 29]))
    if ap_location is None:
        if diagnosis == "AVNRT":
            ap_location = ""
        elif diagnosis == "AVRT-PJRT":
            ap_location = "right posteroseptal"
        else:
            ap_location = str(rng.choice(AP_LOCATIONS))
    young = 1.0 - (min(max(age, 5.0), 18.0) - 5.0) / 13.0   # 1 at 5 y, 0 at 18 y
    return Subject(
        subject_id=sid, file_name=name, gender=gender, age=float(age), diagnosis=diagnosis,
        ap_location=ap_location,
        qrs_axis_deg=float(rng.normal(55.0 + 25.0 * young, 18.0)),
        qrs_gain=float(rng.uniform(0.8, 1.5) * (1.0 + 0.25 * young)),
        qrs_width=float(rng.uniform(0.85, 1.15) * (1.0 - 0.1 * young)),
        rv_dominance=float(np.clip(0.2 + 0.5 * young + rng.normal(0, 0.1), 0.0, 1.0)),
        p_gain=float(rng.uniform(0.7, 1.3)),
        t_gain=float(rng.uniform(0.7, 1.3)),
        pr_s=float(rng.uniform(0.10, 0.15) + 0.02 * (1 - young)),
        sinus_hr=float(resting_rate(age) * rng.uniform(0.92, 1.1)),
        hrv=float(rng.uniform(0.03, 0.08) * (1.0 + 0.5 * young)),
        resp_hz=float(rng.uniform(0.22, 0.4) * (1.0 + 0.3 * young)),
    )


def axis_vector(deg: float, z: float) -> np.ndarray:
    """Unit 3-D vector (x left, y inferior, z anterior) with frontal angle ``deg`` and anterior part ``z``."""
    r = math.radians(deg)
    v = np.array([math.cos(r), math.sin(r), z])
    return v / np.linalg.norm(v)
