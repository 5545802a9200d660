"""Alarm state machine: smoothing, onset/offset hysteresis, priorities, age-banded heart-rate limits, strips."""

from __future__ import annotations

import numpy as np
import pytest

from pedstream.config import AlarmsSection, load_config
from pedstream.errors import ConfigError
from pedstream.monitor.alarms import AlarmTracker, ProbabilitySmoother, hr_limits_for_age
from pedstream.outputs.strips import save_strip

CLASSES = ["sinus", "avrt", "pac", "vt", "other"]


def onehot(label: str, p: float = 0.9) -> np.ndarray:
    v = np.full(len(CLASSES), (1 - p) / (len(CLASSES) - 1))
    v[CLASSES.index(label)] = p
    return v


def tracker(**kw) -> AlarmTracker:
    cfg = AlarmsSection(smoothing_windows=1, onset_windows=3, offset_windows=2, **kw)
    return AlarmTracker(class_names=CLASSES, cfg=cfg, age_years=8.0)


def test_onset_needs_n_consecutive_windows_and_offset_hysteresis():
    t = tracker()
    kinds = []
    seq = ["vt", "vt", "sinus", "vt", "vt", "vt", "vt", "sinus", "vt", "sinus", "sinus", "sinus"]
    for lab in seq:
        _, tr = t.update(onehot(lab), hr=100.0)
        kinds.append([(x.kind, x.label) for x in tr])
    # interrupted run of 2 does not alarm; 3 consecutive does (at index 5)
    assert kinds[:5] == [[]] * 5
    assert kinds[5] == [("alarm_on", "vt")]
    # one sinus window is not enough to clear it (offset_windows=2); sinus, vt resets the count
    assert kinds[7] == [] and kinds[8] == [] and kinds[9] == []
    assert kinds[10] == [("alarm_off", "vt")]
    assert t.active == {}


def test_probability_band_between_offset_and_onset_keeps_state():
    t = tracker(onset_p=0.7, offset_p=0.3)
    for _ in range(3):
        t.update(onehot("vt", 0.8), hr=None)
    assert t.active == {"vt": "high"}
    for _ in range(5):  # 0.5 is below onset but above offset: the alarm holds
        _, tr = t.update(onehot("vt", 0.5), hr=None)
        assert tr == []
    assert "vt" in t.active


def test_priorities_and_none_classes():
    t = tracker()
    for _ in range(3):
        _, tr = t.update(onehot("avrt"), hr=None)
    assert [(x.label, x.priority) for x in tr] == [("avrt", "medium")]
    t2 = tracker()
    for _ in range(3):
        _, tr = t2.update(onehot("pac"), hr=None)
    assert [(x.label, x.priority) for x in tr] == [("pac", "advisory")]
    t3 = tracker()
    for _ in range(10):
        _, tr = t3.update(onehot("sinus"), hr=None)
        assert tr == []  # sinus has no alarm
    # top alarm is the highest priority
    t4 = tracker(onset_p=0.4)
    for _ in range(3):
        t4.update(np.array([0.0, 0.0, 0.45, 0.5, 0.05]), hr=None)
    assert set(t4.active) == {"pac", "vt"} and t4.top_alarm == ("vt", "high")


def test_smoothing_mean_and_ema():
    m = ProbabilitySmoother(n_classes=2, n=3, method="mean")
    out = [m.update(np.array(v)) for v in ([1, 0], [0, 1], [0, 1], [0, 1])]
    assert np.allclose(out[1], [0.5, 0.5]) and np.allclose(out[3], [0, 1])
    e = ProbabilitySmoother(n_classes=2, n=3, method="ema")  # alpha = 0.5
    e.update(np.array([1.0, 0.0]))
    assert np.allclose(e.update(np.array([0.0, 1.0])), [0.5, 0.5])
    # smoothing delays the call: a single vt window among sinus does not flip a 3-window mean
    t = AlarmTracker(class_names=CLASSES, cfg=AlarmsSection(smoothing_windows=3), age_years=8)
    for lab in ("sinus", "sinus", "vt"):
        call, _ = t.update(onehot(lab), hr=None)
    assert call.label == "sinus" and 0 < call.p < 0.9


@pytest.mark.parametrize(("age", "band", "lo", "hi"), [
    (0.3, "<1 y", 90, 205), (1.0, "1-2 y", 80, 190), (2.9, "1-2 y", 80, 190), (4, "3-5 y", 65, 160),
    (8, "6-11 y", 60, 140), (13, "12-15 y", 50, 130), (17, "16-18 y", 50, 120), (30, "16-18 y", 50, 120),
])
def test_age_bands(age, band, lo, hi):
    assert hr_limits_for_age(age, AlarmsSection()) == (lo, hi, band)


def test_unknown_age_uses_default_or_widest_limits():
    assert hr_limits_for_age(None, AlarmsSection()) == (50, 205, "age unknown")
    assert hr_limits_for_age(None, AlarmsSection(default_age_years=4.0))[2] == "3-5 y"


def beats_at(bpm: float, t0: float, seconds: float) -> list[tuple[float, float]]:
    """Beat-by-beat rates ``(t, bpm)`` of a steady rhythm from ``t0`` for ``seconds``."""
    n = int(seconds * bpm / 60.0)
    return [(t0 + k * 60.0 / bpm, bpm) for k in range(n)]


