"""The fast VT path of the rhythm-context layer, by record-wise cross-validation, beside the old model and the RR rule.

A VT run is ``vt_run_beats`` (3) or more consecutive ventricular-like beats (QRS template correlation
below ``vt_run_corr`` or wide; :func:`pedstream.dsp.rhythm_features.beat_run_features`) above 100 bpm.
Two ways to use it, both measured on the same folds as ``bench/rhythm_context_cv.py`` (CinC 2017
stratified 5-fold; record-wise 5-fold over the 48 MIT-BIH + vfdb records; the same fits for the old model):

- **rule**: the alarm logic raises ``vt`` at once on such a run (``[rhythm_context] vt_run_beats``), the
  model unchanged; its two settings (``vt_run_corr`` 0.7 / 0.5, ``vt_run_beats`` 3 / 4) fixed, and chosen by
  nested CV (inside each outer record fold, the setting with the best pooled VT episode F1 on the other folds'
  records);
- **features**: the beat-run columns added to the model's input (62 features), retrained, alarm logic unchanged;
  and both together.

Variants are compared by the criterion fixed for the model variants (``bench/rhythm_context_variants.py``):
the mean of the CinC challenge F1 and the pooled MIT-BIH + vfdb episode F1 of AF, VT and VF. VT episode
Se / +P, false alarms per monitored hour (all alarm classes) and time to alarm per database beside it.

    nice -n 10 .venv/bin/python bench/rhythm_context_vt.py

Writes bench/results/rhythm_context/vt.{json,md}; out-of-fold probabilities cached under
``<cache>/rhythm_context/oof`` (shared with ``bench/rhythm_context_misses.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "results" / "rhythm_context"
COMMAND = "nice -n 10 .venv/bin/python bench/rhythm_context_vt.py"
RULE_GRID = ((3, 0.7), (3, 0.5), (4, 0.7), (4, 0.5))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def with_rule(cfg, beats: int, corr: float = 0.7):
    rc = cfg.rhythm_context.model_copy(update={"vt_run_beats": int(beats), "vt_run_corr": corr})
    return cfg.model_copy(update={"rhythm_context": rc})


def vt_f1(d: dict) -> float:
    """Pooled VT episode F1 of per-database episode blocks."""
    det = eps = al = fa = 0
    for blk in d.values():
        s = blk["classes"].get("vt") or {}
        det += s.get("detected", 0)
        eps += s.get("episodes", 0)
        al += s.get("alarms", 0)
        fa += s.get("false_alarms", 0)
    se = det / eps if eps else 0.0
    ppv = (al - fa) / al if al else 0.0
    return 2 * se * ppv / (se + ppv) if se + ppv > 0 else 0.0


def score_rows(recs, probs, rows, spans, cfg) -> dict:
    import rhythm_context_cv as cv

    out = {}
    for src in ("mitdb", "vfdb"):
        r = rows[np.char.startswith(recs["record"][rows].astype(str), src + ":")]
        out[src] = cv.strip(cv.episodes(recs, probs[r], r, spans, cfg)) if r.size else {"classes": {}}
    return out


def nested_rule(recs, probs, spans, cfg, folds: dict[str, int]) -> tuple[dict, list]:
    """Outer record folds: the rule setting with the best pooled VT F1 on the other folds' records, applied to
    the held-out fold; the held-out folds' episodes scored together (a summed score per database)."""
    import rhythm_context_cv as cv

    from pedstream.score.episodes import Span, score_record, summarize
    from pedstream.train.rhythm_context import ALARM_CLASSES, record_calls, run_columns
    from pedstream.dsp.rhythm_features import CONTEXT_FEATURES

    fold_of = np.asarray([folds[r] for r in recs["record"]])
    chosen = []
    totals: dict[str, object] = {}
    since, flat = CONTEXT_FEATURES.index("since_last_s"), CONTEXT_FEATURES.index("flat_frac")
    for k in sorted(set(folds.values())):
        inner = np.flatnonzero(fold_of != k)
        best = max(RULE_GRID, key=lambda g: (round(vt_f1(score_rows(recs, probs, inner, spans,
                                                                         with_rule(cfg, *g))), 6), -g[0], g[1]))
        chosen.append({"fold": k, "vt_run_beats": best[0], "vt_run_corr": best[1]})
        c = with_rule(cfg, *best)
        for r in dict.fromkeys(recs["record"][fold_of == k].tolist()):
            i = np.flatnonzero(recs["record"] == r)
            t, X = recs["t"][i], recs["X"][i]
            eps = record_calls(t, probs[i], X[:, since], X[:, flat] < 0.95, c, hop_s=cv.HOP_S, runs=run_columns(recs, i, c))
            ref = [Span(s0, s1, lab if lab in ALARM_CLASSES or lab is None else "_" + lab) for s0, s1, lab in spans[r]]
            sc = score_record(ref, [e for e in eps if e.label in ALARM_CLASSES], list(ALARM_CLASSES),
                              start_s=float(t[0]), end_s=float(t[-1]))
            src = r.split(":", 1)[0]
            totals[src] = sc if src not in totals else totals[src] + sc
        log(f"nested rule: fold {k} -> {best}")
    return {src: summarize(v) for src, v in totals.items()}, chosen


