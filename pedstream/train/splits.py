"""Train/validation/test splits of labelled windows (numpy + scikit-learn, no torch).

Four protocols (``split.protocol``):

- ``segment_split``: stratified by class over *windows*, the protocol of the published Leipzig
  results. Windows of one child land in train and test alike, so scores are optimistic; the
  result says so (``leaks_subjects``, ``warning``).
- ``grouped_kfold``: subject-independent K-fold (``StratifiedGroupKFold``): no subject in two of
  train/val/test; validation subjects are carved out of the training subjects.
- ``leave_one_subject_out``: one fold per subject (in sorted subject order) as the test set.
- ``train_on_all`` (protocol ``all``): every window trains except a validation group of whole
  subjects (records without a subject table) carved out as the other protocols do; no test set.
  For a training folder such as MIT-BIH DS1 that is scored on another folder (DS2) afterwards.

:func:`make_split` applies the configured protocol to a window set (anything with ``labels`` and
``subjects`` (N,) arrays) and returns a :class:`Split` with the subjects of each part.

Every function returns :class:`SplitIndices` (sorted int64 window indices; it unpacks as
``train, val, test``) or, with ``fold=None``, the list of all folds. ``val_fraction`` is a fraction
of *all* windows (0 = no validation set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from pedstream.errors import ConfigError, PedstreamError

__all__ = ["PROTOCOLS", "LEAKAGE_TEXT", "Split", "SplitIndices", "SubjectLeakageWarning", "make_split",
           "segment_split", "grouped_kfold", "leave_one_subject_out", "shared_subjects", "train_on_all"]

PROTOCOLS = ("segment", "subject", "loso", "all")
LEAKAGE_TEXT = ("segment protocol: windows of the same subject are in train and test (as published); "
                "its scores overstate performance on new patients; use --protocol subject for that")


class SubjectLeakageWarning(UserWarning):
    """The segment protocol puts windows of one subject into both training and test."""


@dataclass(frozen=True)
class SplitIndices:
    """Window indices (sorted (k,) int64 arrays) of one split; iterates as (train, val, test)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    leaks_subjects: bool = False
    warning: str = ""

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.train, self.val, self.test))


def _idx(a: np.ndarray | list[int]) -> np.ndarray:
    return np.sort(np.asarray(a, dtype=np.int64))


def _strata(labels: np.ndarray) -> np.ndarray | None:
    """Labels usable for stratification: classes with a single window are pooled; None if impossible."""
    vals, counts = np.unique(labels, return_counts=True)
    if vals.size < 2:
        return None
    rare = np.isin(labels, vals[counts < 2])
    if not rare.any():
        return labels
    out = labels.astype(object).copy()
    out[rare] = "__rare__"
    if rare.sum() < 2:
        return None
    return out


def shared_subjects(groups: np.ndarray, a: np.ndarray, b: np.ndarray) -> list[str]:
    """Subjects with windows in both index sets ``a`` and ``b``."""
    return sorted(set(np.asarray(groups)[a].tolist()) & set(np.asarray(groups)[b].tolist()), key=str)


def segment_split(labels: np.ndarray, *, test_fraction: float, val_fraction: float, seed: int,
                  groups: np.ndarray | None = None) -> SplitIndices:
    """Stratified window-level split (the published protocol; it leaks subjects).

    ``labels``: (N,) class per window. With ``groups`` ((N,) subject per window) the warning counts
    the subjects that appear in both train and test; without, the leak is assumed (one subject
    contributes many windows).
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    n = labels.shape[0]
    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1 or test_fraction + val_fraction >= 1:
        raise ConfigError([("split", f"test_fraction {test_fraction} + val_fraction {val_fraction} must be in (0, 1)")])
    if n < 3:
        raise ConfigError([("split", f"a segment split needs at least 3 windows, got {n}")])
    idx = np.arange(n)
    rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=_strata(labels))
    val = np.zeros(0, dtype=np.int64)
    if val_fraction > 0:
        frac = val_fraction / (1.0 - test_fraction)
        rest, val = train_test_split(rest, test_size=frac, random_state=seed + 1, stratify=_strata(labels[rest]))
    train, val, test = _idx(rest), _idx(val), _idx(test)
    if groups is not None:
        shared = shared_subjects(np.asarray(groups), train, test)
        leaks = bool(shared)
        warning = (f"segment split: {len(shared)} of {len(set(np.asarray(groups).tolist()))} subjects have windows in "
                   f"both train and test; scores are optimistic (published protocol, not subject-independent)"
                   if leaks else "")
    else:
        leaks = True
        warning = ("segment split: windows of one subject can land in both train and test; scores are "
                   "optimistic (published protocol, not subject-independent)")
    return SplitIndices(train=train, val=val, test=test, leaks_subjects=leaks, warning=warning)


def _carve_val(labels: np.ndarray, groups: np.ndarray, train: np.ndarray, *, val_fraction: float,
               n_total: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Move whole training subjects to a validation set of about ``val_fraction * n_total`` windows."""
    from sklearn.model_selection import StratifiedGroupKFold

    if val_fraction <= 0 or train.size == 0:
        return train, np.zeros(0, dtype=np.int64)
    subj = np.unique(groups[train])
    if subj.size < 2:
        return train, np.zeros(0, dtype=np.int64)
    want = val_fraction * n_total / train.size  # fraction of the training windows
    k = int(np.clip(round(1.0 / max(want, 1e-9)), 2, subj.size))
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    y = labels[train]
    inner_tr, inner_va = next(sgkf.split(np.zeros(train.size), y, groups[train]))
    return _idx(train[inner_tr]), _idx(train[inner_va])


