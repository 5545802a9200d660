"""Few-shot adaptation of one stream's beat classifier from a clinician's beat labels (numpy only).

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

:class:`PatientAdapter` is one stream's labelled beats; :class:`BeatMemory` the stream's recent
classified beats (time -> features), where a label's time is looked up (a label at a time with no beat
within ``tolerance_s`` is refused). Nothing here is shared between streams: labels never reach another
patient.
"""

from __future__ import annotations

import json
import os
import re
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pedstream.dsp.beat_features import ADAPT_FEATURES, BEAT_FEATURES
from pedstream.errors import ModelError, StreamError

__all__ = ["FEATURE_SUBSETS", "AdaptSettings", "BeatLabels", "BeatMemory", "LabelError", "PatientAdapter",
           "beat_labels_for", "default_labels_dir", "fit_logistic", "queue_labels", "read_label_file"]

_SAFE = re.compile(r"[A-Za-z0-9._-]{1,64}")


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


class BeatMemory:
    """A stream's recent classified beats: ``(t_signal, features)``, the newest ``capacity``."""

    def __init__(self, *, capacity: int = 20000, tolerance_s: float = 0.15) -> None:
        self.tolerance_s = float(tolerance_s)
        self._t: deque[float] = deque(maxlen=capacity)
        self._f: deque[np.ndarray] = deque(maxlen=capacity)

    def add(self, t: float, features: np.ndarray) -> None:
        self._t.append(float(t))
        self._f.append(np.asarray(features, dtype=np.float32))

    def find(self, t: float) -> np.ndarray | None:
        """The features of the beat nearest ``t`` within ``tolerance_s``; ``None`` when there is none."""
        if not self._t:
            return None
        ts = np.fromiter(self._t, dtype=np.float64, count=len(self._t))
        i = int(np.argmin(np.abs(ts - t)))
        return self._f[i] if abs(ts[i] - t) <= self.tolerance_s else None


class LabelError(StreamError):
    """A clinician label that cannot be applied (unknown stream or class, no beat at that time)."""


