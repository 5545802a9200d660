"""`pedstream run` / `pedstream demo` as a user runs them (subprocesses, real model file, real transports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pedstream.config import load_config
from tests.stream.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "pedstream" / "assets" / "demo_records"


def pedstream(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "pedstream.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx", load_config())


def parse_lines(text: str) -> list[dict]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return [json.loads(ln) for ln in lines]  # every stdout line must be one JSON object


def test_headless_replay_prints_json_lines_and_summary(model, tmp_path):
    events = tmp_path / "events.jsonl"
    r = pedstream("run", "--source", "replay", "--records", str(DEMO / "x002"), "--model", str(model), "--headless",
                  "--events", str(events), "--duration", "60", "--set", "replay.speed=8", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = parse_lines(r.stdout)
    assert out and {"t", "stream", "kind", "label", "p", "hr", "latency_ms"} <= set(out[0])
    calls = [e for e in out if e["kind"] == "call"]
    assert len(calls) >= 15 and all(e["stream"] == "x002" for e in calls)
    assert parse_lines(events.read_text()) == out  # the file holds the same events
    assert "summary: streams 1, windows classified" in r.stderr


def test_model_mismatch_is_refused_with_one_line(tmp_path):
    bad = build_tiny_model(tmp_path / "bad.onnx", load_config(overrides=["filters.mains_hz=60"]))
    r = pedstream("run", "--source", "replay", "--records", str(DEMO / "x002"), "--model", str(bad), "--headless",
                  cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"error: model {bad}: metadata field 'filters.mains_hz' is 60.0, configuration expects 50.0"]


def test_missing_model_is_one_line(tmp_path):
    r = pedstream("run", "--source", "replay", "--records", str(DEMO), "--model", str(tmp_path / "nope.onnx"), cwd=tmp_path)
    assert r.returncode == 1 and "no such model file" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_demo_over_lsl_headless(model, tmp_path, lsl_config):
    """`pedstream demo` (LSL, bundled records, looping) for a few seconds, in its own LSL session."""
    r = pedstream("demo", "--headless", "--duration", "12", "--model", str(model), *lsl_config.overrides,
                  "--set", "demo.speed=3", cwd=tmp_path, timeout=90)
    assert r.returncode == 0, r.stderr
    out = parse_lines(r.stdout)
    streams = {e["stream"] for e in out if e["kind"] == "call"}
    assert streams == {"x001", "x002", "x003"}, (streams, r.stderr[-2000:])
    assert "summary: streams 3" in r.stderr
