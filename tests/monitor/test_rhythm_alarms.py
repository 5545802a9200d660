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


def rules_logic(**rules: object) -> RhythmAlarmLogic:
    """The configured logic with ``[rhythm_context]`` overrides (the false-alarm rules off unless given)."""
    off = {"one_ventricular": '"off"', "refractory_s": "0.0", "vt_run_max_artefact_p": "1.0",
           "vt_run_min_rate_bpm": "0.0", "asystole_max_amp_mv": "0.0", "af_rr_confirm": "false", "vt_run_beats": "3",
           "vt_confirm_run": "0", "asystole_max_organized_p": "1.0"}
    sets = {**off, **{k: str(v).lower() if isinstance(v, bool) else f'"{v}"' if isinstance(v, str) else str(v)
                      for k, v in rules.items()}}
    rc = load_config(overrides=[f"rhythm_context.{k}={v}" for k, v in sets.items()]).rhythm_context
    return RhythmAlarmLogic.from_section(rc, classes=CLASSES, hop_s=1.25)


def test_from_section_reads_every_rule() -> None:
    lg = rules_logic(one_ventricular="hold", refractory_s=10.0, vt_run_max_artefact_p=0.3, vt_run_min_rate_bpm=130.0,
                     asystole_max_amp_mv=1.5, af_rr_confirm=True)
    assert (lg.one_ventricular, lg.refractory_calls, lg.vt_run_max_artefact_p, lg.vt_run_min_rate_bpm,
            lg.asystole_max_amp_mv, lg.af_rr_confirm) == ("hold", 8, 0.3, 130.0, 1.5, True)


def mixed(**probs: float) -> np.ndarray:
    out = np.zeros(len(CLASSES))
    for c, v in probs.items():
        out[CLASSES.index(c)] = v
    out[CLASSES.index("sinus")] = max(0.0, 1.0 - out.sum())
    return out


def test_one_ventricular_alarm_no_vt_while_vf_and_vf_escalates_vt() -> None:
    for rule, want in (("off", [("alarm_on", "vt", "high", 2)]), ("hold", []), ("escalate", [])):
        lg = rules_logic(one_ventricular=rule)
        lg.step(p("vf"), since_beat_s=0.3, readable=True)
        assert lg.step(p("vf"), since_beat_s=0.3, readable=True) == [("alarm_on", "vf", "high", 2)]
        lg.step(mixed(vt=0.5, vf=0.5), since_beat_s=0.3, readable=True)
        assert lg.step(mixed(vt=0.5, vf=0.5), since_beat_s=0.3, readable=True) == want
    for rule, want in (("hold", [("alarm_on", "vf", "high", 2)]),
                       ("escalate", [("alarm_off", "vt", "high", 0), ("alarm_on", "vf", "high", 2)])):
        lg = rules_logic(one_ventricular=rule)
        for _ in range(2):
            lg.step(p("vt"), since_beat_s=0.3, readable=True)
        assert lg.active == {"vt"}
        lg.step(mixed(vt=0.5, vf=0.5), since_beat_s=0.3, readable=True)
        assert lg.step(mixed(vt=0.5, vf=0.5), since_beat_s=0.3, readable=True) == want  # escalate: VT ends where VF begins
    both = rules_logic(one_ventricular="hold")  # both onsets complete at the same call: VF only
    for _ in range(2):
        out = both.step(mixed(vt=0.5, vf=0.5), since_beat_s=0.3, readable=True)
    assert out == [("alarm_on", "vf", "high", 2)]


def test_refractory_holds_the_same_class_back_then_raises() -> None:
    def episode(lg: RhythmAlarmLogic) -> None:
        for _ in range(2):
            lg.step(p("vt"), since_beat_s=0.3, readable=True)
        for _ in range(4):
            lg.step(p("sinus"), since_beat_s=0.3, readable=True)
        assert not lg.active

    free = rules_logic()
    episode(free)
    assert [free.step(p("vt"), since_beat_s=0.3, readable=True) for _ in range(2)][1] == [("alarm_on", "vt", "high", 2)]
    held = rules_logic(refractory_s=10.0)  # 8 calls of 1.25 s
    episode(held)
    out = [held.step(p("vt"), since_beat_s=0.3, readable=True) for _ in range(8)]
    assert out[:7] == [[]] * 7 and out[7] == [("alarm_on", "vt", "high", 2)]  # 10 s after the alarm ended
    assert held.step(p("vf"), since_beat_s=0.3, readable=True) == []  # other classes are not held
    assert held.step(p("vf"), since_beat_s=0.3, readable=True) == [("alarm_on", "vf", "high", 2)]


def fast_run(lg: RhythmAlarmLogic, probs: np.ndarray, rate: float) -> list:
    return lg.step(probs, since_beat_s=0.3, readable=True, vt_run=4, vt_run_end_s=0.3, vt_run_len_s=1.0,
                   vt_run_rate_bpm=rate)


def test_vt_fast_path_artefact_and_rate_gates() -> None:
    noisy = mixed(artefact=0.4)  # below onset_p: no check-leads alarm, but a doubtful lead
    assert fast_run(rules_logic(), noisy, 160.0) == [("alarm_on", "vt", "high", 2)]
    assert fast_run(rules_logic(vt_run_max_artefact_p=0.3), noisy, 160.0) == []
    assert fast_run(rules_logic(vt_run_max_artefact_p=0.3), mixed(artefact=0.1), 160.0) == [("alarm_on", "vt", "high", 2)]
    assert fast_run(rules_logic(), p("sinus"), 120.0) == [("alarm_on", "vt", "high", 2)]
    assert fast_run(rules_logic(vt_run_min_rate_bpm=130.0), p("sinus"), 120.0) == []
    assert fast_run(rules_logic(vt_run_min_rate_bpm=130.0), p("sinus"), 140.0) == [("alarm_on", "vt", "high", 2)]
    assert rules_logic(vt_run_min_rate_bpm=130.0).step(p("sinus"), since_beat_s=0.3, readable=True, vt_run=4,
                                                       vt_run_end_s=0.3) == [("alarm_on", "vt", "high", 1)]  # rate not known


def test_asystole_amplitude_gate() -> None:
    assert rules_logic().step(p("sinus"), since_beat_s=4.5, readable=True, amp_mv=3.0) == [
        ("alarm_on", "asystole", "high", 0)]
    gated = rules_logic(asystole_max_amp_mv=1.0)
    assert gated.step(p("sinus"), since_beat_s=4.5, readable=True, amp_mv=3.0) == []  # large deflections: missed beats
    assert gated.step(p("sinus"), since_beat_s=5.5, readable=True, amp_mv=0.4) == [("alarm_on", "asystole", "high", 0)]


def test_af_needs_the_rr_rule() -> None:
    free = rules_logic()
    assert [free.step(p("af_afl"), since_beat_s=0.5, readable=True, rr_af=False) for _ in range(6)][5] == [
        ("alarm_on", "af_afl", "medium", 6)]
    lg = rules_logic(af_rr_confirm=True)
    assert [lg.step(p("af_afl"), since_beat_s=0.5, readable=True, rr_af=False) for _ in range(8)] == [[]] * 8
    assert lg.step(p("af_afl"), since_beat_s=0.5, readable=True, rr_af=True) == [("alarm_on", "af_afl", "medium", 6)]
    unknown = rules_logic(af_rr_confirm=True)  # not computed: held back
    assert [unknown.step(p("af_afl"), since_beat_s=0.5, readable=True) for _ in range(8)] == [[]] * 8
