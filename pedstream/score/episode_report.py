"""``pedstream score episodes``: reference episodes per record, scoring of a replay run, the tables.

The rules are in :mod:`pedstream.score.episodes`; the replay in :mod:`pedstream.score.replay_events`.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np

from pedstream.data.rhythm import Episode, choose_map, labels_at, merge_episodes, reference_for
from pedstream.score.episodes import RecordScore, Span, alarm_episodes, score_record, summarize
from pedstream.score.rates import score_rates
from pedstream.config import Config

# choose_map and reference_for live in pedstream.data.rhythm (shared with the replays' reference labels)
__all__ = ["alarm_classes", "choose_map", "reference_for", "score_run", "print_tables", "save_probs", "load_probs"]

_ALARM_KINDS = ("alarm_on", "alarm_off")


def alarm_classes(cfg: Config, class_names: Sequence[str]) -> list[str]:
    """The model's classes that raise alarms (``[alarms] priorities``, priority other than none)."""
    return [c for c in class_names if cfg.alarms.priorities.get(c, cfg.alarms.default_priority) != "none"]


def _record_entry(rs: RecordScore, *, rhythm_map: str, agreement: tuple[int, int], other_alarms: int,
                  dropped: tuple[int, int]) -> dict:
    s = summarize(rs)
    s["classes"] = {c: v for c, v in s["classes"].items() if v["episodes"] or v["alarms"] or v["unscored_alarms"]}
    agreed, compared = agreement
    s |= {"rhythm_map": rhythm_map, "calls_compared": compared,
          "call_agreement": round(agreed / compared, 4) if compared else None,
          "other_alarms": other_alarms, "dropped_windows": dropped[0], "dropped_samples": dropped[1]}
    return s


