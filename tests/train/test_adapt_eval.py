"""The patient-specific protocol (pedstream.train.adapt_eval) end to end on the real MIT-BIH excerpts
of tests/fixtures/real/aami (two 60 s records: two record-wise folds, labels from the first 30 s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pedstream.train.adapt_eval import adapt_eval, format_markdown, pick_labels

AAMI = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "aami"


def test_clinician_labels_take_the_early_ectopic_beats_and_spread_normal_ones():
    t = np.arange(40, dtype=float) * 10.0  # one beat every 10 s: 30 within the first 300 s
    y = np.zeros(40, dtype=int)
    y[[3, 7, 25, 35]] = [1, 2, 1, 2]  # 35 is after the first 5 minutes: never labelled
    y[5] = -1  # a detection without a reference beat: never labelled
    lab = pick_labels(t, y, beats=6)
    assert set(lab) >= {3, 7, 25} and 35 not in lab and 5 not in lab and lab.size == 6
    assert set(pick_labels(t, y, minutes=1.0)) == {0, 1, 2, 3, 4}
    r = pick_labels(t, y, beats=6, selection="random", seed=1)
    assert r.size == 6 and np.all(t[r] < 300.0) and np.all(y[r] >= 0)


def test_protocol_runs_on_real_excerpts_and_scores_only_the_later_beats(tmp_path, monkeypatch):
    monkeypatch.setenv("PEDSTREAM_CACHE", str(tmp_path / "cache"))
    doc = adapt_eval(AAMI, records=("208", "220"), folds=2, minutes=(0.5,), beats=(10,), score_from_s=30.0,
                     methods=(("knn k=1 mix=0.8", {"method": "knn", "k": 1, "mix": 0.8}),
                              ("nearest, labelled classes", {"method": "nearest", "classes": "labelled"})),
                     refit_weights=(10.0,),
                     variant="HGB, part 2 without raw morphology")
    assert set(doc["results"]) == {"0.5 min", "10 beats, clinician"}
    r = doc["results"]["0.5 min"]
    assert r["mean_labels"] > 30  # every beat of the first 30 s of each record
    assert set(r["chosen_per_record"]) == {"208", "220"}
    assert set(r["fixed_setting_scores"]) == {"knn k=1 mix=0.8", "nearest, labelled classes", "refit w=10"}
    assert r["chosen_settings"] is None or r["chosen_settings"]["method"] in ("knn", "nearest")
    # 208 has V beats after 30 s: the VEB support is what both the population and the adapted rows score
    assert r["scores"]["VEB"]["support"] == r["population"]["VEB"]["support"] > 0
    assert "| 0.5 min |" in format_markdown(doc, "pedstream eval --adapt-minutes 0.5")
    with pytest.raises(ValueError, match="folds"):
        adapt_eval(AAMI, records=("208",), folds=2)


def test_eval_adapt_cli_reads_the_folders_records_and_says_why_it_cannot_run(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from pedstream.cli import cli

    monkeypatch.setenv("PEDSTREAM_CACHE", str(tmp_path / "cache"))
    r = CliRunner().invoke(cli, ["eval", "--adapt-minutes", "0.5", "--data", str(AAMI)])
    assert r.exit_code != 0 and "2 records for 11 record-wise folds" in r.output


def test_every_setting_of_the_grid_is_one_the_monitor_accepts():
    from pedstream.monitor.adapt import AdaptSettings
    from pedstream.train.adapt_eval import METHODS

    names = [name for name, _ in METHODS]
    assert len(set(names)) == len(names)
    settings = [AdaptSettings(**fields) for _, fields in METHODS]
    assert {s.classes for s in settings} == {"all", "labelled"} and {s.method for s in settings} == {"knn", "prototype", "nearest"}


def test_the_linear_settings_are_ones_the_monitor_accepts_and_each_has_its_own_local_vote():
    from pedstream.monitor.adapt import AdaptSettings
    from pedstream.train.adapt_eval import LINEAR_METHODS, METHODS, local_key

    names = [name for name, _ in METHODS + LINEAR_METHODS]
    assert len(set(names)) == len(names)
    linear = [AdaptSettings(**fields) for _, fields in LINEAR_METHODS]
    assert {s.method for s in linear} == {"linear"} and {s.classes for s in linear} == {"labelled"}
    assert {s.features for s in linear} == {"rr", "rr+tpl"}
    # settings that differ only in the mix share a local vote; a subset or penalty of its own does not
    keys = {local_key(s) for s in linear}
    assert len(keys) == len({(s.features, s.l2) for s in linear}) == 4
    assert not keys & {local_key(AdaptSettings(**fields)) for _, fields in METHODS}


def test_the_protocol_scores_the_prematurity_rule_and_the_grid_holds_it(tmp_path, monkeypatch):
    """220's fold model is trained on 208 alone (no S beat): without the rule no S beat of 220 is found; with
    it (its first 30 s labelled, N beats only) its later S beats, premature for this patient, are."""
    from pedstream.monitor.adapt import AdaptSettings
    from pedstream.train.adapt_eval import METHODS

    monkeypatch.setenv("PEDSTREAM_CACHE", str(tmp_path / "cache"))
    doc = adapt_eval(AAMI, records=("208", "220"), folds=2, minutes=(0.5,), score_from_s=30.0, refit_weights=(),
                     methods=(("nearest, labelled classes", {"method": "nearest", "classes": "labelled"}),
                              ("nearest, labelled classes, premature", {"method": "nearest", "classes": "labelled",
                                                                        "premature": 0.65})),
                     variant="HGB, part 2 without raw morphology")
    fixed = doc["results"]["0.5 min"]["fixed_setting_scores"]
    assert fixed["nearest, labelled classes"]["SVEB"]["Se"] == 0.0
    assert fixed["nearest, labelled classes, premature"]["SVEB"]["Se"] > 0.5
    assert any(AdaptSettings(**fields).premature > 0 for _, fields in METHODS)
