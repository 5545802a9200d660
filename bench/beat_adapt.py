"""Few-shot adaptation of the beat classifier to each patient, record-wise CV inside MIT-BIH DS1.

The patient-specific protocol (de Chazal and Reilly 2006; Kiranyaz 2016): the population model of
each record is the CV model that never saw it (bench/beat_cv.py, cached predictions); the record's
labelled beats adapt it (pedstream.monitor.adapt.PatientAdapter: a k-nearest-neighbour, prototype or
nearest-beat-per-class vote of the labelled beats, or a per-patient linear model on them, mixed with the population probabilities over every
class or only over the classes the labels hold); the beats after the first 5 minutes are scored (gross
SVEB/VEB Se, +P, F1 over the pooled records; pedstream.train.adapt_eval's label selection and scores).

Labels, all from the first 5 minutes of the record:
- ``5 min``: every beat of the first 5 minutes labelled;
- ``N beats, clinician``: the earliest non-N beats (up to half of N), the rest N beats evenly spread
  over the first 5 minutes (a clinician confirming the ectopic beats they see and a few normal ones);
- ``N beats, random``: N beats drawn at random from the first 5 minutes (3 draws, pooled).
The adaptation settings (pedstream.train.adapt_eval.METHODS: method, k, mix, classes) are chosen per test record by the pooled score of the other
21 records (nested: a record never chooses its own settings).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/beat_adapt.py [--variant NAME] [--with-linear]

(default population model: the one bench/beat_cv.py chose, ``chosen`` in cv.json, with its class-prior shift)

Writes bench/results/beat_cv/adapt.json and adapt.md (``chosen_settings`` of "5 min": the shipped model's
``adapt_settings``, bench/make_beat_model.sh). ``--with-linear`` adds the per-patient linear settings
(pedstream.train.adapt_eval.LINEAR_METHODS: an L2 logistic regression on the labelled beats over the RR ratios,
or the RR ratios and the template correlations) to the grid and writes adapt_linear.json and adapt_linear.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "beat_cv"


BUDGETS = ("5 min", "20 beats, clinician", "50 beats, clinician", "100 beats, clinician",
           "20 beats, random", "50 beats, random", "100 beats, random")


def pick(t: np.ndarray, y: np.ndarray, budget: str, seed: int) -> np.ndarray:
    """Indices of the labelled beats of one record for ``budget`` (pedstream.train.adapt_eval.pick_labels)."""
    from pedstream.train.adapt_eval import pick_labels

    if budget == "5 min":
        return pick_labels(t, y, minutes=5.0)
    n, selection = budget.split()[0], budget.split(", ")[1]
    return pick_labels(t, y, beats=int(n), selection=selection, seed=seed)


def main(argv: list[str] | None = None) -> int:
    from bench.beat_cv import run_variant
    from pedstream.monitor.adapt import AdaptSettings, PatientAdapter
    from pedstream.train.beat_data import build_tables, default_cache
    from pedstream.train.adapt_eval import METHODS as GRID
    from pedstream.train.adapt_eval import beat_confusion as confusion
    from pedstream.train.adapt_eval import ectopy_scores as f1s
    from pedstream.train.adapt_eval import local_key
    from pedstream.dsp.beat_features import feature_names
    from pedstream.train.beat_gbm import CLASSES, VARIANTS, columns

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mitdb"))
    ap.add_argument("--variant", default=None, help="population model (default: the CV's choice in cv.json)")
    ap.add_argument("--folds", type=int, default=11)
    ap.add_argument("--out", default=str(OUT), help="the folder of the CV (cv.json) to adapt; results written there")
    ap.add_argument("--with-linear", action="store_true",
                    help="add the per-patient linear settings (adapt_eval.LINEAR_METHODS) to the grid; writes "
                         "adapt_linear.json/.md")
    a = ap.parse_args(argv)
    if a.with_linear:
        from pedstream.train.adapt_eval import LINEAR_METHODS

        GRID = tuple(GRID) + LINEAR_METHODS
    stem = "adapt_linear" if a.with_linear else "adapt"
    shift = None
    cvdoc = json.loads((Path(a.out) / "cv.json").read_text())
    positions = cvdoc.get("positions", "reference")
    if a.variant is None:
        chosen = cvdoc["chosen"]
        a.variant = chosen["variant"]
        shift = chosen["shift"] if "class-prior shift" in chosen["row"] else None
    if a.variant not in VARIANTS:
        print(f"error: unknown variant {a.variant!r}; known: {list(VARIANTS)}", file=sys.stderr)
        return 2
    t0 = time.time()
    tables = build_tables(a.data, positions=positions)
    cv = run_variant(VARIANTS[a.variant], tables, a.folds, default_cache() / "beat_cv", positions)
    # the labelled beats are compared on every feature the engine computes for this model (raw morphology
    # included, whatever columns the population model uses)
    cols = np.asarray(columns("part2" if VARIANTS[a.variant].features.startswith("part2") else "part1"))
    rec = cv["record"]
    # conf[budget][record][setting] -> 5x4 confusion of the record's beats after 5 min
    conf: dict[str, list[list[np.ndarray]]] = {}
    base = []
    n_labels: dict[str, list[int]] = {b: [] for b in BUDGETS}
    s_labels: dict[str, list[int]] = {b: [] for b in BUDGETS}  # per record: S labels (the first draw)
    # per record: how premature its scored S and N beats are (median log pre-RR / local RR)
    pre = feature_names(True, True).index("pre_local")
    records: dict[str, dict[str, float | int | None]] = {}
    for i, tab in enumerate(tables):
        p = cv["proba"][rec == i]
        if shift:  # the shipped model's class-prior shift (its softmax renormalises)
            p = p * np.asarray([1.0, shift[0], shift[1], 1.0])
            p = p / p.sum(axis=1, keepdims=True)
        later = tab.t >= 300.0
        base.append(confusion(tab.y[later], p[later].argmax(1)))
        med = lambda k: float(np.median(tab.x[later & (tab.y == k), pre])) if np.any(later & (tab.y == k)) else None
        records[tab.record] = {"S scored": int(np.sum(later & (tab.y == 1))), "median pre_local S": med(1),
                               "median pre_local N": med(0)}
        others = np.concatenate([t.x for j, t in enumerate(tables) if j != i])[:, cols]
        scale = others.std(axis=0)
        for budget in BUDGETS:
            seeds = (0, 1, 2) if budget.endswith("random") else (0,)
            per = [np.zeros((5, 4), dtype=np.int64) for _ in GRID]
            for seed in seeds:
                lab = pick(tab.t, tab.y, budget, seed)
                n_labels[budget].append(int(lab.size))
                if seed == seeds[0]:
                    s_labels[budget].append(int(np.sum(tab.y[lab] == 1)))
                local = {}
                for s_i, (_, fields) in enumerate(GRID):
                    ad = PatientAdapter(classes=CLASSES, scale=scale, columns=cols, settings=AdaptSettings(**fields))
                    ad.set_labels(tab.x[lab], tab.y[lab])
                    key = local_key(ad.settings)  # the local vote's own knobs
                    if key not in local:
                        local[key] = ad.local(tab.x[later])
                    q = ad.premature_rule(ad.combine(p[later], local[key]), tab.x[later])
                    per[s_i] += confusion(tab.y[later], q.argmax(1))
            conf.setdefault(budget, []).append(per)
        print(f"record {tab.record} done ({time.time() - t0:.0f} s)", flush=True)
    results = {"population model (no labels)": {"scores": f1s(sum(base)), "mean_labels": 0}}
    names = [name for name, _ in GRID]
    for budget in BUDGETS:
        total = np.zeros((5, 4), dtype=np.int64)
        chosen = []
        for i in range(len(tables)):
            crit = [np.mean([v["F1"] for v in f1s(sum(conf[budget][j][s] for j in range(len(tables)) if j != i)).values()])
                    for s in range(len(GRID))]
            s = int(np.argmax(crit))
            chosen.append(names[s])
            total += conf[budget][i][s]
        common = max(names, key=chosen.count)  # ties: the earlier setting of the grid
        results[budget] = {"scores": f1s(total), "mean_labels": float(np.mean(n_labels[budget])),
                           "chosen_most_often": common, "chosen_settings": dict(GRID[names.index(common)][1]),
                           "chosen_per_record": dict(zip([t.record for t in tables], chosen)),
                           # per record: S labels (first draw), scored S beats called S by the nested choice
                           # and by the population model (random labels: pooled over the draws)
                           "sveb_per_record": {t.record: {"S labels": s_labels[budget][i],
                                                          "S scored": int(conf[budget][i][0][1].sum()),
                                                          "S called S": int(conf[budget][i][names.index(chosen[i])][1, 1]),
                                                          "S called S, population":
                                                              int(base[i][1, 1]) * (3 if budget.endswith("random") else 1)}
                                               for i, t in enumerate(tables)},
                           "fixed_setting_scores": {name: f1s(sum(conf[budget][i][s] for i in range(len(tables))))
                                                    for s, name in enumerate(names)}}
    cmd = "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/beat_adapt.py" + (
        f" --variant '{a.variant}'" if argv and "--variant" in argv else "") + (
        f" --out {Path(a.out).resolve().relative_to(ROOT)}" if Path(a.out).resolve() != OUT.resolve() else "") + (
        " --with-linear" if a.with_linear else "")
    doc = {"command": cmd, "positions": positions, "records": records, "variant": a.variant, "class_prior_shift": shift, "grid": [dict(f, name=n) for n, f in GRID], "results": results, "seconds": time.time() - t0,
           "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    md = ["# Few-shot adaptation to each patient: record-wise CV inside MIT-BIH DS1", "",
          f"Made with `{cmd}` ({doc['written']}).", "",
          f"Population model: `{a.variant}`" + (f" with its class-prior shift S x{shift[0]}, V x{shift[1]}" if shift else "")
          + " (bench/results/beat_cv/cv.md), each record scored by the fold model "
          "that never saw it; labels from the record's first 5 minutes; scored: every beat after the first "
          "5 minutes (gross statistics over the 22 records); adaptation settings chosen per record on the other 21. "
          f"Beat positions: {positions}" + (" (detections with no reference beat are not scored here)" if positions != "reference" else "")
          + ".", "",
          "| labels | labelled beats per record (mean) | SVEB Se | SVEB +P | SVEB F1 | VEB Se | VEB +P | VEB F1 | setting chosen most often |",
          "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        s = r["scores"]
        md.append(f"| {name} | {r['mean_labels']:.0f} | {s['SVEB']['Se']:.3f} | {s['SVEB']['+P']:.3f} | {s['SVEB']['F1']:.3f} | "
                  f"{s['VEB']['Se']:.3f} | {s['VEB']['+P']:.3f} | {s['VEB']['F1']:.3f} | {r.get('chosen_most_often', '-')} |")
    budgets = [b for b in results if "fixed_setting_scores" in results[b]]
    md += ["", "Every adaptation setting with one fixed choice for all records (SVEB F1 / VEB F1; chosen on the same "
           "records, so optimistic: the table above is the nested choice). \"labelled classes\": the labels mix only "
           "among the classes they hold (pedstream.monitor.adapt.AdaptSettings).", "",
           "| setting | " + " | ".join(budgets) + " |", "|---|" + "---|" * len(budgets)]
    for name in names:
        md.append(f"| {name} | " + " | ".join(f"{results[b]['fixed_setting_scores'][name]['SVEB']['F1']:.3f} / "
                                              f"{results[b]['fixed_setting_scores'][name]['VEB']['F1']:.3f}"
                                              for b in budgets) + " |")
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
