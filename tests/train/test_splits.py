"""The three split protocols: segment (leaky, flagged), grouped K-fold and leave-one-subject-out."""

from __future__ import annotations

import numpy as np
import pytest

from pedstream.errors import ConfigError
from pedstream.config import load_config
from pedstream.train.splits import (grouped_kfold, leave_one_subject_out, make_split, segment_split, shared_subjects,
                                    train_on_all)


def _data(n_subj: int = 12, per: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"{i:03d}" for i in range(n_subj)], per)
    labels = rng.integers(0, 4, size=groups.size)
    labels[groups == "000"] = 4  # a class only one subject has (the long tail)
    return labels, groups


def _check_partition(sp, n):
    allidx = np.concatenate([sp.train, sp.val, sp.test])
    assert np.array_equal(np.sort(allidx), np.arange(n))  # disjoint and complete
    for a in sp:
        assert a.dtype == np.int64 and np.all(np.diff(a) > 0)


def test_segment_split_is_stratified_and_flags_the_leak():
    labels, groups = _data()
    sp = segment_split(labels, test_fraction=0.2, val_fraction=0.1, seed=0, groups=groups)
    _check_partition(sp, labels.size)
    assert abs(sp.test.size - 0.2 * labels.size) <= 1 and abs(sp.val.size - 0.1 * labels.size) <= 2
    for k in range(4):  # class proportions kept in test
        assert abs((labels[sp.test] == k).mean() - (labels == k).mean()) < 0.03
    assert sp.leaks_subjects and "12 of 12 subjects" in sp.warning
    tr, va, te = segment_split(labels, test_fraction=0.2, val_fraction=0.1, seed=0)
    assert np.array_equal(te, sp.test)  # deterministic per seed
    assert segment_split(labels, test_fraction=0.2, val_fraction=0.0, seed=0).val.size == 0
    with pytest.raises(ConfigError, match="must be in"):
        segment_split(labels, test_fraction=0.6, val_fraction=0.5, seed=0)


@pytest.mark.parametrize("val_fraction", [0.0, 0.1])
def test_grouped_kfold_is_subject_independent(val_fraction):
    labels, groups = _data()
    folds = grouped_kfold(labels, groups, folds=4, seed=1, val_fraction=val_fraction)
    assert len(folds) == 4
    tested = []
    for sp in folds:
        _check_partition(sp, labels.size)
        assert not shared_subjects(groups, sp.train, sp.test)
        assert not shared_subjects(groups, sp.val, sp.test) and not shared_subjects(groups, sp.train, sp.val)
        assert not sp.leaks_subjects
        assert (sp.val.size > 0) == (val_fraction > 0)
        tested += sorted(set(groups[sp.test]))
    assert sorted(tested) == sorted(set(groups))  # every subject is tested exactly once
    one = grouped_kfold(labels, groups, folds=4, seed=1, val_fraction=val_fraction, fold=2)
    assert np.array_equal(one.test, folds[2].test)


def test_grouped_kfold_errors():
    labels, groups = _data(n_subj=3)
    with pytest.raises(ConfigError, match="5 subject-independent folds need at least 5 subjects, got 3"):
        grouped_kfold(labels, groups, folds=5, seed=0)
    with pytest.raises(ConfigError, match="fold must be in 0..2"):
        grouped_kfold(labels, groups, folds=3, seed=0, fold=3)


def test_leave_one_subject_out():
    labels, groups = _data(n_subj=5)
    folds = leave_one_subject_out(labels, groups)
    assert len(folds) == 5
    for k, sp in enumerate(folds):
        _check_partition(sp, labels.size)
        assert set(groups[sp.test]) == {f"{k:03d}"}
        assert f"{k:03d}" not in set(groups[sp.train])
    sp = leave_one_subject_out(labels, groups, fold=1, val_fraction=0.2, seed=0)
    _check_partition(sp, labels.size)
    assert sp.val.size > 0 and not shared_subjects(groups, sp.train, sp.val)
    with pytest.raises(ConfigError, match="at least 2 subjects"):
        leave_one_subject_out(labels[:10], groups[:10])


@pytest.mark.parametrize(("n_subj", "val_fraction", "seed"), [(22, 0.1, 0), (22, 0.1, 3), (5, 0.1, 0), (3, 0.3, 1)])
def test_train_on_all_uses_every_record_with_whole_subjects_for_validation(n_subj, val_fraction, seed):
    labels, groups = _data(n_subj=n_subj)
    sp = train_on_all(labels, groups, val_fraction=val_fraction, seed=seed)
    _check_partition(sp, labels.size)  # every window is in train or val
    assert sp.test.size == 0 and not sp.leaks_subjects
    val_subj, train_subj = set(groups[sp.val]), set(groups[sp.train])
    assert val_subj and not val_subj & train_subj  # no record in both train and val
    assert val_subj | train_subj == set(groups)  # all records used
    assert len(val_subj) <= max(1, round(val_fraction * n_subj) + 1)
    assert np.array_equal(train_on_all(labels, groups, val_fraction=val_fraction, seed=seed).val, sp.val)


def test_train_on_all_without_validation_trains_on_everything():
    labels, groups = _data(n_subj=4)
    sp = train_on_all(labels, groups, val_fraction=0.0)
    assert np.array_equal(sp.train, np.arange(labels.size)) and sp.val.size == 0 and sp.test.size == 0
    with pytest.raises(ConfigError, match="val_fraction"):
        train_on_all(labels, groups, val_fraction=1.0)


class _Windows:
    def __init__(self, labels, groups):
        self.labels, self.subjects = labels, groups


def test_make_split_protocol_all_and_its_fold():
    labels, groups = _data(n_subj=10)
    cfg = load_config(None, ["split.protocol=\"all\"", "split.val_fraction=0.2"])
    sp = make_split(_Windows(labels, groups), cfg)
    assert sp.protocol == "all" and sp.n_folds == 1 and sp.test.size == 0
    assert sp.subjects["test"] == [] and not set(sp.subjects["train"]) & set(sp.subjects["val"])
    assert sorted(sp.subjects["train"] + sp.subjects["val"]) == sorted(set(groups))
    assert sp.describe()["n_windows"]["test"] == 0
    with pytest.raises(ConfigError, match="one split"):
        make_split(_Windows(labels, groups), cfg, fold=1)
    with pytest.raises(ConfigError, match="expected one of segment, subject, loso, all"):
        make_split(_Windows(labels, groups), cfg, protocol="bogus")


def test_make_split_subject_clamps_folds_to_a_small_folder():
    labels, groups = _data(n_subj=3)
    cfg = load_config(None, ["split.protocol=\"subject\"", "split.folds=5"])
    sp = make_split(_Windows(labels, groups), cfg, fold=2)
    assert sp.n_folds == 3 and "using 3 subject-independent folds" in sp.warning
    assert not set(sp.subjects["test"]) & set(sp.subjects["train"])
    with pytest.raises(ConfigError, match="0..2"):
        make_split(_Windows(labels, groups), cfg, fold=3)
    assert make_split(_Windows(*_data(n_subj=6)), cfg).warning == ""


def test_splits_import_without_torch():
    import subprocess
    import sys

    code = "import sys, pedstream.train.splits; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