class BeatLabels:
    """Few-shot adaptation of every stream of an engine: one :class:`PatientAdapter` per stream.

    ``observe(sid, t, features)`` records each classified beat; ``adjust(sid, features, probs)`` is
    the adapted call; ``label(sid, [(t_signal, "S"), ...], who=...)`` checks every label first (an
    unknown stream or class, or a time with no beat within the tolerance, is one :class:`LabelError`
    and changes nothing), then adds them. Each stream's labels are a JSON file ``<folder>/<patient>.json``
    (``patient`` defaults to the stream id): every label with ``id``, ``t_signal``, ``label``, ``who``,
    ``when`` (UTC), its feature vector, and ``undone`` (``undo`` marks labels undone: reversible, nothing
    is erased). A stream that starts with the same patient id reloads its labels.

    Labels queued before the beats exist (``pedstream label STREAM --beats FILE``, :func:`queue_labels`)
    are entries with ``pending: true`` and no feature vector: read when the stream starts, each is
    applied to the beat classified within the tolerance of its time (``observe`` returns it, the
    engine writes a ``beat_label`` event), or marked ``unmatched`` once the stream's beats have passed
    its time without one.
    """

    def __init__(self, *, classes: tuple[str, ...], scale: np.ndarray, settings: AdaptSettings = AdaptSettings(),
                 columns: np.ndarray | None = None, folder: str | Path | None = None,
                 tolerance_s: float = 0.15) -> None:
        self.classes, self.scale, self.settings, self.columns = tuple(classes), scale, settings, columns
        self.folder = None if folder is None else Path(folder)
        self.tolerance_s = float(tolerance_s)
        self._streams: dict[str, tuple[str, BeatMemory, PatientAdapter, list[dict]]] = {}
        self._pending: dict[str, list[dict]] = {}  # per stream: queued labels still waiting for their beat

    def add_stream(self, sid: str, *, patient: str | None = None) -> None:
        patient = patient or sid
        if not _SAFE.fullmatch(patient):
            raise LabelError(sid, f"patient id {patient!r}: use letters, digits, '.', '_' or '-' (64 at most)")
        entries = self._load(patient)
        ad = PatientAdapter(classes=self.classes, scale=self.scale, settings=self.settings, columns=self.columns)
        self._streams[sid] = (patient, BeatMemory(tolerance_s=self.tolerance_s), ad, entries)
        self._pending[sid] = sorted((e for e in entries if e.get("pending")), key=lambda e: e["t_signal"])
        self._refit(sid)

    def remove_stream(self, sid: str) -> None:
        self._streams.pop(sid, None)
        self._pending.pop(sid, None)

    def observe(self, sid: str, t: float, features: np.ndarray) -> list[dict]:
        """Record a classified beat; returns the queued labels this beat resolved (applied to it, or
        ``unmatched``: their time has passed without a beat), usually none."""
        s = self._streams.get(sid)
        if s is None:
            return []
        s[1].add(t, features)
        pend = self._pending.get(sid)
        if not pend or pend[0]["t_signal"] > t + self.tolerance_s:
            return []
        done = []
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        while pend and pend[0]["t_signal"] <= t + self.tolerance_s:
            e = pend.pop(0)
            if abs(e["t_signal"] - t) <= self.tolerance_s:
                e.update(pending=False, features=[float(v) for v in features], applied_when=now)
            elif e["t_signal"] < t - self.tolerance_s:
                e.update(pending=False, unmatched=True, applied_when=now)
            else:  # pragma: no cover - excluded by the loop condition
                pend.insert(0, e)
                break
            done.append(e)
        if done:
            self._save(sid)
            self._refit(sid)
        return done

    def adjust(self, sid: str, features: np.ndarray, probs: np.ndarray) -> np.ndarray:
        s = self._streams.get(sid)
        if s is None or not len(s[2]):
            return probs
        return s[2].adapt(probs[None], features[None])[0]

    def entries(self, sid: str) -> list[dict]:
        """Every label entry of stream ``sid``'s patient (applied, pending, undone), oldest first."""
        s = self._streams.get(sid)
        return [] if s is None else list(s[3])

    def n_labels(self, sid: str) -> int:
        s = self._streams.get(sid)
        return 0 if s is None else len(s[2])

    def label(self, sid: str, labels: list[tuple[float, str]], *, who: str) -> list[dict]:
        """Apply ``labels`` to stream ``sid`` (all or none); returns the new entries."""
        s = self._streams.get(sid)
        if s is None:
            raise LabelError(sid, f"no such stream (streams: {sorted(self._streams) or 'none'})")
        new = []
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for t, cls in labels:
            if cls not in self.classes:
                raise LabelError(sid, f"label {cls!r} at t={t}: not a class of the beat model {list(self.classes)}")
            try:
                tf = float(t)
            except (TypeError, ValueError) as exc:
                raise LabelError(sid, f"label time {t!r} is not a number of seconds") from exc
            f = s[1].find(tf) if np.isfinite(tf) else None
            if f is None:
                raise LabelError(sid, f"no classified beat within {self.tolerance_s:g} s of t={tf:g}")
            new.append({"id": len(s[3]) + len(new) + 1, "t_signal": tf, "label": cls, "who": str(who), "when": now,
                        "undone": False, "features": [float(v) for v in f]})
        s[3].extend(new)
        self._save(sid)
        self._refit(sid)
        return new

    def undo(self, sid: str, ids: list[int] | None = None, *, who: str) -> int:
        """Mark labels ``ids`` (default: the newest active one) undone; returns how many."""
        s = self._streams.get(sid)
        if s is None:
            raise LabelError(sid, f"no such stream (streams: {sorted(self._streams) or 'none'})")
        active = [e for e in s[3] if not e["undone"]]
        targets = active[-1:] if ids is None else [e for e in active if e["id"] in set(ids)]
        if ids is not None and len(targets) != len(set(ids)):
            raise LabelError(sid, f"labels {sorted(set(ids) - {e['id'] for e in targets})} are not active labels")
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for e in targets:
            e.update(undone=True, undone_by=str(who), undone_when=now)
        self._save(sid)
        self._refit(sid)
        return len(targets)

    def _refit(self, sid: str) -> None:
        _, _, ad, entries = self._streams[sid]
        active = [e for e in entries if not e["undone"] and e["label"] in self.classes and e.get("features")]
        ad.set_labels(np.asarray([e["features"] for e in active], dtype=np.float64),
                      [self.classes.index(e["label"]) for e in active])

    def _path(self, patient: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{patient}.json"

    def _load(self, patient: str) -> list[dict]:
        p = self._path(patient)
        if p is None or not p.is_file():
            return []
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
            return [dict(e) for e in doc["labels"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LabelError(patient, f"label file {p} unreadable: {exc}") from exc

    def _save(self, sid: str) -> None:
        patient, _, _, entries = self._streams[sid]
        p = self._path(patient)
        if p is None:
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"patient": patient, "classes": list(self.classes), "labels": entries}, indent=1),
                       encoding="utf-8")
        os.replace(tmp, p)


