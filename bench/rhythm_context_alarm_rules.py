"""The false alarms left with the shipped alarm settings, diagnosed one by one, and confirmation rules against them
chosen by nested record-wise CV (no refit of the model).

Probabilities: the out-of-fold ones of ``bench/rhythm_context_cv.py --context 30 --weights balanced`` (record-wise
5-fold CV over the 48 MIT-BIH + vfdb records, its cached fits), through the engine's alarm logic
(:class:`pedstream.monitor.rhythm_alarms.RhythmAlarmLogic`) and scored as ``pedstream score episodes`` scores; the
records' calls and references are those of ``bench/rhythm_context_false_alarms.py`` (its ``Bench``).

1. **Diagnosis**: every false alarm before the rules below (``config.toml`` with them off), with its
   record, class, times, what raised it (the model's onset, the VT fast path, the beat stream), the reference
   rhythm labels and beats it overlaps, the model's probability, the beat run and the lead's range at the call,
   a cause (as ``false_alarms.md``) and which single rule below removes it.
2. **Rules** (``[rhythm_context]``, off at their defaults), what a bedside monitor asks before it sounds:
   ``vt_confirm_run`` (the model's VT onset needs a run of this many ventricular-like fast beats, QRS unlike the
   lead's median QRS, in the lead) with ``vt_confirm_max_p`` (asked for only while p(vt) is at most this);
   ``af_rr_confirm`` with ``af_rr_confirm_max_p`` (AF needs the RR-irregularity rule only while p(af_afl) is at
   most this); ``asystole_max_amp_mv`` (asystole from the beat stream only on a lead whose range is at most this);
   ``asystole_max_organized_p`` (asystole from the beat stream only while the model's p(sinus + af_afl + svt +
   other) is at most this: a lead the model reads as beating is beats the detector missed).
3. **Nested CV**, objective fixed before any result: the mean episode F1 (2 Se +P / (Se + P)) of af_afl, vt, vf
   and asystole pooled over the records (``false_alarms.md``'s objective with asystole added: its rules act on
   asystole too); ties (6 decimals) go to fewer false alarms (all classes), then to the earlier grid setting (the
   previous setting, all rules off, first). For each outer fold the setting is chosen on the other four folds' records and scored
   on the fold's own records. A rule ships only when the nested row beats the previous setting's row; then the
   setting chosen on all records ships.

    nice -n 10 .venv/bin/python bench/rhythm_context_alarm_rules.py

Writes bench/results/rhythm_context/alarm_rules.{json,md}. A few minutes (the CV's probabilities and feature
tables are read from the cache of ``bench/rhythm_context_cv.py``).
"""

from __future__ import annotations

import collections
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
COMMAND = "nice -n 10 .venv/bin/python bench/rhythm_context_alarm_rules.py"
SCORED = ("af_afl", "vt", "vf", "asystole")
SHOWN = ("af_afl", "vt", "vf", "asystole")
RULES_OFF = {"vt_confirm_run": 0, "vt_confirm_max_p": 1.0, "af_rr_confirm": False, "af_rr_confirm_max_p": 1.0,
             "asystole_max_amp_mv": 0.0, "asystole_max_organized_p": 1.0}
VT = [(0, 1.0)] + [(n, q) for n in (2, 3, 4) for q in (1.0, 0.9, 0.8, 0.7)]
AF = [(False, 1.0)] + [(True, q) for q in (1.0, 0.9, 0.8)]
ASYSTOLE = [(amp, q) for amp in (0.0, 1.0) for q in (1.0, 0.9, 0.7, 0.5)]


def grid() -> list[dict]:
    """The settings, the shipped one (rules off) first; redundant ones (a threshold of a rule that is off) left out."""
    return [{"vt_confirm_run": n, "vt_confirm_max_p": q, "af_rr_confirm": af, "af_rr_confirm_max_p": aq,
             "asystole_max_amp_mv": amp, "asystole_max_organized_p": oq} for (n, q) in VT for (af, aq) in AF
            for (amp, oq) in ASYSTOLE]


def name_of(g: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in g.items() if v != RULES_OFF[k]) or "before these rules (previous setting)"


