"""Per-beat features on real MIT-BIH excerpts (tests/fixtures/real/aami) and the dominant-beat guard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pedstream.dsp.beat_features import (ADAPT_FEATURES, BEAT_FEATURES, CONTEXT_FEATURES, BeatFeatures, beat_feature_table,
                                         beat_windows, feature_names)
from pedstream.dsp.rr import rr_features

AAMI = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "aami"


def _table(name: str, adapt: bool = False):
    from pedstream.train.beat_data import beat_config, record_table

    return record_table(AAMI / name, beat_config(), adapt=adapt)


def col(name: str, adapt: bool = False) -> int:
    return feature_names(adapt).index(name)


def test_names_and_shape_on_real_record():
    tab = _table("208", adapt=True)
    assert tab.x.shape == (tab.y.size, len(BEAT_FEATURES) + len(ADAPT_FEATURES) + len(CONTEXT_FEATURES))
    assert np.isfinite(tab.x).all()
    assert np.bincount(tab.y, minlength=5)[[0, 2, 3]].tolist() == [64, 30, 12]  # N, V, F of the excerpt


def test_ventricular_beats_do_not_match_the_running_template():
    tab = _table("208")
    c = tab.x[:, col("tpl_corr_qrs")]
    n, v = c[tab.y == 0], c[tab.y == 2]
    assert np.median(n) > 0.9 > np.median(v)
    w = tab.x[:, col("tpl_width_ratio")]
    assert np.median(w[tab.y == 2]) > np.median(w[tab.y == 0])


def test_supraventricular_beats_come_early_for_this_patient():
    tab = _table("220")
    pre = tab.x[:, col("pre_med")]
    assert np.median(pre[tab.y == 1]) < np.log(0.85) < np.median(pre[tab.y == 0])


def test_causal_a_beat_does_not_depend_on_later_beats():
    """The features of the first k beats are the same when the record goes on (only the pushed
    beat's own post-RR, i.e. the next beat, is looked at)."""
    from pedstream.train.beat_data import beat_config, record_table

    tab = _table("208", adapt=True)
    lead = np.sin(np.arange(21600) / 40.0).astype(np.float32)  # any signal: the recursion is what is tested
    beats = tab.sample
    whole = beat_feature_table(lead, beats, fs=360.0, adapt=True)
    part = beat_feature_table(lead, beats[:50], fs=360.0, adapt=True)
    np.testing.assert_array_equal(whole[:49], part[:49])
    assert record_table  # the real-record path is exercised above


def _gauss(width: float, amp: float, fs: float = 360.0) -> np.ndarray:
    t = (np.arange(360) - 180) / fs
    return (amp * np.exp(-0.5 * (t / width) ** 2)).astype(np.float32)


def test_a_sustained_ectopic_rhythm_never_becomes_the_dominant_beat():
    narrow, wide = _gauss(0.012, 1.0), -_gauss(0.05, 1.5)
    f = BeatFeatures(fs=360.0, adapt=True, learn_beats=60)
    r, t = [], 0
    for k in range(60):  # one minute of the patient's sinus rhythm at 60/min
        t += 360
        r.append(t)
    for k in range(600):  # then ten minutes of ventricular bigeminy: wide beat coupled early
        t += 250 if k % 2 == 0 else 470
        r.append(t)
    rr = rr_features(np.asarray(r), fs=360.0)
    out = [f.push(narrow if i < 60 or (i - 60) % 2 == 1 else wide, rr[i]) for i in range(len(r))]
    dom = f.dominant
    assert dom.learnt and abs(dom.rr - 1.0) < 0.02
    assert np.corrcoef(dom.tpl, narrow - np.median(narrow))[0, 1] > 0.99  # still the learnt sinus beat
    last_wide = out[-2] if (len(r) - 1 - 60) % 2 == 1 else out[-1]
    assert last_wide[col("dom_corr_qrs", True)] < 0.5  # the ectopic beats stay far from "normal"


def test_windows_and_bad_rate():
    w = beat_windows(np.arange(1000, dtype=np.float32), np.asarray([0, 500, 999]), 360.0)
    assert w.shape == (3, 360) and w[1, 180] == 500 and w[0, 0] == 0
    with pytest.raises(ValueError):
        BeatFeatures(fs=0.0)


def test_the_dominant_beat_is_the_most_frequent_one_even_when_the_stream_starts_with_ectopy():
    narrow, wide = _gauss(0.012, 1.0), -_gauss(0.05, 1.5)
    f = BeatFeatures(fs=360.0, adapt=True, learn_beats=60)
    r, t, shapes = [], 0, []
    for k in range(90):  # trigeminy from the first beat: V, N, N (a third of the beats ectopic)
        t += 250 if k % 3 == 0 else 360
        r.append(t)
        shapes.append(wide if k % 3 == 0 else narrow)
    rr = rr_features(np.asarray(r), fs=360.0)
    out = [f.push(w, rr[i]) for i, w in enumerate(shapes)]
    assert f.dominant.learnt
    assert np.corrcoef(f.dominant.tpl, narrow - np.median(narrow))[0, 1] > 0.99
    c = col("dom_corr_qrs", True)
    assert out[-3][c] < 0.5 < out[-1][c]  # the last V beat far from the dominant beat, the last N beat on it
