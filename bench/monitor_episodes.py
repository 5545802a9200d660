"""The `pedstream score episodes` section of the monitor model report (bench/monitor_report.py).

Reads the score episodes JSON files (MIT-BIH: the record-wise CV folds' models on their held-out
records, pooled by bench/pool_episodes.py; simulated: the shipped model on the held-out seed-12 set;
the previous simulated-only demo model on the same records) and writes the report's JSON block and
Markdown: one table per data set with both models, the issue's aims against the figures, per fold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["episodes_json", "episodes_md", "AIMS"]

KEEP = ("episodes", "detected", "missed", "alarms", "false_alarms", "episode_se", "episode_ppv", "duration_se",
        "duration_ppv", "time_to_alarm_s_median", "time_to_alarm_s_p95", "false_alarms_per_hour")
# issue 9 part 2, on records the model never saw
AIMS = [("AF/flutter episode Se >= 95 %", "af_afl", "episode_se", 0.95, ">="),
        ("AF/flutter episode +P >= 90 %", "af_afl", "episode_ppv", 0.90, ">="),
        ("VT episode Se >= 90 %", "vt", "episode_se", 0.90, ">="),
        *[(f"{c} time to alarm median <= 3 s (simulated)", c, "time_to_alarm_s_median", 3.0, "<=")
          for c in ("vt", "avrt", "avnrt", "af_afl")],
        *[(f"{c} time to alarm p95 <= 5 s (simulated)", c, "time_to_alarm_s_p95", 5.0, "<=")
          for c in ("vt", "avrt", "avnrt", "af_afl")],
        ("at most 1 false alarm per monitored hour", None, "false_alarms_per_hour", 1.0, "<=")]
SIM_CMD = "pedstream data synth --out build/epi-sim-held --records 12 --minutes 5 --seed 12"


def _load(path: str | None) -> dict | None:
    return json.loads(Path(path).read_text(encoding="utf-8")) if path and Path(path).is_file() else None


def _brief(rep: dict | None) -> dict | None:
    if rep is None:
        return None
    out = {"classes": {c: {k: v.get(k) for k in KEEP} for c, v in rep["classes"].items()},
           **{k: rep.get(k) for k in ("false_alarms", "false_alarms_per_hour", "monitored_h", "call_agreement",
                                      "model", "command", "time_to_alarm")},
           "records": len(rep["records"])}
    if "parts" in rep:
        out["folds"] = [{"json": p, "model": v["model"], "records": v["records"], "monitored_h": v["monitored_h"],
                         "false_alarms": v["false_alarms"], "call_agreement": v["call_agreement"],
                         "classes": {c: {k: x.get(k) for k in KEEP} for c, x in v["classes"].items()
                                     if x["episodes"] or x["alarms"]}}
                        for p, v in rep["parts"].items()]
        out["replay_check"] = rep.get("replay_check")
    return out


def _aims(sets: dict[str, dict | None]) -> list[dict]:
    rows = []
    for text, cls, key, bound, op in AIMS:
        row = {"aim": text}
        for name, rep in sets.items():
            if rep is None or ("simulated" in text and name != "simulated"):
                continue
            v = rep.get(key) if cls is None else rep["classes"].get(cls, {}).get(key)
            row[name] = v
            row[f"{name}_met"] = None if v is None else bool(v >= bound if op == ">=" else v <= bound)
            if v is None and cls is not None and rep["classes"].get(cls, {}).get("episodes"):
                row[f"{name}_met"] = False  # episodes there, none detected (or no alarm at all)
                row[f"{name}_note"] = "no alarm" if key == "episode_ppv" else "none detected"
        rows.append(row)
    return rows


def episodes_json(a: Any) -> dict | None:
    """The report's ``score_episodes`` block from the ``--episodes-*`` arguments (None when none given)."""
    mitdb, sim = _load(a.episodes_mitdb), _load(a.episodes_sim)
    if mitdb is None and sim is None:
        return None
    return {
        "mitdb": {"monitor_model_cv": _brief(mitdb), "demo_model": _brief(_load(a.episodes_mitdb_baseline)),
                  "protocol": "record-wise CV: each fold's model (bench/results/rhythm_cv/monitor/fold<K>, exported "
                              "to ONNX) on the MIT-BIH records it never saw, gross statistics pooled over the 3 folds "
                              "(bench/pool_episodes.py); the shipped model saw all 26 records, so it is not scored "
                              "here. The demo model (simulated only) never saw any MIT-BIH record."},
        "simulated": {"monitor_model": _brief(sim), "demo_model": _brief(_load(a.episodes_sim_baseline)),
                      "protocol": f"the shipped model on `{SIM_CMD}` (12 records x 5 min; trained on synth "
                                  "--seed 0 --follow-real records, never on these)"},
        "iaf1_afw": "not scored: ../shared/data/iafdb/iaf1_afw has no annotation file (iaf1_afw.atr), so no "
                    "reference rhythm episodes; `score episodes` refuses it (exit 2). Its calls are above.",
        "aims": _aims({"mitdb": mitdb, "simulated": sim}),
    }


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _sec(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def _table(models: list[tuple[str, dict | None]]) -> list[str]:
    names = [c for _, rep in models if rep for c, v in rep["classes"].items() if v["episodes"] or v["alarms"]]
    lines = ["| class | model | episodes | episode Se | episode +P | duration Se | duration +P | time to alarm "
             "median / p95 (s) | alarms (false) | false alarms/h |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in dict.fromkeys(names):
        for who, rep in models:
            v = rep["classes"].get(c) if rep else None
            if v is None:
                continue
            lines.append(f"| {c} | {who} | {v['episodes']} | {_pct(v['episode_se'])} ({v['detected']}/{v['episodes']}) "
                         f"| {_pct(v['episode_ppv'])} | {_pct(v['duration_se'])} | {_pct(v['duration_ppv'])} | "
                         f"{_sec(v['time_to_alarm_s_median'])} / {_sec(v['time_to_alarm_s_p95'])} | "
                         f"{v['alarms']} ({v['false_alarms']}) | {v['false_alarms_per_hour']} |")
    for who, rep in models:
        if rep:
            lines.append(f"| **all classes** | {who} | | | | | | | {rep['false_alarms']} false | "
                         f"**{rep['false_alarms_per_hour']}** ({rep['monitored_h']:.2f} h monitored, call agreement "
                         f"{_pct(rep['call_agreement'])}) |")
    return lines


def episodes_md(block: dict | None) -> list[str]:
    head = ["## Episode scoring (`pedstream score episodes`)", ""]
    if block is None:
        return head + ["Not run: give bench/monitor_report.py the `--episodes-*` JSON files "
                       "(bench/make_monitor_model.sh does)."]
    m, s = block["mitdb"], block["simulated"]
    out = head + [
        "Each record replayed through the live engine (replay source, DSP, batcher, smoothing, the shipped "
        "`[alarms]`), alarms scored against the reference rhythm episodes as EC57 scores episodes; time to alarm "
        "= episode onset -> alarm on (record time). Only records the scored model never saw. Gross statistics "
        "(counts and durations summed over records). pvc is an advisory alarm (ventricular bigeminy/trigeminy "
        "episodes on MIT-BIH).", ""]
    if m["monitor_model_cv"]:
        cv = m["monitor_model_cv"]
        out += [f"### MIT-BIH, unseen records ({cv['records']} records, record-wise CV)", "", m["protocol"], "",
                *_table([("this model (CV folds)", cv), ("previous demo model", m["demo_model"])]), "",
                f"Time to alarm: {cv.get('time_to_alarm')}.", ""]
        for k, f in enumerate(cv.get("folds") or []):
            out.append(f"- fold {k} ({' '.join(f['records'])}; {f['monitored_h']:.2f} h): " + ", ".join(
                f"{c} {v['detected']}/{v['episodes']} episodes, {v['alarms']} alarms ({v['false_alarms']} false)"
                for c, v in f["classes"].items()) + f"; call agreement {_pct(f['call_agreement'])}")
        out.append("")
    if s["monitor_model"]:
        out += [f"### Simulated records the model never saw ({s['monitor_model']['records']} records)", "",
                s["protocol"] + ". The same simulator as the training data, which flatters the model.", "",
                *_table([("this model", s["monitor_model"]), ("previous demo model", s["demo_model"])]), ""]
    out += [f"iaf1_afw: {block['iaf1_afw']}", "", "### The issue's aims (records never seen)", "",
            "| aim | MIT-BIH (CV) | simulated |", "|---|---|---|"]
    for r in block["aims"]:
        cell = lambda k: (f"– ({r[k + '_note']}) **not met**" if r.get(k + "_note") else "–") if r.get(k) is None else (  # noqa: E731
            (f"{r[k]:.2f}" if "false" in r["aim"] else (f"{r[k]:.1f} s" if "time" in r["aim"] else _pct(r[k])))
            + (" met" if r[f"{k}_met"] else " **not met**"))
        out.append(f"| {r['aim']} | {cell('mitdb')} | {cell('simulated')} |")
    return out