def main(argv: list[str] | None = None) -> int:
    from rhythm_context_false_alarms import bench_args

    a = bench_args(argv, __doc__, "alarm_rules", render)
    if a is None:
        return 0
    out = Path(a.out)
    import rhythm_context_cv as cv
    from rhythm_context_false_alarms import Bench, diagnose, log, summary, total, with_rules

    from pedstream.config import load_config
    from pedstream.data.cinc2017 import default_cache

    cfg = load_config()
    current = {k: getattr(cfg.rhythm_context, k) for k in RULES_OFF}
    base = with_rules(cfg, RULES_OFF)
    b = Bench(cfg, Path(a.cache) if a.cache else default_cache())
    log("tables, probabilities and references ready")
    settings = grid()
    per = []
    for n, g in enumerate(settings):
        per.append(b.score(with_rules(cfg, g)))
        if n % 20 == 0:
            log(f"setting {n + 1}/{len(settings)} scored")

    def objective(records: list[str], n: int) -> tuple:
        from rhythm_context_false_alarms import objective as fa_objective

        return (*fa_objective(total(per[n], records), SCORED), -n)

    def pick(records: list[str]) -> int:
        return max(range(len(settings)), key=lambda n: objective(records, n))

    nested, picks = {}, []
    for k in range(cv.N_FOLDS):
        best = pick([r for r in b.names if b.folds[r] != k])
        picks.append(settings[best])
        nested.update({r: per[best][r] for r in b.names if b.folds[r] == k})
    best_all = pick(b.names)
    singles = {name_of(g): g for g in settings if sum(g[k] != RULES_OFF[k] for k in (
        "vt_confirm_run", "af_rr_confirm", "asystole_max_amp_mv", "asystole_max_organized_p")) == 1}
    rows = {"nested (chosen inside each training fold)": summary(nested, b.names, SCORED),
            "before these rules (previous setting)": summary(per[0], b.names, SCORED)}
    rows |= {f"only {n}": summary(per[settings.index(g)], b.names, SCORED) for n, g in singles.items()}
    rows["chosen on all records (in-sample)"] = summary(per[best_all], b.names, SCORED)
    diag = diagnose(b, base, {n: with_rules(cfg, g) for n, g in singles.items()}, cv.SHARED)
    left = diagnose(b, cfg, {}, cv.SHARED)  # as configured (config.toml)
    log(f"diagnosed {len(diag)} false alarms before the rules, {len(left)} as configured")
    res = {"command": COMMAND, "objective": "mean episode F1 of " + ", ".join(SCORED)
           + "; ties: fewer false alarms, then earlier grid setting", "rules_off": RULES_OFF, "current": current,
           "grid": {"vt": VT, "af": AF, "asystole": ASYSTOLE}, "nested_picks": picks,
           "chosen_on_all": settings[best_all], "rows": rows, "false_alarms": diag, "false_alarms_configured": left, "record_folds": b.folds, "notes": NOTES,
           "nested_beats_shipped": rows["nested (chosen inside each training fold)"]["objective"]
           > rows["before these rules (previous setting)"]["objective"]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "alarm_rules.json").write_text(json.dumps(res, indent=1, default=float), encoding="utf-8")
    (out / "alarm_rules.md").write_text(render(res), encoding="utf-8")
    print(render(res))
    return 0


NOTES = [
    "Shipped (`config.toml`): the setting chosen on all records, since the nested row beats the previous setting's. "
    "The nested row is the estimate for records the choice did not see: MIT-BIH 19 -> 15 false alarms (1.70 -> 1.34 "
    "per monitored hour), vfdb 181 -> 171 (14.6 -> 13.8); AF, VF and asystole episodes as before, MIT-BIH VT as before "
    "(15/40), vfdb VT 77 -> 75 of 93. The fold that holds MIT-BIH 116 and 208 chose no asystole rule on its other "
    "records, so the nested row keeps MIT-BIH's 3 asystole false alarms; the shipped setting removes them (cv.md: "
    "MIT-BIH 11 false alarms, 0.98 per hour, in-sample for the rule choice). What the shipped setting costs: one "
    "vfdb VT episode (77 -> 76 of 93: 5.4 s of VT in 430, between VF episodes, whose onset call reads p(vt) 0.64 "
    "and no run of 3 ventricular-like beats), and in the leave-MIT-BIH-out check of cv.md one MIT-BIH VT episode "
    "(10 -> 9 of 40).", "",
    "Not chosen: AF's RR confirmation loses 5 of 31 AF episodes at every confidence limit tried (1, 0.9, 0.8); the "
    "amplitude gate loses vfdb 607's asystole (its lead's range is 3.6 mV when that alarm goes on; the model reads "
    "no organized rhythm there, p 0.11, so the readable-signal rule keeps it).", ""]


def _diag_table(diag: list[dict], removed: bool) -> list[str]:
    L = ["| record | class | start / raised / end s | trigger | reference (s) | beats | p | p(artefact) | run beats | "
         "run bpm | amp mV | RR rule AF | cause |" + (" removed by |" if removed else ""),
         "|" + "---|" * (14 if removed else 13)]
    from rhythm_context_false_alarms import diag_head

    for d in diag:
        L.append(f"{diag_head(d)} {d['p_class']:.2f} | {d['p_artefact']:.2f} | "
                 f"{d.get('vt_run', '–')} | {d['run_rate_bpm']:g} | {d['amp_mv']:.2f} | {'yes' if d['rr_af'] else 'no'} | "
                 f"{d['cause']} |" + (f" {', '.join(d['removed_by']) or '–'} |" if removed else ""))
    return L


