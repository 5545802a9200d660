"""Rhythm spans and annotated beats of real records (tests/fixtures/real)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pedstream.config import load_config
from pedstream.data.rhythm_sources import annotated_beats, read_lead, rhythm_spans
from pedstream.errors import AnnotationError, RecordError

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"


def test_vfdb_spans_map_to_rhythm_classes() -> None:
    table = load_config().rhythm_context.labels["vfdb"]
    x, fs = read_lead(REAL / "rhythm" / "vfdb419_vfl")
    spans = rhythm_spans(REAL / "rhythm" / "vfdb419_vfl", table, n_samples=x.size)
    assert fs == 250.0 and [s[2] for s in spans] == ["sinus", "vf"]
    assert spans[1][0] == pytest.approx(37.3, abs=0.1) and spans[1][1] == pytest.approx(80.0)


def test_mitdb_spans_and_beats() -> None:
    table = load_config().rhythm_context.labels["mitdb"]
    spans = rhythm_spans(REAL / "203", table, n_samples=21600)
    assert [s[2] for s in spans] == ["af_afl", "vt", "af_afl"]
    t, sym = annotated_beats(REAL / "203")
    assert len(t) == len(sym) == 102 and (t[1:] > t[:-1]).all()


def test_missing_rhythm_and_record_errors(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError):
        rhythm_spans(REAL / "rhythm" / "A00001", {"sinus": ["(N"]})
    with pytest.raises(RecordError):
        read_lead(tmp_path / "nothing")


def test_cli_bad_record_folder_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "pedstream.train.rhythm_context_data", "--records", str(tmp_path / "none"),
                        "--cache", str(tmp_path / "c")], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no WFDB records" in r.stderr
