"""The monitor model's record-wise folds and splits (pedstream.train.monitor) and the shipped model's metadata."""

from __future__ import annotations

import numpy as np
import pytest

from pedstream.config import load_config
from pedstream.train.dataset import WindowSet

CLASSES = ["sinus", "af_afl", "vt", "ventricular_paced"]


def _ws(spec: dict[str, dict[str, int]], *, prefix: str = "") -> WindowSet:
    """A WindowSet (no signal needed) with spec[record][class] windows."""
    recs, labs = [], []
    for r, per in spec.items():
        for c, n in per.items():
            recs += [r] * n
            labs += [CLASSES.index(c)] * n
    n = len(recs)
    return WindowSet(x=np.zeros((n, 19, 4), np.float16), mask=np.ones((n, 19), bool), labels=np.asarray(labs),
                     subjects=np.asarray([prefix + r for r in recs]), records=np.asarray(recs),
                     starts=np.arange(n, dtype=np.int64), classes=CLASSES, fs=977.0, window=4, hop=2,
                     record_info=[], key="k")


REAL = {"201": {"sinus": 5, "af_afl": 6}, "203": {"af_afl": 7, "vt": 1}, "217": {"af_afl": 3, "ventricular_paced": 4},
        "223": {"sinus": 5, "vt": 8}, "205": {"sinus": 5, "vt": 2}, "107": {"ventricular_paced": 5},
        "104": {"ventricular_paced": 3, "sinus": 2}, "101": {"sinus": 5}, "112": {"sinus": 5}, "115": {"sinus": 5}}


def test_record_folds_spread_rare_classes():
    from pedstream.train.monitor import record_folds

    ws = _ws(REAL)
    folds = record_folds(ws, 3)
    assert set(folds) == set(REAL) and set(folds.values()) == {0, 1, 2}
    for c in ("af_afl", "vt", "ventricular_paced"):  # three records each: one per fold
        assert {folds[r] for r, per in REAL.items() if c in per} == {0, 1, 2}
    assert folds == record_folds(ws, 3)  # deterministic


def test_monitor_split_never_shares_a_record(tmp_path):
    from pedstream.train.monitor import MonitorData, monitor_split

    cfg = load_config(None, ["split.folds=3", "mix.val_records=1", "mix.max_windows_per_class_record=2"])
    sim = _ws({f"x00{i}": {"sinus": 4, "af_afl": 2} for i in range(6)})
    real = _ws(REAL, prefix="mitdb:")
    from pedstream.train.rhythm_data import concat_windows

    data = MonitorData(ws=concat_windows([sim, real], tmp_path), n_sim=len(sim), sim=sim, real=real)
    for fold in range(3):
        sp = monitor_split(data, cfg, fold=fold, n_folds=3)
        recs = {part: set(data.ws.records[getattr(sp, part)].tolist()) for part in ("train", "val", "test")}
        assert not (recs["test"] & (recs["train"] | recs["val"])) and not (recs["train"] & recs["val"])
        real_train = sp.train[sp.train >= data.n_sim]
        key = [f"{r}|{k}" for r, k in zip(data.ws.records[real_train], data.ws.labels[real_train])]
        assert max(key.count(k) for k in key) <= 2  # mix.max_windows_per_class_record
    full = monitor_split(data, cfg, fold=None)
    assert full.test.size == 0 and set(data.ws.records[full.val[full.val >= data.n_sim]].tolist()) <= {"101", "112", "115"}
