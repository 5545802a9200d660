"""EC57-style episode matching on hand-made reference and alarm lists (pedstream.score.episodes)."""

from __future__ import annotations

import pytest

from pedstream.score.episodes import AlarmEpisode, ClassScore, Span, alarm_episodes, score_record, summarize

# Record of 600 s: sinus, a 10 s VT, sinus, a 3 s VT, sinus, 100 s AF, 100 s of an excluded rhythm, sinus.
REF = [Span(0, 100, "sinus"), Span(100, 110, "vt"), Span(110, 200, "sinus"), Span(200, 203, "vt"),
       Span(203, 300, "sinus"), Span(300, 400, "af_afl"), Span(400, 500, None), Span(500, 600, "sinus")]
ALARMS = [
    AlarmEpisode("vt", start=104, raised=106, end=112),  # detects the 10 s VT 6 s after its onset
    AlarmEpisode("vt", start=150, raised=152, end=155),  # in sinus: a false alarm
    AlarmEpisode("af_afl", start=290, raised=295, end=410),  # on before the AF began: time to alarm 0
    AlarmEpisode("af_afl", start=420, raised=425, end=480),  # inside the excluded rhythm: not scored
]


@pytest.fixture(scope="module")
def scored():
    return score_record(REF, ALARMS, ["vt", "af_afl", "avrt"], start_s=0.0, end_s=600.0)


def test_episode_counts_true_false_and_missed(scored) -> None:
    vt = scored.classes["vt"]
    assert (vt.episodes, vt.detected, vt.missed) == (2, 1, 1)  # the 3 s run at 200 s is missed
    assert (vt.alarms, vt.true_alarms, vt.false_alarms, vt.unscored_alarms) == (2, 1, 1, 0)
    assert vt.episode_se == pytest.approx(0.5) and vt.episode_ppv == pytest.approx(0.5)
    af = scored.classes["af_afl"]
    assert (af.episodes, af.detected, af.alarms, af.false_alarms, af.unscored_alarms) == (1, 1, 1, 0, 1)
    assert af.episode_se == 1.0 and af.episode_ppv == 1.0


def test_time_to_alarm_from_onset(scored) -> None:
    assert scored.classes["vt"].delays == [pytest.approx(6.0)]
    assert scored.classes["af_afl"].delays == [0.0]  # already on when the episode began
    d = scored.classes["vt"].as_dict()
    assert d["time_to_alarm_s_median"] == pytest.approx(6.0) and d["time_to_alarm_s_p95"] == pytest.approx(6.0)


def test_duration_statistics_from_overlaps(scored) -> None:
    vt = scored.classes["vt"]
    # overlap 104..110 = 6 s of 13 s of VT; alarms 8 s + 5 s
    assert vt.overlap_s == pytest.approx(6.0) and vt.ref_s == pytest.approx(13.0)
    assert vt.duration_se == pytest.approx(6 / 13) and vt.duration_ppv == pytest.approx(6 / 13)
    af = scored.classes["af_afl"]
    # 290..410 overlaps AF for 100 s; its 10 s in the excluded rhythm do not count against it
    assert af.duration_se == pytest.approx(1.0) and af.duration_ppv == pytest.approx(100 / 110)


def test_false_alarms_per_monitored_hour(scored) -> None:
    assert scored.monitored_s == pytest.approx(500.0)  # the excluded 100 s are not monitored time
    out = summarize(scored)
    assert out["false_alarms"] == 1
    assert out["false_alarms_per_hour"] == pytest.approx(1 / (500 / 3600), rel=1e-3)
    assert out["classes"]["vt"]["false_alarms_per_hour"] == pytest.approx(7.2, rel=1e-3)


def test_a_class_without_episodes_or_alarms_has_no_ratios(scored) -> None:
    avrt = scored.classes["avrt"].as_dict()
    assert avrt["episodes"] == 0 and avrt["episode_se"] is None and avrt["episode_ppv"] is None
    assert avrt["duration_se"] is None and avrt["time_to_alarm_s_median"] is None


def test_records_add_up_as_gross_statistics(scored) -> None:
    other = score_record([Span(0, 50, "vt"), Span(50, 100, "sinus")], [AlarmEpisode("vt", 1, 3, 60)], ["vt"],
                         start_s=0.0, end_s=100.0)
    tot = scored + other
    vt = tot.classes["vt"]
    assert (vt.episodes, vt.detected, vt.alarms, vt.false_alarms) == (3, 2, 3, 1)
    assert vt.delays == [pytest.approx(6.0), pytest.approx(3.0)]
    assert tot.monitored_s == pytest.approx(600.0)
    assert "af_afl" in tot.classes and tot.classes["af_afl"].episodes == 1


def test_reference_is_clipped_to_the_replayed_span() -> None:
    rs = score_record(REF, [], ["vt"], start_s=0.0, end_s=150.0)  # only the first VT was replayed
    assert rs.classes["vt"].episodes == 1 and rs.monitored_s == pytest.approx(150.0)


def test_alarm_episodes_from_transitions() -> None:
    events = [("alarm_on", "vt", 10.0), ("alarm_on", "hr_high", 11.0), ("alarm_off", "vt", 20.0),
              ("alarm_off", "af_afl", 21.0),  # an off without an on is ignored
              ("alarm_on", "af_afl", 30.0)]  # never cleared: closed at the end of the replay
    eps = alarm_episodes(events, evidence_s=1.25, window_s=2.5, end_s=60.0, labels=["vt", "af_afl"])
    assert eps == [AlarmEpisode("vt", start=8.75, raised=12.5, end=22.5),
                   AlarmEpisode("af_afl", start=28.75, raised=32.5, end=60.0)]


def test_empty_score_adds_as_identity() -> None:
    assert (ClassScore() + ClassScore()).as_dict()["episodes"] == 0
