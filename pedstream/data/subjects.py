"""The Leipzig subject tables (``children-subject-info.csv``, ``adults-subject-info.csv``).

Real columns: ``subject_id,file_name,gender,age,diagnosis,ap_loacation,ecg_duration`` (the
``ap_loacation`` typo is the real column name; the adults' table has no such column). ``subject_id``
keeps its leading zeros (``001``, ``0010``); ``ecg_duration`` is ``h:m:s.fff`` (``0:3:6.9``).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from pedstream.errors import RecordError

__all__ = ["SubjectInfo", "SUBJECT_COLUMNS", "read_subjects", "write_subjects", "folder_subjects", "subject_map", "find_subject_tables",
           "parse_duration", "format_duration"]

SUBJECT_COLUMNS: tuple[str, ...] = ("subject_id", "file_name", "gender", "age", "diagnosis", "ap_loacation",
                                    "ecg_duration")
_REQUIRED = ("subject_id", "file_name", "gender", "age", "diagnosis", "ecg_duration")


@dataclass(frozen=True)
class SubjectInfo:
    """One subject: ``age`` in years, ``duration_s`` of the ECG in seconds, ``ap_location`` or ''."""

    subject_id: str
    record: str
    gender: str
    age: float
    diagnosis: str
    ap_location: str
    duration_s: float

    @property
    def is_child(self) -> bool:
        return self.age < 18.5


def parse_duration(text: str) -> float:
    """``"2:25:29.201"`` -> 8729.201 seconds (``h:m:s``, ``m:s`` or ``s``)."""
    parts = [float(p) for p in text.strip().split(":")]
    if not 1 <= len(parts) <= 3 or any(p < 0 for p in parts):
        raise ValueError(f"{text!r} is not h:m:s")
    secs = 0.0
    for p in parts:
        secs = secs * 60 + p
    return secs


def format_duration(seconds: float) -> str:
    """8729.201 -> ``"2:25:29.201"`` (the real files' style: no zero padding, up to ms)."""
    ms = int(round(seconds * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s = f"{rem / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{h}:{m}:{s}"


def read_subjects(path: str | os.PathLike[str]) -> dict[str, SubjectInfo]:
    """``{record name: SubjectInfo}`` from a subject table. Raises :class:`RecordError` on bad rows."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise RecordError(str(p), f"cannot read subject table: {exc.strerror or exc}") from exc
    reader = csv.DictReader(text.splitlines())
    cols = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in _REQUIRED if c not in cols]
    if missing:
        raise RecordError(str(p), f"subject table lacks column(s) {missing} (expected {', '.join(SUBJECT_COLUMNS)})")
    out: dict[str, SubjectInfo] = {}
    for line, row in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        try:
            age = float(row["age"])
        except ValueError as exc:
            raise RecordError(str(p), f"line {line}: age {row['age']!r} is not a number") from exc
        try:
            dur = parse_duration(row["ecg_duration"])
        except ValueError as exc:
            raise RecordError(str(p), f"line {line}: ecg_duration {row['ecg_duration']!r} is not h:m:s") from exc
        rec = row["file_name"]
        if not rec:
            raise RecordError(str(p), f"line {line}: empty file_name")
        out[rec] = SubjectInfo(subject_id=row["subject_id"], record=rec, gender=row["gender"], age=age,
                               diagnosis=row["diagnosis"], ap_location=row.get("ap_loacation", ""),
                               duration_s=dur)
    return out


def write_subjects(path: str | os.PathLike[str], subjects: Iterable[SubjectInfo]) -> Path:
    """Write a table with the real column names (children's layout, ``ap_loacation`` included)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(SUBJECT_COLUMNS)
        for s in subjects:
            w.writerow([s.subject_id, s.record, s.gender, f"{s.age:g}", s.diagnosis, s.ap_location,
                        format_duration(s.duration_s)])
    return p


def find_subject_tables(folder: str | os.PathLike[str]) -> list[Path]:
    """Subject tables in ``folder``: ``*subject-info*.csv`` (the real names) or ``subjects.csv``."""
    d = Path(folder)
    found = sorted(set(d.glob("*subject-info*.csv")) | set(d.glob("subjects.csv")))
    return [p for p in found if p.is_file()]


def folder_subjects(folder: str | os.PathLike[str]) -> dict[str, SubjectInfo]:
    """``{record name: SubjectInfo}`` from all subject tables in ``folder`` (empty when there are none)."""
    out: dict[str, SubjectInfo] = {}
    for table in find_subject_tables(folder):
        out.update(read_subjects(table))
    return out


def subject_map(folder: str | os.PathLike[str]) -> dict[str, str]:
    """``{record name: subject_id}`` from the subject tables in ``folder`` (empty when there are none)."""
    return {rec: info.subject_id for rec, info in folder_subjects(folder).items()}