def grouped_kfold(labels: np.ndarray, groups: np.ndarray, *, folds: int, seed: int, val_fraction: float = 0.0,
                  fold: int | None = None) -> SplitIndices | list[SplitIndices]:
    """Subject-independent stratified K-fold (``StratifiedGroupKFold``); ``fold=None`` -> all folds.

    ``labels``, ``groups``: (N,) class and subject per window. Raises :class:`ConfigError` when
    there are fewer subjects than folds or ``fold`` is out of range.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    labels, groups = np.asarray(labels), np.asarray(groups)
    if labels.shape != groups.shape:
        raise ConfigError([("split", f"{labels.shape[0]} labels but {groups.shape[0]} subject ids")])
    n_subj = np.unique(groups).size
    if folds < 2 or n_subj < folds:
        raise ConfigError([("split.folds", f"{folds} subject-independent folds need at least {folds} subjects, "
                                           f"got {n_subj}")])
    if fold is not None and not 0 <= fold < folds:
        raise ConfigError([("split.fold", f"fold must be in 0..{folds - 1}, got {fold}")])
    sgkf = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out: list[SplitIndices] = []
    for k, (tr, te) in enumerate(sgkf.split(np.zeros(labels.size), labels, groups)):
        if fold is not None and k != fold:
            continue
        tr, va = _carve_val(labels, groups, _idx(tr), val_fraction=val_fraction, n_total=labels.size, seed=seed + k)
        out.append(SplitIndices(train=tr, val=va, test=_idx(te)))
    return out[0] if fold is not None else out


def leave_one_subject_out(labels: np.ndarray, groups: np.ndarray, *, fold: int | None = None,
                          val_fraction: float = 0.0, seed: int = 0) -> SplitIndices | list[SplitIndices]:
    """One fold per subject (sorted subject order): that subject's windows are the test set."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    if labels.shape != groups.shape:
        raise ConfigError([("split", f"{labels.shape[0]} labels but {groups.shape[0]} subject ids")])
    subjects = sorted(set(groups.tolist()), key=str)
    if len(subjects) < 2:
        raise ConfigError([("split.protocol", f"leave-one-subject-out needs at least 2 subjects, got {len(subjects)}")])
    if fold is not None and not 0 <= fold < len(subjects):
        raise ConfigError([("split.fold", f"loso fold must be in 0..{len(subjects) - 1}, got {fold}")])
    out: list[SplitIndices] = []
    for k, s in enumerate(subjects):
        if fold is not None and k != fold:
            continue
        test = groups == s
        tr, va = _carve_val(labels, groups, _idx(np.flatnonzero(~test)), val_fraction=val_fraction,
                            n_total=labels.size, seed=seed + k)
        out.append(SplitIndices(train=tr, val=va, test=_idx(np.flatnonzero(test))))
    return out[0] if fold is not None else out


