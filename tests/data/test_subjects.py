"""The subject table with the real column names (typo included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pedstream.data.subjects import (SubjectInfo, format_duration, parse_duration, read_subjects, subject_map,
                                     write_subjects)
from pedstream.errors import RecordError

REAL_HEAD = ("\ufeffsubject_id,file_name,gender,age,diagnosis,ap_loacation,ecg_duration\n"
             "001,x001,M,6.6,AVRT,right posteroseptal,2:25:29.201\n"
             "002,x002,M,11,AVNRT,,1:45:17.81\n"
             "007,x007,M,14.3,AVRT-PJRT,right posteroseptal,0:3:6.9\n")


def test_read_real_format(tmp_path):
    p = tmp_path / "children-subject-info.csv"
    p.write_text(REAL_HEAD, encoding="utf-8")
    subj = read_subjects(p)
    assert list(subj) == ["x001", "x002", "x007"]
    s = subj["x001"]
    assert s.subject_id == "001" and s.gender == "M" and s.age == 6.6 and s.ap_location == "right posteroseptal"
    assert s.duration_s == pytest.approx(2 * 3600 + 25 * 60 + 29.201)
    assert subj["x002"].ap_location == "" and subj["x007"].duration_s == pytest.approx(186.9)
    assert subject_map(tmp_path) == {"x001": "001", "x002": "002", "x007": "007"}


def test_adult_table_without_ap_column(tmp_path):
    p = tmp_path / "adults-subject-info.csv"
    p.write_text("subject_id,file_name,gender,age,diagnosis,ecg_duration\n100,x100,M,64.16,TOF with VT,0:13:2.107\n")
    s = read_subjects(p)["x100"]
    assert s.ap_location == "" and not s.is_child


def test_write_read_round_trip(tmp_path):
    rows = [SubjectInfo("0010", "x0010", "F", 14.0, "AVNRT", "", 317.564),
            SubjectInfo("003", "x003", "F", 11.9, "AVRT-WPW", "left lateral", 9031.749)]
    p = write_subjects(tmp_path / "children-subject-info.csv", rows)
    assert p.read_text().splitlines()[0] == "subject_id,file_name,gender,age,diagnosis,ap_loacation,ecg_duration"
    assert "0010,x0010,F,14,AVNRT,,0:5:17.564" in p.read_text()
    back = read_subjects(p)
    assert [back[r.record] for r in rows] == rows


def test_duration_helpers():
    assert parse_duration("0:1:17.659") == pytest.approx(77.659)
    assert format_duration(77.659) == "0:1:17.659" and format_duration(6301.81) == "1:45:1.81"


def test_bad_tables(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("subject_id,file_name,age\n1,x1,3\n")
    with pytest.raises(RecordError, match=r"lacks column\(s\) \['gender', 'diagnosis', 'ecg_duration'\]"):
        read_subjects(p)
    p.write_text("subject_id,file_name,gender,age,diagnosis,ecg_duration\n1,x1,M,old,AVRT,0:1:0\n")
    with pytest.raises(RecordError, match="line 2: age 'old' is not a number"):
        read_subjects(p)
    with pytest.raises(RecordError, match="cannot read subject table"):
        read_subjects(Path(tmp_path / "missing.csv"))