def main(argv: list[str] | None = None) -> int:
    import rhythm_context_cv as cv
    import rhythm_context_misses as ms
    from rhythm_context_variants import selection_score

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=None)
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args(argv)
    from pedstream.config import load_config
    from pedstream.data.cinc2017 import default_cache
    from pedstream.train.rhythm_context import rule_probs
    from pedstream.train.rhythm_tables import merge

    from rhythm_context_false_alarms import LATER_OFF, with_rules

    cfg = with_rule(with_rules(load_config(), LATER_OFF), 0)  # the fast path alone: the confirmation rules held off
    cache = Path(a.cache) if a.cache else default_cache()
    data = cv.load(cfg, cache)
    spans = cv.spans_of(cfg)
    recs = merge([data["mitdb"], data["vfdb"]], 30.0)
    cinc = merge([data["cinc2017"]], 30.0)
    folds = cv.record_folds(recs, cv.N_FOLDS)
    allrows = np.arange(recs["y"].size)
    old = ms.baseline_oof(data, cfg, cache, cinc=True)
    log("old model's out-of-fold probabilities ready")
    feat = ms.baseline_oof(data, cfg, cache, features="runs", cinc=True)
    log("beat-run-feature model's out-of-fold probabilities ready")
    cinc_old = cv.cinc_metrics(cinc["y"], cv.to_cinc(old["cinc"]))
    cinc_feat = cv.cinc_metrics(cinc["y"], cv.to_cinc(feat["cinc"]))
    res: dict = {"command": COMMAND, "folds": cv.N_FOLDS, "hop_s": cv.HOP_S, "variants": {}}

    def add(name: str, desc: str, blocks: dict, cm: dict | None) -> None:
        r = {"desc": desc, "cinc2017": cm, **blocks}
        r["score"] = selection_score(r) if cm is not None else None
        r["vt_f1"] = round(vt_f1(blocks), 4)
        res["variants"][name] = r
        log(f"{name}: score {r['score']}, VT F1 {r['vt_f1']}")

    add("rr_rule", "RR-irregularity rule (AF only)", score_rows(recs, rule_probs(recs["rule_af"]), allrows, spans, cfg),
        cv.rule_cinc(cinc))
    add("old", "old model (56 features), no fast path", score_rows(recs, old["rec"], allrows, spans, cfg), cinc_old)
    for beats, corr in RULE_GRID:
        add(f"old+rule{beats}_c{corr:g}", f"old model + VT rule: {beats} beats, correlation < {corr:g}",
            score_rows(recs, old["rec"], allrows, spans, with_rule(cfg, beats, corr)), cinc_old)
    blocks, chosen = nested_rule(recs, old["rec"], spans, cfg, folds)
    add("old+rule_nested", "old model + VT rule, setting chosen by nested CV", blocks, cinc_old)
    res["nested_choices"] = chosen
    add("features", "model with the beat-run features (62), no fast path",
        score_rows(recs, feat["rec"], allrows, spans, cfg), cinc_feat)
    add("features+rule3_c0.7", "model with the beat-run features + VT rule (3 beats, 0.7)",
        score_rows(recs, feat["rec"], allrows, spans, with_rule(cfg, 3, 0.7)), cinc_feat)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vt.json").write_text(json.dumps(res, indent=1, default=float), encoding="utf-8")
    (out / "vt.md").write_text(render(res), encoding="utf-8")
    print(render(res))
    return 0


