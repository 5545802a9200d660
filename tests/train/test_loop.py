"""Training loop: determinism, early stopping, run-folder contents, protocols, CLI."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pedstream.cli import cli
from pedstream.model.checkpoint import load_checkpoint
from pedstream.train.loop import SubjectLeakageWarning, train_run

from .conftest import TINY_MODEL, tiny_config


def _state(run: Path) -> dict[str, torch.Tensor]:
    model, _ = load_checkpoint(run)
    return model.state_dict()


def test_same_seed_gives_identical_weights(tiny_data: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "cache", "train.epochs=1", "train.steps_per_epoch=3", "split.val_fraction=0")
    runs = [train_run(cfg, data=tiny_data, out=tmp_path / f"run{i}", protocol="subject", progress=False,
                      evaluate_test=False).run_dir for i in range(2)]
    a, b = _state(runs[0]), _state(runs[1])
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    other = tiny_config(tmp_path / "cache", "train.epochs=1", "train.steps_per_epoch=3", "split.val_fraction=0",
                        "train.seed=1")
    c = _state(train_run(other, data=tiny_data, out=tmp_path / "run_seed1", protocol="subject", progress=False,
                         evaluate_test=False).run_dir)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_early_stopping_when_validation_stops_improving(tiny_data: Path, tmp_path: Path) -> None:
    # lr so small that the weights cannot move: validation macro-F1 only wobbles with the batch-norm
    # running statistics, which settle within a few epochs, so it must stop long before 30 epochs,
    # exactly `patience` epochs after its best one.
    cfg = tiny_config(tmp_path / "cache", "train.epochs=30", "train.patience=2", "train.lr=1e-12",
                      "train.warmup_epochs=0", "train.bootstrap=0")
    res = train_run(cfg, data=tiny_data, out=tmp_path / "run", protocol="subject", progress=False)
    assert res.stopped_early and res.epochs_run < 30 and res.epochs_run == res.best_epoch + 2
    rows = list(csv.DictReader((tmp_path / "run" / "curves.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, res.epochs_run + 1))
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["stopped_early"] is True


@pytest.fixture(scope="module")
def subject_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("subject_run")
    cfg = tiny_config(root / "cache")
    return train_run(cfg, data=tiny_data, out=root / "run", protocol="subject", fold=1, progress=False).run_dir


def test_run_folder_holds_checkpoint_manifest_curves_predictions(subject_run: Path, tiny_data: Path) -> None:
    for name in ("checkpoint.pt", "curves.csv", "curves.png", "manifest.json", "split.npz", "predictions.npz",
                 "metrics.json"):
        assert (subject_run / name).is_file(), name
    model, meta = load_checkpoint(subject_run)
    assert meta["fs"] == 977.0 and meta["window_samples"] == 2442 and meta["normalization"] == "window_zscore"
    assert meta["channels"][:3] == ["I", "II", "III"] and meta["iegm_channels"][0] == "ABL12"
    assert meta["filters"]["ecg_highpass_hz"] == 0.5 and meta["class_names"][0] == "sinus"
    assert meta["label_scheme"]["name"] == "leipzig" and meta["protocol"]["protocol"] == "subject"
    assert meta["trained_on_simulated_data"] is True  # the test records say "synthetic" in their header
    man = json.loads((subject_run / "manifest.json").read_text())
    # the training data, in words and as the fields the engine's one-line banner is built from
    assert meta["training_data"] == {"format": "Leipzig-format", "simulated": True, "subjects": 6, "records": 6,
                                     "windows": man["data"]["n_windows"]}
    assert meta["data_description"] == (f"simulated Leipzig-format records (pedstream data synth): 6 subjects, "
                                        f"6 records, {man['data']['n_windows']} windows of 2.5 s at 977 Hz")
    from pedstream.monitor.banner import model_banner

    assert model_banner(meta) == ("Model · trained on SIMULATED Leipzig-format data (6 simulated subjects) · "
                                  "not for clinical use")  # a user-trained model is never "DEMO MODEL"
    rec = next(r for r in man["data"]["records"] if r["name"] == "s03")
    for ext in ("hea", "dat", "atr"):
        assert rec["sha256"][ext] == hashlib.sha256((tiny_data / f"s03.{ext}").read_bytes()).hexdigest()
    assert man["protocol"] == "subject" and man["fold"] == 1 and man["config"]["train"]["seed"] == 0
    assert set(man["split"]["subjects"]) == {"train", "val", "test"}
    header = next(csv.reader((subject_run / "curves.csv").read_text().splitlines()))
    assert {"epoch", "lr", "train_loss", "val_loss", "val_macro_f1", "val_top1"} <= set(header)
    pred = np.load(subject_run / "predictions.npz")
    assert pred["probs"].shape == (pred["y_true"].size, 13)
    np.testing.assert_allclose(pred["probs"].sum(axis=1), 1.0, atol=1e-5)
    with torch.no_grad():  # the checkpoint reproduces the stored predictions
        from pedstream.train.dataset import build_windows
        from pedstream.config import Config

        ws = build_windows(tiny_data, Config.model_validate(man["config"]))
        sp = np.load(subject_run / "split.npz")
        idx = [i for i, k in enumerate(zip(ws.records, ws.starts)) if k in set(zip(sp["test_record"], sp["test_start"]))]
        b = ws.batch(np.asarray(idx))
        logits, _ = model(torch.from_numpy(b["ecg"]), torch.from_numpy(b["iegm"]), torch.from_numpy(b["mask"]))
    np.testing.assert_array_equal(logits.argmax(1).numpy(), pred["y_pred"])


def test_subject_protocol_has_no_subject_overlap(subject_run: Path) -> None:
    man = json.loads((subject_run / "manifest.json").read_text())
    s = {k: set(v) for k, v in man["split"]["subjects"].items()}
    assert s["test"] and s["train"] and s["val"]
    assert not (s["train"] & s["test"]) and not (s["val"] & s["test"]) and not (s["train"] & s["val"])
    assert man["split"]["leaks_subjects"] is False
    sp = np.load(subject_run / "split.npz")
    assert not set(sp["train_record"].tolist()) & set(sp["test_record"].tolist())


def test_segment_protocol_warns_about_subject_leakage(tiny_data: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "cache", "train.epochs=1", "train.bootstrap=0")
    with pytest.warns(SubjectLeakageWarning, match="leak|same subject"):
        train_run(cfg, data=tiny_data, out=tmp_path / "seg", protocol="segment", progress=False)
    man = json.loads((tmp_path / "seg" / "manifest.json").read_text())
    assert man["split"]["leaks_subjects"] is True and "overstate" in man["split"]["warning"]


def test_cli_train_and_bad_fold(tiny_data: Path, tmp_path: Path) -> None:
    sets = [a for kv in [*TINY_MODEL, "train.epochs=1", "train.bootstrap=0", f'train.cache_dir="{tmp_path / "c"}"',
                         "split.folds=3"] for a in ("--set", kv)]
    runner = CliRunner()
    res = runner.invoke(cli, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "cli_run"),
                              "--protocol", "loso", "--fold", "2", "--quiet", *sets])
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "cli_run" / "manifest.json").read_text())
    assert man["split"]["subjects"]["test"] == ["s03"]
    bad = runner.invoke(cli, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "bad"), "--protocol",
                              "subject", "--fold", "7", "--quiet", *sets])
    assert bad.exit_code == 2
    assert "error:" in bad.output and "fold" in bad.output
