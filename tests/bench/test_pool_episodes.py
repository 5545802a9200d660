"""bench/pool_episodes.py: EC57 gross statistics over score-episodes reports of disjoint records, and the
pooled time to alarm from saved probabilities (checked against the engine on a real MIT-BIH excerpt)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pedstream.cli import cli

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "tests" / "fixtures" / "real"
sys.path.insert(0, str(ROOT / "bench"))
import pool_episodes  # noqa: E402


def _cls(episodes, detected, alarms, false, ref_s, alarm_s, overlap_s):
    return {"episodes": episodes, "detected": detected, "missed": episodes - detected, "alarms": alarms,
            "false_alarms": false, "unscored_alarms": 0,
            "episode_se": detected / episodes if episodes else None,
            "episode_ppv": (alarms - false) / alarms if alarms else None,
            "duration_se": overlap_s / ref_s if ref_s else None, "duration_ppv": overlap_s / alarm_s if alarm_s else None,
            "time_to_alarm_s_median": None, "time_to_alarm_s_p95": None, "reference_s": ref_s, "alarm_s": alarm_s}


def _report(rec, h, classes):
    fa = sum(v["false_alarms"] for v in classes.values())
    return {"classes": classes, "false_alarms": fa, "false_alarms_per_hour": fa / h, "monitored_h": h,
            "replayed_h": h, "records": {rec: {"call_agreement": 0.5, "calls_compared": 100}}}


def test_gross_statistics_are_ratios_of_sums_not_means_of_ratios() -> None:
    a = _report("r1", 1.0, {"vt": _cls(1, 1, 1, 0, 10.0, 10.0, 8.0)})
    b = _report("r2", 3.0, {"vt": _cls(3, 0, 2, 2, 30.0, 5.0, 0.0), "af_afl": _cls(2, 1, 1, 0, 100.0, 50.0, 40.0)})
    b["records"]["r2"] = {"call_agreement": 0.9, "calls_compared": 300}
    p = pool_episodes.sum_reports([a, b])
    vt = p["classes"]["vt"]
    assert (vt["episodes"], vt["detected"], vt["missed"], vt["alarms"], vt["false_alarms"]) == (4, 1, 3, 3, 2)
    assert vt["episode_se"] == 0.25  # 1/4, not the mean of 1.0 and 0.0
    assert vt["episode_ppv"] == pytest.approx(1 / 3, abs=1e-4)
    assert vt["duration_se"] == pytest.approx(8 / 40, abs=1e-4)
    assert vt["duration_ppv"] == pytest.approx(8 / 15, abs=1e-4)
    assert p["classes"]["af_afl"]["episodes"] == 2  # a class only one report has
    assert p["false_alarms"] == 2 and p["false_alarms_per_hour"] == pytest.approx(0.5)
    assert p["monitored_h"] == 4.0
    assert p["call_agreement"] == pytest.approx((50 + 270) / 400)


def test_overlapping_record_sets_are_refused(tmp_path: Path) -> None:
    a = _report("r1", 1.0, {"vt": _cls(1, 1, 1, 0, 10.0, 10.0, 8.0)})
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(json.dumps(a))
    with pytest.raises(SystemExit) as e:
        pool_episodes.main(["--json", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out",
                            str(tmp_path / "p.json")])
    assert e.value.code == 2
    assert not (tmp_path / "p.json").exists()


def test_pooled_time_to_alarm_replays_the_engine_exactly_on_a_real_excerpt(tmp_path: Path) -> None:
    # MIT-BIH 119, first 60 s: sinus and ventricular bigeminy ('(B' -> pvc)
    data = tmp_path / "mitdb"
    data.mkdir()
    for ext in ("hea", "dat", "atr"):
        shutil.copy(REAL / f"119.{ext}", data / f"119.{ext}")
    rep, probs, out = tmp_path / "ep.json", tmp_path / "ep.npz", tmp_path / "pooled.json"
    res = CliRunner().invoke(cli, ["score", "episodes", "--data", str(data), "--json", str(rep),
                                   "--save-probs", str(probs), "--set", "alarms.onset_p=0.45"])
    assert res.exit_code == 0, res.output
    assert pool_episodes.main(["--json", str(rep), "--probs", str(probs), "--out", str(out)]) == 0
    engine, pooled = json.loads(rep.read_text()), json.loads(out.read_text())
    assert pooled["replay_check"] == {"mismatches": [], "records": 1}
    assert pooled["alarms_config"]["onset_p"] == 0.45  # the report's [alarms], not the default
    for c, v in engine["classes"].items():
        for k in ("episodes", "detected", "alarms", "false_alarms", "time_to_alarm_s_median", "time_to_alarm_s_p95"):
            assert pooled["classes"][c][k] == v[k], (c, k)
    assert pooled["classes"]["pvc"]["episodes"] == 3
