"""Crash safety of the EDF+ recordings (``pedstream run --record DIR``) and ``pedstream record repair``.

The chosen design: **a header kept current, plus an annotation journal**.

- After every data record the recorder writes, it sets the header's "number of data records" to the
  whole data records on disk (:func:`sync_record_count`). A file cut short by a crash (SIGKILL, power
  loss) therefore opens in pyedflib, MNE or EDFbrowser at any moment, with every sample up to the last
  data record written (EDFlib writes a data record through to the kernel as it is given).
- EDFlib writes annotations only when a file is closed. So every annotation is also appended, as it
  happens, to a journal beside the recordings (``DIR/journal-<UTC start>.jsonl``, one JSON object per
  line: ``{"file", "onset", "duration", "text"}``; ``{"file", "closed": true}`` once a file was
  closed cleanly). A journal whose files are all closed is removed at the end of the run.
- :func:`repair` (``pedstream record repair DIR|FILE...``, and automatically when ``pedstream run
  --record DIR`` starts on a folder holding a journal) rewrites each file the journal does not mark
  closed into a complete EDF+ file: its samples (whole data records) and the journal's annotations.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np

__all__ = ["sync_record_count", "read_journal", "repair", "repair_file", "describe", "edf_layout", "JOURNAL_GLOB", "EdfLayout"]

log = logging.getLogger(__name__)

JOURNAL_GLOB = "journal-*.jsonl"


@dataclass
class EdfLayout:
    header_bytes: int
    record_bytes: int


def edf_layout(path: Path) -> EdfLayout:
    """Header length and data-record length of an EDF(+) file from its header."""
    with open(path, "rb") as f:
        head = f.read(256)
        if len(head) < 256:
            raise ValueError(f"{path}: not an EDF file (header cut short)")
        n_bytes = int(head[184:192].decode("ascii").strip())
        ns = int(head[252:256].decode("ascii").strip())
        f.seek(256 + ns * 216)
        spr = [int(f.read(8).decode("ascii").strip()) for _ in range(ns)]
    return EdfLayout(header_bytes=n_bytes, record_bytes=2 * sum(spr))


def sync_record_count(path: Path, layout: EdfLayout | None = None) -> int:
    """Set the header's record count to the whole data records on disk; return it."""
    layout = layout or edf_layout(path)
    size = os.stat(path).st_size
    n = max(0, (size - layout.header_bytes) // layout.record_bytes)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, f"{n:<8d}".encode("ascii"), 236)
    finally:
        os.close(fd)
    return n


@dataclass
class _JournalFile:
    annotations: list[tuple[float, float, str]] = field(default_factory=list)
    closed: bool = False


def read_journal(path: Path) -> dict[str, _JournalFile]:
    """The journal's files (by name) with their annotations and whether they were closed."""
    files: dict[str, _JournalFile] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                obj = json.loads(line)
                name = str(obj["file"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by the crash
            jf = files.setdefault(name, _JournalFile())
            if obj.get("closed"):
                jf.closed = True
            elif "onset" in obj:
                jf.annotations.append((float(obj["onset"]), float(obj.get("duration", -1.0)), str(obj.get("text", ""))))
    return files


def repair_file(path: Path, annotations: list[tuple[float, float, str]]) -> int:
    """Rewrite the unfinished EDF+ file ``path`` as a complete one with ``annotations``; return its data records."""
    import pyedflib

    n = sync_record_count(path)
    if n == 0:
        raise ValueError(f"{path}: no whole data record to keep")
    with pyedflib.EdfReader(str(path)) as r:
        headers = r.getSignalHeaders()
        signals = [r.readSignal(i, digital=True) for i in range(r.signals_in_file)]
        duration = r.datarecord_duration
        start = r.getStartdatetime()
        patient, equipment = r.getPatientCode(), r.getEquipment()
    tmp = path.with_name(path.name + ".repair")
    w = pyedflib.EdfWriter(str(tmp), len(headers), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        w.set_number_of_annotation_signals(min(64, max(1, -(-(len(annotations) + 1) // n))))
        with warnings.catch_warnings():  # the data-record length is the original file's, not a new choice
            warnings.simplefilter("ignore")
            w.setDatarecordDuration(duration)
        w.setSignalHeaders(headers)
        w.setStartdatetime(start)
        w.setPatientCode(patient)
        w.setEquipment(equipment)
        spr = [int(round(h["sample_frequency"] * duration)) for h in headers]
        for k in range(n):
            w.writeSamples([np.ascontiguousarray(s[k * m:(k + 1) * m]) for s, m in zip(signals, spr)], digital=True)
        end = n * duration
        for onset, dur, text in annotations:
            if onset <= end:
                w.writeAnnotation(onset, dur, text)
        w.writeAnnotation(max(0.0, end - duration), -1, "recording cut short (repaired)")
    finally:
        w.close()
    os.replace(tmp, path)
    return n


def repair(paths: list[Path]) -> list[tuple[Path, str]]:
    """Repair the unfinished recordings named by ``paths`` (folders: every journal in them; journals;
    EDF files: the journal beside them). Returns ``(file, outcome)`` lines; a journal whose files are
    all dealt with is removed."""
    journals: list[Path] = []
    only: set[Path] | None = None
    for p in map(Path, paths):
        if p.is_dir():
            journals += sorted(p.glob(JOURNAL_GLOB))
        elif p.suffix == ".jsonl":
            journals.append(p)
        else:
            only = (only or set()) | {p.resolve()}
            journals += sorted(p.parent.glob(JOURNAL_GLOB))
    out: list[tuple[Path, str]] = []
    for jpath in dict.fromkeys(journals):
        done = True
        for name, jf in read_journal(jpath).items():
            edf = jpath.parent / name
            if only is not None and edf.resolve() not in only:
                done = done and jf.closed
                continue
            if jf.closed:
                continue
            try:
                n = repair_file(edf, jf.annotations)
                out.append((edf, f"repaired: {n} data records, {len(jf.annotations)} annotations"))
            except (OSError, ValueError) as exc:
                out.append((edf, f"not repaired: {exc}"))
                done = False
        if done:
            jpath.unlink(missing_ok=True)
    return out


def describe(results: list[tuple[Path, str]]) -> list[str]:
    return [f"{p}: {what}" for p, what in results] or ["nothing to repair (every recording was closed)"]
