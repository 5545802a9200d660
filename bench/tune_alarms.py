"""Choose call smoothing and alarm hysteresis ([alarms]) from saved window probabilities.

``pedstream score episodes --save-probs FILE.npz`` keeps each window's class probabilities of a
replay (what the engine's AlarmTracker got). This script replays those probabilities through the same
:class:`~pedstream.monitor.alarms.AlarmTracker` (``simulate_alarms``; the test
``tests/score/test_score_episodes.py`` checks it gives the engine's calls and alarms) for every
setting of a grid and scores each with the ``score episodes`` rules, in seconds instead of a replay
per setting.

Selection (on the TUNE files only; the other files are reported for the chosen setting, never used
to choose): the rhythm alarm classes of priority high or medium (vt, avrt, avnrt, af_afl), pooled;
among the settings with at most ``--max-fa`` false alarms per monitored hour, the highest episode
sensitivity, then the shortest median time to alarm, then the fewest false alarms.

    .venv/bin/python bench/tune_alarms.py --tune build/epi-sim-tune-probs.npz \
        --report build/epi-sim-held-probs.npz build/epi-mitdb-probs.npz --json bench/results/alarm_tuning.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pedstream.config import load_config  # noqa: E402
from pedstream.data.rhythm import NoRhythmAnnotations  # noqa: E402
from pedstream.score.episode_report import load_probs, reference_for, score_run  # noqa: E402
from pedstream.score.replay_events import simulate_alarms  # noqa: E402

GRID = {
    "smoothing": ["mean", "ema"],
    "smoothing_windows": [1, 2, 3, 4],
    "onset_p": [0.4, 0.5, 0.6, 0.7],
    "onset_windows": [1, 2, 3],
    "offset_windows": [1, 2, 3],
}
KEY_CLASSES = ("vt", "avrt", "avnrt", "af_afl")


def _load(path: Path, cfg) -> tuple[dict, object, dict]:
    meta, run = load_probs(path)
    refs = {}
    for p in run.plans:
        try:
            refs[p.record.name] = reference_for(cfg, Path(p.record.path))
        except NoRhythmAnnotations:
            continue
    run.plans = [p for p in run.plans if p.record.name in refs]
    return meta, run, refs


def evaluate(cfg, setting: dict, meta: dict, run, refs: dict) -> dict:
    c = cfg.model_copy(deep=True)
    for k, v in setting.items():
        setattr(c.alarms, k, v)
    c.alarms.offset_p = min(c.alarms.offset_p, c.alarms.onset_p)
    run.events = {sid: simulate_alarms(c, meta["class_names"], rows, stream=sid) for sid, rows in run.probs.items()}
    return score_run(c, run, refs, class_names=meta["class_names"])


def pooled(report: dict) -> dict:
    eps = det = alarms = true = fa = 0
    delays: list[float] = []
    for name in KEY_CLASSES:
        v = report["classes"].get(name)
        if v is None:
            continue
        eps += v["episodes"]
        det += v["detected"]
        alarms += v["alarms"]
        true += v["alarms"] - v["false_alarms"]
        fa += v["false_alarms"]
    h = report["monitored_h"]
    return {"episodes": eps, "episode_se": det / eps if eps else None, "episode_ppv": true / alarms if alarms else None,
            "false_alarms": fa, "false_alarms_per_hour": fa / h if h else None,
            "time_to_alarm_s_median": _median_delay(report)}


def _median_delay(report: dict) -> float | None:
    meds = [v["time_to_alarm_s_median"] for k, v in report["classes"].items()
            if k in KEY_CLASSES and v["time_to_alarm_s_median"] is not None]
    return float(np.median(meds)) if meds else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tune", type=Path, nargs="+", required=True, help="probability files to choose on")
    ap.add_argument("--report", type=Path, nargs="*", default=[], help="probability files to report on")
    ap.add_argument("--max-fa", type=float, default=1.0, help="false alarms per monitored hour allowed")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    cfg = load_config()
    tune = [_load(p, cfg) for p in args.tune]
    rows = []
    keys = list(GRID)
    for values in itertools.product(*GRID.values()):
        setting = dict(zip(keys, values))
        if setting["smoothing"] == "ema" and setting["smoothing_windows"] == 1:
            continue  # the same as mean over 1
        reps = [evaluate(cfg, setting, *t) for t in tune]
        pool = _merge([pooled(r) for r in reps], [r["monitored_h"] for r in reps])
        rows.append({"setting": setting, **pool})

    def rank(r: dict) -> tuple:
        ok = r["false_alarms_per_hour"] is not None and r["false_alarms_per_hour"] <= args.max_fa
        return (not ok, -(r["episode_se"] or 0.0), r["time_to_alarm_s_median"] or 1e9, r["false_alarms_per_hour"] or 0)

    rows.sort(key=rank)
    best = rows[0]["setting"]
    current = {k: getattr(cfg.alarms, k) for k in keys}
    cur_row = next(r for r in rows if r["setting"] == current)
    out = {"grid": GRID, "key_classes": list(KEY_CLASSES), "max_fa_per_hour": args.max_fa,
           "tune_files": [str(p) for p in args.tune], "chosen": best, "current": current,
           "tune_chosen": rows[0], "tune_current": cur_row, "top10": rows[:10], "report": {}}
    print(f"chosen on {', '.join(map(str, args.tune))}: {best}\n  tune: {_fmt(rows[0])}\n  current {current}: {_fmt(cur_row)}")
    for p in args.report:
        t = _load(p, cfg)
        for label, setting in (("chosen", best), ("current", current)):
            rep = evaluate(cfg, setting, *t)
            out["report"].setdefault(str(p), {})[label] = {"pooled": pooled(rep), "classes": rep["classes"],
                                                           "false_alarms_per_hour": rep["false_alarms_per_hour"],
                                                           "monitored_h": rep["monitored_h"]}
            print(f"  {p} [{label}]: {_fmt(pooled(rep))}; all classes {rep['false_alarms_per_hour']} false/h")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


def _merge(pools: list[dict], hours: list[float]) -> dict:
    if len(pools) == 1:
        return pools[0]
    eps = sum(p["episodes"] for p in pools)
    fa = sum(p["false_alarms"] for p in pools)
    h = sum(hours)
    se = [p["episode_se"] * p["episodes"] for p in pools if p["episode_se"] is not None]
    meds = [p["time_to_alarm_s_median"] for p in pools if p["time_to_alarm_s_median"] is not None]
    return {"episodes": eps, "episode_se": sum(se) / eps if eps else None, "episode_ppv": None,
            "false_alarms": fa, "false_alarms_per_hour": fa / h if h else None,
            "time_to_alarm_s_median": float(np.median(meds)) if meds else None}


def _fmt(r: dict) -> str:
    f = lambda v, n=2: "-" if v is None else f"{v:.{n}f}"  # noqa: E731
    return (f"episodes {r['episodes']}, Se {f(r['episode_se'])}, +P {f(r.get('episode_ppv'))}, "
            f"TtA median {f(r['time_to_alarm_s_median'], 1)} s, false {r['false_alarms']} "
            f"({f(r['false_alarms_per_hour'])}/h)")


if __name__ == "__main__":
    sys.exit(main())
