"""The rhythm layer's alarm logic: hysteresis per class, asystole from the beat stream, artefact holds back
rhythm alarms (check leads)."""

from __future__ import annotations

import numpy as np

from pedstream.config import load_config
from pedstream.monitor.rhythm_alarms import RhythmAlarmLogic

CLASSES = ["sinus", "af_afl", "svt", "vt", "vf", "asystole", "other", "artefact"]


def logic() -> RhythmAlarmLogic:
    rc = load_config().rhythm_context
    return RhythmAlarmLogic(classes=CLASSES, onset_p=rc.onset_p, offset_p=rc.offset_p, onset_calls=rc.onset_calls,
                            offset_calls=rc.offset_calls, priorities=rc.priorities, asystole_s=rc.asystole_s)


def p(label: str, v: float = 0.9) -> np.ndarray:
    out = np.full(len(CLASSES), (1 - v) / (len(CLASSES) - 1))
    out[CLASSES.index(label)] = v
    return out


def test_vt_on_after_two_calls_off_after_four() -> None:
    lg = logic()
    assert lg.step(p("vt"), since_beat_s=0.3, readable=True) == []
    assert lg.step(p("vt"), since_beat_s=0.3, readable=True) == [("alarm_on", "vt", "high", 2)]
    out = [lg.step(p("sinus"), since_beat_s=0.3, readable=True) for _ in range(4)]
    assert out[:3] == [[], [], []] and out[3] == [("alarm_off", "vt", "high", 0)]


def test_asystole_from_beats_at_once_and_not_on_flat_or_artefact() -> None:
    lg = logic()
    assert lg.step(p("sinus"), since_beat_s=4.5, readable=True) == [("alarm_on", "asystole", "high", 0)]
    lg2 = logic()
    assert lg2.step(p("sinus"), since_beat_s=9.0, readable=False) == []  # flat line: lead off, not asystole
    lg3 = logic()
    for _ in range(3):
        lg3.step(p("artefact"), since_beat_s=0.5, readable=True)
    assert "artefact" in lg3.active
    assert lg3.step(p("artefact"), since_beat_s=9.0, readable=True) == []  # check leads holds it back
    assert [lg3.step(p("vt"), since_beat_s=0.5, readable=True) for _ in range(2)] == [[], []]


def test_sinus_and_other_never_alarm() -> None:
    lg = logic()
    for lab in ("sinus", "other") * 10:
        assert lg.step(p(lab), since_beat_s=0.5, readable=True) == []
    lg.step(p("vf"), since_beat_s=0.5, readable=True)
    lg.step(p("vf"), since_beat_s=0.5, readable=True)
    assert lg.reset() == [("alarm_off", "vf", "high", 0)] and not lg.active