def default_labels_dir() -> Path:
    """``$PEDSTREAM_LABELS_DIR``, else ``$XDG_DATA_HOME/pedstream/beat_labels`` (``~/.local/share/...``)."""
    env = os.environ.get("PEDSTREAM_LABELS_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "pedstream" / "beat_labels"


def beat_labels_for(session: object, *, folder: str | Path | None = None) -> BeatLabels | None:
    """The engine's :class:`BeatLabels` for a feature beat model (``None`` for other beat models): the
    model's classes, every feature of the beat divided by the model's feature scale, and the adaptation
    settings its metadata carries."""
    meta = dict(getattr(session, "metadata", {}) or {})
    seg = meta.get("segments") or {}
    if not seg.get("features") or not meta.get("feature_scale"):
        return None
    cols = np.arange(len(meta["feature_scale"]), dtype=np.int64)  # every feature of the beat (as bench/beat_adapt.py)
    try:
        settings = AdaptSettings(**{k: v for k, v in (meta.get("adapt_settings") or {}).items()
                                    if k in AdaptSettings.__dataclass_fields__})
    except (TypeError, ValueError) as exc:
        raise ModelError(str(getattr(session, "path", "beat model")), str(exc)) from exc
    return BeatLabels(classes=tuple(meta["class_names"]), scale=np.asarray(meta["feature_scale"], dtype=np.float64)[cols],
                      settings=settings, columns=cols, folder=default_labels_dir() if folder is None else folder)


def read_label_file(path: str | Path) -> list[tuple[float, str]]:
    """Beat labels of a text file: one ``t_signal,class`` (or whitespace-separated) per line, ``#``
    comments and a ``t_signal,label`` header allowed. A line that is not a time and a class is an error
    naming the line."""
    out = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p for p in re.split(r"[,;\s]+", line) if p]
        if i == 1 and parts and parts[0].lower() in ("t", "t_signal", "time", "beat_t"):
            continue
        try:
            t = float(parts[0])
            if len(parts) != 2 or not np.isfinite(t):
                raise ValueError
        except (ValueError, IndexError) as exc:
            raise LabelError(str(path), f"line {i}: {line!r} is not 't_signal,class'") from exc
        out.append((t, parts[1]))
    return out


def queue_labels(folder: str | Path, patient: str, labels: list[tuple[float, str]], *, classes: tuple[str, ...],
                 who: str) -> list[dict]:
    """Queue ``labels`` for the stream of ``patient`` (all or none): appended to ``<folder>/<patient>.json``
    as pending entries, applied to the stream's beats at those times when it runs (see :class:`BeatLabels`).
    An unknown class or a time that is not a finite number is one :class:`LabelError` and writes nothing."""
    if not _SAFE.fullmatch(patient):
        raise LabelError(patient, f"patient id {patient!r}: use letters, digits, '.', '_' or '-' (64 at most)")
    if not labels:
        raise LabelError(patient, "no labels given")
    for t, cls in labels:
        if cls not in classes:
            raise LabelError(patient, f"label {cls!r} at t={t}: not a class of the beat model {list(classes)}")
        if not np.isfinite(float(t)):
            raise LabelError(patient, f"label time {t!r} is not a finite number of seconds")
    book = BeatLabels(classes=classes, scale=np.ones(1), folder=folder)
    entries = book._load(patient)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    new = [{"id": len(entries) + i + 1, "t_signal": float(t), "label": cls, "who": str(who), "when": now,
            "undone": False, "pending": True, "features": None} for i, (t, cls) in enumerate(labels)]
    book._streams[patient] = (patient, BeatMemory(), PatientAdapter(classes=classes, scale=np.ones(1)), entries + new)
    book._save(patient)
    return new


def label_command(*, stream: str, beats_file: Path, who: str | None = None, labels_dir: Path | None = None,
                  model: Path | None = None) -> list[dict]:
    """``pedstream label STREAM --beats FILE``: queue the labels of FILE (:func:`read_label_file`) for
    the stream (patient) ``stream`` in the labels folder the monitor reads (:func:`default_labels_dir`);
    a monitor that starts the stream applies them to its beats at those times (:class:`BeatLabels`).
    The classes are those of ``model`` (a feature beat model; default the shipped ``models/mitdb-beats``
    classes N, S, V, F)."""
    import getpass

    classes: tuple[str, ...] = ("N", "S", "V", "F")
    if model is not None:
        from pedstream.model.runtime import read_metadata

        classes = tuple(str(c) for c in read_metadata(model).get("class_names", classes))
    who = who or getpass.getuser()
    folder = Path(labels_dir) if labels_dir is not None else default_labels_dir()
    new = queue_labels(folder, stream, read_label_file(beats_file), classes=classes, who=who)
    counts = {c: sum(1 for e in new if e["label"] == c) for c in classes}
    print(f"queued {len(new)} beat labels for {stream} ({', '.join(f'{c} {n}' for c, n in counts.items() if n)}) "
          f"in {folder / (stream + '.json')}: applied when the monitor classifies beats at those times")
    return new
