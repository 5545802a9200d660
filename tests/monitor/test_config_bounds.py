"""Configuration values the monitor cannot run with are refused with one line (exit 2), before anything
starts: unbounded waits and buffers, hops that skip signal, a "configuration file" that never ends,
and values nested deep enough to exhaust the parser."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pedstream.config import MAX_NESTING, load_config
from pedstream.errors import ConfigError

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("override,needle", [
    ("stream.max_wait_ms=1e12", "stream.max_wait_ms"),
    ("stream.ring_seconds=1e9", "stream.ring_seconds"),
    ("stream.ring_seconds=0.01", "stream.ring_seconds"),
    ("segments.hop_s=5", "hop_s (5) must be at most window_s"),
    ("segments.window_s=1e6", "segments.window_s"),
    ("stream.max_batch=" + "[" * (MAX_NESTING + 1), "levels deep"),
    ("stream.max_batch=" + "{a=" * 5000, "over the limit"),
])
def test_out_of_bounds_values_are_one_line_errors(override, needle):
    with pytest.raises(ConfigError) as ei:
        load_config(overrides=[override])
    line = str(ei.value)
    assert needle in line and "\n" not in line and len(line) < 400


def test_sane_values_still_load():
    cfg = load_config(overrides=["stream.max_wait_ms=1000", "stream.ring_seconds=5", "segments.hop_s=2.5"])
    assert cfg.stream.max_wait_ms == 1000 and cfg.segments.hop_s == 2.5


def test_a_config_file_that_never_ends_is_refused(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load_config("/dev/zero")
    assert "not a configuration file" in str(ei.value)
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000 + "\n")
    with pytest.raises(ConfigError) as ei:
        load_config(deep)
    assert "levels deep" in str(ei.value)


@pytest.mark.parametrize("args", [["--config", "/dev/zero"], ["--set", "stream.max_batch=" + "[" * 5000],
                                  ["--set", "stream.max_wait_ms=1e12"]])
def test_cli_exits_2_with_one_line(args):
    p = subprocess.run([sys.executable, "-c", "from pedstream.cli import main; main()", "run", "--source", "mqtt", "--headless", "--duration", "1",
                        *args], capture_output=True, text=True, timeout=50)
    assert p.returncode == 2, p.stderr[-500:]
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in p.stderr
