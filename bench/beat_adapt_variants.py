"""Patient-relative adaptation variants against the monitor's adapter, record-wise CV inside MIT-BIH DS1.

The protocol of ``pedstream eval --adapt-minutes 5`` (pedstream.train.adapt_eval: the population model of
each record is its fold's model, cached; labels from the record's first 5 minutes, every beat of them or
20 / 50 / 100 clinician labels; the beats after 5 minutes scored, gross SVEB/VEB over the 22 records;
each family's setting chosen per record on the other 21). Every family starts from the same adapter,
each labelled class's nearest beat (tau 2, mix 0.8, labelled classes), "nearest" below:

- ``nearest`` and ``nearest + prematurity``: the adapter without and with the patient-relative prematurity
  rule (pedstream.monitor.adapt, ``premature`` 0.65 / 0.7 / 0.75, ``premature_margin`` 0.8 / 0.9);
- ``(a) local logistic x global``: de Chazal and Reilly 2006 style, a per-patient L2 logistic regression
  (l2 1) on the labelled beats over patient-relative features (log RR before / after the beat and log local
  RR over the median RR before the patient's labelled N beats, the log morphology distance to their median
  beat over that of the labelled N beats themselves, the log QRS width over theirs), combined with the
  population probabilities as a weighted sum of log-posteriors among the labelled classes (weight 0.3 /
  0.5 / 0.7), then the nearest vote;
- ``(a') population stacker``: a multinomial logistic regression (sqrt-balanced classes) trained on the
  other 21 records' scored beats over the population log-odds, alone or with the patient-relative features
  (each record's from its own labels), then the nearest vote;
- ``(b) population model with patient-relative features``: the fold model retrained with those features
  appended (training records' features from their first 5 minutes' labels), alone and then the nearest vote
  and the prematurity rule;
- ``(c) per-patient S threshold``: among the beats called N or S, S where the population's log(p_S / p_N)
  exceeds its (1 - x) quantile over the patient's labelled N beats (x 0.2 / 0.5 / 1 / 2 %);
- ``(d) V by novelty``: after the prematurity rule, a beat called N whose distance to the nearest labelled
  N beat is over g times the labelled N beats' own 99 % nearest-neighbour distance and whose QRS is wider
  than w times theirs is called V.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/beat_adapt_variants.py

Writes bench/results/beat_cv/adapt_variants.json and .md (about 8 minutes on one shared core, the retrained
fold models cached after the first run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "beat_cv"
BUDGETS = (("5 min", {"minutes": 5.0}), ("20 beats, clinician", {"beats": 20}), ("50 beats, clinician", {"beats": 50}),
           ("100 beats, clinician", {"beats": 100}))
NEAREST = {"method": "nearest", "k": 1, "mix": 0.8, "tau": 2.0, "classes": "labelled"}


def relative_features(x: np.ndarray, y_lab: np.ndarray, lab: np.ndarray, scale: np.ndarray,
                      names: tuple[str, ...], adapt_cols: np.ndarray) -> np.ndarray:
    """(n, 5) patient-relative features of every beat from the labelled N beats (every labelled beat if none)."""
    ix = {n: i for i, n in enumerate(names)}
    nl = lab[y_lab == 0] if np.any(y_lab == 0) else lab
    med = np.median(np.log(np.maximum(x[nl, ix["pre_rr"]], 1e-3)))
    rr = [np.log(np.maximum(x[:, ix[k]], 1e-3)) - med for k in ("pre_rr", "post_rr", "local_rr")]
    morph = [ix[n] for n in names if (n.startswith("ds") and n[2:].isdigit()) or (n.startswith("qrs") and n[3:].isdigit())]
    m = x[:, morph] / scale[[list(adapt_cols).index(c) for c in morph]]
    dist = np.sqrt(((m - np.median(m[nl], axis=0)) ** 2).sum(axis=1))
    width = x[:, ix["qrs_width"]] / max(float(np.median(x[nl, ix["qrs_width"]])), 1e-3)
    return np.stack([*rr, np.log(dist / max(float(np.median(dist[nl])), 1e-3) + 1e-3),
                     np.log(np.maximum(width, 1e-2))], axis=1)


def log_odds(p: np.ndarray) -> np.ndarray:
    lp = np.log(np.clip(p, 1e-6, 1.0))
    return lp[:, 1:] - lp[:, :1]


def main(argv: list[str] | None = None) -> int:
    from sklearn.linear_model import LogisticRegression

    from pedstream.dsp.beat_features import feature_names
    from pedstream.monitor.adapt_methods import AdaptSettings, PatientAdapter, _distances, fit_logistic
    from pedstream.train.adapt_eval import beat_confusion, ectopy_scores, fold_models, pick_labels
    from pedstream.train.beat_data import DS1, build_tables, default_cache
    from pedstream.train.beat_gbm import CLASSES, VARIANTS, _weights, columns, make_model, predict_proba, record_folds

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mitdb"))
    ap.add_argument("--variant", default="HGB, part 2 without raw morphology")
    ap.add_argument("--folds", type=int, default=11)
    a = ap.parse_args(argv)
    t0 = time.time()
    v = VARIANTS[a.variant]
    tables = build_tables(a.data, records=tuple(r for r in DS1 if (Path(a.data) / f"{r}.hea").is_file()))
    names = feature_names(True, True)
    adapt_cols = np.asarray(columns("part2"))
    rec: dict[str, dict[str, Any]] = {}
    for test, model in fold_models(tables, a.variant, a.folds, lambda s: print(s, flush=True)):
        x_tr = np.concatenate([t.x for t in tables if t.record not in test])
        for t in tables:
            if t.record in test:
                rec[t.record] = {"tab": t, "p": predict_proba(v, model, t.x), "scale": x_tr[:, adapt_cols].std(axis=0),
                                 "test": test}
    order = [t.record for t in tables]
    labs = {(r, b): pick_labels(rec[r]["tab"].t, rec[r]["tab"].y, **kw) for r in order for b, kw in BUDGETS}
    rel = {(r, b): relative_features(rec[r]["tab"].x, rec[r]["tab"].y[labs[r, b]], labs[r, b], rec[r]["scale"], names,
                                     adapt_cols) for r in order for b, _ in BUDGETS}
    # (b): the fold models retrained with the relative features (training records': their first 5 minutes)
    cache = default_cache() / "adapt_variants"
    cache.mkdir(parents=True, exist_ok=True)
    cols = columns(v.features)
    p_rel: dict[tuple[str, str], np.ndarray] = {}
    for test in record_folds(order, a.folds):
        key = hashlib.sha256(json.dumps([a.variant, a.folds, order, [int(rec[r]["tab"].y.size) for r in order], test,
                                         "relative-1"]).encode()).hexdigest()[:16]
        f = cache / f"fold-{key}.pkl"
        if f.is_file():
            m = pickle.loads(f.read_bytes())
        else:
            print(f"population model with relative features without {', '.join(test)}", flush=True)
            tr = [r for r in order if r not in test]
            xs = np.vstack([np.hstack([rec[r]["tab"].x[:, cols], rel[r, "5 min"]]) for r in tr])
            ys = np.concatenate([rec[r]["tab"].y for r in tr])
            keep = (ys >= 0) & (ys < len(CLASSES))
            m = make_model(v)
            m.fit(xs[keep], ys[keep], sample_weight=_weights(ys[keep], v.weights))
            f.write_bytes(pickle.dumps(m))
        for r in test:
            for b, _ in BUDGETS:
                p_rel[r, b] = m.predict_proba(np.hstack([rec[r]["tab"].x[:, cols], rel[r, b]]))
    families: dict[str, dict[str, dict[str, list[np.ndarray]]]] = {}  # family -> budget -> setting -> per record

    def add(family: str, budget: str, setting: str, conf: np.ndarray) -> None:
        families.setdefault(family, {}).setdefault(budget, {}).setdefault(setting, []).append(conf)

    for b, _ in BUDGETS:
        # (a'): the stacker of each record, trained on the other records' scored beats
        stack_x = {}
        for r in order:
            d = rec[r]
            sc = (d["tab"].t >= 300.0) & (d["tab"].y >= 0) & (d["tab"].y < len(CLASSES))
            stack_x[r] = (sc, d["tab"].y[sc])
        for r in order:
            d, lab = rec[r], labs[r, b]
            tab, scale = d["tab"], d["scale"]
            sc = tab.t >= 300.0
            ys, xs, f = tab.y[sc], tab.x[sc], rel[r, b][sc]

            def adapter(**extra: Any) -> PatientAdapter:
                ad = PatientAdapter(classes=CLASSES, scale=scale, columns=adapt_cols,
                                    settings=AdaptSettings(**{**NEAREST, **extra}))
                ad.set_labels(tab.x[lab], tab.y[lab])
                return ad

            base = adapter()
            loc = base.local(xs)
            q0 = base.combine(d["p"][sc], loc)
            add("population model", b, "no labels", beat_confusion(ys, d["p"][sc].argmax(1)))
            add("nearest", b, "nearest", beat_confusion(ys, q0.argmax(1)))
            for pre in (0.65, 0.7, 0.75):
                for margin in (0.8, 0.9):
                    q = adapter(premature=pre, premature_margin=margin).premature_rule(q0, xs)
                    add("nearest + prematurity", b, f"premature {pre:g}/{margin:g}", beat_confusion(ys, q.argmax(1)))
            # (a) per-patient logistic on the relative features x the population, among the labelled classes
            ly = tab.y[lab]
            present, counts = np.unique(ly, return_counts=True)
            ok = present.size >= 2 and counts.min() >= 3
            w = fit_logistic(rel[r, b][lab], np.searchsorted(present, ly), present.size, l2=1.0) if ok else None
            for g in (0.3, 0.5, 0.7):
                q = d["p"][sc].copy()
                if w is not None:
                    s = f @ w[:, :-1].T + w[:, -1]
                    loc_p = np.exp(s - s.max(axis=1, keepdims=True))
                    loc_p /= loc_p.sum(axis=1, keepdims=True)
                    mass = q[:, present].sum(axis=1, keepdims=True)
                    part = np.exp((1 - g) * np.log(np.maximum(q[:, present] / np.maximum(mass, 1e-12), 1e-9))
                                  + g * np.log(np.maximum(loc_p, 1e-9)))
                    q[:, present] = mass * part / part.sum(axis=1, keepdims=True)
                q = base.combine(q, loc)
                add("(a) local logistic x global", b, f"weight {g:g}", beat_confusion(ys, q.argmax(1)))
                q = adapter(premature=0.65, premature_margin=0.8).premature_rule(q, xs)
                add("(a) local logistic x global + prematurity 0.65/0.8", b, f"weight {g:g}", beat_confusion(ys, q.argmax(1)))
            # (a') the population stacker
            for feats in ("log-odds", "log-odds + relative RR", "log-odds + relative RR and morphology"):
                pick = {"log-odds": [], "log-odds + relative RR": [0, 1, 2],
                        "log-odds + relative RR and morphology": [0, 1, 2, 3, 4]}[feats]
                xtr = np.vstack([np.hstack([log_odds(rec[o]["p"][stack_x[o][0]]), rel[o, b][stack_x[o][0]][:, pick]])
                                 for o in order if o != r])
                ytr = np.concatenate([stack_x[o][1] for o in order if o != r])
                lr = LogisticRegression(C=1.0, max_iter=300, class_weight={k: float(np.sqrt(
                    ytr.size / max(np.sum(ytr == k), 1) / len(CLASSES))) for k in range(len(CLASSES))})
                lr.fit(xtr, ytr)
                q = np.zeros((int(sc.sum()), len(CLASSES)))
                q[:, lr.classes_] = lr.predict_proba(np.hstack([log_odds(d["p"][sc]), f[:, pick]]))
                add("(a') population stacker", b, feats, beat_confusion(ys, q.argmax(1)))
                add("(a') population stacker + nearest", b, feats, beat_confusion(ys, base.combine(q, loc).argmax(1)))
            # (b) the population model with the relative features
            pr = p_rel[r, b][sc]
            add("(b) population model with relative features", b, "no labels", beat_confusion(ys, pr.argmax(1)))
            add("(b) population model with relative features + nearest", b, "nearest",
                beat_confusion(ys, base.combine(pr, loc).argmax(1)))
            add("(b) population model with relative features + nearest + prematurity 0.65/0.8", b, "nearest",
                beat_confusion(ys, adapter(premature=0.65, premature_margin=0.8).premature_rule(
                    base.combine(pr, loc), xs).argmax(1)))
            # (c) the per-patient S threshold
            s_all = np.log(np.maximum(d["p"][:, 1], 1e-9)) - np.log(np.maximum(d["p"][:, 0], 1e-9))
            nl = lab[tab.y[lab] == 0]
            ns = np.isin(q0.argmax(1), (0, 1))
            for x_ in (0.002, 0.005, 0.01, 0.02):
                thr = float(np.quantile(s_all[nl], 1 - x_)) if nl.size else 0.0
                call = q0.argmax(1)
                call[ns] = np.where(s_all[sc][ns] > thr, 1, 0)
                add("(c) per-patient S threshold", b, f"x {100 * x_:g} %", beat_confusion(ys, call))
            # (d) V by novelty, after the prematurity rule
            qp = adapter(premature=0.65, premature_margin=0.8).premature_rule(q0, xs).argmax(1)
            z = tab.x[:, adapt_cols] / scale
            if nl.size > 2:
                dnn = _distances(z[nl], z[nl])
                np.fill_diagonal(dnn, np.inf)
                ref, near = float(np.quantile(dnn.min(axis=1), 0.99)), _distances(z[sc], z[nl]).min(axis=1)
            else:
                ref, near = np.inf, np.zeros(int(sc.sum()))
            for gap in (2.0, 3.0, 4.0):
                for wid in (1.2, 1.4):
                    call = qp.copy()
                    call[(qp == 0) & (near > gap * ref) & (np.exp(f[:, 4]) > wid)] = 2
                    add("(d) V by novelty, after prematurity 0.65/0.8", b, f"distance > {gap:g} x, width > {wid:g} x",
                        beat_confusion(ys, call))
        print(f"{b} done ({time.time() - t0:.0f} s)", flush=True)
    results: dict[str, Any] = {}
    for fam, per_budget in families.items():
        results[fam] = {}
        for b, settings in per_budget.items():
            keys = list(settings)
            conf = np.asarray([settings[k] for k in keys]).transpose(1, 0, 2, 3)  # (records, settings, 5, 4)
            total, chosen = np.zeros((5, 4), dtype=np.int64), []
            for i in range(len(order)):
                pooled = conf.sum(axis=0) - conf[i]
                crit = [np.mean([s["F1"] for s in ectopy_scores(pooled[k]).values()]) for k in range(len(keys))]
                chosen.append(keys[int(np.argmax(crit))])
                total += conf[i][int(np.argmax(crit))]
            results[fam][b] = {"nested": ectopy_scores(total), "chosen_per_record": dict(zip(order, chosen)),
                               "fixed": {k: ectopy_scores(conf[:, j].sum(axis=0)) for j, k in enumerate(keys)}}
    cmd = "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/beat_adapt_variants.py"
    doc = {"command": cmd, "variant": a.variant, "folds": a.folds, "records": order, "results": results,
           "seconds": round(time.time() - t0, 1), "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "adapt_variants.json").write_text(json.dumps(doc, indent=1) + "\n")
    md = ["# Patient-relative adaptation variants: record-wise CV inside MIT-BIH DS1", "",
          f"Made with `{cmd}` ({doc['written']}).", "",
          f"Population model: `{a.variant}` ({a.folds} record-wise folds); labels from each record's first 5 minutes; "
          "scored: its beats after 5 minutes, gross statistics over the 22 records; each family's setting chosen per "
          "record on the other 21 (nested). Families: bench/beat_adapt_variants.py.", "",
          "| family | " + " | ".join(b for b, _ in BUDGETS) + " |", "|---|" + "---|" * len(BUDGETS)]
    cell = lambda s: f"{s['SVEB']['Se']:.3f} / {s['SVEB']['+P']:.3f} / **{s['SVEB']['F1']:.3f}**, VEB {s['VEB']['F1']:.3f}"
    for fam, per_budget in results.items():
        md.append(f"| {fam} | " + " | ".join(cell(per_budget[b]["nested"]) for b, _ in BUDGETS) + " |")
    md += ["", "Cells: SVEB Se / +P / F1, VEB F1 (nested choice). Each setting fixed for all records (chosen on the "
           "same records, so optimistic; SVEB F1 / VEB F1):", "",
           "| family | setting | " + " | ".join(b for b, _ in BUDGETS) + " |", "|---|---|" + "---|" * len(BUDGETS)]
    for fam, per_budget in results.items():
        for k in per_budget[BUDGETS[0][0]]["fixed"]:
            md.append(f"| {fam} | {k} | " + " | ".join(
                f"{per_budget[b]['fixed'][k]['SVEB']['F1']:.3f} / {per_budget[b]['fixed'][k]['VEB']['F1']:.3f}"
                for b, _ in BUDGETS) + " |")
    (OUT / "adapt_variants.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