def score_run(cfg: Config, run: Any, refs: dict[str, tuple[str, list[Episode]]], *, class_names: Sequence[str]) -> dict:
    """Score a :class:`~pedstream.score.replay_events.ReplayRun` against ``refs`` (record name ->
    :func:`reference_for`); the report dict (``classes``, ``false_alarms_per_hour``, ``records``...)."""
    classes = alarm_classes(cfg, class_names)
    evidence_s = (cfg.alarms.onset_windows - 1) * run.hop_s
    total: RecordScore | None = None
    records: dict[str, dict] = {}
    agree_all = [0, 0]
    rates: RecordScore | None = None
    for plan in run.plans:
        name, sid, fs = plan.record.name, plan.stream_id, plan.fs
        map_name, eps = refs[name]
        evs = run.events.get(sid, [])
        start_s, end_s = plan.start / fs, plan.stop / fs
        spans = [Span(e.start_s, e.end_s, e.label) for e in merge_episodes(eps)]
        transitions = [(e.kind, str(e.label), float(e.t_signal)) for e in evs
                       if e.kind in _ALARM_KINDS and e.t_signal is not None]
        alarms = alarm_episodes(transitions, evidence_s=evidence_s, window_s=run.window_s, end_s=end_s,
                                labels=classes)
        rs = score_record(spans, alarms, classes, start_s=start_s, end_s=end_s)
        calls = [e for e in evs if e.kind == "call" and e.t_signal is not None]
        centres = [int(round((e.t_signal + run.window_s / 2) * fs)) for e in calls]
        truth = labels_at(eps, centres) if calls else []
        compared = [(c.label, t) for c, t in zip(calls, truth) if t is not None]
        agreement = (sum(a == b for a, b in compared), len(compared))
        agree_all = [agree_all[0] + agreement[0], agree_all[1] + agreement[1]]
        other = sum(1 for k, lab, _ in transitions if k == "alarm_on" and lab not in classes)
        records[name] = _record_entry(rs, rhythm_map=map_name, agreement=agreement, other_alarms=other,
                                      dropped=(run.dropped_windows.get(sid, 0), run.dropped_samples.get(sid, 0)))
        total = rs if total is None else total + rs
        rr = score_rates(plan, evs, cfg=cfg, window_s=run.window_s)
        if rr is not None:
            rates = rr if rates is None else rates + rr
    assert total is not None  # plans are never empty
    report = summarize(total)
    if rates is not None:  # heart-rate alarms against the rate of the annotated beats (pedstream.score.rates)
        report["rate_alarms"] = summarize(rates)
    report |= {"scored_classes": classes,
               "call_agreement": round(agree_all[0] / agree_all[1], 4) if agree_all[1] else None,
               "window_s": round(run.window_s, 4), "hop_s": round(run.hop_s, 4),
               "alarm_time": "raised = end of the window that completed the onset evidence (record time); "
                             "alarm episode = evidence start .. end of the window that cleared it",
               "records": records}
    return report


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def print_tables(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Rhythm alarms vs reference episodes ({len(report['records'])} records, "
                    f"{report['monitored_h']:.2f} h monitored)")
    cols = ("class", "episodes", "missed", "ep Se %", "ep +P %", "dur Se %", "dur +P %", "TtA med s", "TtA p95 s",
            "alarms", "false", "false/h")
    for c in cols:
        t.add_column(c, justify="left" if c == "class" else "right")
    for name, v in report["classes"].items():
        t.add_row(name, str(v["episodes"]), str(v["missed"]), _pct(v["episode_se"]), _pct(v["episode_ppv"]),
                  _pct(v["duration_se"]), _pct(v["duration_ppv"]), _s(v["time_to_alarm_s_median"]),
                  _s(v["time_to_alarm_s_p95"]), str(v["alarms"]), str(v["false_alarms"]),
                  _s(v.get("false_alarms_per_hour")))
    con = Console(width=max(120, Console().width))
    if report.get("model"):  # which model these figures are of, and what it was trained on
        con.print(f"model: {report['model']}", highlight=False, markup=False)
        if report.get("model_banner"):
            con.print(report["model_banner"], highlight=False, markup=False)
    con.print(t)
    for name, v in report.get("rate_alarms", {}).get("classes", {}).items():
        if v["episodes"] or v["alarms"]:
            con.print(f"{name}: {v['detected']}/{v['episodes']} rate episodes alarmed, time to alarm median "
                      f"{_s(v['time_to_alarm_s_median'])} s p95 {_s(v['time_to_alarm_s_p95'])} s, "
                      f"{v['false_alarms']} false", highlight=False)
    fa = report["false_alarms_per_hour"]
    con.print(f"false alarms: {report['false_alarms']} ({'-' if fa is None else f'{fa:.2f}'} per monitored hour); "
              f"call agreement with the reference rhythm: {_pct(report['call_agreement'])} %")
    dropped = {k: (v["dropped_windows"], v["dropped_samples"]) for k, v in report["records"].items()
               if v["dropped_windows"] or v["dropped_samples"]}
    if dropped:
        con.print(f"[red]data dropped during the replay (windows, samples): {dropped}[/red]")


def save_probs(path: Path, run: Any, *, class_names: Sequence[str]) -> Path:
    """Each stream's window probabilities of a probed run (``replay_events(probe=True)``) as one .npz:
    ``t/<sid>`` (n,) window start times, ``p/<sid>`` (n, C) probabilities, ``meta`` JSON."""
    meta = {"class_names": list(class_names), "window_s": run.window_s, "hop_s": run.hop_s,
            "plans": [{"stream_id": p.stream_id, "record": p.record.name, "path": str(p.record.path), "fs": p.fs,
                       "start": int(p.start), "stop": int(p.stop)} for p in run.plans]}
    arrays: dict[str, np.ndarray] = {"meta": np.asarray(json.dumps(meta))}
    for sid, rows in run.probs.items():
        arrays[f"t/{sid}"] = np.asarray([t for t, _ in rows], dtype=np.float64)
        arrays[f"p/{sid}"] = np.stack([p for _, p in rows]).astype(np.float32) if rows else np.zeros((0, len(class_names)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def load_probs(path: Path) -> tuple[dict, Any]:
    """``(meta, run)`` from :func:`save_probs`: ``run`` has ``plans`` (record name, stream id, fs, start,
    stop), ``probs``, ``window_s``, ``hop_s`` and empty ``events`` (fill them with
    :func:`~pedstream.score.replay_events.simulate_alarms`, then :func:`score_run`)."""
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        probs = {p["stream_id"]: list(zip(z[f"t/{p['stream_id']}"].tolist(), z[f"p/{p['stream_id']}"]))
                 for p in meta["plans"] if f"t/{p['stream_id']}" in z}
    plans = [SimpleNamespace(stream_id=p["stream_id"], record=SimpleNamespace(name=p["record"], path=p["path"]),
                             fs=p["fs"], start=p["start"], stop=p["stop"]) for p in meta["plans"]]
    run = SimpleNamespace(plans=plans, probs=probs, events={}, window_s=meta["window_s"], hop_s=meta["hop_s"],
                          dropped_windows={}, dropped_samples={})
    return meta, run
