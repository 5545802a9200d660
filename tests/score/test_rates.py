"""Heart-rate alarms scored against the rate of the annotated beats (pedstream.score.rates)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from pedstream.cli import cli
from pedstream.score.rates import rate_reference

DEMO = Path(__file__).resolve().parents[2] / "pedstream" / "assets" / "demo_records"


def test_rate_reference_spans_need_hr_onset_s():
    sinus = np.arange(0, 10, 0.6)  # 100 bpm
    run = 10 + np.arange(1, 17) * 0.25  # 240 bpm for 4 s
    blip = 20 + np.arange(1, 6) * 0.25  # 240 bpm for about 1 s only
    t = np.concatenate([sinus, run, 14 + np.arange(1, 10) * 0.6, blip, 21.25 + np.arange(1, 10) * 0.6])
    spans = rate_reference(t, low=60, high=180, onset_s=2.0)
    assert [(s.label, round(s.start, 2)) for s in spans] == [("hr_high", 11.25)]  # 4 fast RR in the 4-beat mean
    assert spans[0].end <= 14.5


def test_score_episodes_reports_rate_alarm_time_to_alarm(tmp_path):
    data = tmp_path / "recs"
    data.mkdir()
    for f in DEMO.glob("x003.*"):
        shutil.copy(f, data / f.name)
    shutil.copy(DEMO / "children-subject-info.csv", data / "children-subject-info.csv")
    out = tmp_path / "ep.json"
    res = CliRunner().invoke(cli, ["score", "episodes", "--data", str(data), "--seconds", "30", "--json", str(out)])
    assert res.exit_code == 0, res.output
    hi = json.loads(out.read_text())["rate_alarms"]["classes"]["hr_high"]
    assert hi["episodes"] == 1 and hi["detected"] == 1  # x003's AVRT run at about 240 bpm
    assert hi["time_to_alarm_s_median"] < 5.0
    assert "hr_high: 1/1 rate episodes alarmed" in res.output
