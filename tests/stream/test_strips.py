"""Where alarm strips go: --alarms-dir, [alarms] dir, beside the events file, the user's data directory."""

from __future__ import annotations

import os
from pathlib import Path

from pedstream.config import load_config
from pedstream.stream.strips import alarms_folder


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
