"""A machine without a system service (mosquitto, chromium) skips the tests that need it, with one line
naming what is skipped and why, and fails none of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_mqtt_skips_without_mosquitto() -> None:
    env = {**os.environ, "PEDSTREAM_TEST_WITHOUT": "mosquitto"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         "tests/bench/test_bench_cli.py::test_engine_quick[mqtt]"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "1 skipped" in proc.stdout and "passed" not in proc.stdout, proc.stdout[-2000:]
    assert "will skip 1 tests: mosquitto hidden by PEDSTREAM_TEST_WITHOUT" in proc.stdout, proc.stdout[-2000:]
