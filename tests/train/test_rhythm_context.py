"""Rhythm-context training side on real excerpts (tests/fixtures/real/rhythm): feature tables through the
serving filters and the causal detector, cached; a model exported to ONNX gives scikit-learn's
probabilities through the run-time loader; the episode scoring of a record's calls."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")

from pedstream.config import load_config  # noqa: E402
from pedstream.dsp.rhythm_features import ALL_FEATURES, CONTEXT_FEATURES, MODEL_FEATURES  # noqa: E402
from pedstream.errors import ModelError  # noqa: E402
from pedstream.model.rhythm_runtime import RhythmModel  # noqa: E402
from pedstream.train.rhythm_context import fit, predict_proba, record_calls, rule_probs, training_rows  # noqa: E402
from pedstream.train.rhythm_context_data import CLASSES, build_records  # noqa: E402
from pedstream.train.rhythm_export import export_onnx  # noqa: E402

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "rhythm"


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    d = tmp_path_factory.mktemp("vfdb")
    for n in ("vfdb421_vt", "vfdb419_vfl", "vfdb607_asys"):
        for e in ("hea", "dat", "atr"):
            shutil.copy(FIX / f"{n}.{e}", d / f"{n}.{e}")
    cfg = load_config()
    kw = dict(cache=tmp_path_factory.mktemp("cache"), hop_s=1.25, contexts=(30.0,), signal_s=8.0, log=lambda m: None)
    tab = build_records(d, "vfdb", cfg, **kw)
    again = build_records(d, "vfdb", cfg, **kw)  # from the cache
    assert np.array_equal(again["X_30"], tab["X_30"])
    return tab


def test_table_rows_labels(table) -> None:
    n = table["y"].size
    assert table["X_30"].shape == (n, len(ALL_FEATURES)) and np.isfinite(table["X_30"]).all()
    assert table["rr_seq"].shape == (n, 64) and (table["rr_seq"] >= 0).all()
    names = {CLASSES[k] for k in set(table["y"].tolist()) if k >= 0}
    assert {"sinus", "vt", "vf", "asystole"} <= names
    assert n == pytest.approx((90 + 80 + 60) / 1.25 - 3 * 1, abs=6)  # a row per hop after the filters settle
    idx = training_rows(table, min_age_s=2.0, stride=2)
    assert idx.size < n and (table["age_s"][idx] >= 2.0).all()


def test_export_round_trip(table, tmp_path) -> None:
    X = table["X_30"][:, : len(CONTEXT_FEATURES)]
    y = np.arange(X.shape[0]) % len(CLASSES)  # every class present (the export refuses fewer)
    clf = fit(X, y, params={"max_iter": 5})
    path = export_onnx(clf, tmp_path / "r.onnx", {"kind": "rhythm_context", "features": list(CONTEXT_FEATURES),
                                                  "classes": list(CLASSES), "context_s": 30.0, "signal_s": 8.0})
    m = RhythmModel.load(path)
    assert np.allclose(m.predict(X), predict_proba(clf, X), atol=1e-5) and m.classes == list(CLASSES)
    few = fit(X, np.where(table["y"] >= 0, table["y"], 0).astype(np.int64), params={"max_iter": 2})
    with pytest.raises(ModelError):
        export_onnx(few, tmp_path / "few.onnx", {})


def test_model_on_a_subset_of_the_served_features_picks_its_columns(table, tmp_path) -> None:
    """A model trained on MODEL_FEATURES (the beat-run columns feed the alarm logic, not the model) takes the
    served vector and picks its columns by name; a model naming a feature the build does not serve is refused."""
    served = table["X_30"][:, : len(CONTEXT_FEATURES)]
    cols = [CONTEXT_FEATURES.index(f) for f in MODEL_FEATURES]
    y = np.arange(served.shape[0]) % len(CLASSES)
    clf = fit(served[:, cols], y, params={"max_iter": 5})
    meta = {"kind": "rhythm_context", "features": list(MODEL_FEATURES), "classes": list(CLASSES), "context_s": 30.0,
            "signal_s": 8.0}
    m = RhythmModel.load(export_onnx(clf, tmp_path / "m.onnx", meta))
    want = predict_proba(clf, served[:, cols])
    assert np.allclose(m.predict(served), want, atol=1e-5) and np.allclose(m.predict(served[:, cols]), want, atol=1e-5)
    with pytest.raises(ModelError):
        m.predict(served[:, :10])
    bad = export_onnx(clf, tmp_path / "bad.onnx", {**meta, "features": list(MODEL_FEATURES[:-1]) + ["no_such_feature"]})
    with pytest.raises(ModelError):
        RhythmModel.load(bad)


def test_record_calls_vt_fast_path_from_the_beat_runs(table) -> None:
    """The VT fast path in the offline scoring: from sinus-only probabilities, a call whose beat-run columns show
    a run of 3 fast ventricular-like beats raises vt at once, its evidence back to the run's first beat; without
    the columns, or with vt_run_beats = 0, nothing. (vfdb421's sustained VT itself has no run against the lead's
    median QRS: its median beat is a VT beat; the model calls that VT.)"""
    m = table["record"] == "vfdb:vfdb421_vt"
    t, X = table["t"][m], table["X_30"][m]
    since, flat = X[:, CONTEXT_FEATURES.index("since_last_s")], X[:, CONTEXT_FEATURES.index("flat_frac")] < 0.95
    runs = X[:, [ALL_FEATURES.index(c) for c in ("vt_run_70", "vt_run_end_s", "vt_run_len_s")]].copy()
    assert runs[:, 0].max() < 3
    i = t.size // 2
    runs[i] = (3.0, 0.5, 1.0)
    sinus = rule_probs(np.zeros(t.size, bool))
    on = load_config(overrides=["rhythm_context.vt_run_beats=3"])
    off = load_config(overrides=["rhythm_context.vt_run_beats=0"])
    vt = [e for e in record_calls(t, sinus, since, flat, on, hop_s=1.25, runs=runs) if e.label == "vt"]
    assert len(vt) == 1 and vt[0].raised == pytest.approx(t[i]) and vt[0].start == pytest.approx(t[i] - 2 * 1.25)
    assert not [e for e in record_calls(t, sinus, since, flat, on, hop_s=1.25) if e.label == "vt"]
    assert not [e for e in record_calls(t, sinus, since, flat, off, hop_s=1.25, runs=runs) if e.label == "vt"]


def test_loader_refuses_other_onnx(tmp_path) -> None:
    (tmp_path / "x.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelError):
        RhythmModel.load(tmp_path / "x.onnx")


def test_record_calls_rule_and_asystole(table) -> None:
    cfg = load_config(overrides=["rhythm_context.asystole_max_organized_p=1.0"])  # the rule's one-hot calls are no model reading
    m = table["record"] == "vfdb:vfdb607_asys"
    t, X = table["t"][m], table["X_30"][m]
    since = X[:, CONTEXT_FEATURES.index("since_last_s")]
    eps = record_calls(t, rule_probs(table["rule_af"][m]), since, np.ones(t.size, bool), cfg, hop_s=1.25)
    # (the RR rule alone calls AF in this asystole: the detector's search-back picks noise at irregular
    # intervals - one of the rule's failures that the learned layer's artefact/asystole classes address)
    assert [e.label for e in eps if e.raised < 20.0] == []  # nothing during the VT part
    asys = [e for e in eps if e.label == "asystole"]
    assert asys and asys[0].raised >= 23.5  # from the beat stream alone (no model in this run)


def test_record_calls_asystole_held_while_the_model_reads_beats(table) -> None:
    """The shipped readable-signal rule: the same asystole with calls that read organized beats raises nothing from
    the beat stream; calls that read no beats raise it as before."""
    cfg = load_config()
    m = table["record"] == "vfdb:vfdb607_asys"
    t, X = table["t"][m], table["X_30"][m]
    since = X[:, CONTEXT_FEATURES.index("since_last_s")]
    sinus = rule_probs(np.zeros(t.size, bool))  # every call: sinus 1
    assert not [e for e in record_calls(t, sinus, since, np.ones(t.size, bool), cfg, hop_s=1.25) if e.label == "asystole"]
    vt = np.zeros_like(sinus)
    vt[:, CLASSES.index("vt")] = 1.0  # no organized rhythm read
    asys = [e for e in record_calls(t, vt, since, np.ones(t.size, bool), cfg, hop_s=1.25) if e.label == "asystole"]
    assert asys and asys[0].raised >= 23.5
