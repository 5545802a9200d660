"""CinC 2017 archive reader on real recordings (tests/fixtures/real/rhythm: A00001 N, A00009 AF, A00056 noisy)
packed as the shared archive is (training2017/ + REFERENCE.csv with its header line)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from pedstream.data.cinc2017 import extract_archive, read_recording, read_reference
from pedstream.errors import RecordError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "rhythm"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "training2017.tar.xz"
    with tarfile.open(path, "w:xz") as tf:
        for f in ["REFERENCE.csv"] + [f"{n}.{e}" for n in ("A00001", "A00009", "A00056") for e in ("hea", "mat")]:
            tf.add(FIX / f, arcname=f"training2017/{f}")
    return path


def test_extract_once_and_read(archive: Path, tmp_path: Path) -> None:
    folder = extract_archive(archive, tmp_path / "cache")
    assert folder.name == "training2017"
    assert read_reference(folder) == [("A00001", "N"), ("A00009", "A"), ("A00056", "~")]
    x, fs = read_recording(folder, "A00009")
    assert fs == 300.0 and x.shape == (9000,) and 0.05 < np.ptp(x) < 10  # millivolts
    assert extract_archive(archive, tmp_path / "cache") == folder  # cached: not extracted again
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_bad_archive_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "training2017.tar.xz"
    bad.write_bytes(b"\xfd7zXZ\x00 not really xz")
    with pytest.raises(RecordError) as ei:
        extract_archive(bad, tmp_path / "cache")
    assert "\n" not in str(ei.value) and "not a readable CinC 2017 archive" in str(ei.value)
    assert not any((tmp_path / "cache").iterdir())  # nothing half-extracted left behind


def test_archive_escaping_its_folder_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.xz"
    (tmp_path / "x").write_text("x")
    with tarfile.open(evil, "w:xz") as tf:
        tf.add(tmp_path / "x", arcname="../escape.txt")
    with pytest.raises(RecordError):
        extract_archive(evil, tmp_path / "cache")
    assert not (tmp_path / "escape.txt").exists()


def test_bad_reference_line(tmp_path: Path) -> None:
    (tmp_path / "REFERENCE.csv").write_text("A00001,N\nA00002,X\n")
    with pytest.raises(RecordError, match="line 2"):
        read_reference(tmp_path)


def test_cli_bad_archive_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "t.tar.xz"
    bad.write_bytes(b"garbage")
    r = subprocess.run([sys.executable, "-m", "pedstream.train.rhythm_context_data", "--cinc", str(bad),
                        "--cache", str(tmp_path / "c")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
