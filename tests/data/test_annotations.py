"""Round trips of the Leipzig annotation conventions through real WFDB files."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb

from pedstream.data.annotations import Annotations, read_annotations, write_annotations
from pedstream.errors import AnnotationError

LEIPZIG = [
    ("~", ""), ("+", "(N"), ("N", ""), ("N", "N-Prex"), ("A", "A-Prex"), ("+", "(AVRT"),
    ("X", "AVRT"), ("X", "avrt"), ("X", "AVNRT"), ("X", "avnrt"), ("X", "AVNRT+BII"), ("X", "VT"),
    ("X", "AFIB"), ("X", "AFL"), ("X", "EAT"), ("X", "IVR"), ("+", "(/A"), ("/", "/A"), ("/", "/V"),
    ("R", ""), ("V", ""), ("J", ""), ("a", ""), ("f", ""), ("F", ""), ("L", ""), ("b", "BI"),
    ("j", ""), ("Q", ""), ("~", ""),
]


def _ann(pairs, fs=977.0):
    return Annotations(sample=np.arange(1, len(pairs) + 1, dtype=np.int64) * 250,
                       symbol=[p[0] for p in pairs], aux=[p[1] for p in pairs], fs=fs)


def test_leipzig_symbols_and_aux_round_trip(tmp_path):
    ann = _ann(LEIPZIG)
    path = write_annotations(tmp_path / "x001", ann)
    assert path == tmp_path / "x001.atr"
    back = read_annotations(tmp_path / "x001")
    assert back.pairs() == LEIPZIG
    np.testing.assert_array_equal(back.sample, ann.sample)
    assert back.sample.dtype == np.int64
    assert back.fs == pytest.approx(977.0)


def test_plain_wfdb_reads_x_back_as_x(tmp_path):
    """The file is standard WFDB: wfdb.rdann itself (no pedstream code) sees X, not '"'."""
    write_annotations(tmp_path / "r", _ann([("X", "AVRT"), ("N", ""), ("b", "BI")]))
    raw = wfdb.rdann(str(tmp_path / "r"), "atr")
    assert raw.symbol == ["X", "N", "b"]
    assert raw.aux_note[0] == "AVRT"


def test_naive_wfdb_rewrite_is_undone(tmp_path):
    """wfdb.wrann without custom labels stores X as a comment '"' with aux 'X AVRT'."""
    wfdb.wrann("naive", "atr", np.array([10, 20, 30, 40]), symbol=["X", "X", "N", '"'],
               aux_note=["AVRT", "", "", "free text comment"], fs=977, write_dir=str(tmp_path))
    raw = wfdb.rdann(str(tmp_path / "naive"), "atr")
    assert raw.symbol[0] == '"' and raw.aux_note[0] == "X AVRT"
    back = read_annotations(tmp_path / "naive")
    assert back.pairs() == [("X", "AVRT"), ("X", ""), ("N", ""), ('"', "free text comment")]


def test_other_custom_symbol_survives(tmp_path):
    write_annotations(tmp_path / "c", _ann([("Z", "zzz"), ("N", "")]))
    assert read_annotations(tmp_path / "c").pairs() == [("Z", "zzz"), ("N", "")]


def test_window_and_beats():
    ann = _ann(LEIPZIG)
    w = ann.window(500, 1000, shift=True)
    assert list(w.sample) == [0, 250]
    assert w.symbol == ["+", "N"]
    mask = ann.beat_mask()
    assert not mask[0] and not mask[1] and mask[2]  # ~ and + are not beats
    assert mask[LEIPZIG.index(("X", "AVRT"))] and mask[LEIPZIG.index(("b", "BI"))]


def test_errors_are_one_line(tmp_path):
    with pytest.raises(AnnotationError, match="x9.atr does not exist"):
        read_annotations(tmp_path / "x9")
    (tmp_path / "bad.atr").write_bytes(b"\x01")
    with pytest.raises(AnnotationError, match="cannot read"):
        read_annotations(tmp_path / "bad")
    with pytest.raises(AnnotationError, match="2 samples but 1 symbols"):
        Annotations(sample=[1, 2], symbol=["N"], aux=["", ""])
    with pytest.raises(AnnotationError, match="increasing"):
        Annotations(sample=[5, 2], symbol=["N", "N"], aux=["", ""])
