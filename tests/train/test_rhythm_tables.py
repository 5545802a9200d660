"""How the rhythm-context training tables are combined and weighted (:func:`merge`, :func:`weights`), the
rows the shipped model's export and the cross-validation scripts share. The tables here are small ones
made in the test with the real feature layout."""

from __future__ import annotations

import numpy as np
import pytest

from pedstream.dsp.rhythm_features import ALL_FEATURES, BEAT_RUN_FEATURES, MODEL_FEATURES
from pedstream.train.rhythm_context_data import CLASSES
from pedstream.train.rhythm_tables import default_shared, merge, weights


def _table(n: int, first: float, record: str, *, rr: bool = True) -> dict[str, np.ndarray]:
    """``n`` rows whose feature j at context c is ``first + row + 1000 * c + j / 100`` (each cell says where it came from)."""
    rows = first + np.arange(n, dtype=float)[:, None]
    cols = np.arange(len(ALL_FEATURES))[None, :] / 100.0
    tab = {"y": np.arange(n) % len(CLASSES), "t": np.arange(n) * 1.25, "age_s": np.full(n, 60.0),
           "record": np.array([record] * n), "rule_af": np.zeros(n, bool),
           "X_30": rows + 30_000 + cols, "X_60": rows + 60_000 + cols}
    if rr:
        tab["rr_seq"] = np.zeros((n, 4))
    return tab


def test_merge_stacks_the_sources_at_one_context_with_the_model_columns_and_the_beat_runs() -> None:
    a, b = _table(3, 0.0, "cinc/A0001"), _table(2, 100.0, "mitdb/208")
    out = merge([a, b], 60.0)
    assert out["X"].shape == (5, len(MODEL_FEATURES)) and out["runs"].shape == (5, len(BEAT_RUN_FEATURES))
    assert list(out["record"]) == ["cinc/A0001"] * 3 + ["mitdb/208"] * 2
    j = ALL_FEATURES.index(MODEL_FEATURES[-1])
    np.testing.assert_allclose(out["X"][:, -1], np.array([0, 1, 2, 100, 101]) + 60_000 + j / 100.0)
    j = ALL_FEATURES.index(BEAT_RUN_FEATURES[0])
    np.testing.assert_allclose(out["runs"][:, 0], np.array([0, 1, 2, 100, 101]) + 60_000 + j / 100.0)
    np.testing.assert_array_equal(out["y"], np.concatenate([a["y"], b["y"]]))
    assert out["rr_seq"].shape == (5, 4)


def test_merge_takes_named_columns_and_only_the_fields_every_source_has() -> None:
    a, b = _table(2, 0.0, "a"), _table(2, 10.0, "b", rr=False)
    out = merge([a, b], 30.0, features=["hr_bpm", "n_beats"])
    cols = [ALL_FEATURES.index("hr_bpm"), ALL_FEATURES.index("n_beats")]
    np.testing.assert_allclose(out["X"][0], 30_000 + np.array(cols) / 100.0)
    assert "rr_seq" not in out and {"y", "t", "age_s", "record", "rule_af", "X"} <= set(out)
    with pytest.raises(KeyError):
        merge([a], 45.0)  # a context length the tables were not built with


def test_weights_balanced_are_ones_and_sqrt_leaves_one_over_sqrt_count_after_fit_balances() -> None:
    y = np.array([0] * 100 + [1] * 25 + [3] * 4)
    np.testing.assert_array_equal(weights(y, "balanced"), np.ones(y.size))
    w = weights(y, "sqrt")
    counts = {k: int(np.sum(y == k)) for k in (0, 1, 3)}
    # fit() divides each row's weight by its class count: what is left per row is proportional to 1/sqrt(count)
    per_row = {k: w[y == k][0] / counts[k] for k in counts}
    ratio = {k: per_row[k] * np.sqrt(counts[k]) for k in counts}
    assert max(ratio.values()) == pytest.approx(min(ratio.values()))
    assert np.all(w[y == 0] == w[0]) and w[y == 0][0] > w[y == 3][0]  # within a class one weight; commoner: more
    with pytest.raises(ValueError, match="balanced' or 'sqrt"):
        weights(y, "inverse")


def test_the_shared_data_folder_can_be_named_by_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PEDSTREAM_SHARED", str(tmp_path))
    assert default_shared() == tmp_path
    monkeypatch.delenv("PEDSTREAM_SHARED")
    assert default_shared().parts[-2:] == ("shared", "data")
