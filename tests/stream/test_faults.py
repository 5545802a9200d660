"""Issue 10 fault tests: real processes killed, real files (bounded: each well under 60 s)."""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pedstream.config import load_config
from tests.stream.tiny_model import build_tiny_model

pytestmark = pytest.mark.timeout(90)
DEMO = Path(__file__).resolve().parents[2] / "pedstream" / "assets" / "demo_records"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx", load_config())


def start_monitor(model: Path, events: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pedstream.cli", "run", "--source", "replay", "--records",
                             str(DEMO / "x002"), "--model", str(model), "--headless", "--duration", "60",
                             "--events", str(events), "--set", "replay.speed=4"],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_calls(proc: subprocess.Popen, n: int, timeout: float = 60.0) -> None:
    """Read the monitor's stdout until ``n`` call events came out (bounded)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline, seen = time.monotonic() + timeout, 0
    while seen < n:
        assert sel.select(timeout=max(0.0, deadline - time.monotonic())), f"{seen} calls within {timeout} s"
        line = proc.stdout.readline()
        assert line, "the monitor ended early"
        seen += json.loads(line)["kind"] == "call"


def test_sigkill_leaves_the_events_file_intact_and_a_restart_appends(model, tmp_path):
    events = tmp_path / "events.jsonl"
    proc = start_monitor(model, events, tmp_path)
    try:
        wait_calls(proc, 3)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = events.read_text(encoding="utf-8")
    assert first.endswith("\n")  # every event is one flushed line: nothing torn
    lines = [json.loads(ln) for ln in first.splitlines()]
    assert sum(e["kind"] == "call" for e in lines) >= 3
    proc = start_monitor(model, events, tmp_path)  # a restarted monitor appends to the same file
    try:
        wait_calls(proc, 2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    text = events.read_text(encoding="utf-8")
    assert text.startswith(first) and len(text) > len(first)
    after = [json.loads(ln) for ln in text.splitlines()]  # still valid line by line
    assert sum(e["kind"] == "call" for e in after) >= len([e for e in lines if e["kind"] == "call"]) + 2
