"""Evaluation metrics for the arrhythmia classifier (numpy + scikit-learn; no torch).

:func:`evaluate_predictions` returns the JSON-ready dict that ``pedstream eval`` writes:
top-1 accuracy, macro precision / recall / F1 / F2, per-class precision / recall / F1 / support,
the confusion matrix (rows = true class, columns = predicted class) and percentile-bootstrap 95%
intervals, resampling either samples or, with ``groups``, whole subjects (the honest choice when
windows of one subject are correlated).

Which classes the macro averages cover. The headline ``macro_*`` values (and their ``ci95``) follow
scikit-learn's own convention (``average="macro"`` without ``labels``): they average over the
EVALUATED classes, those that occur in ``y_true`` or in ``y_pred``. A class with no test samples
that the model never predicts says nothing about the model, so it is left out; a class with no test
samples that the model DOES predict stays in with precision, recall and F 0, so false alarms are
punished. Averaging over every configured class instead (the old headline) scales every score down
by the share of classes the test set lacks (demo model: 13 configured classes, 5 absent and never
predicted, macro F1 0.44 instead of 0.71), which hides how well the model does on what was tested.
Both other views are kept: ``all_classes`` (macro over every configured class, zero_division=0: one
fixed denominator, as in the published table) and ``present_classes`` (test support only).
``per_class``, ``classes`` and ``confusion`` always cover all configured classes.

AAMI EC57 beat statistics (``ec57``, only when the class names include N, S, V, F and Q, the AAMI
grouping of MIT-BIH): see :func:`ec57_statistics`.

The bootstrap scores every resample over the label set fixed from the full sample (the evaluated
classes, or all classes for ``all_classes["ci95"]``), not one re-derived per resample, so a resample
that happens to lack a class scores it 0 and the interval is about the same quantity as the point
estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, fbeta_score, precision_recall_fscore_support

from pedstream.errors import PedstreamError

__all__ = ["AAMI_CLASSES", "HEADLINE_METRICS", "ec57_statistics", "evaluate_predictions", "scores_from_confusion",
           "plot_confusion"]

HEADLINE_METRICS = ("top1", "macro_precision", "macro_recall", "macro_f1", "macro_f2")
AAMI_CLASSES = ("N", "S", "V", "F", "Q")
EC57_STATS = ("se", "ppv", "f1")


def _ec57_counts(c: np.ndarray, idx: dict[str, int]) -> dict[str, dict[str, np.ndarray]]:
    """tp/fn/fp of VEB and SVEB from (N, C, C) confusions (rows = reference, columns = classified)."""
    v, s, f = idx["V"], idx["S"], idx["F"]
    tp_v = c[:, v, v]
    tp_s = c[:, s, s]
    return {
        "veb": {"tp": tp_v, "fn": c[:, v, :].sum(axis=1) - tp_v, "fp": c[:, :, v].sum(axis=1) - tp_v - c[:, f, v]},
        "sveb": {"tp": tp_s, "fn": c[:, s, :].sum(axis=1) - tp_s, "fp": c[:, :, s].sum(axis=1) - tp_s},
    }


def _ratios(k: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    tp, fn, fp = (np.asarray(k[n], dtype=np.float64) for n in ("tp", "fn", "fp"))
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"se": np.where(tp + fn > 0, tp / (tp + fn), np.nan),
                "ppv": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
                "f1": np.where(2 * tp + fn + fp > 0, 2 * tp / (2 * tp + fn + fp), np.nan)}


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def ec57_statistics(conf: np.ndarray, classes: Sequence[str], *,
                    boot_confs: np.ndarray | None = None) -> dict[str, Any] | None:
    """AAMI EC57 (ANSI/AAMI EC57:2012; de Chazal et al. 2004) VEB and SVEB statistics.

    Convention (``conf`` rows = reference class, columns = classified class; AAMI classes N, S, V, F, Q):

    - VEB (V positive): ``tp`` = V classified V; ``fn`` = V classified as anything else; ``fp`` = beats of
      N, S or Q classified V. Fusion (F) beats classified V are NOT false positives (EC57).
    - SVEB (S positive): ``tp`` = S classified S; ``fn`` = S classified otherwise; ``fp`` = any other
      reference class (N, V, F, Q) classified S.
    - ``se`` = tp / (tp + fn) (sensitivity), ``ppv`` = tp / (tp + fp) (positive predictivity),
      ``f1`` = 2 tp / (2 tp + fn + fp); None when the denominator is 0.

    The counts are per scored window: they are beat statistics when each window is one beat
    (``segments.mode = "beat"``). With ``boot_confs`` (n_boot, C, C) bootstrap confusions each part gets
    ``ci95``: {se, ppv, f1} -> [lo, hi] (percentile, resamples where the ratio is undefined are dropped).
    Returns ``{"veb": {...}, "sveb": {...}, "convention": str}``, or None when the class names are not
    a superset of the AAMI classes.
    """
    names = [str(c) for c in classes]
    if not set(AAMI_CLASSES) <= set(names):
        return None
    idx = {k: names.index(k) for k in AAMI_CLASSES}
    counts = _ec57_counts(np.asarray(conf, dtype=np.int64)[None], idx)
    boot = None
    if boot_confs is not None and len(boot_confs):
        boot = {part: _ratios(k) for part, k in _ec57_counts(np.asarray(boot_confs, dtype=np.float64), idx).items()}
    out: dict[str, Any] = {}
    for part, k in counts.items():
        r = _ratios(k)
        entry: dict[str, Any] = {name: _finite(r[name][0]) for name in EC57_STATS}
        entry.update({n: int(k[n][0]) for n in ("tp", "fn", "fp")})
        if boot is not None:
            entry["ci95"] = {name: ([float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]
                                    if np.isfinite(v).any() else None)
                             for name, v in boot[part].items()}
        out[part] = entry
    out["convention"] = ("AAMI EC57: rows reference, columns classified; VEB fp excludes F classified V; "
                         "SVEB fp counts every non-S class classified S")
    return out


def _as_labels(values: Any, name: str, n_classes: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise PedstreamError(f"evaluate_predictions: {name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise PedstreamError(f"evaluate_predictions: {name} must hold integer class indices")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise PedstreamError(
            f"evaluate_predictions: {name} holds class index {int(arr.min() if arr.min() < 0 else arr.max())},"
            f" expected 0..{n_classes - 1}"
        )
    return arr


def scores_from_confusion(conf: np.ndarray, *, classes: np.ndarray | None = None) -> dict[str, float]:
    """Headline metrics from confusion matrices, vectorised (used by the bootstrap).

    Args:
        conf: (C, C) or (N, C, C) counts, rows = true class.
        classes: optional index array of the classes to average over (default all).

    Returns:
        dict of ``HEADLINE_METRICS`` -> float (or (N,) arrays for stacked input); zero_division=0.
        Identical to scikit-learn's ``average="macro", labels=classes, zero_division=0``: the label
        set is taken as given, never re-derived from ``conf`` (a listed class with no true and no
        predicted samples scores 0).
    """
    c = np.asarray(conf, dtype=np.float64)
    single = c.ndim == 2
    if single:
        c = c[None]
    tp = np.diagonal(c, axis1=1, axis2=2)  # (N, C)
    support = c.sum(axis=2)  # true counts (N, C)
    predicted = c.sum(axis=1)  # (N, C)
    total = c.sum(axis=(1, 2))  # (N,)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(predicted > 0, tp / predicted, 0.0)
        rec = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
        f2 = np.where(4 * prec + rec > 0, 5 * prec * rec / (4 * prec + rec), 0.0)
        top1 = np.where(total > 0, tp.sum(axis=1) / total, 0.0)
    idx = np.arange(c.shape[1]) if classes is None else np.asarray(classes)
    out = {
        "top1": top1,
        "macro_precision": prec[:, idx].mean(axis=1),
        "macro_recall": rec[:, idx].mean(axis=1),
        "macro_f1": f1[:, idx].mean(axis=1),
        "macro_f2": f2[:, idx].mean(axis=1),
    }
    if single:
        return {k: float(v[0]) for k, v in out.items()}
    return out


def _bootstrap_confusions(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, *, n_boot: int, seed: int, groups: np.ndarray | None
) -> np.ndarray:
    """(n_boot, C, C) confusion matrices of bootstrap resamples of windows or, with ``groups``, of subjects."""
    rng = np.random.default_rng(seed)
    cells = y_true * n_classes + y_pred  # (n,)
    cc = n_classes * n_classes
    if groups is None:
        n = len(cells)
        chunk = max(1, min(n_boot, 4_000_000 // n))  # bound memory: chunk x n indices at a time
        parts = []
        for start in range(0, n_boot, chunk):
            k = min(chunk, n_boot - start)
            idx = rng.integers(0, n, size=(k, n))  # (k, n)
            flat = cells[idx] + (np.arange(k) * cc)[:, None]
            parts.append(np.bincount(flat.ravel(), minlength=k * cc).reshape(k, n_classes, n_classes))
        return np.concatenate(parts, axis=0)  # (n_boot, C, C)
    _, gid = np.unique(groups, return_inverse=True)
    n_groups = int(gid.max()) + 1
    per_group = np.zeros((n_groups, cc))  # (G, C*C)
    np.add.at(per_group, (gid, cells), 1.0)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    weights = np.zeros((n_boot, n_groups))
    np.add.at(weights, (np.repeat(np.arange(n_boot), n_groups), draws.ravel()), 1.0)
    return (weights @ per_group).reshape(n_boot, n_classes, n_classes)


def _percentile_ci(confs: np.ndarray, classes: Sequence[int]) -> dict[str, list[float]]:
    """Percentile 95% intervals of the headline metrics of (n_boot, C, C) ``confs``, macro over the
    fixed index list ``classes``."""
    scores = scores_from_confusion(confs, classes=np.asarray(classes, dtype=np.int64))
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in scores.items()}


def _macro(prec: np.ndarray, rec: np.ndarray, f1: np.ndarray, f2: np.ndarray, idx: list[int]) -> dict[str, float]:
    return {"macro_precision": float(np.mean(prec[idx])), "macro_recall": float(np.mean(rec[idx])),
            "macro_f1": float(np.mean(f1[idx])), "macro_f2": float(np.mean(f2[idx]))}


def evaluate_predictions(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    *,
    class_names: Sequence[str],
    y_prob: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    groups: Sequence[Any] | np.ndarray | None = None,
) -> dict[str, Any]:
    """Score predictions.

    Args:
        y_true, y_pred: (n,) class indices into ``class_names``.
        class_names: the C class names, in index order.
        y_prob: optional (n, C) class probabilities; adds ``macro_auroc`` (one-vs-rest, averaged over
            classes that have both positives and negatives in y_true; None when there are none).
        n_boot: bootstrap resamples for ``ci95`` (0 disables: ``ci95`` is then ``{}``).
        seed: bootstrap seed (same seed, same intervals).
        groups: optional (n,) subject ids; the bootstrap then resamples subjects, not windows.

    Returns:
        dict with keys ``top1``, ``macro_precision``, ``macro_recall``, ``macro_f1``, ``macro_f2``
        (the headline: macro over the evaluated classes = those occurring in y_true or y_pred,
        zero_division=0; see the module docstring), ``evaluated_classes`` (their names, in class
        order), ``per_class`` (ALL classes: name -> {precision, recall, f1, support}), ``classes``
        (all names), ``confusion`` (C x C list of lists, rows = true), ``ci95`` (headline metric ->
        [lo, hi], label set fixed to the evaluated classes), ``n`` (samples), ``all_classes``
        ({classes: all names, the four macro scores over every configured class, and their ``ci95``
        when bootstrapped}), ``present_classes`` ({classes: names with support > 0, the four macro
        scores over them}), plus ``macro_auroc`` when y_prob is given, ``n_groups`` with groups and
        ``ec57`` (:func:`ec57_statistics`, with bootstrap ``ci95``) when the classes are the AAMI ones.
    """
    names = [str(c) for c in class_names]
    n_classes = len(names)
    if n_classes < 2:
        raise PedstreamError(f"evaluate_predictions: need at least 2 class names, got {n_classes}")
    t = _as_labels(y_true, "y_true", n_classes)
    p = _as_labels(y_pred, "y_pred", n_classes)
    if t.shape != p.shape:
        raise PedstreamError(f"evaluate_predictions: y_true has {t.size} entries but y_pred has {p.size}")
    if t.size == 0:
        raise PedstreamError("evaluate_predictions: no predictions to score")
    if n_boot < 0:
        raise PedstreamError(f"evaluate_predictions: n_boot must be >= 0, got {n_boot}")
    g = None
    if groups is not None:
        g = np.asarray(groups)
        if g.shape != t.shape:
            raise PedstreamError(f"evaluate_predictions: groups has {g.size} entries, expected {t.size}")

    labels = list(range(n_classes))
    conf = confusion_matrix(t, p, labels=labels)  # (C, C)
    prec, rec, f1, support = precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
    f2 = fbeta_score(t, p, beta=2.0, labels=labels, average=None, zero_division=0)
    n_pred = conf.sum(axis=0)  # (C,) predictions per class
    evaluated = [i for i in labels if support[i] > 0 or n_pred[i] > 0]  # never empty: t.size > 0
    present = [i for i in labels if support[i] > 0]
    result: dict[str, Any] = {
        "top1": float(accuracy_score(t, p)),
        **_macro(prec, rec, f1, f2, evaluated),
        "evaluated_classes": [names[i] for i in evaluated],
        "per_class": {
            names[i]: {
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in labels
        },
        "classes": names,
        "confusion": conf.astype(int).tolist(),
        "n": int(t.size),
        "all_classes": {"classes": list(names), **_macro(prec, rec, f1, f2, labels)},
        "present_classes": {"classes": [names[i] for i in present], **_macro(prec, rec, f1, f2, present)},
    }
    result["ci95"] = {}
    confs = None
    if n_boot > 0:
        confs = _bootstrap_confusions(t, p, n_classes, n_boot=n_boot, seed=seed, groups=g)  # (n_boot, C, C)
        result["ci95"] = _percentile_ci(confs, evaluated)
        result["all_classes"]["ci95"] = _percentile_ci(confs, labels)
    ec57 = ec57_statistics(conf, names, boot_confs=confs)
    if ec57 is not None:
        result["ec57"] = ec57
    if g is not None:
        result["n_groups"] = int(len(np.unique(g)))
    if y_prob is not None:
        result["macro_auroc"] = _macro_auroc(t, np.asarray(y_prob, dtype=np.float64), n_classes)
    return result


def _macro_auroc(t: np.ndarray, prob: np.ndarray, n_classes: int) -> float | None:
    from sklearn.metrics import roc_auc_score

    if prob.shape != (t.size, n_classes):
        raise PedstreamError(f"evaluate_predictions: y_prob must be ({t.size}, {n_classes}), got {prob.shape}")
    aucs = []
    for c in range(n_classes):
        pos = t == c
        if 0 < pos.sum() < t.size:
            aucs.append(roc_auc_score(pos, prob[:, c]))
    return float(np.mean(aucs)) if aucs else None


def plot_confusion(result: dict[str, Any], out_png: str | Path, *, normalize: bool = True) -> Path:
    """Draw ``result["confusion"]`` (rows = true) as a PNG; row-normalised (recall per cell) when
    ``normalize``, with the raw counts written in each cell. Returns the path written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    try:
        conf = np.asarray(result["confusion"], dtype=np.float64)
        names = list(result["classes"])
    except KeyError as exc:
        raise PedstreamError(f"plot_confusion: result has no {exc.args[0]!r} (use evaluate_predictions)") from exc
    if conf.ndim != 2 or conf.shape != (len(names), len(names)):
        raise PedstreamError(f"plot_confusion: confusion must be {len(names)}x{len(names)}, got {conf.shape}")
    rows = conf.sum(axis=1, keepdims=True)
    shown = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0) if normalize else conf
    size = 1.2 + 0.55 * len(names)
    fig = Figure(figsize=(size + 1.5, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(shown.max(), 1.0))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class" if normalize else "count")
    ax.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    thresh = (1.0 if normalize else max(shown.max(), 1.0)) / 2
    for i in range(len(names)):
        for j in range(len(names)):
            if conf[i, j] > 0:
                ax.text(j, i, f"{int(conf[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > thresh else "black")
    title = f"top-1 {result['top1']:.3f}  macro-F1 {result['macro_f1']:.3f}" if "macro_f1" in result else ""
    ax.set_title(title)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out
