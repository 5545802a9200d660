"""Pool `pedstream score episodes` reports of disjoint record sets (e.g. the folds of a record-wise CV).

EC57 gross statistics: per alarm class the counts (episodes, detected, alarms, false alarms, unscored
alarms) and the durations (reference time, alarm time, overlap = duration Se x reference time) are
summed over the reports, and the ratios are taken from the sums; false alarms per hour = all false
alarms / all monitored hours; call agreement weighted by the windows compared.

The reports keep only each record's median/p95 time to alarm, not every episode's delay, so pooled
time-to-alarm figures need the window probabilities saved with `--save-probs`: with `--probs` (one
.npz per report, same order) every record is replayed again through the same AlarmTracker
(pedstream.score.replay_events.simulate_alarms, as bench/tune_alarms.py does) with the report's
`[alarms]` settings and scored together, which gives the delays of all episodes. That replay is
checked against the engine's report record by record (episodes, detected, alarms, false alarms per
class); the pooled time to alarm is written only when every record agrees, else the per-report
figures stay and the mismatches are listed.

    .venv/bin/python bench/pool_episodes.py --json A.json B.json ... [--probs A.npz B.npz ...] --out POOLED.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

COUNTS = ("episodes", "detected", "missed", "alarms", "false_alarms", "unscored_alarms")
CHECKED = ("episodes", "detected", "alarms", "false_alarms")


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b > 0 else None


def sum_reports(reports: list[dict]) -> dict:
    """The gross statistics of ``reports`` (disjoint records), from their JSON alone."""
    classes: dict[str, dict] = {}
    for rep in reports:
        for name, v in rep["classes"].items():
            acc = classes.setdefault(name, {k: 0 for k in COUNTS} | {"reference_s": 0.0, "alarm_s": 0.0,
                                                                      "overlap_s": 0.0})
            for k in COUNTS:
                acc[k] += v[k]
            acc["reference_s"] += v["reference_s"]
            acc["alarm_s"] += v["alarm_s"]
            # overlap of alarm and reference time: duration Se x reference time (= duration +P x alarm time)
            if v["duration_se"] is not None:
                acc["overlap_s"] += v["duration_se"] * v["reference_s"]
            elif v["duration_ppv"] is not None:
                acc["overlap_s"] += v["duration_ppv"] * v["alarm_s"]
    h = sum(r["monitored_h"] for r in reports)
    out_classes = {}
    for name, a in classes.items():
        true = a["alarms"] - a["false_alarms"]
        out_classes[name] = {k: a[k] for k in COUNTS} | {
            "episode_se": _ratio(a["detected"], a["episodes"]), "episode_ppv": _ratio(true, a["alarms"]),
            "duration_se": _ratio(a["overlap_s"], a["reference_s"]), "duration_ppv": _ratio(a["overlap_s"], a["alarm_s"]),
            "time_to_alarm_s_median": None, "time_to_alarm_s_p95": None,
            "reference_s": round(a["reference_s"], 1), "alarm_s": round(a["alarm_s"], 1),
            "false_alarms_per_hour": round(a["false_alarms"] / h, 3) if h > 0 else None}
    fa = sum(r["false_alarms"] for r in reports)
    agreed = compared = 0
    for rep in reports:
        for rec in rep["records"].values():
            if rec.get("call_agreement") is not None:
                agreed += rec["call_agreement"] * rec["calls_compared"]
                compared += rec["calls_compared"]
    return {"classes": out_classes, "false_alarms": fa, "false_alarms_per_hour": round(fa / h, 3) if h > 0 else None,
            "monitored_h": round(h, 4), "replayed_h": round(sum(r["replayed_h"] for r in reports), 4),
            "call_agreement": round(agreed / compared, 4) if compared else None}


def replay_probs(reports: list[dict], probs: list[Path]) -> tuple[dict, list[str]]:
    """All records of ``probs`` through the AlarmTracker again, scored together: ``(report, mismatches)``."""
    from pedstream.config import load_config
    from pedstream.score.episode_report import load_probs, reference_for, score_run
    from pedstream.score.replay_events import simulate_alarms

    cfg = load_config(None, [])
    merged = None
    class_names = None
    alarms_cfg = None
    for k, (rep, path) in enumerate(zip(reports, probs)):
        meta, run = load_probs(path)
        if class_names is not None and meta["class_names"] != class_names:
            raise SystemExit(f"error: {path}: class names differ from the first report's")
        if alarms_cfg is not None and rep["alarms_config"] != alarms_cfg:
            raise SystemExit(f"error: {path}: [alarms] settings differ from the first report's")
        class_names, alarms_cfg = meta["class_names"], rep["alarms_config"]
        for p in run.plans:  # stream ids are per run: make them unique over the runs
            sid = f"{k}/{p.stream_id}"
            run.probs[sid] = run.probs.pop(p.stream_id, [])
            p.stream_id = sid
        if merged is None:
            merged = run
        else:
            merged.plans += run.plans
            merged.probs |= run.probs
    assert merged is not None
    cfg.alarms = cfg.alarms.model_validate(alarms_cfg)
    refs = {p.record.name: reference_for(cfg, Path(p.record.path)) for p in merged.plans}
    merged.events = {sid: simulate_alarms(cfg, class_names, rows, stream=sid) for sid, rows in merged.probs.items()}
    out = score_run(cfg, merged, refs, class_names=class_names)
    mismatches = []
    for rep in reports:
        for rec, engine in rep["records"].items():
            again = out["records"].get(rec)
            if again is None:
                mismatches.append(f"{rec}: not in the saved probabilities")
                continue
            for c in set(engine["classes"]) | set(again["classes"]):
                e, g = engine["classes"].get(c, {}), again["classes"].get(c, {})
                for key in CHECKED:
                    if e.get(key, 0) != g.get(key, 0):
                        mismatches.append(f"{rec} {c} {key}: engine {e.get(key, 0)}, replayed {g.get(key, 0)}")
    return out, mismatches


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", nargs="+", required=True, type=Path)
    ap.add_argument("--probs", nargs="+", type=Path)
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args(argv)
    if a.probs and len(a.probs) != len(a.json):
        ap.error("--probs needs one .npz per --json report, in the same order")
    reports = [json.loads(p.read_text(encoding="utf-8")) for p in a.json]
    names = [r for rep in reports for r in rep["records"]]
    if len(set(names)) != len(names):
        ap.error("a record is in more than one report: the reports must hold disjoint records")
    pooled = sum_reports(reports)
    pooled["time_to_alarm"] = ("not pooled: the reports keep only per-record median/p95 (give --probs); "
                               "see parts.<k>.classes")
    if a.probs:
        again, mismatches = replay_probs(reports, a.probs)
        pooled["replay_check"] = {"mismatches": mismatches, "records": len(again["records"])}
        if not mismatches:
            for c, v in pooled["classes"].items():
                g = again["classes"].get(c, {})
                v["time_to_alarm_s_median"] = g.get("time_to_alarm_s_median")
                v["time_to_alarm_s_p95"] = g.get("time_to_alarm_s_p95")
            pooled["time_to_alarm"] = ("pooled over every detected episode: the saved window probabilities replayed "
                                       "through the same AlarmTracker, identical to the engine's counts on every record")
    pooled |= {"scored_classes": reports[0].get("scored_classes"), "window_s": reports[0].get("window_s"),
               "hop_s": reports[0].get("hop_s"), "alarm_time": reports[0].get("alarm_time"),
               "alarms_config": reports[0].get("alarms_config"),
               "pooled_from": [str(p) for p in a.json], "pooled_probs": [str(p) for p in a.probs or []],
               "parts": {str(p): {"model": rep.get("model"), "records": list(rep["records"]),
                                  "monitored_h": rep["monitored_h"], "false_alarms": rep["false_alarms"],
                                  "call_agreement": rep.get("call_agreement"), "classes": rep["classes"],
                                  "command": rep.get("command")}
                         for p, rep in zip(a.json, reports)},
               "records": {r: v for rep in reports for r, v in rep["records"].items()},
               "command": "bench/pool_episodes.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(pooled, indent=1), encoding="utf-8")
    tmp.replace(a.out)
    print(f"wrote {a.out}: {len(names)} records, {pooled['monitored_h']:.2f} h monitored, "
          f"{pooled['false_alarms']} false alarms ({pooled['false_alarms_per_hour']} /h)"
          + (f"; replay check: {len(pooled['replay_check']['mismatches'])} mismatches" if a.probs else ""))
    for c, v in pooled["classes"].items():
        if v["episodes"] or v["alarms"]:
            print(f"  {c}: {v['detected']}/{v['episodes']} episodes, {v['alarms']} alarms ({v['false_alarms']} false), "
                  f"TtA median {v['time_to_alarm_s_median']} p95 {v['time_to_alarm_s_p95']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
