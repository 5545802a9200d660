"""The beat classifier's record-wise evaluation (:mod:`pedstream.train.beat_gbm`): the SVEB/VEB scores
against hand counts, record folds that never share a record, cross-validation in which no record is
scored by a model that saw it, and the probabilities of a model whose training rows lacked a class. The
beat tables are small ones made here with the real feature layout. (The shipped beat model's export and
its parity: tests/train/test_beat_export.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from pedstream.dsp.beat_features import feature_names
from pedstream.train.beat_data import BeatTable
from pedstream.train.beat_gbm import (
    CLASSES,
    VARIANTS,
    Variant,
    columns,
    cross_validate,
    fit,
    predict_proba,
    record_folds,
    scores,
)

N_COLS = len(feature_names(True, True))


def test_scores_count_sveb_and_veb_one_vs_rest_over_every_beat() -> None:
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 4])  # N N N S S V V V F Q
    pred = np.array([0, 1, 0, 1, 0, 2, 2, 0, 2, 2])
    s = scores(y, pred)
    assert s["n_beats"] == 10 and s["accuracy"] == pytest.approx(0.5)
    assert s["SVEB"]["Se"] == pytest.approx(1 / 2) and s["SVEB"]["+P"] == pytest.approx(1 / 2)
    assert s["VEB"]["Se"] == pytest.approx(2 / 3) and s["VEB"]["+P"] == pytest.approx(2 / 4)  # F and Q called V
    assert s["VEB"]["F1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert s["VEB"]["support"] == 3 and s["VEB"]["predicted"] == 4
    assert s["confusion"] == [[2, 1, 0, 0], [1, 1, 0, 0], [1, 0, 2, 0], [0, 0, 1, 0], [0, 0, 1, 0]]
    none = scores(np.zeros(3, int), np.zeros(3, int))
    assert none["SVEB"] == {"Se": 0.0, "+P": 0.0, "F1": 0.0, "support": 0, "predicted": 0}


def test_record_folds_are_disjoint_and_cover_every_record() -> None:
    recs = [f"r{i}" for i in range(7)]
    folds = record_folds(recs, 3)
    assert folds == [["r0", "r3", "r6"], ["r1", "r4"], ["r2", "r5"]]
    assert sorted(r for fold in folds for r in fold) == recs


def _table(record: str, rng: np.random.Generator, *, flipped: bool = False, n: int = 200) -> BeatTable:
    """Beats whose RR columns carry their class (bin of a value); ``flipped``: the opposite mapping."""
    level = rng.integers(0, 4, n)
    x = rng.normal(0.0, 0.05, (n, N_COLS))
    x[:, columns("rr")] += level[:, None].astype(float)
    y = (3 - level) if flipped else level
    return BeatTable(record=record, x=x, y=y.astype(np.int64), sample=np.arange(n) * 250, t=np.arange(n) * 0.7)


def test_cross_validation_never_scores_a_record_with_a_model_that_saw_it() -> None:
    """Record D (a few beats) labels the same beats the other way: scored by a model trained on A, B, C it
    is always wrong (a model that had seen D would get some of it right); A, B, C are right."""
    rng = np.random.default_rng(3)
    tables = [_table("A", rng), _table("B", rng), _table("C", rng), _table("D", rng, flipped=True, n=40)]
    out = cross_validate(VARIANTS["LDA, RR only"], tables, folds=4)
    pred = out["proba"].argmax(axis=1)
    assert out["proba"].shape == (640, len(CLASSES)) and np.allclose(out["proba"].sum(axis=1), 1.0)
    assert list(np.unique(out["record"])) == [0, 1, 2, 3]
    assert np.array_equal(out["y"], np.concatenate([t.y for t in tables]))
    acc = [float(np.mean(pred[out["record"] == i] == out["y"][out["record"] == i])) for i in range(4)]
    assert min(acc[:3]) > 0.95 and acc[3] < 0.05, acc
    also = cross_validate(VARIANTS["LDA, RR only"], tables, folds=4, also_score=tables)
    np.testing.assert_allclose(also["also_proba"], also["proba"])  # the same fold models score the copies


def test_a_class_missing_from_training_gets_probability_zero() -> None:
    rng = np.random.default_rng(5)
    t = _table("A", rng, n=120)
    y = t.y.copy()
    y[y == 3] = 0  # no F beat to learn from
    y[:5] = -1  # detections without a reference beat: left out
    y[5:8] = 4  # Q: not learnt
    v = Variant("HGB, RR only, a few trees", "rr", "hgb", "sqrt", {"max_iter": 5})
    model = fit(v, t.x, y)
    assert list(model.classes_) == [0, 1, 2]
    p = predict_proba(v, model, t.x)
    assert p.shape == (120, 4) and np.all(p[:, 3] == 0.0) and np.allclose(p.sum(axis=1), 1.0)
