"""The per-patient linear adapter (``AdaptSettings(method="linear")``): an L2 logistic regression on one
stream's labelled beats over the RR ratios (and template correlations). It changes only the labelled
stream, falls back to the nearest labelled beat while a class has too few labels, and is deterministic.
Real beats: the MIT-BIH 208 and 220 excerpts of tests/fixtures/real/aami."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from pedstream.dsp.beat_features import ADAPT_FEATURES, BEAT_FEATURES
from pedstream.monitor.adapt import FEATURE_SUBSETS, AdaptSettings, BeatLabels, PatientAdapter, fit_logistic
from tests.monitor.test_adapt import tables  # noqa: F401 (fixture: the MIT-BIH 208 and 220 feature tables)

CLASSES = ("N", "S", "V", "F")
NAMES = BEAT_FEATURES + ADAPT_FEATURES
LINEAR = AdaptSettings(method="linear", mix=0.8, n_half=2.0, classes="labelled", features="rr+tpl", l2=1.0)


def _softmax_scores(w, x):
    s = x @ w[:, :-1].T + w[:, -1]
    p = np.exp(s - s.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("l2", [0.1, 1.0, 10.0])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_newton_fit_is_scikit_learns_l2_logistic_regression(l2, n_classes):
    lm = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 6))
    y = rng.integers(0, n_classes, 80)
    x[y == 1, :2] += 1.5  # class 1 partly separable
    w = fit_logistic(x, y, n_classes, l2=l2)
    # two classes: scikit-learn fits one weight vector v = w_1 - w_0 (penalty |v|^2 / 2C), the symmetric
    # softmax penalises |w_0|^2 + |w_1|^2 = |v|^2 / 2 at the optimum, so C = 2 / l2 there
    c = (2.0 if n_classes == 2 else 1.0) / l2
    ref = lm.LogisticRegression(C=c, tol=1e-10, max_iter=10000).fit(x, y)
    np.testing.assert_allclose(_softmax_scores(w, x), ref.predict_proba(x), atol=1e-5)


def _synthetic(n_n=30, n_s=6, seed=0):
    """Beats whose S differ from N only by prematurity (pre_local, pre_med, post_pre): their morphology
    features vary a lot beat to beat and carry no class."""
    rng = np.random.default_rng(seed)
    n = n_n + n_s
    x = 3.0 * rng.normal(size=(n, len(NAMES)))  # morphology and everything else: noise of scale 3
    y = np.r_[np.zeros(n_n, int), np.ones(n_s, int)]
    for name, shift in (("pre_local", -3.0), ("pre_med", -3.0), ("post_pre", 3.0)):
        x[:, NAMES.index(name)] = 0.2 * rng.normal(size=n) + shift * (y == 1)
    return x, y


def test_prematurity_calls_an_s_beat_the_nearest_labelled_beat_calls_n():
    x, y = _synthetic()
    beats, truth = _synthetic(n_n=200, n_s=40, seed=1)
    p = np.tile([0.7, 0.2, 0.05, 0.05], (truth.size, 1))
    knn = PatientAdapter(classes=CLASSES, scale=np.ones(len(NAMES)),
                         settings=AdaptSettings(k=1, mix=0.8, n_half=2.0, classes="labelled"))
    lin = PatientAdapter(classes=CLASSES, scale=np.ones(len(NAMES)),
                         settings=AdaptSettings(method="linear", mix=0.8, n_half=2.0, classes="labelled", features="rr"))
    for ad in (knn, lin):
        ad.set_labels(x, y)
    assert lin.linear_fitted()
    s = truth == 1
    hit_lin = np.mean(lin.adapt(p, beats)[s].argmax(1) == 1)
    hit_knn = np.mean(knn.adapt(p, beats)[s].argmax(1) == 1)
    assert hit_lin > 0.95 and hit_knn < 0.6
    assert np.mean(lin.adapt(p, beats)[~s].argmax(1) == 0) > 0.95


def test_too_few_labels_of_a_class_fall_back_to_the_nearest_labelled_beat(tables):
    tab = tables["208"]
    first = np.flatnonzero(tab.t < 30.0)
    later = tab.t >= 30.0
    scale = tab.x.std(axis=0)
    nearest = PatientAdapter(classes=CLASSES, scale=scale, settings=AdaptSettings(k=1, mix=0.8, classes="labelled"))
    for n_v in (1, 2):  # fewer than min_class=3 V labels
        lab = np.concatenate([first[tab.y[first] == 0][:8], first[tab.y[first] == 2][:n_v]])
        ad = PatientAdapter(classes=CLASSES, scale=scale, settings=AdaptSettings(method="linear", mix=0.8, classes="labelled"))
        ad.set_labels(tab.x[lab], tab.y[lab])
        nearest.set_labels(tab.x[lab], tab.y[lab])
        assert not ad.linear_fitted()
        np.testing.assert_allclose(ad.local(tab.x[later]), nearest.local(tab.x[later]))
    only_n = PatientAdapter(classes=CLASSES, scale=scale, settings=LINEAR)
    only_n.set_labels(tab.x[first[tab.y[first] == 0][:8]], np.zeros(8, int))
    assert not only_n.linear_fitted()  # one class: nothing to choose, the population's call stays
    p = np.tile([0.3, 0.6, 0.05, 0.05], (int(later.sum()), 1))
    np.testing.assert_allclose(only_n.adapt(p, tab.x[later]), p)
    three = PatientAdapter(classes=CLASSES, scale=scale, settings=LINEAR)
    lab = np.concatenate([first[tab.y[first] == 0][:8], first[tab.y[first] == 2][:3]])
    three.set_labels(tab.x[lab], tab.y[lab])
    assert three.linear_fitted()
    three.set_labels(np.zeros((0, tab.x.shape[1])), [])
    assert not three.linear_fitted() and len(three) == 0


def test_the_linear_adapter_is_deterministic(tables):
    tab = tables["208"]
    first = np.flatnonzero(tab.t < 60.0)
    lab = np.concatenate([first[tab.y[first] == 0][:20], first[tab.y[first] == 2][:10]])
    later = tab.t >= 60.0
    p = np.tile([0.7, 0.1, 0.1, 0.1], (int(later.sum()), 1))
    outs = []
    for _ in range(2):
        ad = PatientAdapter(classes=CLASSES, scale=tab.x.std(axis=0), settings=LINEAR)
        ad.set_labels(tab.x[lab], tab.y[lab])
        outs.append(ad.adapt(p, tab.x[later]))
    np.testing.assert_array_equal(outs[0], outs[1])
    # the same labels in another order: the same model (the optimum, not the order, decides)
    rev = PatientAdapter(classes=CLASSES, scale=tab.x.std(axis=0), settings=LINEAR)
    rev.set_labels(tab.x[lab[::-1]], tab.y[lab[::-1]])
    np.testing.assert_allclose(rev.adapt(p, tab.x[later]), outs[0], atol=1e-6)


def test_the_engines_linear_labels_change_only_the_labelled_stream(tables, tmp_path):
    x = np.concatenate([t.x for t in tables.values()])
    bl = BeatLabels(classes=CLASSES, scale=x.std(axis=0), folder=tmp_path, settings=LINEAR)
    bl.add_stream("bed1")
    bl.add_stream("bed2")
    for sid, tab in (("bed1", tables["208"]), ("bed2", tables["220"])):
        for t, f in zip(tab.t, tab.x):
            bl.observe(sid, float(t), f)
    tab = tables["208"]
    p_pop = np.asarray([0.85, 0.05, 0.05, 0.05])
    bl.label("bed1", [(float(t), "N") for t in tab.t[tab.y == 0][:8]] + [(float(t), "V") for t in tab.t[tab.y == 2][:6]],
             who="dr.a")
    v_beat = tab.x[tab.y == 2][-1]
    q = bl.adjust("bed1", v_beat, p_pop)
    assert q.argmax() == 2 and q[1] == pytest.approx(p_pop[1]) and q[3] == pytest.approx(p_pop[3])
    for f in tables["220"].x[:50]:  # the other stream: the population's call, untouched
        np.testing.assert_array_equal(bl.adjust("bed2", f, p_pop), p_pop)
    assert bl.n_labels("bed2") == 0
    # reloaded from its file, the stream's linear model calls the same
    bl2 = BeatLabels(classes=CLASSES, scale=x.std(axis=0), folder=tmp_path, settings=LINEAR)
    bl2.add_stream("bed1")
    np.testing.assert_allclose(bl2.adjust("bed1", v_beat, p_pop), q)


def test_linear_settings_come_from_the_model_metadata_and_a_wrong_subset_is_one_error():
    from pedstream.errors import ModelError
    from pedstream.monitor.adapt import beat_labels_for

    fields = {"method": "linear", "k": 1, "mix": 0.8, "features": "rr", "l2": 0.1, "min_class": 3, "classes": "labelled"}
    meta = {"segments": {"features": "beat-features-4"}, "feature_scale": [1.0] * len(NAMES),
            "class_names": list(CLASSES), "adapt_settings": fields}
    assert beat_labels_for(SimpleNamespace(metadata=meta), folder="unused").settings == AdaptSettings(**fields)
    for wrong in ({"method": "linear", "features": "morphology"}, {"method": "linear", "l2": 0.0},
                  {"method": "linear", "min_class": 0}):
        with pytest.raises(ModelError, match="adapt_settings") as err:
            beat_labels_for(SimpleNamespace(metadata=dict(meta, adapt_settings=wrong), path="m.onnx"), folder="unused")
        assert "\n" not in str(err.value)
    assert set(FEATURE_SUBSETS["rr"]) < set(FEATURE_SUBSETS["rr+tpl"]) <= set(NAMES)