def test_heart_rate_alarm_follows_age_band():
    cfg = AlarmsSection(hr_onset_s=2.0, hr_offset_s=2.0, hr_hysteresis_bpm=5)
    infant = AlarmTracker(class_names=CLASSES, cfg=cfg, age_years=0.5)
    teen = AlarmTracker(class_names=CLASSES, cfg=cfg, age_years=14)
    # 150 bpm for 3 s: normal for an infant, tachycardia for a 14-year-old
    assert infant.rates(beats_at(150, 0.0, 3.0)) == []
    fired = teen.rates(beats_at(150, 0.0, 3.0))
    assert [(t.kind, t.label, t.hr, t.at_s) for t in fired] == [("alarm_on", "hr_high", 150.0, 0.0)]
    # 128 bpm is under the limit (130) but inside the 5 bpm hysteresis: still on
    assert teen.rates(beats_at(128, 3.0, 5.0)) == []
    out = teen.rates(beats_at(120, 8.0, 3.0))
    assert [(t.kind, t.label, t.at_s) for t in out] == [("alarm_off", "hr_high", 8.0)]
    # bradycardia for the infant
    out = infant.rates(beats_at(70, 10.0, 4.0))
    assert [(t.kind, t.label) for t in out] == [("alarm_on", "hr_low")]


def test_rate_alarm_fires_during_a_short_run_with_its_rate():
    """Regression: a 4 s run at 240 bpm raised hr_high only when it ended, with the rate after it. Judged
    beat by beat, the alarm comes hr_onset_s after the rate crossed, inside the run, with the run's rate."""
    tr = AlarmTracker(class_names=CLASSES, cfg=AlarmsSection(), age_years=8.0)  # 6-11 y: limit 140
    beats = beats_at(90, 0.0, 10.0)
    rates = [(t, 90.0) for t, _ in beats] + [(10.0 + k * 0.25, 240.0) for k in range(16)] \
        + [(14.0 + k * 0.6, 100.0) for k in range(10)]
    on = [t for t in tr.rates(rates) if t.kind == "alarm_on"]
    assert len(on) == 1 and on[0].label == "hr_high" and on[0].hr == 240.0
    assert on[0].at_s == 10.0
    fired_at = next(t for t, bpm in rates if bpm == 240.0 and t - 10.0 >= 2.0)
    assert fired_at < 14.0  # before the run ended


def test_config_rejects_inverted_hysteresis(tmp_path):
    with pytest.raises(ConfigError, match="offset_p"):
        load_config(overrides=["alarms.onset_p=0.3", "alarms.offset_p=0.5"])
    with pytest.raises(ConfigError, match="alarms.priorities"):
        load_config(overrides=['alarms.priorities={vt="urgent"}'])


def test_strip_png(tmp_path):
    fs = 977.0
    t = np.arange(int(10 * fs)) / fs
    data = np.zeros((t.size, 19), dtype=np.float32)
    data[:, 1] = np.sin(2 * np.pi * 1.5 * t)
    data[:, 14] = np.sin(2 * np.pi * 4 * t)
    present = np.zeros(19, bool)
    present[[1, 14]] = True
    from pedstream.data.channels import CANONICAL_CHANNELS

    out = save_strip(tmp_path / "a" / "s.png", data=data, fs=fs, channel_names=CANONICAL_CHANNELS, present=present,
                     onset_s=7.0, title="test")
    raw = out.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 5000


def test_alarm_on_says_how_many_windows_back_its_episode_began():
    from pedstream.config import load_config

    cfg = load_config(overrides=["alarms.onset_windows=3", "alarms.smoothing_windows=1"])
    classes = ["sinus", "vt"]
    tr = AlarmTracker(class_names=classes, cfg=cfg.alarms, age_years=8.0)
    out = []
    for _ in range(3):
        out += tr.update(np.array([0.01, 0.99]), 300.0)[1]
    on = {t.label: t.windows_back for t in out if t.kind == "alarm_on"}
    assert on == {"vt": 2}


def test_strip_title_is_wrapped_whole(tmp_path):
    from pedstream.data.channels import CANONICAL_CHANNELS
    from pedstream.outputs.strips import wrap_title

    title = ("bed-with-a-long-name  ALARM VENTRICULAR_TACHYCARDIA (high)  20261202T175812_123456  HR 212 bpm  — "
             "DEMO MODEL · trained on SIMULATED Leipzig-format data (29 simulated subjects) · not for clinical use")
    lines = wrap_title(title, 4.0)
    assert len(lines) > 1 and " ".join(lines).split() == title.split()
    assert max(len(ln) for ln in lines) <= int(4.0 * 0.94 * 72 / (0.6 * 9))
    data = np.zeros((977 * 4, 19), np.float32)
    present = np.zeros(19, bool)
    present[1] = True
    out = save_strip(tmp_path / "s.png", data=data, fs=977.0, channel_names=CANONICAL_CHANNELS, present=present,
                     onset_s=1.0, alarm_s=2.5, title=title)
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_call_is_held_until_a_new_class_leads_for_call_hold_windows():
    t = AlarmTracker(class_names=CLASSES, cfg=AlarmsSection(smoothing_windows=1, call_hold_windows=2), age_years=8)
    calls = [t.update(onehot(lab), hr=None)[0] for lab in ("sinus", "vt", "sinus", "vt", "vt", "vt")]
    assert [c.label for c in calls] == ["sinus", "sinus", "sinus", "sinus", "vt", "vt"]  # one window never flips it
    assert calls[1].p == pytest.approx(onehot("vt")[CLASSES.index("sinus")])  # p: the held class's probability
    t.reset_smoothing()  # after a gap the first window sets the call again
    assert t.update(onehot("sinus"), hr=None)[0].label == "sinus"
    one = AlarmTracker(class_names=CLASSES, cfg=AlarmsSection(smoothing_windows=1, call_hold_windows=1), age_years=8)
    assert [one.update(onehot(lab), hr=None)[0].label for lab in ("sinus", "vt")] == ["sinus", "vt"]
