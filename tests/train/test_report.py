"""Tests for pedstream.train.report (the demo model's Markdown report) on hand-made predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pedstream.train.metrics import evaluate_predictions
from pedstream.train.report import main, model_report

NAMES = ["sinus", "avrt", "pvc", "vt"]  # vt: no test windows and never predicted


def _manifest() -> dict:
    return {"method": "AGCACL", "protocol": "subject", "best_epoch": 3, "epochs_run": 5, "seconds_total": 90.0,
            "device": "cpu", "torch": "2.13.0", "git_commit": None,
            "data": {"description": "3 simulated records", "simulated": True},
            "split": {"protocol": "subject", "fold": 0, "n_folds": 3,
                      "subjects": {"train": ["s1", "s2"], "val": ["s3"], "test": ["s4", "s5"]}}}


def _result() -> dict:
    t = np.array([0] * 8 + [1] * 6 + [2] * 4)
    p = np.array([0] * 7 + [1] + [1] * 5 + [0] + [2] * 3 + [0])
    return evaluate_predictions(t, p, class_names=NAMES, n_boot=200, seed=0, groups=np.arange(t.size) % 4)


def test_report_states_the_evaluated_classes_and_quotes_the_all_class_average(tmp_path: Path) -> None:
    res = _result()
    assert res["evaluated_classes"] == ["sinus", "avrt", "pvc"]
    text = model_report(res, _manifest())
    assert "Macro averages over the 3 classes that occur in the test labels or predictions" in text
    assert f"| macro F1 | {res['macro_f1']:.3f} |" in text
    assert "Not scored (no test windows, never predicted): vt." in text
    all_f1 = res["all_classes"]["macro_f1"]
    assert f"Averaged over all 4 classes instead, with those scoring 0: macro F1 {all_f1:.3f}" in text
    assert "| vt | 0.000 | 0.000 | 0.000 | 0 |" in text  # the per-class table still lists every class
    assert "simulated" in text
    # the command-line entry point writes the same text from the eval JSON and the run's manifest
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(_manifest()))
    (tmp_path / "eval.json").write_text(json.dumps(res))
    assert main(["--eval", str(tmp_path / "eval.json"), "--run", str(tmp_path / "run"),
                 "--out", str(tmp_path / "r.md")]) == 0
    assert (tmp_path / "r.md").read_text() == text


def test_report_of_an_old_eval_json_keeps_its_all_class_wording() -> None:
    res = _result()
    for key in ("evaluated_classes", "all_classes"):
        del res[key]
    res.update({k: v for k, v in _result()["all_classes"].items() if k.startswith("macro_")})
    text = model_report(res, _manifest())
    assert "Macro averages over all classes of the label scheme" in text
    assert "Over the 3 classes present in the test set" in text
