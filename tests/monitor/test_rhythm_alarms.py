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


def run_logic(beats: int) -> RhythmAlarmLogic:
    rc = load_config(overrides=[f"rhythm_context.vt_run_beats={beats}"]).rhythm_context
    return RhythmAlarmLogic(classes=CLASSES, onset_p=rc.onset_p, offset_p=rc.offset_p, onset_calls=rc.onset_calls,
                            offset_calls=rc.offset_calls, priorities=rc.priorities, asystole_s=rc.asystole_s,
                            vt_run_beats=rc.vt_run_beats)


def test_vt_fast_path_from_a_beat_run_at_once() -> None:
    lg = run_logic(3)
    assert lg.step(p("sinus"), since_beat_s=0.3, readable=True, vt_run=2, vt_run_end_s=0.5) == []
    assert lg.step(p("sinus"), since_beat_s=0.3, readable=True, vt_run=3, vt_run_end_s=0.5,
                   vt_run_len_s=1.2) == [("alarm_on", "vt", "high", 2)]  # evidence from the run's first beat, 1.7 s back
    # the run stays in the lead but is no longer recent: it counts as p(vt) = 0, the alarm ends after offset_calls
    out = [lg.step(p("sinus"), since_beat_s=0.3, readable=True, vt_run=3, vt_run_end_s=5.0) for _ in range(4)]
    assert out[3] == [("alarm_off", "vt", "high", 0)]
    off = run_logic(0)  # vt_run_beats = 0: the fast path is off, the model's two calls are needed
    assert off.step(p("sinus"), since_beat_s=0.3, readable=True, vt_run=9, vt_run_end_s=0.1) == []
    unreadable = run_logic(3)
    assert unreadable.step(p("sinus"), since_beat_s=0.3, readable=False, vt_run=5, vt_run_end_s=0.1) == []
    noisy = run_logic(3)
    for _ in range(3):
        noisy.step(p("artefact"), since_beat_s=0.5, readable=True)
    assert noisy.step(p("artefact"), since_beat_s=0.5, readable=True, vt_run=5, vt_run_end_s=0.1) == []
