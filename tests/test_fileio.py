"""Atomic output: all files of a group or none, with an ordinary file mode."""

from __future__ import annotations

import json
import os

import pytest

from pedstream.fileio import replace_atomically, write_json


def test_write_json_mode_and_content(tmp_path):
    p = write_json(tmp_path / "a" / "r.json", {"x": 1})
    assert json.loads(p.read_text()) == {"x": 1}
    mask = os.umask(0)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_failing_writer_leaves_every_target_as_it_was(tmp_path):
    old = tmp_path / "old.json"
    old.write_text("old")

    def boom(tmp):
        raise RuntimeError("plot failed")

    with pytest.raises(RuntimeError):
        replace_atomically({old: lambda t: t.write_text("new"), tmp_path / "fig.png": boom})
    assert old.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]
