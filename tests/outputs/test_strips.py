"""Where alarm strips go: --alarms-dir, [alarms] dir, beside the events file, the user's data directory."""

from __future__ import annotations

import os
from pathlib import Path

from pedstream.config import load_config
from pedstream.outputs.strips import alarms_folder


def test_alarms_folder_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    section = load_config().alarms
    assert section.dir == ""
    assert alarms_folder(section) == tmp_path / "xdg" / "pedstream" / "alarms"  # never the cwd by default
    assert alarms_folder(section, events_path="runs/ev.jsonl") == tmp_path / "runs" / "alarms"
    assert alarms_folder(section, events_path="ev.jsonl", override="mine") == tmp_path / "mine"
    set_dir = load_config(overrides=['alarms.dir="strips"']).alarms
    assert alarms_folder(set_dir, events_path="runs/ev.jsonl") == tmp_path / "strips"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert alarms_folder(section) == Path(os.path.expanduser("~")).resolve() / ".local" / "share" / "pedstream" / "alarms"


def test_each_run_gets_its_own_folder_and_old_runs_are_pruned(tmp_path):
    """Regression: the strips of every run piled up in one folder forever."""
    from datetime import datetime, timezone

    from pedstream.config import load_config
    from pedstream.outputs.strips import alarms_folder, run_folder

    sec = load_config(overrides=["alarms.keep_runs=3", "alarms.keep_mb=0.002"]).alarms
    base = tmp_path / "alarms"
    made = []
    for k in range(5):
        here = run_folder(base, sec, now=datetime(2026, 1, 1, 10, 0, k, tzinfo=timezone.utc))
        assert here.parent == base and here.name == f"run-20260101T10000{k}Z"
        here.mkdir(parents=True)
        (here / "bed_vt.png").write_bytes(b"x" * 500)
        made.append(here)
    (base / "mine").mkdir()  # a folder pedstream did not make is never touched
    kept = sorted(p.name for p in base.iterdir())
    # keep_runs=3: each start leaves the newest 2 old ones beside the new one; 3 x 500 B is within 2 kB
    assert kept == ["mine", made[2].name, made[3].name, made[4].name]
    again = run_folder(base, sec, now=datetime(2026, 1, 1, 10, 0, 4, tzinfo=timezone.utc))
    assert again.name == "run-20260101T100004Z-2"  # same second: never the same folder
    tight = load_config(overrides=["alarms.keep_mb=0.0006"]).alarms  # room for one 500 B run only
    run_folder(base, tight)
    assert sorted(p.name for p in base.iterdir()) == ["mine", made[4].name]


def test_demo_strips_default_to_a_demo_folder(tmp_path, monkeypatch):
    from pedstream.config import load_config
    from pedstream.outputs.strips import alarms_folder

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    sec = load_config().alarms
    assert alarms_folder(sec, demo=True) == tmp_path / "pedstream" / "demo-alarms"
    assert alarms_folder(sec) == tmp_path / "pedstream" / "alarms"
