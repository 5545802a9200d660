"""Gradient-boosting beat classifier on :mod:`pedstream.dsp.beat_features`, its baselines and record-wise CV.

Classes: AAMI N, S, V, F (Q, 8 beats in DS1, is not learnt: its beats are scored and always missed).
Scores: SVEB (S) and VEB (V) sensitivity, positive predictivity and F1 over the pooled beats of all
test folds (gross statistics, one-vs-rest over every beat: an F or Q beat called V is a false VEB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from pedstream.dsp.beat_features import ADAPT_FEATURES, BEAT_FEATURES, CONTEXT_FEATURES, feature_names

__all__ = ["CLASSES", "VARIANTS", "Variant", "columns", "make_model", "fit", "predict_proba", "scores",
           "record_folds", "cross_validate"]

CLASSES = ("N", "S", "V", "F")
_RR = BEAT_FEATURES[:16]
_MORPH = tuple(n for n in BEAT_FEATURES if n.startswith(("ds", "qrs")) or n in ("r_amp", "t_amp", "p_spread"))
_TPL = tuple(n for n in BEAT_FEATURES if n.startswith(("tpl_", "prev_corr", "prev_tpl")))


def columns(kind: str) -> list[int]:
    """Column indices (in :func:`feature_names` with ``adapt=True, context=True``) of a feature set
    (``+ctx`` appended to a set's name adds :data:`CONTEXT_FEATURES`)."""
    names = feature_names(True, True)
    if kind.endswith("+ctx"):
        return columns(kind[: -len("+ctx")]) + [names.index(n) for n in CONTEXT_FEATURES]
    sets = {
        "rr": _RR,
        "rr+tpl": _RR + _TPL + ("qrs_width",),
        "part1": BEAT_FEATURES,
        "part1-morph": tuple(n for n in BEAT_FEATURES if n not in _MORPH),
        "part2": BEAT_FEATURES + ADAPT_FEATURES,
        "part2-morph": tuple(n for n in BEAT_FEATURES if n not in _MORPH) + ADAPT_FEATURES,
    }
    return [names.index(n) for n in sets[kind]]


@dataclass(frozen=True)
class Variant:
    name: str
    features: str
    model: str  # "hgb", "lda", "rule"
    weights: str = "balanced"  # "balanced", "sqrt", "none"
    params: dict[str, Any] = field(default_factory=dict)
    augment: str = ""  # "" or "<nstdb noise kind>@<snr dB>": a noisy copy of every training record added


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("RR rule (premature -> S)", "rr", "rule"),
    Variant("LDA, RR only", "rr", "lda"),
    Variant("LDA, all part-1 features", "part1", "lda"),
    Variant("HGB, RR only", "rr", "hgb", "sqrt"),
    Variant("HGB, RR + template", "rr+tpl", "hgb", "sqrt"),
    Variant("HGB, part 1, sqrt weights", "part1", "hgb", "sqrt"),
    Variant("HGB, part 1 without raw morphology", "part1-morph", "hgb", "sqrt"),
    Variant("HGB, part 2 (adapted), sqrt weights", "part2", "hgb", "sqrt"),
    Variant("HGB, part 2 without raw morphology", "part2-morph", "hgb", "sqrt"),
    Variant("LDA, part 2 features", "part2", "lda"),
    Variant("HGB, part 2, balanced, regularised", "part2", "hgb", "balanced",
            {"max_leaf_nodes": 8, "min_samples_leaf": 200, "max_iter": 150, "learning_rate": 0.05}),
    Variant("LDA + HGB blend, part 2", "part2", "blend", "balanced",
            {"max_leaf_nodes": 8, "min_samples_leaf": 200, "max_iter": 150, "learning_rate": 0.05}),
    # neighbouring beats as context (CONTEXT_FEATURES), real-noise augmentation
    Variant("LDA, part 2 + context", "part2+ctx", "lda"),
    Variant("HGB, part 2 without raw morphology + context", "part2-morph+ctx", "hgb", "sqrt"),
    Variant("HGB, part 2 without raw morphology + context, nstdb noise", "part2-morph+ctx", "hgb", "sqrt",
            augment="all@12"),
    Variant("HGB, part 2 without raw morphology, nstdb noise", "part2-morph", "hgb", "sqrt", augment="all@12"),
    Variant("HGB, part 2 without raw morphology + context, regularised", "part2-morph+ctx", "hgb", "sqrt",
            {"max_leaf_nodes": 15, "min_samples_leaf": 200, "max_iter": 200, "learning_rate": 0.05}),
]}


def _weights(y: np.ndarray, how: str) -> np.ndarray | None:
    if how == "none":
        return None
    counts = np.bincount(y, minlength=len(CLASSES)).astype(float)
    w = counts.sum() / np.maximum(counts, 1.0) / len(CLASSES)
    if how == "sqrt":
        w = np.sqrt(w)
    return w[y]


class _Rule:
    """RR-only rule: a beat whose pre-RR is under 0.85 of the local mean and followed by a longer
    interval is S, every other beat N (it cannot see V)."""

    classes_ = np.arange(len(CLASSES))

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: Any = None) -> "_Rule":
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        names = list(_RR)
        s = (x[:, names.index("pre_local")] < np.log(0.85)) & (x[:, names.index("post_pre")] > np.log(1.1))
        p = np.zeros((x.shape[0], len(CLASSES)))
        p[:, 0], p[:, 1] = ~s, s
        return p


class _Blend:
    """The mean of the LDA and gradient-boosting probabilities (each fitted on the same rows)."""

    def __init__(self, lda: Any, hgb: Any) -> None:
        self.lda, self.hgb = lda, hgb

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: Any = None) -> "_Blend":
        self.lda.fit(x, y)
        self.hgb.fit(x, y, sample_weight=sample_weight)
        self.classes_ = self.hgb.classes_
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return 0.5 * (self.lda.predict_proba(x) + self.hgb.predict_proba(x))


