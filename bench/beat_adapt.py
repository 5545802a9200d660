"""Few-shot adaptation of the beat classifier to each patient, record-wise CV inside MIT-BIH DS1.

The patient-specific protocol (de Chazal and Reilly 2006; Kiranyaz 2016): the population model of
each record is the CV model that never saw it (bench/beat_cv.py, cached predictions); the record's
labelled beats adapt it (pedstream.monitor.adapt.PatientAdapter: a k-nearest-neighbour or prototype
vote of the labelled beats, mixed with the population probabilities); the beats after the first 5
minutes are scored (gross SVEB/VEB Se, +P, F1 over the pooled records).

Labels, all from the first 5 minutes of the record:
- ``5 min``: every beat of the first 5 minutes labelled;
- ``N beats, clinician``: the earliest non-N beats (up to half of N), the rest N beats evenly spread
  over the first 5 minutes (a clinician confirming the ectopic beats they see and a few normal ones);
- ``N beats, random``: N beats drawn at random from the first 5 minutes (3 draws, pooled).
The adaptation settings (method, k, mix) are chosen per test record by the pooled score of the other
21 records (nested: a record never chooses its own settings).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/beat_adapt.py [--variant NAME]

(default population model: the one bench/beat_cv.py chose, ``chosen`` in cv.json, with its class-prior shift)

Writes bench/results/beat_cv/adapt.json and adapt.md.
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
GRID = ([("knn", k, mix) for k in (1, 3, 5, 9) for mix in (0.5, 0.8, 1.0)] + [("prototype", 0, m) for m in (0.5, 0.8)]
        + [("knn-product", k, mix) for k in (3, 9) for mix in (0.5, 0.8)])
BUDGETS = ("5 min", "20 beats, clinician", "50 beats, clinician", "100 beats, clinician",
           "20 beats, random", "50 beats, random", "100 beats, random")


def pick(t: np.ndarray, y: np.ndarray, budget: str, seed: int) -> np.ndarray:
    """Indices of the labelled beats of one record (see the module docstring)."""
    first = np.flatnonzero(t < 300.0)
    if budget == "5 min":
        return first
    n = int(budget.split()[0])
    if budget.endswith("random"):
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(first, min(n, first.size), replace=False))
    ect = first[y[first] > 0][: n // 2]
    norm = first[y[first] == 0]
    take = norm[np.linspace(0, norm.size - 1, min(n - ect.size, norm.size)).astype(int)] if norm.size else norm
    return np.sort(np.concatenate([ect, take]))


def confusion(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return np.asarray([[np.sum((y == i) & (pred == j)) for j in range(4)] for i in range(5)])


def f1s(c: np.ndarray) -> dict:
    out = {}
    for name, k in (("SVEB", 1), ("VEB", 2)):
        se, ppv = c[k, k] / max(c[k].sum(), 1), c[k, k] / max(c[:, k].sum(), 1)
        out[name] = {"Se": float(se), "+P": float(ppv), "F1": float(2 * se * ppv / (se + ppv)) if se + ppv else 0.0}
    return out


def main(argv: list[str] | None = None) -> int:
    from bench.beat_cv import run_variant
    from pedstream.monitor.adapt import AdaptSettings, PatientAdapter
    from pedstream.train.beat_data import build_tables, default_cache
    from pedstream.train.beat_gbm import CLASSES, VARIANTS, columns

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mitdb"))
    ap.add_argument("--variant", default=None, help="population model (default: the CV's choice in cv.json)")
    ap.add_argument("--folds", type=int, default=11)
    ap.add_argument("--out", default=str(OUT), help="the folder of the CV (cv.json) to adapt; results written there")
    a = ap.parse_args(argv)
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
    for i, tab in enumerate(tables):
        p = cv["proba"][rec == i]
        if shift:  # the shipped model's class-prior shift (its softmax renormalises)
            p = p * np.asarray([1.0, shift[0], shift[1], 1.0])
            p = p / p.sum(axis=1, keepdims=True)
        later = tab.t >= 300.0
        base.append(confusion(tab.y[later], p[later].argmax(1)))
        others = np.concatenate([t.x for j, t in enumerate(tables) if j != i])[:, cols]
        scale = others.std(axis=0)
        for budget in BUDGETS:
            seeds = (0, 1, 2) if budget.endswith("random") else (0,)
            per = [np.zeros((5, 4), dtype=np.int64) for _ in GRID]
            for seed in seeds:
                lab = pick(tab.t, tab.y, budget, seed)
                lab = lab[(tab.y[lab] >= 0) & (tab.y[lab] < len(CLASSES))]
                n_labels[budget].append(int(lab.size))
                local = {}
                for s_i, (method, k, mix) in enumerate(GRID):
                    ad = PatientAdapter(classes=CLASSES, scale=scale, columns=cols, settings=AdaptSettings(
                        method=method.split("-")[0], k=max(k, 1), mix=mix,
                        combine="product" if method.endswith("product") else "mean"))
                    ad.set_labels(tab.x[lab], tab.y[lab])
                    key = (method.split("-")[0], k)
                    if key not in local:
                        local[key] = ad.local(tab.x[later])
                    q = ad.combine(p[later], local[key])
                    per[s_i] += confusion(tab.y[later], q.argmax(1))
            conf.setdefault(budget, []).append(per)
        print(f"record {tab.record} done ({time.time() - t0:.0f} s)", flush=True)
    results = {"population model (no labels)": {"scores": f1s(sum(base)), "mean_labels": 0}}
    for budget in BUDGETS:
        total = np.zeros((5, 4), dtype=np.int64)
        chosen = []
        for i in range(len(tables)):
            crit = [np.mean([v["F1"] for v in f1s(sum(conf[budget][j][s] for j in range(len(tables)) if j != i)).values()])
                    for s in range(len(GRID))]
            s = int(np.argmax(crit))
            chosen.append(GRID[s])
            total += conf[budget][i][s]
        common = max(set(chosen), key=chosen.count)
        results[budget] = {"scores": f1s(total), "mean_labels": float(np.mean(n_labels[budget])),
                           "chosen_most_often": list(common),
                           "fixed_setting_scores": {f"{m} k={k} mix={x}": f1s(sum(conf[budget][i][s] for i in range(len(tables))))
                                                    for s, (m, k, x) in enumerate(GRID)}}
    cmd = "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/beat_adapt.py" + (
        f" --variant '{a.variant}'" if argv and "--variant" in argv else "") + (
        f" --out {Path(a.out).resolve().relative_to(ROOT)}" if Path(a.out).resolve() != OUT.resolve() else "")
    doc = {"command": cmd, "positions": positions, "variant": a.variant, "class_prior_shift": shift, "grid": GRID, "results": results, "seconds": time.time() - t0,
           "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "adapt.json").write_text(json.dumps(doc, indent=1) + "\n")
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
                  f"{s['VEB']['Se']:.3f} | {s['VEB']['+P']:.3f} | {s['VEB']['F1']:.3f} | {' '.join(map(str, r.get('chosen_most_often', ['-'])))} |")
    (out / "adapt.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
