"""pedstream eval (JSON keys, test split from the manifest, other data) and pedstream compare (tables)."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pedstream.cli import cli
from pedstream.errors import PedstreamError
from pedstream.train.compare import compare_runs
from pedstream.train.evaluate import evaluate_run
from pedstream.train.loop import SubjectLeakageWarning, train_run

from .conftest import tiny_config, write_dataset

KEYS = {"top1", "macro_precision", "macro_recall", "macro_f1", "macro_f2", "per_class", "classes", "confusion"}


@pytest.fixture(scope="module")
def runs(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_runs")
    out: dict[str, Path] = {}
    plan = [("subject", 0, ["loss.name=\"agcacl\""], "agcacl_s0"), ("subject", 1, ["loss.name=\"agcacl\""], "agcacl_s1"),
            ("subject", 0, ["loss.name=\"ce\""], "ce_s0"),
            ("subject", 0, ["loss.use_hard_mining=false"], "nohard_s0"),
            ("segment", 0, ["loss.name=\"agcacl\""], "agcacl_seg"), ("segment", 0, ["loss.name=\"ce\""], "ce_seg")]
    for protocol, fold, sets, name in plan:
        cfg = tiny_config(root / "cache", "train.epochs=1", "train.bootstrap=50", *sets)
        with pytest.warns(SubjectLeakageWarning) if protocol == "segment" else nullcontext():
            out[name] = train_run(cfg, data=tiny_data, out=root / name, protocol=protocol, fold=fold,
                                  progress=False).run_dir
    return out


def test_eval_json_has_the_contract_keys_and_matches_training(runs: dict[str, Path], tiny_data: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    res = CliRunner().invoke(cli, ["eval", "--run", str(runs["agcacl_s0"]), "--data", str(tiny_data),
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "macro_f1" in res.output and "confusion" in res.output
    got = json.loads(out.read_text())
    assert KEYS <= set(got)
    c = len(got["classes"])
    assert np.asarray(got["confusion"]).shape == (c, c)
    for name, v in got["per_class"].items():
        assert set(v) == {"precision", "recall", "f1", "support"}, name
    assert got["split"] == "test"
    pred = np.load(runs["agcacl_s0"] / "predictions.npz")
    assert got["n"] == pred["y_true"].size == int(np.asarray(got["confusion"]).sum())
    trained = json.loads((runs["agcacl_s0"] / "metrics.json").read_text())
    for k in ("top1", "macro_f1", "macro_f2", "confusion"):
        assert got[k] == trained[k], k
    lo, hi = got["ci95"]["macro_f1"]
    assert lo <= got["macro_f1"] <= hi
    # headline macro over the classes in the test labels or predictions; the all-class view is kept
    seen = set(pred["y_true"].tolist()) | set(pred["y_pred"].tolist())
    assert got["evaluated_classes"] == [c for i, c in enumerate(got["classes"]) if i in seen]
    assert got["all_classes"]["classes"] == got["classes"]
    f1s = [got["per_class"][c]["f1"] for c in got["classes"]]
    assert got["all_classes"]["macro_f1"] == pytest.approx(np.mean(f1s))
    assert got["macro_f1"] == pytest.approx(np.mean([got["per_class"][c]["f1"] for c in got["evaluated_classes"]]))
    assert f"macro over the {len(got['evaluated_classes'])} classes" in " ".join(res.output.split())
    assert out.with_suffix(".png").is_file()


def test_eval_on_other_data_scores_all_windows_and_refuses_test_split(runs: dict[str, Path], tmp_path: Path) -> None:
    other = write_dataset(tmp_path / "other", n_subjects=2, seconds=30.0, seed=50)
    res = evaluate_run(runs["ce_s0"], other, n_boot=0)
    assert res["split"] == "all" and res["n"] > 0
    with pytest.raises(PedstreamError, match="not the data"):
        evaluate_run(runs["ce_s0"], other, split="test", n_boot=0)


def test_compare_writes_protocol_tables_ablation_and_tsne(runs: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "report.md"
    res = CliRunner().invoke(cli, ["compare", "--runs", *[str(p) for p in runs.values()], "--out", str(report),
                                   "--bootstrap", "30"])
    assert res.exit_code == 0, res.output
    text = report.read_text()
    assert "## Subject-independent protocol" in text and "## Segment protocol as published" in text
    assert "LEAKS SUBJECTS" in text and "SIMULATED" in text
    subject_table = text.split("## Subject-independent protocol")[1].split("##")[0]
    assert "| AGCACL |" in subject_table and "| CE |" in subject_table
    assert "| 2 |" in subject_table  # AGCACL's two folds are pooled
    assert "## Ablation of AGCACL (subject protocol)" in text and "AGCACL w/o hard-class modulation" in text
    assert "## Verdict" in text and "## Per-class F1" in text
    assert (tmp_path / "report_tsne.png").stat().st_size > 1000
    summary = json.loads(report.with_suffix(".json").read_text())
    sub = summary["results"]["subject"]
    assert sub["AGCACL"]["folds"] == [0, 1]
    pooled = sum(np.load(runs[k] / "predictions.npz")["y_true"].size for k in ("agcacl_s0", "agcacl_s1"))
    assert sub["AGCACL"]["n"] == pooled
    # the evaluated classes of a method come from its POOLED folds' labels and predictions
    pooled_seen = set()
    for k in ("agcacl_s0", "agcacl_s1"):
        pr = np.load(runs[k] / "predictions.npz")
        pooled_seen |= set(pr["y_true"].tolist()) | set(pr["y_pred"].tolist())
    assert sub["AGCACL"]["evaluated_classes"] == [c for i, c in enumerate(summary["classes"]) if i in pooled_seen]
    assert sub["AGCACL"]["all_classes"]["classes"] == summary["classes"]
    sets = {tuple(r["evaluated_classes"]) for proto in summary["results"].values() for r in proto.values()}
    if len(sets) == 1:
        assert f"macro over the {len(next(iter(sets)))} classes that occur in the test labels or predictions" in text
    else:
        assert "macro over the classes that occur in the pooled test labels or predictions of each method" in text
        assert f"AGCACL (subject) {len(sub['AGCACL']['evaluated_classes'])}" in text


def test_compare_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(PedstreamError, match="missing"):
        compare_runs([tmp_path], out=tmp_path / "r.md")


def test_protocol_all_trains_on_every_record_and_is_scored_on_another_folder(tiny_data: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "cache", "train.epochs=1", "train.bootstrap=20")
    res = train_run(cfg, data=tiny_data, out=tmp_path / "all", protocol="all", progress=False)
    run = res.run_dir
    assert res.metrics is None
    assert not (run / "predictions.npz").exists() and not (run / "metrics.json").exists()
    man = json.loads((run / "manifest.json").read_text())
    subj = man["split"]["subjects"]
    assert man["protocol"] == "all" and subj["test"] == [] and subj["val"]
    assert not set(subj["train"]) & set(subj["val"])
    assert sorted(subj["train"] + subj["val"]) == sorted(r["subject"] for r in man["data"]["records"])
    assert man["split"]["n_windows"]["test"] == 0
    assert np.load(run / "split.npz")["test_record"].size == 0

    other = write_dataset(tmp_path / "other", n_subjects=2, seconds=30.0, seed=70)
    out = tmp_path / "eval" / "other.json"
    ok = CliRunner().invoke(cli, ["eval", "--run", str(run), "--data", str(other), "--json", str(out),
                                  "--subject-bootstrap"])
    assert ok.exit_code == 0, ok.output
    got = json.loads(out.read_text())
    assert KEYS <= set(got) and got["split"] == "all" and got["protocol"] == "all"
    assert got["n"] == int(np.asarray(got["confusion"]).sum()) > 0 and got["n_groups"] == 2
    assert "ec57" not in got  # the tiny data uses the Leipzig classes, not AAMI
    assert out.with_suffix(".png").is_file()

    # its own training folder holds no test windows: one error line, exit 2, nothing written
    bad_json = tmp_path / "eval" / "train.json"
    bad = CliRunner().invoke(cli, ["eval", "--run", str(run), "--data", str(tiny_data), "--json", str(bad_json)])
    assert bad.exit_code == 2, bad.output
    assert "error: eval: --split:" in bad.output and "no test windows" in bad.output
    assert not bad_json.exists() and not bad_json.with_suffix(".png").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["other.json", "other.png"]  # no temporaries left


def test_eval_bad_input_is_one_error_line_and_writes_nothing(tiny_data: Path, tmp_path: Path) -> None:
    not_a_run = tmp_path / "empty_run"
    not_a_run.mkdir()
    out = tmp_path / "out" / "m.json"
    res = CliRunner().invoke(cli, ["eval", "--run", str(not_a_run), "--data", str(tiny_data), "--json", str(out)])
    assert res.exit_code == 2
    assert res.output.strip().startswith("error: eval: --run:") and "not a run folder" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not out.exists() and not out.with_suffix(".png").exists()


def test_report_prints_the_ec57_table_for_aami_classes() -> None:
    import io

    from rich.console import Console

    from pedstream.train.evaluate import evaluate_arrays, render_report

    res = evaluate_arrays([0, 0, 2, 2, 3, 1], [0, 2, 2, 2, 2, 0], ["N", "S", "V", "F", "Q"], n_boot=20)
    buf = io.StringIO()
    render_report(res, console=Console(file=buf, width=140))
    text = buf.getvalue()
    assert "AAMI EC57" in text and "VEB" in text and "SVEB" in text and "n/a" in text
    assert res["ec57"]["veb"]["fp"] == 1  # N classified V counts, F classified V does not