def render(res: dict) -> str:
    from rhythm_context_cv import wilson

    def cls(d: dict, c: str) -> dict:
        return d["classes"].get(c) or {"detected": 0, "episodes": 0, "alarms": 0, "false_alarms": 0,
                                       "time_to_alarm_s_median": None, "time_to_alarm_s_p95": None}

    def ep(d: dict, c: str) -> str:
        s = cls(d, c)
        true = s["alarms"] - s["false_alarms"]
        return f"{s['detected']}/{s['episodes']}{wilson(s['detected'], s['episodes'])} | {true}/{s['alarms']}{wilson(true, s['alarms'])}"

    f = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    L = ["# The fast VT path: beat runs as a rule or as model features (record-wise CV)", "",
         f"Command: `{res['command']}`", "",
         "Same folds as `bench/rhythm_context_cv.py` (CinC 2017 stratified 5-fold; MIT-BIH + vfdb record-wise 5-fold, "
         "48 records), episodes through the engine's alarm logic as configured (the fast path's gates included: a run's mean "
         "rate at least `vt_run_min_rate_bpm`, the model's p(artefact) below `vt_run_max_artefact_p`, `config.toml`; the confirmation rules of `alarm_rules.md` "
         "held off: this compares the fast path alone). "
         "A VT run: consecutive beats whose QRS correlates with the "
         "lead's median QRS below the threshold (or is wide), each less than 0.6 s after the one before. `score`: mean of CinC "
         "challenge F1 and the pooled MIT-BIH + vfdb episode F1 of AF, VT, VF (the criterion fixed for the model variants); "
         "`VT F1`: pooled VT episode F1. Counts pooled over the folds, 95 % Wilson intervals. False alarms: all alarm classes.", "",
         "| variant | score | VT F1 | CinC F1 | MIT-BIH VT found | MIT-BIH VT true alarms | MIT-BIH VT time to alarm median / p95 s | "
         "MIT-BIH AF found | MIT-BIH false alarms / h | vfdb VT found | vfdb VT true alarms | vfdb VT time to alarm median / p95 s | "
         "vfdb VF found | vfdb false alarms / h |", "|" + "---|" * 14]
    for name, r in res["variants"].items():
        m, v = r["mitdb"], r["vfdb"]
        cm = r["cinc2017"]
        L.append(f"| {name} | {f(r['score'])} | {r['vt_f1']:.3f} | {f(cm['challenge_f1'] if cm else None)} | {ep(m, 'vt')} | "
                 f"{f(cls(m, 'vt')['time_to_alarm_s_median'])} / {f(cls(m, 'vt')['time_to_alarm_s_p95'])} | "
                 f"{cls(m, 'af_afl')['detected']}/{cls(m, 'af_afl')['episodes']} | {m.get('false_alarms_per_hour')} | {ep(v, 'vt')} | "
                 f"{f(cls(v, 'vt')['time_to_alarm_s_median'])} / {f(cls(v, 'vt')['time_to_alarm_s_p95'])} | "
                 f"{cls(v, 'vf')['detected']}/{cls(v, 'vf')['episodes']} | {v.get('false_alarms_per_hour')} |")
    L += ["", "Variants: " + "; ".join(f"`{n}` {r['desc']}" for n, r in res["variants"].items()) + ".", "",
          "Nested choice of the rule's setting per outer fold: " + ", ".join(
              f"fold {c['fold']}: {c['vt_run_beats']} beats / {c['vt_run_corr']:g}" for c in res.get("nested_choices", [])) + ".", ""]
    L += ["False alarms per class (MIT-BIH / vfdb):", "",
          "| variant | " + " | ".join(f"{c} MIT-BIH | {c} vfdb" for c in ("af_afl", "svt", "vt", "vf", "asystole")) + " |",
          "|---|" + "---|---|" * 5]
    for name, r in res["variants"].items():
        L.append(f"| {name} | " + " | ".join(f"{cls(r['mitdb'], c)['false_alarms']} | {cls(r['vfdb'], c)['false_alarms']}"
                                             for c in ("af_afl", "svt", "vt", "vf", "asystole")) + " |")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
