"""The rhythm layer's confirmation rules: the model's VT onset confirmed by a beat run, AF confirmed by the RR rule
only at low model confidence (``[rhythm_context]`` vt_confirm_run / vt_confirm_max_p / af_rr_confirm_max_p)."""

from __future__ import annotations

import numpy as np

from pedstream.config import load_config
from pedstream.monitor.rhythm_alarms import RhythmAlarmLogic

CLASSES = ["sinus", "af_afl", "svt", "vt", "vf", "asystole", "other", "artefact"]
OFF = {"one_ventricular": '"off"', "refractory_s": "0.0", "vt_run_max_artefact_p": "1.0", "vt_run_min_rate_bpm": "0.0",
       "asystole_max_amp_mv": "0.0", "af_rr_confirm": "false", "af_rr_confirm_max_p": "1.0", "vt_confirm_run": "0",
       "vt_confirm_max_p": "1.0", "asystole_max_organized_p": "1.0", "vt_run_beats": "3"}


def logic(**rules: object) -> RhythmAlarmLogic:
    sets = {**OFF, **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in rules.items()}}
    rc = load_config(overrides=[f"rhythm_context.{k}={v}" for k, v in sets.items()]).rhythm_context
    return RhythmAlarmLogic.from_section(rc, classes=CLASSES, hop_s=1.25)


def probs(label: str, v: float) -> np.ndarray:
    out = np.full(len(CLASSES), (1 - v) / (len(CLASSES) - 1))
    out[CLASSES.index(label)] = v
    return out


def vt_calls(lg: RhythmAlarmLogic, v: float, runs: list[float]) -> list:
    """One call per run length (no fast path: the run is older than the fast path looks)."""
    return [lg.step(probs("vt", v), since_beat_s=0.3, readable=True, vt_run=r, vt_run_end_s=6.0, vt_run_len_s=1.0,
                    vt_run_rate_bpm=160.0) for r in runs]


def test_from_section_reads_the_confirmation_rules() -> None:
    lg = logic(vt_confirm_run=3, vt_confirm_max_p=0.8, af_rr_confirm=True, af_rr_confirm_max_p=0.9)
    assert (lg.vt_confirm_run, lg.vt_confirm_max_p, lg.af_rr_confirm, lg.af_rr_confirm_max_p) == (3, 0.8, True, 0.9)
    default = load_config().rhythm_context
    assert (default.vt_confirm_run, default.vt_confirm_max_p, default.af_rr_confirm_max_p,
            default.asystole_max_organized_p) == (3, 0.8, 1.0, 0.5)  # the shipped setting (alarm_rules.md)


def test_model_vt_without_a_beat_run_is_held_then_raised_by_the_run() -> None:
    assert vt_calls(logic(), 0.7, [0, 0])[-1] == [("alarm_on", "vt", "high", 2)]  # rule off: the model alone
    lg = logic(vt_confirm_run=3)
    assert vt_calls(lg, 0.7, [0, 2, 2, 0]) == [[], [], [], []]  # ectopy: couplets, no run of 3
    assert vt_calls(lg, 0.7, [3]) == [[("alarm_on", "vt", "high", 2)]]  # the run confirms the held onset


def test_confident_model_vt_needs_no_run() -> None:
    assert vt_calls(logic(vt_confirm_run=3, vt_confirm_max_p=0.8), 0.7, [0, 0, 0]) == [[], [], []]
    lg = logic(vt_confirm_run=3, vt_confirm_max_p=0.8)  # sustained VT: its beats are the median QRS, no run
    assert vt_calls(lg, 0.9, [0, 0]) == [[], [("alarm_on", "vt", "high", 2)]]


def test_fast_path_is_not_asked_for_confirmation() -> None:
    lg = logic(vt_confirm_run=5)
    out = lg.step(probs("sinus", 0.9), since_beat_s=0.3, readable=True, vt_run=3, vt_run_end_s=0.5, vt_run_len_s=1.0,
                  vt_run_rate_bpm=180.0)
    assert out == [("alarm_on", "vt", "high", 2)]


def test_af_needs_the_rr_rule_only_at_low_confidence() -> None:
    def calls(lg: RhythmAlarmLogic, v: float, rr_af: bool, n: int = 6) -> list:
        return [lg.step(probs("af_afl", v), since_beat_s=0.3, readable=True, rr_af=rr_af) for _ in range(n)]

    assert calls(logic(af_rr_confirm=True), 0.95, False) == [[]] * 6  # always asked: held back
    lg = logic(af_rr_confirm=True, af_rr_confirm_max_p=0.9)
    assert calls(lg, 0.95, False)[-1] == [("alarm_on", "af_afl", "medium", 6)]  # confident: no RR confirmation
    low = logic(af_rr_confirm=True, af_rr_confirm_max_p=0.9)
    assert calls(low, 0.7, False) == [[]] * 6
    assert calls(low, 0.7, True, 1) == [[("alarm_on", "af_afl", "medium", 6)]]


def test_asystole_from_the_beats_only_when_the_model_reads_no_beats() -> None:
    beating = probs("sinus", 0.95)  # QRS in the lead the detector missed
    assert logic().step(beating, since_beat_s=4.5, readable=True) == [("alarm_on", "asystole", "high", 0)]
    lg = logic(asystole_max_organized_p=0.5)
    assert lg.step(beating, since_beat_s=4.5, readable=True) == []
    flat = probs("asystole", 0.6)  # the model no longer reads beats: on at once
    assert lg.step(flat, since_beat_s=5.7, readable=True) == [("alarm_on", "asystole", "high", 0)]
    assert logic(asystole_max_organized_p=0.5).step(probs("vt", 0.9), since_beat_s=4.5, readable=True) == [
        ("alarm_on", "asystole", "high", 0)]  # ventricular: not organized, the beat stream decides
