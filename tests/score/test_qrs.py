"""pedstream.score.qrs and ``pedstream score qrs``: EC57 matching on hand-made lists, the CLI on a real
MIT-BIH excerpt (``tests/fixtures/real/119.*``, first 60 s of record 119, ODC-By 1.0), bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pedstream.cli import cli
from pedstream.data.annotations import Annotations, write_annotations
from pedstream.score.qrs import BeatScore, match_beats, vf_episodes

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "real" / "119"
FS = 360.0


def test_hand_made_reference_and_detections() -> None:
    ref = np.array([100, 500, 900, 1300, 1700])
    sym = ["N", "V", "N", "V", "N"]
    # 110: 10 samples late (TP); 560: 60 samples = 167 ms from 500 (no match: FN 500 + FP 560);
    # 954: 54 samples = 150 ms exactly (TP, the window is inclusive); 1300 (TP); 2000 (FP); 1700 missed (FN)
    det = np.array([110, 560, 954, 1300, 2000])
    res = match_beats(ref, sym, det, fs=FS, exclude_s=1000 / FS)
    assert (res.whole.tp, res.whole.fn, res.whole.fp) == (3, 2, 2)
    assert res.whole.se == pytest.approx(3 / 5) and res.whole.ppv == pytest.approx(3 / 5)
    assert res.matched.tolist() == [True, False, True, True, False]
    assert res.unmatched_test.tolist() == [560, 2000]
    # EC57-style exclusion (here from sample 1000 on): 1300 TP, 1700 FN, 2000 FP
    assert (res.ec57.tp, res.ec57.fn, res.ec57.fp) == (1, 1, 1)
    v = res.class_se("V")
    assert (v.tp, v.fn) == (1, 1)
    # 55 samples (152.8 ms) is outside the window
    assert match_beats(np.array([1000]), ["N"], np.array([1055]), fs=FS).whole == BeatScore(0, 1, 1)
    assert match_beats(np.array([1000]), ["N"], np.array([946]), fs=FS).whole == BeatScore(1, 0, 0)
    # one detection cannot serve two beats; a duplicate detection is one detection
    assert match_beats(np.array([1000, 1040]), ["N", "N"], np.array([1020, 1020]), fs=FS).whole == BeatScore(1, 1, 0)


def test_vf_episodes_are_not_scored() -> None:
    samples = np.array([0, 800, 850, 1000, 1500])
    symbols = ["+", "N", "[", "]", "["]
    vf = vf_episodes(samples, symbols, n_samples=3000)
    assert vf == [(850, 1001), (1500, 3000)]
    res = match_beats(np.array([100, 800, 1200]), ["N", "N", "N"], np.array([100, 900, 950, 1201, 2000]), fs=FS, vf=vf)
    # 900, 950 and 2000 lie inside VF episodes: dropped; 100 and 1201 match; 800 is missed
    assert res.whole == BeatScore(tp=2, fn=1, fp=0)
    assert res.det_in_vf == 3


def test_empty_inputs_and_sums() -> None:
    assert match_beats(np.array([], dtype=int), [], np.array([5]), fs=FS).whole == BeatScore(0, 0, 1)
    r = match_beats(np.array([5]), ["N"], np.array([], dtype=int), fs=FS).whole
    assert r == BeatScore(0, 1, 0) and r.se == 0.0 and r.ppv == 1.0
    assert BeatScore(1, 2, 3) + BeatScore(10, 20, 30) == BeatScore(11, 22, 33)
    assert BeatScore(3, 1, 0).as_dict() == {"tp": 3, "fn": 1, "fp": 0, "se": 0.75, "ppv": 1.0}


def _copy_fixture(dest: Path, *, atr: bool = True) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for ext in ("hea", "dat") + (("atr",) if atr else ()):
        shutil.copy(FIXTURE.with_suffix(f".{ext}"), dest / f"119.{ext}")
    return dest


def test_cli_scores_a_real_record_identically_for_any_chunk(tmp_path: Path) -> None:
    data = _copy_fixture(tmp_path / "data")
    outs = {}
    for chunk in (7, 360):
        out = tmp_path / f"r{chunk}.json"
        res = CliRunner().invoke(cli, ["score", "qrs", "--data", str(data), "--chunk", str(chunk), "--json", str(out)])
        assert res.exit_code == 0, res.output
        outs[chunk] = json.loads(out.read_text())
    rep = outs[360]
    assert set(rep) >= {"records", "total", "total_ec57", "chunk", "window_ms", "lead", "commit"}
    assert "peer" not in rep
    rec = rep["records"]["119"]
    for blk in (rec, rep["total"], rep["total_ec57"]):
        assert set(blk) >= {"tp", "fn", "fp", "se", "ppv"}
    assert rec["lead"] == "MLII" and rep["window_ms"] == 150.0
    n_ref = rec["tp"] + rec["fn"]
    assert n_ref == 65  # beats in the first 60 s of record 119, warm-up beats included
    assert rec["se"] >= 0.98 and rec["ppv"] >= 0.98
    assert rec["v_tp"] + rec["v_fn"] > 10 and rec["se_v"] >= 0.95
    assert rep["total_ec57"]["tp"] + rep["total_ec57"]["fn"] == 0  # a 60 s record has nothing after 5 min
    for k in ("tp", "fn", "fp"):
        assert rep["total"][k] == rec[k]
    assert outs[7]["records"] == outs[360]["records"]  # detections do not depend on the chunk size
    assert "119" in res.output and "gross totals" in res.output


def test_cli_peer_xqrs(tmp_path: Path) -> None:
    data = _copy_fixture(tmp_path / "data")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["score", "qrs", "--data", str(data), "--records", "119", "--peer", "xqrs",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["peer"]["name"] == "xqrs"
    assert set(rep["peer"]["total"]) >= {"tp", "fn", "fp", "se", "ppv"}
    assert set(rep["peer"]["records"]) == {"119"} and "total_ec57" in rep["peer"]
    assert rep["peer"]["total"]["tp"] > 60


def _one_error_line(res) -> str:  # type: ignore[no-untyped-def]
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert lines[0].startswith("error: ")
    return lines[0]


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    good = _copy_fixture(tmp_path / "data")
    out = tmp_path / "r.json"
    # a record without an annotation file, next to a good one: checked before anything is scored
    _copy_fixture(tmp_path / "tmp_noatr", atr=False)
    for ext in ("hea", "dat"):
        (tmp_path / "tmp_noatr" / f"119.{ext}").rename(good / f"noatr.{ext}")
    (good / "noatr.hea").write_text((good / "noatr.hea").read_text().replace("119", "noatr", 1).replace("119.dat", "noatr.dat"))
    res = CliRunner().invoke(cli, ["score", "qrs", "--data", str(good), "--json", str(out)])
    assert res.exit_code == 2
    line = _one_error_line(res)
    assert "noatr" in line and ".atr" in line
    assert not out.exists() and not list(tmp_path.glob(".r.json*"))

    # annotations without a single beat label
    nobeat = _copy_fixture(tmp_path / "nobeat")
    write_annotations(nobeat / "119", Annotations(sample=np.array([0, 100]), symbol=["+", "~"], aux=["(N", ""], fs=FS))
    res = CliRunner().invoke(cli, ["score", "qrs", "--data", str(nobeat), "--json", str(out)])
    assert res.exit_code == 2
    line = _one_error_line(res)
    assert "119" in line and "no beat annotations" in line
    assert not out.exists()

    # a lead the record does not have
    res = CliRunner().invoke(cli, ["score", "qrs", "--data", str(_copy_fixture(tmp_path / "lead")), "--lead", "V5",
                                   "--json", str(out)])
    assert res.exit_code == 2
    line = _one_error_line(res)
    assert "119" in line and "'V5'" in line and "MLII" in line
    assert not out.exists()

    # a record id that is not there
    res = CliRunner().invoke(cli, ["score", "qrs", "--data", str(good), "--records", "999", "--json", str(out)])
    assert res.exit_code == 2
    assert "999" in _one_error_line(res)
    assert not out.exists()
