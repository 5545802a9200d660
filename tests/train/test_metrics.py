"""Tests for pedstream.train.metrics against a hand-made confusion matrix."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, fbeta_score, precision_score, recall_score

from pedstream.errors import PedstreamError
from pedstream.train.metrics import evaluate_predictions, plot_confusion, scores_from_confusion

NAMES = ["a", "b", "c", "d", "e"]
# rows = true, columns = predicted; class d never occurs but is predicted once (a false alarm: scored 0),
# class e never occurs and is never predicted (not evaluated)
CONF = [
    [5, 1, 0, 0, 0],
    [2, 3, 1, 0, 0],
    [0, 0, 4, 1, 0],
    [0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
]


def _labels_from_confusion(conf: list[list[int]], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(i, j) for i, row in enumerate(conf) for j, k in enumerate(row) for _ in range(k)]
    order = np.random.default_rng(seed).permutation(len(pairs))
    arr = np.asarray(pairs)[order]
    return arr[:, 0], arr[:, 1]


def test_values_on_a_hand_made_confusion_matrix() -> None:
    y_true, y_pred = _labels_from_confusion(CONF)
    r = evaluate_predictions(y_true, y_pred, class_names=NAMES, n_boot=0)
    # by hand: precision = diag / column sums, recall = diag / row sums
    prec = {"a": 5 / 7, "b": 3 / 4, "c": 4 / 5, "d": 0.0, "e": 0.0}  # d: 0 of 1 prediction right
    rec = {"a": 5 / 6, "b": 3 / 6, "c": 4 / 5, "d": 0.0, "e": 0.0}  # d, e: no support -> 0 (zero_division)
    f1 = {"a": 10 / 13, "b": 3 / 5, "c": 4 / 5, "d": 0.0, "e": 0.0}  # 2PR/(P+R)
    f2 = {"a": 25 / 31, "b": 15 / 28, "c": 4 / 5, "d": 0.0, "e": 0.0}  # 5PR/(4P+R)
    assert r["n"] == 17
    assert r["top1"] == pytest.approx(12 / 17)
    # headline: macro over a, b, c (in the test labels) and d (predicted, absent: counts as 0); e excluded
    assert r["evaluated_classes"] == ["a", "b", "c", "d"]
    for key, table in (("macro_precision", prec), ("macro_recall", rec), ("macro_f1", f1), ("macro_f2", f2)):
        assert r[key] == pytest.approx(sum(table[c] for c in "abcd") / 4), key
    assert r["macro_f1"] == pytest.approx((10 / 13 + 3 / 5 + 4 / 5 + 0.0) / 4)
    # ... which is scikit-learn's own default (labels from y_true and y_pred)
    assert r["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert r["macro_precision"] == pytest.approx(precision_score(y_true, y_pred, average="macro", zero_division=0))
    assert r["classes"] == NAMES
    assert r["confusion"] == CONF
    for name in NAMES:  # per_class covers every class, evaluated or not
        pc = r["per_class"][name]
        assert set(pc) == {"precision", "recall", "f1", "support"}
        assert pc["precision"] == pytest.approx(prec[name])
        assert pc["recall"] == pytest.approx(rec[name])
        assert pc["f1"] == pytest.approx(f1[name])
    assert [r["per_class"][n]["support"] for n in NAMES] == [6, 6, 5, 0, 0]
    # all_classes: the old headline, macro over all 5 configured classes
    every = r["all_classes"]
    assert every["classes"] == NAMES
    for key, table in (("macro_precision", prec), ("macro_recall", rec), ("macro_f1", f1), ("macro_f2", f2)):
        assert every[key] == pytest.approx(sum(table.values()) / 5), key
    present = r["present_classes"]
    assert present["classes"] == ["a", "b", "c"]
    assert present["macro_recall"] == pytest.approx((5 / 6 + 1 / 2 + 4 / 5) / 3)
    assert present["macro_f1"] == pytest.approx((10 / 13 + 3 / 5 + 4 / 5) / 3)
    assert present["macro_f2"] == pytest.approx((25 / 31 + 15 / 28 + 4 / 5) / 3)
    assert present["macro_precision"] == pytest.approx((5 / 7 + 3 / 4 + 4 / 5) / 3)
    assert r["ci95"] == {} and "ci95" not in every
    json.dumps(r)  # JSON-ready
    # the vectorised bootstrap scorer agrees with the point estimates, for either label set
    s_eval = scores_from_confusion(np.asarray(CONF), classes=np.arange(4))
    s_all = scores_from_confusion(np.asarray(CONF))
    for k in ("macro_precision", "macro_recall", "macro_f1", "macro_f2"):
        assert s_eval[k] == pytest.approx(r[k])
        assert s_all[k] == pytest.approx(every[k])
    assert s_eval["top1"] == s_all["top1"] == pytest.approx(r["top1"])


def test_all_classes_equals_the_old_all_label_computation_on_random_labels() -> None:
    rng = np.random.default_rng(4)
    names = [f"k{i}" for i in range(7)]  # k5 only predicted, k6 neither in y_true nor predicted
    t = rng.integers(0, 5, 400)
    p = np.where(rng.random(400) < 0.7, t, rng.integers(0, 6, 400))
    r = evaluate_predictions(t, p, class_names=names, n_boot=0)
    assert r["evaluated_classes"] == names[:6]
    all_kw = dict(labels=list(range(7)), average="macro", zero_division=0)
    assert r["all_classes"]["macro_f1"] == pytest.approx(f1_score(t, p, **all_kw))
    assert r["all_classes"]["macro_recall"] == pytest.approx(recall_score(t, p, **all_kw))
    assert r["all_classes"]["macro_f2"] == pytest.approx(fbeta_score(t, p, beta=2, **all_kw))
    default_kw = dict(average="macro", zero_division=0)  # scikit-learn's default label set
    assert r["macro_f1"] == pytest.approx(f1_score(t, p, **default_kw))
    assert r["macro_recall"] == pytest.approx(recall_score(t, p, **default_kw))
    assert r["macro_f2"] == pytest.approx(fbeta_score(t, p, beta=2, **default_kw))
    assert r["macro_f1"] == pytest.approx(r["all_classes"]["macro_f1"] * 7 / 6)  # k6 only diluted the old value


def test_bootstrap_keeps_the_label_set_of_the_full_sample() -> None:
    # class 2 is rare: many subject resamples lack it, yet every resample is scored over classes 0, 1, 2
    groups = np.repeat(np.arange(10), 20)
    t = np.zeros(groups.size, dtype=int)
    t[groups % 2 == 1] = 1
    t[:3] = 2  # three windows of subject 0
    p = t.copy()
    p[5] = 1  # one error in subject 0
    names = ["x", "y", "z", "unused"]
    r = evaluate_predictions(t, p, class_names=names, n_boot=300, seed=1, groups=groups)
    assert r["evaluated_classes"] == ["x", "y", "z"]
    lo, hi = r["ci95"]["macro_recall"]
    # a resample without subject 0 scores z's recall 0 over 3 classes: recall 2/3; with a re-derived
    # label set it would be 1.0 and the lower bound would not fall below the estimate this far
    assert lo == pytest.approx(2 / 3)
    assert lo <= r["macro_recall"] <= hi
    assert r["all_classes"]["ci95"]["macro_recall"][0] == pytest.approx(2 / 4)
    assert r["ci95"]["top1"] == r["all_classes"]["ci95"]["top1"]


def test_confusion_scorer_matches_scikit_learn_on_random_labels() -> None:
    rng = np.random.default_rng(3)
    t = rng.integers(0, 5, 300)
    p = np.where(rng.random(300) < 0.6, t, rng.integers(0, 6, 300))  # class 5 only predicted
    labels = list(range(6))
    conf = np.zeros((6, 6))
    np.add.at(conf, (t, p), 1)
    s = scores_from_confusion(conf)
    kw = dict(labels=labels, average="macro", zero_division=0)
    assert s["macro_precision"] == pytest.approx(precision_score(t, p, **kw))
    assert s["macro_recall"] == pytest.approx(recall_score(t, p, **kw))
    assert s["macro_f1"] == pytest.approx(f1_score(t, p, **kw))
    assert s["macro_f2"] == pytest.approx(fbeta_score(t, p, beta=2, **kw))


def _noisy(n: int = 600, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 3, n)
    p = np.where(rng.random(n) < 0.75, t, rng.integers(0, 3, n))
    return t, p


def test_bootstrap_interval_contains_the_estimate_and_is_seeded() -> None:
    t, p = _noisy()
    names = ["x", "y", "z"]
    r1 = evaluate_predictions(t, p, class_names=names, n_boot=400, seed=5)
    r2 = evaluate_predictions(t, p, class_names=names, n_boot=400, seed=5)
    r3 = evaluate_predictions(t, p, class_names=names, n_boot=400, seed=6)
    assert set(r1["ci95"]) == {"top1", "macro_precision", "macro_recall", "macro_f1", "macro_f2"}
    for k, (lo, hi) in r1["ci95"].items():
        assert lo <= r1[k] <= hi, k
        assert 0.0 < hi - lo < 0.2, k
    assert r1["ci95"] == r2["ci95"]
    assert r1["ci95"] != r3["ci95"]


def test_subject_bootstrap_is_wider_when_errors_cluster_in_subjects() -> None:
    # 20 subjects x 40 windows: half the subjects are classified perfectly, half at chance
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(20), 40)
    t = rng.integers(0, 3, groups.size)
    bad = groups % 2 == 1
    p = np.where(bad, rng.integers(0, 3, groups.size), t)
    names = ["x", "y", "z"]
    by_window = evaluate_predictions(t, p, class_names=names, n_boot=500, seed=0)
    by_subject = evaluate_predictions(t, p, class_names=names, n_boot=500, seed=0, groups=groups)
    assert by_subject["n_groups"] == 20
    w_window = np.diff(by_window["ci95"]["top1"])[0]
    w_subject = np.diff(by_subject["ci95"]["top1"])[0]
    assert w_subject > 2 * w_window
    lo, hi = by_subject["ci95"]["macro_f1"]
    assert lo <= by_subject["macro_f1"] <= hi


def test_macro_auroc_from_probabilities() -> None:
    y_true, y_pred = _labels_from_confusion(CONF)
    prob = np.full((len(y_true), len(NAMES)), 0.1)
    prob[np.arange(len(y_true)), y_true] = 0.7  # a perfect ranking
    r = evaluate_predictions(y_true, y_pred, class_names=NAMES, y_prob=prob, n_boot=0)
    assert r["macro_auroc"] == pytest.approx(1.0)  # averaged over a, b, c (d and e have no positives)
    with pytest.raises(PedstreamError, match="y_prob"):
        evaluate_predictions(y_true, y_pred, class_names=NAMES, y_prob=prob[:, :3], n_boot=0)


def test_bad_inputs_raise_one_line_errors() -> None:
    with pytest.raises(PedstreamError, match="y_pred has 2"):
        evaluate_predictions([0, 1, 1], [0, 1], class_names=["a", "b"])
    with pytest.raises(PedstreamError, match=r"expected 0\.\.1"):
        evaluate_predictions([0, 2], [0, 1], class_names=["a", "b"])
    with pytest.raises(PedstreamError, match="groups"):
        evaluate_predictions([0, 1], [0, 1], class_names=["a", "b"], groups=[1])
    with pytest.raises(PedstreamError, match="no predictions"):
        evaluate_predictions([], [], class_names=["a", "b"])


def test_plot_confusion_writes_a_png(tmp_path) -> None:
    import matplotlib.image as mpimg

    y_true, y_pred = _labels_from_confusion(CONF)
    r = evaluate_predictions(y_true, y_pred, class_names=NAMES, n_boot=0)
    for normalize in (True, False):
        out = plot_confusion(r, tmp_path / f"cm_{normalize}.png", normalize=normalize)
        img = mpimg.imread(out)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert img[..., :3].std() > 0.05  # not blank
    with pytest.raises(PedstreamError, match="confusion"):
        plot_confusion({"classes": ["a"]}, tmp_path / "x.png")


def test_metrics_and_train_package_import_without_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, pedstream.train, pedstream.train.metrics; "
            "from pedstream.train import evaluate_predictions; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def _from_confusion(conf: np.ndarray) -> tuple[list[int], list[int]]:
    yt, yp = [], []
    for i, row in enumerate(conf):
        for j, n in enumerate(row):
            yt += [i] * int(n)
            yp += [j] * int(n)
    return yt, yp


def test_ec57_veb_and_sveb_follow_the_aami_convention() -> None:
    names = ["N", "S", "V", "F", "Q"]
    conf = np.array([[50, 2, 3, 0, 0],   # N: 2 classified S, 3 classified V
                     [4, 10, 1, 0, 0],   # S
                     [2, 1, 20, 0, 0],   # V
                     [1, 0, 5, 3, 0],    # F: 5 classified V are NOT VEB false positives
                     [0, 1, 1, 0, 2]])   # Q
    yt, yp = _from_confusion(conf)
    res = evaluate_predictions(yt, yp, class_names=names, n_boot=100, seed=0)
    veb, sveb = res["ec57"]["veb"], res["ec57"]["sveb"]
    assert (veb["tp"], veb["fn"], veb["fp"]) == (20, 3, 5)  # fp: N 3 + S 1 + Q 1
    assert veb["se"] == pytest.approx(20 / 23) and veb["ppv"] == pytest.approx(20 / 25)
    assert veb["f1"] == pytest.approx(40 / 48)
    assert (sveb["tp"], sveb["fn"], sveb["fp"]) == (10, 5, 4)  # fp: N 2 + V 1 + Q 1 (F 0)
    assert sveb["se"] == pytest.approx(10 / 15) and sveb["ppv"] == pytest.approx(10 / 14)
    for part in (veb, sveb):
        for k in ("se", "ppv", "f1"):
            lo, hi = part["ci95"][k]
            assert lo <= part[k] <= hi
    # subject (record) bootstrap works the same way; no ci95 without a bootstrap
    groups = np.arange(len(yt)) % 5
    assert "ci95" in evaluate_predictions(yt, yp, class_names=names, n_boot=50, groups=groups)["ec57"]["veb"]
    assert "ci95" not in evaluate_predictions(yt, yp, class_names=names, n_boot=0)["ec57"]["veb"]


def test_ec57_only_for_aami_classes_and_undefined_ratios_are_none() -> None:
    assert "ec57" not in evaluate_predictions([0, 1, 2], [0, 1, 1], class_names=["a", "b", "c"], n_boot=0)
    names = ["N", "S", "V", "F", "Q"]
    res = evaluate_predictions([0, 0, 2], [0, 0, 0], class_names=names, n_boot=20)  # no S at all, V missed
    assert res["ec57"]["sveb"]["se"] is None and res["ec57"]["sveb"]["ppv"] is None and res["ec57"]["sveb"]["f1"] is None
    assert res["ec57"]["veb"]["se"] == 0.0 and res["ec57"]["veb"]["ppv"] is None and res["ec57"]["veb"]["f1"] == 0.0
    json.dumps(res, allow_nan=False)  # strict JSON: no NaN anywhere
