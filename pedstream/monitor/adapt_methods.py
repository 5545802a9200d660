"""The adapted beat call of one stream: population probabilities mixed with its labelled beats (numpy only).

A feature beat model (:mod:`pedstream.dsp.beat_features`) gives every beat population probabilities
``p_global`` (C,). A clinician confirms or corrects a few beats of *this* patient; each labelled beat
keeps its feature vector. Later beats are then classified by

    p = (1 - w) * p_global + w * p_local,     w = mix * n / (n + n_half)

where ``p_local`` is a distance-weighted vote of the ``k`` nearest labelled beats (features divided by
the model's per-feature scale; or of the class means, or a soft vote of each labelled class's nearest
beat, or the probabilities of a per-patient L2 logistic regression on the labelled beats over the RR ratios
and template correlations) and ``n`` the number of labels (a few labels move the call a little, many move
it more).

The labels vote only for the classes they hold. With ``classes="labelled"`` the mixing stays among
those classes: a beat keeps the population's probability of every class the patient has no label of,
and only the probability mass of the labelled classes is redistributed,

    p[L] = (1 - w) * p_global[L] + w * p_global[L].sum() * p_local[L],   p[other] = p_global[other]

(``L``: the labelled classes). Without it (``classes="all"``), five minutes of labels holding no S beat
pull every S beat of the patient towards N. The method and its settings were chosen by record-wise
CV (bench/beat_adapt.py, docs/beats.md).

Patient-relative prematurity (``premature`` > 0): a beat called N whose RR before it is under
``min(premature * median, premature_margin * q01)`` of the RR before this patient's labelled N beats (q01:
the 1 % quantile; an irregular patient gets a lower limit) is called S, its N probability moved to S. No S
label needed: the population model sees a beat against the running RR, which a run of ectopic beats shortens.

:class:`PatientAdapter` holds one stream's labelled beats and computes the adapted calls; the
labels' bookkeeping (who, when, undo, the per-patient files) is :mod:`pedstream.monitor.adapt`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pedstream.dsp.beat_features import ADAPT_FEATURES, BEAT_FEATURES

__all__ = ["COMBINES", "FEATURE_SUBSETS", "METHODS", "PREMATURE_MIN_N", "SCOPES", "WEIGHTS", "AdaptSettings",
           "PatientAdapter", "fit_logistic"]


METHODS = ("knn", "prototype", "nearest", "linear")
COMBINES = ("mean", "product")
SCOPES = ("all", "labelled")
WEIGHTS = ("labels", "class")
# the adapter's feature vector is the model's beat features in this order (BEAT_FEATURES, then ADAPT_FEATURES)
_Z_NAMES = BEAT_FEATURES + ADAPT_FEATURES
# the features a per-patient linear model ("linear") sees: the RR ratios (prematurity against the local,
# long, median and sinus-like RR, and the neighbouring beats'), and with "rr+tpl" the beat's match to the
# running and the dominant template as well
_RR_RATIOS = ("pre_local", "post_local", "pre_long", "post_pre", "pre_med", "post_med", "prev_pre_local",
              "prev_post_local", "prev2_pre_local", "dom_pre", "dom_post")
_TEMPLATE = ("tpl_corr_qrs", "tpl_corr_full", "tpl_corr_p", "tpl_rmsd", "tpl_amp_ratio", "tpl_width_ratio",
             "dom_corr_qrs", "dom_corr_full", "dom_corr_p", "dom_rmsd", "dom_amp_ratio")
FEATURE_SUBSETS: dict[str, tuple[str, ...]] = {"rr": _RR_RATIOS, "rr+tpl": _RR_RATIOS + _TEMPLATE}
PREMATURE_MIN_N = 5  # labelled N beats the prematurity rule needs
_PRE_RR = _Z_NAMES.index("pre_rr")


@dataclass(frozen=True)
class AdaptSettings:
    """How one stream's labels adapt its calls (the model's ``adapt_settings`` metadata).

    ``method``: ``"knn"`` (a distance-weighted vote of the ``k`` nearest labelled beats), ``"prototype"``
    (a soft vote of the class means) or ``"nearest"`` (a soft vote of each labelled class's nearest
    beat, ``softmax(-d_c / tau)``); ``mix`` and ``n_half``: the weight ``w = mix * n / (n + n_half)``;
    ``combine``: ``"mean"`` ((1-w) p_global + w p_local) or ``"product"`` (p_global^(1-w) p_local^w,
    p_local smoothed); ``classes``: ``"all"`` (mixed over every class) or ``"labelled"`` (mixed only
    among the classes the labels hold; the population's probability of the others is kept);
    ``weight_by``: ``"labels"`` (``n`` = every label) or ``"class"`` (per beat, the expected
    ``mix * n_c / (n_c + n_half)`` over the classes ``c`` the local vote goes to: a vote for a class with
    few labels moves the call less).

    ``method="linear"``: a per-patient multinomial logistic regression with an L2 penalty ``l2`` (on the
    weights, not the intercepts; a few Newton steps) fitted on the labelled beats over the feature subset
    ``features`` (:data:`FEATURE_SUBSETS`: ``"rr"`` the RR ratios, ``"rr+tpl"`` those and the template
    correlations; each divided by the model's feature scale), its probabilities the local vote. It needs
    ``min_class`` labels of every labelled class: while a labelled class has fewer, the local vote falls
    back to the nearest labelled beat over every feature (``knn``, k=1).

    ``premature`` (0: off) and ``premature_margin``: the patient-relative prematurity rule of the module
    docstring (applied after the mixing, from ``PREMATURE_MIN_N`` labelled N beats on)."""

    method: str = "knn"
    k: int = 3
    mix: float = 0.8
    n_half: float = 10.0
    combine: str = "mean"
    classes: str = "all"
    tau: float = 1.0
    weight_by: str = "labels"
    features: str = "rr+tpl"
    l2: float = 1.0
    min_class: int = 3
    premature: float = 0.0
    premature_margin: float = 0.8

    def __post_init__(self) -> None:
        for name, value, allowed in (("method", self.method, METHODS), ("combine", self.combine, COMBINES),
                                     ("classes", self.classes, SCOPES), ("weight_by", self.weight_by, WEIGHTS),
                                     ("features", self.features, tuple(FEATURE_SUBSETS))):
            if value not in allowed:
                raise ValueError(f"adapt_settings: {name} {value!r} is not one of {list(allowed)}")
        if self.k < 1 or not 0.0 <= self.mix <= 1.0 or self.n_half < 0.0 or self.tau <= 0.0 or self.l2 <= 0.0 \
                or self.min_class < 1 or not 0.0 <= self.premature < 1.0 or not 0.0 < self.premature_margin <= 1.0:
            raise ValueError(f"adapt_settings: k >= 1, 0 <= mix <= 1, n_half >= 0, tau > 0, l2 > 0, min_class >= 1, "
                             f"0 <= premature < 1 and 0 < premature_margin <= 1 (got {self})")


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float, steps: int = 25,
                 tol: float = 1e-8) -> np.ndarray:
    """Multinomial logistic regression by Newton's method: ``(n_classes, F + 1)`` weights (the last column
    the intercept) minimising ``sum_i -log p(y_i | x_i) + l2 / 2 * |W|^2`` (intercepts not penalised; as
    scikit-learn's multinomial ``LogisticRegression(C=1/l2)``, for two classes its ``C=2/l2``). ``y`` holds
    indices ``0 .. n_classes-1``. Deterministic. Written here, not scikit-learn's, because the monitor
    side imports no scikit-learn (an import-linter contract) and a stream refits on every label."""
    x = np.asarray(x, dtype=np.float64)
    n, f = x.shape
    k = int(n_classes)
    xa = np.hstack([x, np.ones((n, 1))])
    onehot = np.zeros((n, k))
    onehot[np.arange(n), np.asarray(y, dtype=np.int64)] = 1.0
    pen = np.tile(np.r_[np.full(f, float(l2)), 1e-8], k)  # the intercepts: a tiny ridge (softmax has one spare)
    w = np.zeros(k * (f + 1))

    def loss(wv: np.ndarray) -> tuple[float, np.ndarray]:
        s = xa @ wv.reshape(k, f + 1).T
        s -= s.max(axis=1, keepdims=True)
        lse = np.log(np.exp(s).sum(axis=1))
        p = np.exp(s - lse[:, None])
        return float(-(onehot * (s - lse[:, None])).sum() + 0.5 * (pen * wv * wv).sum()), p

    obj, p = loss(w)
    for _ in range(steps):
        g = ((p - onehot).T @ xa).ravel() + pen * w
        # Hessian: sum_i (diag(p_i) - p_i p_i^T) kron x_i x_i^T
        h = np.zeros((k * (f + 1), k * (f + 1)))
        for a in range(k):
            for b in range(a, k):
                c = p[:, a] * ((a == b) - p[:, b])
                blk = (xa * c[:, None]).T @ xa
                h[a * (f + 1):(a + 1) * (f + 1), b * (f + 1):(b + 1) * (f + 1)] = blk
                h[b * (f + 1):(b + 1) * (f + 1), a * (f + 1):(a + 1) * (f + 1)] = blk.T
        h[np.diag_indices_from(h)] += pen
        step = np.linalg.solve(h, g)
        t = 1.0
        while True:  # backtracking: Newton's step, halved until the objective falls
            new, p_new = loss(w - t * step)
            if new <= obj or t < 1e-4:
                break
            t *= 0.5
        w, done = w - t * step, obj - new < tol * max(1.0, abs(obj))
        obj, p = new, p_new
        if done:
            break
    return w.reshape(k, f + 1)


def _softmax_over(logits: np.ndarray, present: np.ndarray, n_classes: int) -> np.ndarray:
    """(B, n_classes) probabilities: the softmax of ``logits`` (B, P) in the columns ``present``, 0 elsewhere."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    out = np.zeros((logits.shape[0], n_classes))
    out[:, present] = e / e.sum(axis=1, keepdims=True)
    return out


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) Euclidean distances between the rows of ``a`` and ``b`` (without an (A, B, F) temporary)."""
    d2 = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(d2, 0.0))


class PatientAdapter:
    """One stream's labelled beats and the adapted probabilities (see the module docstring)."""

    def __init__(self, *, classes: tuple[str, ...], scale: np.ndarray, settings: AdaptSettings = AdaptSettings(),
                 columns: np.ndarray | None = None) -> None:
        self.classes = tuple(classes)
        self.scale = np.maximum(np.asarray(scale, dtype=np.float64), 1e-6)
        self.columns = None if columns is None else np.asarray(columns, dtype=np.int64)
        self.settings = settings
        self._x: list[np.ndarray] = []
        self._y: list[int] = []
        self._linear: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (classes, subset, weights)
        self._limit: float | None = None  # the prematurity rule's RR limit (scaled)

    def __len__(self) -> int:
        return len(self._y)

    def _z(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.columns is not None:
            x = x[..., self.columns]
        return x / self.scale

    def set_labels(self, features: np.ndarray, labels: list[int] | np.ndarray) -> None:
        """Replace every label: ``features`` (n, F), ``labels`` (n,) class indices."""
        f = np.asarray(features, dtype=np.float64)
        self._x = [self._z(r) for r in f] if len(labels) else []
        self._y = [int(c) for c in labels]
        self._linear = self._fit_linear() if self.settings.method == "linear" else None
        self._limit = self._premature_limit()

    def _premature_limit(self) -> float | None:
        """The (scaled) RR before a beat under which a beat called N is called S, or ``None`` (rule off)."""
        if not self.settings.premature or "N" not in self.classes or "S" not in self.classes:
            return None
        n = self.classes.index("N")
        rr = np.asarray([x[_PRE_RR] for x, c in zip(self._x, self._y) if c == n])
        if rr.size < PREMATURE_MIN_N:
            return None
        return float(min(self.settings.premature * np.median(rr),
                         self.settings.premature_margin * np.quantile(rr, 0.01)))

    def premature_rule(self, p: np.ndarray, features: np.ndarray) -> np.ndarray:
        """``p`` (B, C) with the beats called N that are premature for this patient called S (module docstring)."""
        if self._limit is None:
            return p
        n, s = self.classes.index("N"), self.classes.index("S")
        hit = (p.argmax(axis=1) == n) & (self._z(np.atleast_2d(features))[:, _PRE_RR] < self._limit)
        out = p.copy()
        out[hit, s] += out[hit, n]
        out[hit, n] = 0.0
        return out

    def _subset(self, width: int) -> np.ndarray:
        """The columns of the scaled features the linear model sees (those of the subset present)."""
        idx = [_Z_NAMES.index(n) for n in FEATURE_SUBSETS[self.settings.features]]
        return np.asarray([i for i in idx if i < width], dtype=np.int64)

    def _fit_linear(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The per-patient linear model, or ``None`` (the fallback) while a labelled class has fewer than
        ``min_class`` labels or fewer than two classes are labelled."""
        if not self._y:
            return None
        ly = np.asarray(self._y, dtype=np.int64)
        present, counts = np.unique(ly, return_counts=True)
        if present.size < 2 or counts.min() < self.settings.min_class:
            return None
        cols = self._subset(self._x[0].size)
        if cols.size == 0:
            return None
        w = fit_logistic(np.stack(self._x)[:, cols], np.searchsorted(present, ly), present.size, l2=self.settings.l2)
        return present, cols, w

    def linear_fitted(self) -> bool:
        """Whether the local vote is the per-patient linear model (not its nearest-beat fallback)."""
        return self._linear is not None

    def local(self, features: np.ndarray) -> np.ndarray:
        """(B, C) probabilities from the labelled beats alone (uniform rows without labels)."""
        z = self._z(np.atleast_2d(features))
        c = len(self.classes)
        if not self._y:
            return np.full((z.shape[0], c), 1.0 / c)
        lx, ly = np.stack(self._x), np.asarray(self._y)
        if self.settings.method == "linear" and self._linear is not None:
            present, cols, w = self._linear
            return _softmax_over(z[:, cols] @ w[:, :-1].T + w[:, -1], present, c)
        if self.settings.method == "prototype":
            present = np.unique(ly)
            protos = np.stack([lx[ly == k].mean(axis=0) for k in present])
            d = _distances(z, protos)  # (B, P)
            return _softmax_over(-(d - d.min(axis=1, keepdims=True)), present, c)
        d = _distances(z, lx)  # (B, n)
        if self.settings.method == "nearest":
            present = np.unique(ly)
            dc = np.stack([d[:, ly == k].min(axis=1) for k in present], axis=1)  # (B, P)
            return _softmax_over(-(dc - dc.min(axis=1, keepdims=True)) / self.settings.tau, present, c)
        k = min(1 if self.settings.method == "linear" else self.settings.k, ly.size)  # linear's fallback: k=1
        near = np.argpartition(d, k - 1, axis=1)[:, :k]
        w = 1.0 / (np.take_along_axis(d, near, axis=1) + 1e-3)
        out = np.zeros((z.shape[0], c))
        np.add.at(out, (np.repeat(np.arange(z.shape[0]), k), ly[near].ravel()), w.ravel())
        return out / out.sum(axis=1, keepdims=True)

    def weight(self) -> float:
        n = len(self._y)
        return self.settings.mix * n / (n + self.settings.n_half) if n else 0.0

    def adapt(self, p_global: np.ndarray, features: np.ndarray) -> np.ndarray:
        """(B, C) adapted probabilities of beats with population probabilities ``p_global`` (B, C)."""
        p = np.atleast_2d(np.asarray(p_global, dtype=np.float64))
        if not len(self):
            return p
        return self.premature_rule(self.combine(p, self.local(features)), features)

    def labelled_classes(self) -> np.ndarray:
        """The class indices the labels hold (sorted)."""
        return np.unique(np.asarray(self._y, dtype=np.int64))

    def class_weights(self) -> np.ndarray:
        """(C,) ``mix * n_c / (n_c + n_half)`` for each class's label count ``n_c``."""
        n_c = np.bincount(np.asarray(self._y, dtype=np.int64), minlength=len(self.classes)).astype(np.float64)
        return self.settings.mix * n_c / np.maximum(n_c + self.settings.n_half, 1e-12)

    def combine(self, p_global: np.ndarray, p_local: np.ndarray) -> np.ndarray:
        """The adapted probabilities from the population and the local ones (see :class:`AdaptSettings`)."""
        w: float | np.ndarray = self.weight()
        if self.settings.weight_by == "class" and len(self):
            w = (np.asarray(p_local, dtype=np.float64) * self.class_weights()[None, :]).sum(axis=1, keepdims=True)
        p_global = np.asarray(p_global, dtype=np.float64)
        if self.settings.classes == "labelled" and len(self):
            cls = self.labelled_classes()  # only these classes' probability mass is redistributed
            out = p_global.copy()
            mass = p_global[:, cls].sum(axis=1, keepdims=True)
            part = self._mix(p_global[:, cls] / np.maximum(mass, 1e-12), p_local[:, cls], w)
            out[:, cls] = mass * part
            return out
        return self._mix(p_global, p_local, w)

    def _mix(self, p_global: np.ndarray, p_local: np.ndarray, w: float | np.ndarray) -> np.ndarray:
        if self.settings.combine == "product":
            k = max(1, min(self.settings.k, len(self)))
            local = (p_local * k + 0.5) / (k + 0.5 * p_local.shape[1])  # a vote of k, smoothed: never 0
            q = np.exp((1.0 - w) * np.log(np.maximum(p_global, 1e-9)) + w * np.log(local))
            return q / q.sum(axis=1, keepdims=True)
        return (1.0 - w) * p_global + w * p_local
