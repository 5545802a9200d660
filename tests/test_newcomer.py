"""A newcomer's first hour: every command of the "Every command" table of docs/user-guide/commands.md, run
as a user runs it (the installed ``pedstream`` script, in an empty folder, on tiny synthesized data; nothing from the
repository checkout or ``../shared``), checking exit codes and what each prints or writes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = Path(__file__).resolve().parents[1] / "docs" / "user-guide" / "commands.md"


def _exe() -> str:
    here = Path(sys.executable).parent / "pedstream"
    return str(here) if here.is_file() else (shutil.which("pedstream") or "pedstream")


def ped(*args: str, cwd: Path, timeout: float = 180, ok: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["XDG_CACHE_HOME"] = str(cwd / ".cache")
    r = subprocess.run([_exe(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert r.returncode == 0, f"pedstream {' '.join(args)} exited {r.returncode}:\n{r.stderr[-3000:]}"
    return r


def tour_commands() -> list[str]:
    """The subcommands of the commands page's table (``data synth``, ``train``, ...)."""
    text = COMMANDS.read_text(encoding="utf-8")
    table = text[text.index("## Every command"):text.index("## Configuration and errors")]
    out = []
    for m in re.finditer(r"^\| `pedstream ([a-z]+)(?: ([a-z]+))?", table, flags=re.M):
        out.append(m.group(1) if m.group(1) != "data" else f"data {m.group(2)}")
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("newcomer")


def test_the_tour_lists_these_commands():
    assert tour_commands() == ["data synth", "data inspect", "data labels", "data plot", "data fetch", "train",
                               "eval", "compare", "export", "run", "replay", "demo", "score", "central", "bench"]


def test_tour_data_commands(home):
    r = ped("data", "synth", "--out", "data", "--records", "3", "--minutes", "0.6", cwd=home)
    assert "SIMULATED" in r.stdout + r.stderr and len(list((home / "data").glob("*.hea"))) == 3
    r = ped("data", "inspect", "data", cwd=home)
    assert "x001" in r.stdout and "3/3 records" in r.stdout
    doc = json.loads(ped("data", "inspect", "data", "--json", cwd=home).stdout)
    assert [rec["record"] for rec in doc["records"]] == ["x001", "x002", "x003"]
    ped("data", "inspect", "data", "--json", "inspect.json", cwd=home)
    assert json.loads((home / "inspect.json").read_text()) == doc
    r = ped("data", "labels", "data/processed_segments_with_aux.csv", "--markdown", cwd=home)
    assert r.stdout.startswith("| class |") and "**labelled**" in r.stdout
    ped("data", "plot", "data/x001", "--start", "5", "--seconds", "6", "--out", "x001.png", cwd=home)
    assert (home / "x001.png").stat().st_size > 10_000
    # data fetch downloads from PhysioNet (no network here): its help and a bad use are checked instead
    assert "--dest" in ped("data", "fetch", "--help", cwd=home).stdout
    bad = ped("data", "fetch", cwd=home, ok=False)
    assert bad.returncode == 2 and "Missing option '--dest'" in bad.stderr


def test_tour_train_eval_compare_export_run(home):
    if not (home / "data").is_dir():
        ped("data", "synth", "--out", "data", "--records", "3", "--minutes", "0.6", cwd=home)
    # 3 subjects, split.folds = 5: one fold per subject, with a warning (it used to fail after the work)
    r = ped("train", "--data", "data", "--out", "run", "--epochs", "1", "--steps", "2", "--quiet",
            "--set", "train.bootstrap=0", cwd=home)
    assert "using 3 subject-independent folds" in " ".join(r.stderr.split())
    assert (home / "run" / "checkpoint.pt").is_file()
    r = ped("eval", "--run", "run", "--data", "data", "--json", "metrics.json", cwd=home)
    metrics = json.loads((home / "metrics.json").read_text())
    assert "top1" in r.stdout and 0.0 <= metrics["top1"] <= 1.0 and metrics["protocol"]
    ped("compare", "--runs", "run", "--out", "report.md", "--no-tsne", "--bootstrap", "0", cwd=home)
    assert (home / "report.md").read_text().startswith("#")
    ped("export", "--run", "run", "--out", "model.onnx", "--exporter", "torchscript", cwd=home)
    assert (home / "model.onnx").stat().st_size > 10_000
    r = ped("run", "--source", "replay", "--records", "data/x002", "--model", "model.onnx", "--headless",
            "--duration", "60", "--set", "replay.speed=30", "--events", "events.jsonl", cwd=home)
    banner = r.stderr.splitlines()[0]
    assert banner.startswith("Model · trained on SIMULATED") and "DEMO" not in banner  # the user's own model
    events = [json.loads(ln) for ln in r.stdout.splitlines()]
    calls = [e for e in events if e["kind"] == "call"]
    from pedstream.events import SCHEMA_VERSION

    assert calls and all(e["schema_version"] == SCHEMA_VERSION and e["t_signal"] is not None for e in calls)
    assert "summary: streams 1" in r.stderr and f"alarm strips (PNG) go to {home / 'alarms'}" in r.stderr


def test_tour_replay_and_demo(home, lsl_config):
    if not (home / "data").is_dir():
        ped("data", "synth", "--out", "data", "--records", "3", "--minutes", "0.6", cwd=home)
    r = ped("replay", "data/x001", "--to", "lsl", "--seconds", "2", "--speed", "4", *lsl_config.overrides, cwd=home)
    assert r.returncode == 0
    r = ped("demo", "--headless", "--duration", "8", "--set", "demo.speed=3", *lsl_config.overrides, cwd=home)
    assert r.stderr.startswith("DEMO MODEL · trained on simulated Leipzig-format data + MIT-BIH ECG, not for clinical use")  # the packaged model, said so
    streams = {json.loads(ln)["stream"] for ln in r.stdout.splitlines()}
    assert streams <= {"x001", "x002", "x003"} and streams
    assert "summary: streams 3" in r.stderr