def train_on_all(labels: np.ndarray, groups: np.ndarray, *, val_fraction: float, seed: int = 0) -> SplitIndices:
    """Protocol ``all``: every window trains, except whole subjects carved out for validation.

    The validation subjects hold about ``val_fraction`` of the windows (at least one subject when
    ``val_fraction > 0`` and there are two or more subjects; stratified by class as far as
    ``StratifiedGroupKFold`` manages); no subject is in both parts. The test set is empty.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    if labels.shape != groups.shape:
        raise ConfigError([("split", f"{labels.shape[0]} labels but {groups.shape[0]} subject ids")])
    if not 0 <= val_fraction < 1:
        raise ConfigError([("split.val_fraction", f"must be in [0, 1), got {val_fraction}")])
    tr, va = _carve_val(labels, groups, np.arange(labels.size, dtype=np.int64), val_fraction=val_fraction,
                        n_total=labels.size, seed=seed)
    return SplitIndices(train=tr, val=va, test=np.zeros(0, dtype=np.int64))


@dataclass
class Split:
    """Window indices of each part and the subjects in them."""

    protocol: str
    fold: int
    n_folds: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    leaks_subjects: bool
    subjects: dict[str, list[str]] = field(default_factory=dict)
    warning: str = ""  # e.g. split.folds clamped to the number of subjects

    def describe(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "fold": self.fold, "n_folds": self.n_folds,
                "n_windows": {"train": int(self.train.size), "val": int(self.val.size), "test": int(self.test.size)},
                "subjects": self.subjects, "leaks_subjects": self.leaks_subjects,
                **({"warning": LEAKAGE_TEXT} if self.leaks_subjects else {})}


def _one_fold(protocol: str, fold: int) -> int:
    if fold != 0:
        raise ConfigError([("--fold", f"the {protocol} protocol has one split (fold 0), got {fold}")])
    return 1


def _fold_range(fold: int, n_folds: int, what: str) -> int:
    if not 0 <= fold < n_folds:
        raise ConfigError([("--fold", f"{what}, got {fold}")])
    return n_folds


def make_split(ws: Any, cfg: Any, *, protocol: str | None = None, fold: int = 0) -> Split:
    """Split the windows of ``ws`` (``.labels``, ``.subjects``) by ``protocol`` (default ``split.protocol``)."""
    protocol = protocol or cfg.split.protocol
    sp = cfg.split
    labels, groups = ws.labels, ws.subjects
    warning = ""
    if protocol == "segment":
        n_folds = _one_fold(protocol, fold)
        tr, va, te = segment_split(labels, test_fraction=sp.test_fraction, val_fraction=sp.val_fraction,
                                   seed=sp.seed, groups=groups)
    elif protocol == "subject":
        folds = sp.folds
        n_subj = len(set(groups.tolist()))
        if 2 <= n_subj < folds:  # a small folder: as many folds as subjects, said out loud
            warning = (f"split.folds = {folds} but the data has {n_subj} subjects: using {n_subj} subject-independent "
                       f"folds (set --set split.folds={n_subj}, or --protocol all / loso, to silence this)")
            folds = n_subj
        elif n_subj < 2:
            raise ConfigError([("split.folds", f"subject-independent folds need at least 2 subjects, got {n_subj}: "
                                               "use --protocol segment (one subject's windows split, leaks) or "
                                               "--protocol all (no test set)")])
        n_folds = _fold_range(fold, folds, f"fold must be in 0..{folds - 1} for {folds} folds")
        tr, va, te = grouped_kfold(labels, groups, folds=n_folds, fold=fold, val_fraction=sp.val_fraction, seed=sp.seed)
    elif protocol == "loso":
        n_subj = len(set(groups.tolist()))
        n_folds = _fold_range(fold, n_subj, f"loso has one fold per subject (0..{n_subj - 1})")
        tr, va, te = leave_one_subject_out(labels, groups, fold=fold, val_fraction=sp.val_fraction, seed=sp.seed)
    elif protocol == "all":
        n_folds = _one_fold(protocol, fold)
        tr, va, te = train_on_all(labels, groups, val_fraction=sp.val_fraction, seed=sp.seed)
    else:
        raise ConfigError([("split.protocol", f"expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")])
    tr, va, te = (np.sort(np.asarray(a, dtype=np.int64)) for a in (tr, va, te))
    subj = {name: sorted(set(groups[idx].tolist())) for name, idx in (("train", tr), ("val", va), ("test", te))}
    leaks = bool(set(subj["test"]) & (set(subj["train"]) | set(subj["val"])))
    if protocol != "segment" and leaks:
        raise PedstreamError(f"split {protocol} fold {fold}: subjects in both train and test: "
                             f"{sorted(set(subj['test']) & set(subj['train']))}")
    return Split(protocol=protocol, fold=int(fold), n_folds=int(n_folds), train=tr, val=va, test=te,
                 leaks_subjects=leaks, subjects=subj, warning=warning)
