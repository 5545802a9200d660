"""`pedstream score episodes` end to end: the stream clock drives alarms in a fast replay, real
MIT-BIH rhythm annotations scored, one clear line and exit 2 without rhythm annotations."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import pedstream
from pedstream.cli import cli
from pedstream.config import load_config
from pedstream.data.annotations import read_annotations, write_annotations
from pedstream.score.replay_events import replay_events, simulate_alarms
from pedstream.transports.replay import plan_replay
from pedstream.monitor.assembly import demo_records_path, open_model

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture(scope="module")
def session(cfg):
    # the simulated-only demo model: it raises an AVRT alarm in the slice of x003 used below (the
    # default monitor model does not); the test is about the clock, not about the model
    return open_model(cfg, Path(pedstream.__file__).parent / "assets" / "demo_model.onnx")


def _key(events):
    return [(e.kind, e.label, round(e.t_signal, 6), None if e.p is None else round(e.p, 5)) for e in events
            if e.kind in ("call", "alarm_on", "alarm_off")]


def test_stream_clock_drives_alarms_same_events_at_speed_1_and_as_fast_as_possible(cfg, session) -> None:
    # simulated record x003: sinus, atrial paced, then AVRT from 18.0 s; its last 14 s
    plans = plan_replay([demo_records_path(cfg) / "x003"], cfg.signal, start_s=10.0, seconds=14.0)

    async def both():
        return await asyncio.gather(replay_events(cfg, session, plans, speed=1.0, probe=True),
                                    replay_events(cfg, session, plans, speed=math.inf, probe=True))

    real, fast = asyncio.run(both())
    sid = plans[0].stream_id
    slow_ev, fast_ev = _key(real.events[sid]), _key(fast.events[sid])
    assert any(k == "alarm_on" and lab == "avrt" for k, lab, _, _ in fast_ev)  # the AVRT alarm is in the slice
    assert sum(k == "call" for k, *_ in fast_ev) >= 5
    assert fast_ev == slow_ev
    # record time: the first window starts after the replay start, on the hop grid
    assert 10.0 <= fast_ev[0][2] < 24.0
    assert not fast.dropped_windows and not fast.dropped_samples
    # the probed probabilities replayed through a tracker give the same calls and rhythm alarms
    sim = _key(simulate_alarms(cfg, session.class_names, fast.probs[sid], stream=sid))
    assert sim == [e for e in fast_ev if not (e[0] != "call" and e[1] in ("hr_high", "hr_low"))]


def test_score_episodes_on_a_real_mitdb_excerpt(tmp_path: Path) -> None:
    # MIT-BIH 119, first 60 s: sinus and ventricular bigeminy ('(B' -> pvc), 3 bigeminy episodes
    data = tmp_path / "mitdb"
    data.mkdir()
    for ext in ("hea", "dat", "atr"):
        shutil.copy(REAL / f"119.{ext}", data / f"119.{ext}")
    out = tmp_path / "ep.json"
    res = CliRunner().invoke(cli, ["score", "episodes", "--data", str(data), "--json", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    pvc = rep["classes"]["pvc"]
    assert pvc["episodes"] == 3 and pvc["detected"] + pvc["missed"] == 3
    for k in ("episode_se", "episode_ppv", "duration_se", "duration_ppv", "time_to_alarm_s_median",
              "time_to_alarm_s_p95"):
        assert k in pvc
    assert rep["records"]["119"]["rhythm_map"] == "mitdb"
    assert rep["records"]["119"]["dropped_windows"] == 0
    assert rep["monitored_h"] == pytest.approx((21600 - 32) / 360 / 3600, abs=1e-4)  # from the first "(N"
    assert isinstance(rep["false_alarms_per_hour"], float)
    from pedstream.monitor.assembly import default_model_path

    assert rep["model"] == str(default_model_path())  # the monitor model, as `pedstream run`
    assert f"model: {default_model_path()}" in res.output and "trained on" in res.output  # the table says which


def test_record_without_rhythm_annotations_is_one_line_and_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "beats-only"
    data.mkdir()
    for ext in ("hea", "dat"):
        shutil.copy(REAL / f"119.{ext}", data / f"119.{ext}")
    ann = read_annotations(REAL / "119")
    write_annotations(data / "119", ann.select(np.asarray([s != "+" for s in ann.symbol])))
    res = CliRunner().invoke(cli, ["score", "episodes", "--data", str(data)])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert lines[0].startswith("error: annotations of 119: no rhythm annotations")
    assert "Traceback" not in res.output


def test_rate_alarm_during_the_run_with_its_rate(cfg, session) -> None:
    """Regression: x003's 4 s AVRT run at about 240 bpm (18.0-21.9 s) raised hr_high only as the run
    ended, carrying the rate after it. Judged beat by beat it is decided inside the run, with the run's rate."""
    plans = plan_replay([demo_records_path(cfg) / "x003"], cfg.signal, start_s=10.0, seconds=14.0)
    res = asyncio.run(replay_events(cfg, session, plans, speed=math.inf, probe=True))
    window_s = session.window_samples / session.fs
    on = [e for e in res.events[plans[0].stream_id] if e.kind == "alarm_on" and e.label == "hr_high"]
    assert on, "no hr_high alarm for a 240 bpm run"
    decided = on[0].t_signal + window_s  # the alarm goes out with the window that ends here
    assert 18.0 < decided < 21.9, decided
    assert on[0].hr > 200, on[0].hr


def test_missing_record_is_named_with_the_records_that_exist(tmp_path: Path) -> None:
    """Regression: ``--records 999`` complained about a missing ``.atr``."""
    data = tmp_path / "recs"
    data.mkdir()
    for ext in ("hea", "dat", "atr"):
        shutil.copy(REAL / f"119.{ext}", data / f"119.{ext}")
    res = CliRunner().invoke(cli, ["score", "episodes", "--data", str(data), "--records", "999"])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines == [f"error: record 999: no such record in {data} (records there: 119)"], res.output
