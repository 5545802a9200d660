"""``pedstream record repair``'s functions on EDF+ files cut short the way a crash leaves them (a header
whose record count is not current, a data record half written, annotations only in the journal): the
layout read from the header, the record count made current, the journal read past a line cut by the
crash, the files rewritten complete with their annotations. Real files through pyedflib. (A real run
killed with SIGKILL, then repaired: tests/outputs/test_recording_crash.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyedflib

from pedstream.outputs.edfrepair import (
    describe,
    edf_layout,
    read_journal,
    repair,
    sync_record_count,
)

FS = 100  # Hz, data records of 1 s
N_RECORDS = 5


def _edf(path: Path, *, keep_records: float) -> np.ndarray:
    """A complete 2-channel EDF+ file of ``N_RECORDS`` records, then cut to ``keep_records`` records with
    its header's record count unknown (-1), as a crash leaves it. Returns the samples written."""
    x = np.stack([np.sin(np.arange(N_RECORDS * FS) / 7.0), np.cos(np.arange(N_RECORDS * FS) / 5.0)]) * 2.0
    w = pyedflib.EdfWriter(str(path), 2, file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        w.setSignalHeaders([{"label": lab, "dimension": "mV", "sample_frequency": FS, "physical_min": -5.0,
                             "physical_max": 5.0, "digital_min": -32768, "digital_max": 32767,
                             "transducer": "", "prefilter": ""} for lab in ("II", "V1")])
        for k in range(N_RECORDS):
            w.writeSamples([np.ascontiguousarray(x[0, k * FS:(k + 1) * FS]),
                            np.ascontiguousarray(x[1, k * FS:(k + 1) * FS])])
    finally:
        w.close()
    layout = edf_layout(path)
    os.truncate(path, layout.header_bytes + int(keep_records * layout.record_bytes))
    with open(path, "r+b") as f:
        f.seek(236)
        f.write(b"-1      ")
    return x


def _journal(folder: Path, lines: list[str]) -> Path:
    j = folder / "journal-20250101T120000Z.jsonl"
    j.write_text("\n".join(lines), encoding="utf-8")
    return j


def test_the_layout_and_the_record_count_come_from_the_file(tmp_path) -> None:
    edf = tmp_path / "a.edf"
    _edf(edf, keep_records=3.5)
    layout = edf_layout(edf)
    with open(edf, "rb") as f:
        head = f.read(256)
    assert layout.header_bytes == int(head[184:192]) == 256 * (1 + 3)  # 2 signals + the annotation signal
    assert layout.record_bytes > 2 * 2 * FS  # the two signals' samples plus the annotation signal's bytes
    assert sync_record_count(edf) == 3
    with open(edf, "rb") as f:
        f.seek(236)
        assert f.read(8) == b"3       "


def test_the_journal_is_read_past_a_line_cut_by_the_crash(tmp_path) -> None:
    j = _journal(tmp_path, [json.dumps({"file": "a.edf", "onset": 1.5, "duration": -1, "text": "alarm_on svt"}),
                            json.dumps({"file": "b.edf", "onset": 0.2, "text": "call sinus"}),
                            json.dumps({"file": "b.edf", "closed": True}),
                            "not json", json.dumps({"onset": 3.0}),
                            '{"file": "a.edf", "onset": 2.'])
    files = read_journal(j)
    assert set(files) == {"a.edf", "b.edf"}
    assert files["a.edf"].annotations == [(1.5, -1.0, "alarm_on svt")] and not files["a.edf"].closed
    assert files["b.edf"].closed and files["b.edf"].annotations == [(0.2, -1.0, "call sinus")]


def test_repair_rewrites_unfinished_files_with_their_annotations_and_removes_the_journal(tmp_path) -> None:
    x = _edf(tmp_path / "a.edf", keep_records=3.5)
    _edf(tmp_path / "b.edf", keep_records=N_RECORDS)  # closed cleanly: left alone
    b_before = (tmp_path / "b.edf").read_bytes()
    j = _journal(tmp_path, [json.dumps({"file": "a.edf", "onset": 1.5, "duration": -1, "text": "alarm_on svt"}),
                            json.dumps({"file": "a.edf", "onset": 4.5, "duration": -1, "text": "after the cut"}),
                            json.dumps({"file": "b.edf", "closed": True})])
    results = repair([tmp_path])
    assert [(p.name, what) for p, what in results] == [("a.edf", "repaired: 3 data records, 2 annotations")]
    assert describe(results) == [f"{tmp_path / 'a.edf'}: repaired: 3 data records, 2 annotations"]
    assert not j.exists() and (tmp_path / "b.edf").read_bytes() == b_before
    with pyedflib.EdfReader(str(tmp_path / "a.edf")) as r:
        assert r.datarecords_in_file == 3 and r.getSignalLabels() == ["II", "V1"]
        np.testing.assert_allclose(r.readSignal(0), x[0, :3 * FS], atol=1e-3)
        np.testing.assert_allclose(r.readSignal(1), x[1, :3 * FS], atol=1e-3)
        onsets, _, texts = r.readAnnotations()
    assert list(texts) == ["alarm_on svt", "recording cut short (repaired)"]  # the one after the cut is gone
    assert onsets[0] == 1.5 and onsets[1] == 2.0  # the cut is marked at the start of the last whole record


def test_a_file_without_a_whole_record_is_reported_and_its_journal_kept(tmp_path) -> None:
    _edf(tmp_path / "a.edf", keep_records=0.5)
    j = _journal(tmp_path, [json.dumps({"file": "a.edf", "onset": 0.1, "text": "call sinus"})])
    [(path, what)] = repair([tmp_path / "a.edf"])
    assert path.name == "a.edf" and what.startswith("not repaired:") and "no whole data record" in what
    assert j.exists()
    assert describe([]) == ["nothing to repair (every recording was closed)"]