def make_model(v: Variant, *, seed: int = 0) -> Any:
    if v.model == "rule":
        return _Rule()
    if v.model == "blend":
        return _Blend(make_model(Variant(v.name, v.features, "lda"), seed=seed),
                      make_model(Variant(v.name, v.features, "hgb", v.weights, v.params), seed=seed))
    if v.model == "lda":
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto",
                                                                          priors=np.full(len(CLASSES), 0.25)))
    from sklearn.ensemble import HistGradientBoostingClassifier

    params = {"max_iter": 120, "learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 40,
              "l2_regularization": 1.0, "early_stopping": False, "random_state": seed, **v.params}
    return HistGradientBoostingClassifier(**params)


def fit(v: Variant, x: np.ndarray, y: np.ndarray, *, seed: int = 0,
        sample_weight_scale: np.ndarray | None = None) -> Any:
    """Fit ``v`` on the rows of ``y`` in N/S/V/F (``x`` has every :func:`feature_names` ``(adapt=True,
    context=True)`` column; rows labelled -1 or Q are left out). ``sample_weight_scale`` (n,) multiplies
    each row's class weight (e.g. a patient's own labelled beats weighted up; not for LDA)."""
    keep = (y >= 0) & (y < len(CLASSES))  # -1: a detection with no reference beat
    m = make_model(v, seed=seed)
    xs, ys = x[keep][:, columns(v.features)], y[keep]
    w = _weights(ys, v.weights)
    if sample_weight_scale is not None:
        w = (np.ones(ys.size) if w is None else w) * np.asarray(sample_weight_scale, dtype=np.float64)[keep]
    if v.model == "lda":
        m.fit(xs, ys)
    else:
        m.fit(xs, ys, sample_weight=w)
    return m


def predict_proba(v: Variant, model: Any, x: np.ndarray) -> np.ndarray:
    """(n, 4) probabilities of N, S, V, F (a class the training rows lacked gets 0)."""
    p = np.asarray(model.predict_proba(x[:, columns(v.features)]), dtype=np.float64)
    known = np.asarray(getattr(model, "classes_", np.arange(p.shape[1])), dtype=np.int64)
    if p.shape[1] == len(CLASSES) and np.array_equal(known, np.arange(len(CLASSES))):
        return p
    out = np.zeros((p.shape[0], len(CLASSES)))
    out[:, known] = p
    return out


def scores(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """SVEB/VEB Se, +P, F1 (one-vs-rest over all beats) and the 5x4 confusion (truth N S V F Q)."""
    out: dict[str, Any] = {"n_beats": int(y.size)}
    for name, k in (("SVEB", 1), ("VEB", 2)):
        tp = int(np.sum((y == k) & (pred == k)))
        se = tp / max(int(np.sum(y == k)), 1)
        ppv = tp / max(int(np.sum(pred == k)), 1)
        out[name] = {"Se": se, "+P": ppv, "F1": 2 * se * ppv / (se + ppv) if se + ppv > 0 else 0.0,
                     "support": int(np.sum(y == k)), "predicted": int(np.sum(pred == k))}
    out["confusion"] = [[int(np.sum((y == i) & (pred == j))) for j in range(len(CLASSES))] for i in range(5)]
    out["accuracy"] = float(np.mean(y == pred))
    return out


def record_folds(records: Sequence[str], k: int) -> list[list[str]]:
    """Records into ``k`` folds (round-robin over the given order): record-wise, no record in two folds."""
    return [list(records[i::k]) for i in range(k)]


def cross_validate(v: Variant, tables: Sequence[Any], *, folds: int, seed: int = 0,
                   train_tables: Sequence[Any] | None = None, extra_train: Sequence[Any] = (),
                   also_score: Sequence[Any] = ()) -> dict[str, np.ndarray]:
    """Record-wise CV: every record's beats scored by a model that never saw its record (trained on the
    other records of ``train_tables``, default ``tables``: e.g. reference positions to train, the
    engine's beats to score; ``extra_train``: more tables, e.g. noisy copies, used in training when their
    record is not a test record). Returns per beat ``proba`` (n, 4), ``y``, ``record`` (index into
    ``tables``), ``t`` (seconds); with ``also_score`` (e.g. noisy copies of ``tables``, same records),
    those tables scored by the same fold models too: ``also_proba``, ``also_y``, ``also_record``, ``also_t``."""
    names = [t.record for t in tables]
    proba = [np.zeros((t.y.size, len(CLASSES))) for t in tables]
    also = [np.zeros((t.y.size, len(CLASSES))) for t in also_score]
    for test in record_folds(names, folds):
        train = [t for t in [*(train_tables or tables), *extra_train] if t.record not in test]
        model = fit(v, np.concatenate([t.x for t in train]), np.concatenate([t.y for t in train]), seed=seed)
        for i, t in enumerate(tables):
            if t.record in test:
                proba[i] = predict_proba(v, model, t.x)
        for i, t in enumerate(also_score):
            if t.record in test:
                also[i] = predict_proba(v, model, t.x)
    out = {"proba": np.concatenate(proba), "y": np.concatenate([t.y for t in tables]),
           "record": np.concatenate([np.full(t.y.size, i) for i, t in enumerate(tables)]),
           "t": np.concatenate([t.t for t in tables])}
    if also_score:
        out |= {"also_proba": np.concatenate(also), "also_y": np.concatenate([t.y for t in also_score]),
                "also_record": np.concatenate([np.full(t.y.size, i) for i, t in enumerate(also_score)]),
                "also_t": np.concatenate([t.t for t in also_score])}
    return out
