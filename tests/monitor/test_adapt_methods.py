"""The adapted call of one stream (pedstream.monitor.adapt_methods) on synthetic beats: every method gives
probability rows, a label update is cheap enough to take effect within one hop, the settings are checked."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pedstream.monitor.adapt_methods import PREMATURE_MIN_N, AdaptSettings, PatientAdapter

CLASSES = ("N", "S", "V", "F")
N_FEATURES = 80  # the shipped beat model's feature vector (BEAT_FEATURES + ADAPT_FEATURES)
PRE_RR = 0  # "pre_rr" is the first feature


def _beats(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` beats: N around 0, V around 3 on every feature, S as N but 2 lower on the 16 RR features and
    with a short pre-RR."""
    rng = np.random.default_rng(seed)
    y = rng.choice([0, 1, 2], size=n, p=[0.8, 0.1, 0.1])
    x = rng.normal(0.0, 0.3, size=(n, N_FEATURES)) + 3.0 * (y == 2)[:, None]
    x[:, :16] -= 2.0 * (y == 1)[:, None]
    x[:, PRE_RR] = np.where(y == 1, 0.4, 0.8) + rng.normal(0.0, 0.02, n)
    return x, y


SETTINGS = [AdaptSettings(), AdaptSettings(method="prototype", classes="labelled"),
            AdaptSettings(method="nearest", tau=1.0, classes="labelled", premature=0.65, premature_margin=0.8),
            AdaptSettings(k=3, combine="product"), AdaptSettings(method="linear", classes="labelled"),
            AdaptSettings(k=1, classes="labelled", weight_by="class", n_half=2.0)]


@pytest.mark.parametrize("settings", SETTINGS)
def test_every_method_gives_probability_rows_and_learns_the_labelled_v(settings):
    x, y = _beats(400, 0)
    later, ly = _beats(300, 1)
    ad = PatientAdapter(classes=CLASSES, scale=np.ones(N_FEATURES), settings=settings)
    ad.set_labels(x, y)
    p = np.tile([0.85, 0.05, 0.05, 0.05], (len(ly), 1))  # the population calls every beat N
    q = ad.adapt(p, later)
    assert q.shape == p.shape and np.all(q >= 0.0)
    np.testing.assert_allclose(q.sum(axis=1), 1.0)
    assert np.mean(q[ly == 2].argmax(1) == 2) > 0.9 and np.mean(q[ly == 0].argmax(1) == 0) > 0.9


def test_the_prematurity_rule_calls_the_short_rr_beats_s_and_needs_enough_normal_labels():
    x, y = _beats(400, 0)
    later, ly = _beats(300, 1)
    p = np.tile([0.85, 0.05, 0.05, 0.05], (len(ly), 1))
    rule = AdaptSettings(k=1, classes="labelled", premature=0.65, premature_margin=0.8)
    ad = PatientAdapter(classes=CLASSES, scale=np.ones(N_FEATURES), settings=rule)
    n_only = np.flatnonzero(y == 0)
    ad.set_labels(x[n_only], y[n_only])  # no S label at all
    call = ad.adapt(p, later).argmax(1)
    assert np.all(call[ly == 1] == 1) and np.all(call[ly == 0] == 0)
    few = PatientAdapter(classes=CLASSES, scale=np.ones(N_FEATURES), settings=rule)
    few.set_labels(x[n_only[: PREMATURE_MIN_N - 1]], y[n_only[: PREMATURE_MIN_N - 1]])
    assert not np.any(few.adapt(p, later).argmax(1) == 1)


@pytest.mark.parametrize("settings", SETTINGS)
def test_a_label_update_takes_effect_well_within_one_hop(settings):
    """Five minutes of labels (400 beats): refitting on one more label and adapting the next beat costs
    far less than the monitor's hop (1.25 s); the shipped settings' cost is what docs/beats.md states."""
    x, y = _beats(401, 0)
    ad = PatientAdapter(classes=CLASSES, scale=np.ones(N_FEATURES), settings=settings)
    ad.set_labels(x[:400], y[:400])
    t0 = time.perf_counter()
    for _ in range(5):
        ad.set_labels(x, y)
        ad.adapt(np.asarray([[0.85, 0.05, 0.05, 0.05]]), x[-1:])
    assert (time.perf_counter() - t0) / 5 < 0.25


@pytest.mark.parametrize("fields", [{"method": "svm"}, {"classes": "some"}, {"k": 0}, {"mix": 1.5}, {"tau": 0.0}])
def test_a_wrong_setting_is_refused_with_its_name(fields):
    with pytest.raises(ValueError, match="adapt_settings"):
        AdaptSettings(**fields)