def _cls(d: dict, c: str) -> str:
    s = d["classes"].get(c)
    if not s:
        return "–"
    return f"{s['detected']}/{s['episodes']} / {s['alarms'] - s['false_alarms']}/{s['alarms']}"


def render(r: dict) -> str:
    L = ["# Rhythm-context alarms: the false alarms left, and confirmation rules by nested record-wise CV", "",
         f"Command: `{r['command']}`", "",
         "Out-of-fold probabilities of `bench/rhythm_context_cv.py --context 30 --weights balanced` (record-wise 5-fold "
         "CV over the 48 MIT-BIH + vfdb records, its cached fits), through the engine's alarm logic (the other "
         "`[rhythm_context]` settings as shipped, the rules below as each grid setting sets them), scored as `pedstream score episodes` scores. Objective fixed "
         f"beforehand: {r['objective']}.", "",
         "Rules: `vt_confirm_run` N (the model's VT onset needs a run of N ventricular-like fast beats in the lead) "
         "with `vt_confirm_max_p` (asked only while p(vt) <= it); `af_rr_confirm` with `af_rr_confirm_max_p` (AF "
         "needs the RR rule only while p(af_afl) <= it); `asystole_max_amp_mv` (asystole from the beat stream only "
         "on a lead whose range is at most this, mV); `asystole_max_organized_p` (asystole from the beat stream only "
         "while the model's p(sinus + af_afl + svt + other) is at most this).", "",
         "## Settings (MIT-BIH + vfdb, record-wise CV)", "",
         "Cells: episodes detected / episodes, true alarms / alarms. FA: false alarms (all classes); FA/h per "
         "monitored hour.", "",
         "| setting | objective | " + " | ".join(SHOWN) + " | FA MIT-BIH | FA/h MIT-BIH | FA vfdb | FA/h vfdb |",
         "|---|---|" + "---|" * (len(SHOWN) + 4)]
    for name, d in r["rows"].items():
        L.append(f"| {name} | {d['objective']:.3f} | " + " | ".join(_cls(d["all"], c) for c in SHOWN)
                 + f" | {d['mitdb']['false_alarms']} | {d['mitdb']['false_alarms_per_hour']} | "
                 f"{d['vfdb']['false_alarms']} | {d['vfdb']['false_alarms_per_hour']} |")
    L += ["", "False alarms per class (MIT-BIH / vfdb):", "", "| setting | " + " | ".join(SHOWN) + " |",
          "|---|" + "---|" * len(SHOWN)]
    for name, d in r["rows"].items():
        L.append(f"| {name} | " + " | ".join(
            f"{(d['mitdb']['classes'].get(c) or {}).get('false_alarms', 0)} / "
            f"{(d['vfdb']['classes'].get(c) or {}).get('false_alarms', 0)}" for c in SHOWN) + " |")
    L += ["", "Picks per outer fold: " + "; ".join(name_of(p) for p in r["nested_picks"]) + ".", "",
          f"Chosen on all records: {name_of(r['chosen_on_all'])}. Nested beats the previous setting: "
          f"{'yes' if r['nested_beats_shipped'] else 'no'}.", ""] + NOTES
    for key, title, removed in (("false_alarms", "before these rules (the previous setting)", True),
                                ("false_alarms_configured", "as configured (`config.toml`)", False)):
        diag = [d for d in r.get(key, []) if d["record"].startswith("mitdb:")]
        causes = collections.Counter(d["cause"] for d in diag)
        L += [f"## Every MIT-BIH false alarm {title}", "",
              f"{len(diag)} false alarms (" + ", ".join(f"{c} {n}" for c, n in causes.most_common()) + "); vfdb: "
              f"{sum(1 for d in r.get(key, []) if d['record'].startswith('vfdb:'))} (in `alarm_rules.json`). Causes as "
              "`false_alarms.md`: `vt_in_vf` a VT alarm on a VF/VFL episode, `noise` on noise marks, `reraise` the same "
              "class ended at most 30 s before, `ectopy` VT on ventricular ectopy, `af_other` AF on another rhythm. "
              "trigger: what raised it (the model's onset, the VT fast path, the beat stream); p: the model's "
              "probability of the class at the call that raised it; run beats / bpm: the longest run of "
              "ventricular-like fast beats in the lead then.", ""] + _diag_table(diag, removed) + [""]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
