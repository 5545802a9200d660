"""`pedstream data inspect` and `pedstream data labels` through the real CLI (click's CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import wfdb
from click.testing import CliRunner

from pedstream.cli import cli
from pedstream.data.subjects import SubjectInfo, write_subjects

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "real"

TABLE = ("\ufeffpatient_id,label_symbol,dataset_aux_string,description\n"
         "x001,~,,Unknown (~:)\nx001,+,(N,Sinus rhythm\nx001,N,,Unknown (N:)\nx001,N,,Unknown (N:)\n"
         "x001,X,AVRT,Atrioventricular reentrant tachycardia\nx0029,N,N-Prex,Unknown (N:N-Prex)\n"
         "x0029,X,EAT,Ectopic atrial tachycardia\nx100,X,VT,Ventricular tachycardia\nx100,R,,Complete right bundle branch block\n")


def test_inspect_json_shows_layouts_clipping_flat_and_classes(leipzig_folder):
    write_subjects(leipzig_folder / "children-subject-info.csv",
                   [SubjectInfo("001", "x001", "M", 6.6, "AVRT", "right posteroseptal", 4.0)])
    res = CliRunner().invoke(cli, ["data", "inspect", str(leipzig_folder), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    recs = {r["record"]: r for r in doc["records"]}
    assert {r["layout"] for r in recs.values()} == {"full", "abl_rva", "no_abl", "abl_uni", "art", "rva_last"}
    assert recs["x001"]["subject"] == "001" and recs["x002"]["subject"] == "x002"
    art = next(r for r in recs.values() if r["layout"] == "art")
    assert list(art["clipped"]) == ["V2"] and 0 < art["clipped"]["V2"] < 100
    assert art["ignored"] == ["ART"] and art["channels_present"] == 19
    uni = next(r for r in recs.values() if r["layout"] == "abl_uni")
    assert uni["flat"] == ["ABL12"] and uni["channels_present"] == 18
    no_abl = next(r for r in recs.values() if r["layout"] == "no_abl")
    assert no_abl["missing"] == ["ABL12"] and no_abl["channels_present"] == 18
    assert recs["x001"]["class_counts"]["avrt"] == 3 and recs["x001"]["class_counts"]["sinus"] == 2
    assert doc["totals"]["records"] == 6 and doc["totals"]["class_counts"]["preexcited"] == 6
    assert doc["totals"]["classes_seen"] == 3 and doc["totals"]["layouts"]["full"] == 1


def test_inspect_table_and_real_records_with_aami(tmp_path):
    res = CliRunner().invoke(cli, ["data", "inspect", str(FIXTURES), "--set", "labels.scheme=aami"])
    assert res.exit_code == 0, res.output
    assert "119" in res.output and "iaf1_afw" in res.output and "no .atr" in res.output
    sym = [s for rec in ("119", "203") for s in wfdb.rdann(str(FIXTURES / rec), "atr").symbol]  # wfdb's own reading
    assert f"2 classes: N {sym.count('N')}, V {sym.count('V')}" in res.output


def test_inspect_errors(tmp_path, leipzig_folder):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(cli, ["data", "inspect", str(empty)])
    assert res.exit_code == 2 and "no WFDB records" in res.output
    (leipzig_folder / "x002.dat").unlink()
    res = CliRunner().invoke(cli, ["data", "inspect", str(leipzig_folder), "--json"])
    assert res.exit_code == 2
    assert "error: record" in res.output and "1 of 6 records could not be read" in res.output


def test_labels_markdown_and_subject_filters(tmp_path):
    table = tmp_path / "processed_segments_with_aux.csv"
    table.write_text(TABLE, encoding="utf-8")
    res = CliRunner().invoke(cli, ["data", "labels", str(table), "--markdown"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("| class | beats | share | subjects (of 2)")
    row = {ln.split("|")[1].strip(): ln for ln in lines if ln.startswith("| ")}
    assert "| 2 | 40.00 % | 1 |" in row["sinus"] and "`N` 2" in row["sinus"]
    assert "| 1 |" in row["other"] and "`X:EAT` 1" in row["other"]
    assert "**5**" in row["**labelled**"]
    assert "vt" in row and "| 0 |" in row["vt"]  # adults are excluded by default
    res = CliRunner().invoke(cli, ["data", "labels", str(table), "--subjects", "adults", "--markdown"])
    assert "| vt | 1 | 50.00 % | 1 |" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    res = CliRunner().invoke(cli, ["data", "labels", str(bad)])
    assert res.exit_code == 2 and "missing column(s)" in res.output


def test_inspect_reports_the_rhythm_reference_and_channel_sets(tmp_path):
    # MIT-BIH 203 (first 60 s): (AFIB almost throughout, 92 of its 102 beats labelled N; 119 has no AF
    folder = tmp_path / "mitdb"
    folder.mkdir()
    for rec in ("203", "119"):
        for ext in ("hea", "dat", "atr"):
            (folder / f"{rec}.{ext}").write_bytes((FIXTURES / f"{rec}.{ext}").read_bytes())
    res = CliRunner().invoke(cli, ["data", "inspect", str(folder), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    recs = {r["record"]: r for r in doc["records"]}
    r203 = recs["203"]
    assert r203["truth_source"] == "rhythm" and r203["rhythm_map"] == "mitdb"
    assert r203["rhythm_s"]["af_afl"] > 55 and set(r203["rhythm_s"]) == {"af_afl", "vt"}  # not "mostly sinus"
    assert r203["class_counts"]["sinus"] > 80  # the beat labels (what training groups) are kept beside it
    assert doc["totals"]["truth_sources"] == {"rhythm": 2} and doc["totals"]["layouts"] == {}
    assert doc["totals"]["channel_sets"] == {"II V1": 2}
    res = CliRunner().invoke(cli, ["data", "inspect", str(folder)])
    assert res.exit_code == 0, res.output
    assert "None" not in res.output and "2 in no Leipzig layout, by channels present: II V1 x2" in res.output
    assert "rhythm: af_afl" in res.output and "reference: rhythm x2" in res.output
    # the beat grouping is the reference where the map names another scheme's classes
    res = CliRunner().invoke(cli, ["data", "inspect", str(folder), "--json", "--set", "labels.scheme=aami"])
    assert {r["truth_source"] for r in json.loads(res.output)["records"]} == {"beats"}
