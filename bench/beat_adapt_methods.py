"""Stronger patient-specific methods against the monitor's adapter, record-wise CV inside MIT-BIH DS1.

The protocol of ``pedstream eval --adapt-minutes 5`` (pedstream.train.adapt_eval): each record's population
model is its fold model (11 record-wise folds, cached); labels from the record's first 5 minutes (every beat,
or 20 / 50 / 100 clinician labels); the beats after 5 minutes scored, gross SVEB / VEB over the 22 records.
Every family below is the eval's grid (adapt_eval.METHODS) plus the family's own settings, one chosen per
record on the other 21 records' pooled score (nested, as the eval chooses); ``reference`` is the grid alone.

- ``distance-gated mixing``: the labels' weight shrinks for a beat far from every labelled beat,
  ``w * 1 / (1 + (d / (a * r))^4)`` (``d``: distance to the nearest labelled beat, ``r``: the median
  leave-one-out nearest-neighbour distance among the labelled N beats; a 2 / 3 / 5 / 8): a beat unlike
  anything labelled keeps more of the population's call;
- ``novelty -> V``: after the adapter, a beat called N farther than ``g`` times the 99 % quantile of the
  labelled N beats' own nearest-neighbour distances from every labelled beat and whose QRS correlates with
  the dominant beat under ``c`` is called V;
- ``local vote variants``: each labelled class's nearest beat by morphology only (no RR features), by
  distances divided by each class's own spread, by the correlation of the 33 morphology bins (the beat's
  shape at the features' resolution), or morphology + correlation;
- ``product mixing, F labels left out``: the grid's product mixing (k 1 / 3, mix 0.5 / 0.8) with the
  prematurity rule; the adapter with the labelled F beats left out of the vote (the population's F kept);
- ``per-patient stack``: an L2 logistic regression fitted on the patient's own labelled beats (pedstream's
  Newton fit, the monitor's) over the population log-probabilities, the log distance to each labelled
  class's nearest beat (leave-one-out for the labelled beats) and the RR, QRS width and dominant-beat
  correlation relative to the labelled N beats; its probabilities the local vote;
- ``cross-patient stack``: the same features plus the adapter's own call, one model (gradient boosting or
  logistic regression) trained on the other 21 records' scored beats (5 minutes and 50 beats only; the
  training records' population probabilities come from fold models that may have seen the held-out record);
- ``pause rule``: after the adapter, a beat called N with an RR before it under ``min(a * median,
  m * q01)`` of the labelled N beats' and followed by a longer interval (``post_pre`` > log ratio ``p``)
  is called S (a second, looser prematurity tier);
- ``--with-refit``: the population model boosted on with the patient's labelled beats (de Chazal and
  Reilly 2006 style global + local; 20 more boosting iterations on a class-stratified sample of the training
  records, weighted back to the training class mix, plus the labelled beats with weight 20 or 100), alone
  and with the adapter on top; 5 minutes only; its fit time per label update reported.

It also writes the error analysis of the reference method at 5 minutes (per record: labels, scored S and V
beats, where they went).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/beat_adapt_methods.py [--with-refit]

Writes bench/results/beat_cv/adapt_methods.json and .md (the tables: bench/beat_adapt_methods_report.py).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from beat_adapt_methods_report import REFERENCE, error_rows, markdown, nested  # noqa: E402
OUT = ROOT / "bench" / "results" / "beat_cv"
BUDGETS = {"5 min": {"minutes": 5.0}, "20 beats, clinician": {"beats": 20}, "50 beats, clinician": {"beats": 50},
           "100 beats, clinician": {"beats": 100}}
VOTE_BASES = ("knn k=1 mix=0.8, labelled classes", "nearest tau=1.0 mix=0.8, labelled classes")


def _names() -> dict[str, int]:
    from pedstream.dsp.beat_features import feature_names

    return {n: i for i, n in enumerate(feature_names(True, True))}


class Record:
    """One held-out record under one label budget: its population call, labels and scored beats."""

    def __init__(self, tab: Any, p: np.ndarray, scale: np.ndarray, cols: np.ndarray, budget: dict[str, Any]) -> None:
        from pedstream.monitor.adapt_methods import _distances
        from pedstream.train.adapt_eval import pick_labels

        self.name, self.scale, self.cols = tab.record, scale, cols
        self.lab = pick_labels(tab.t, tab.y, **budget)
        sc = tab.t >= max(300.0, 60.0 * budget.get("minutes", 0.0))
        self.x, self.y, self.p = tab.x[sc], tab.y[sc], p[sc]
        self.xl, self.yl, self.pl = tab.x[self.lab], tab.y[self.lab], p[self.lab]
        self.z, self.zl = self.x[:, cols] / scale, self.xl[:, cols] / scale
        self.d = _distances(self.z, self.zl)  # (scored, labelled)
        dll = _distances(self.zl, self.zl)
        np.fill_diagonal(dll, np.inf)
        self.dll = dll
        n = self.yl == 0
        self.n_ok = int(n.sum()) >= 5
        nn = dll[np.ix_(n, n)].min(axis=1) if n.sum() >= 2 else np.ones(1)
        self.r = max(float(np.median(nn)), 1e-3)  # the labelled N beats' typical neighbour distance
        self.r99 = float(np.quantile(nn, 0.99)) if self.n_ok else np.inf

    def adapter(self, fields: dict[str, Any]) -> Any:
        from pedstream.monitor.adapt_methods import AdaptSettings, PatientAdapter
        from pedstream.train.beat_gbm import CLASSES

        ad = PatientAdapter(classes=CLASSES, scale=self.scale, columns=self.cols, settings=AdaptSettings(**fields))
        ad.set_labels(self.xl, self.yl)
        return ad


def grid_calls(rec: Record) -> dict[str, np.ndarray]:
    """The eval's grid (adapt_eval.METHODS): each setting's calls of the scored beats."""
    from pedstream.train.adapt_eval import METHODS, local_key

    out, local = {}, {}
    for name, fields in METHODS:
        ad = rec.adapter(fields)
        key = local_key(ad.settings)
        if key not in local:
            local[key] = ad.local(rec.x)
        out[name] = ad.premature_rule(ad.combine(rec.p, local[key]), rec.x).argmax(1)
    return out


def _fields(base: str, pre: tuple[float, float] = (0.65, 0.8)) -> dict[str, Any]:
    from pedstream.train.adapt_eval import METHODS

    return {**dict(METHODS)[base], "premature": pre[0], "premature_margin": pre[1]}


def _labelled_mix(ad: Any, p: np.ndarray, local: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The adapter's labelled-classes mean mixing with a per-beat weight ``w`` (B, 1)."""
    cls = ad.labelled_classes()
    q = p.copy()
    mass = p[:, cls].sum(axis=1, keepdims=True)
    q[:, cls] = mass * ((1 - w) * p[:, cls] / np.maximum(mass, 1e-12) + w * local[:, cls])
    return q


def gated(rec: Record) -> dict[str, np.ndarray]:
    out = {}
    for base in VOTE_BASES:
        ad = rec.adapter(_fields(base))
        local = ad.local(rec.x)
        dmin = rec.d.min(axis=1)
        for a in (2.0, 3.0, 5.0, 8.0):
            w = ad.weight() / (1.0 + (dmin / (a * rec.r)) ** 4)
            q = _labelled_mix(ad, rec.p, local, w[:, None]) if rec.n_ok else ad.combine(rec.p, local)
            out[f"{base}, premature 0.65/0.8, gate {a:g}"] = ad.premature_rule(q, rec.x).argmax(1)
    return out


def novelty(rec: Record) -> dict[str, np.ndarray]:
    dcq = _names()["dom_corr_qrs"]
    out = {}
    for base in VOTE_BASES:
        call = rec.adapter(_fields(base)).adapt(rec.p, rec.x).argmax(1)
        for g in (1.5, 2.0, 3.0):
            for c in (-0.5, 0.0, 0.5):
                hit = (call == 0) & (rec.d.min(axis=1) > g * rec.r99) & (rec.x[:, dcq] < c)
                out[f"{base}, premature 0.65/0.8, novelty V {g:g}/{c:g}"] = np.where(hit, 2, call)
    return out


def _corr_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-9)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-9)
    return 1.0 - a @ b.T


def _vote(d: np.ndarray, dll: np.ndarray, yl: np.ndarray, tau: float, scaled: bool) -> np.ndarray:
    from pedstream.monitor.adapt_methods import _softmax_over

    present = np.unique(yl)
    dc = np.stack([d[:, yl == k].min(axis=1) for k in present], axis=1)
    if scaled:  # each class's distances over its own labels' spread
        spread = np.asarray([np.median(dll[np.ix_(yl == k, yl == k)].min(axis=1)) if np.sum(yl == k) > 1 else np.nan
                             for k in present])
        spread = np.where(np.isfinite(spread), spread, np.nanmedian(spread) if np.any(np.isfinite(spread)) else 1.0)
        dc = dc / np.maximum(spread, 1e-6)[None, :]
    return _softmax_over(-(dc - dc.min(axis=1, keepdims=True)) / tau, present, 4)


def vote_variants(rec: Record) -> dict[str, np.ndarray]:
    from pedstream.monitor.adapt_methods import _distances

    col_names = [list(_names())[c] for c in rec.cols]
    rr_end = col_names.index("rr_irreg_frac")
    morph = [k for k, n in enumerate(col_names) if k > rr_end and n not in ("dom_pre", "dom_post", "dom_learnt")]
    shape = [k for k, n in enumerate(col_names) if n[:2] == "ds" and n[2:].isdigit() or n[:3] == "qrs" and n[3:].isdigit()]
    xs, xl = rec.x[:, rec.cols][:, shape], rec.xl[:, rec.cols][:, shape]
    dm = (_distances(rec.z[:, morph], rec.zl[:, morph]), _distances(rec.zl[:, morph], rec.zl[:, morph]))
    dc = (_corr_dist(xs, xl), _corr_dist(xl, xl))
    both = tuple(m / max(float(np.median(dm[1])), 1e-9) + c / max(float(np.median(dc[1])), 1e-9) for m, c in zip(dm, dc))
    dists = {"morphology": dm, "class-scaled": (rec.d, rec.dll), "shape correlation": dc, "morphology + correlation": both}
    ad = rec.adapter(_fields("nearest tau=1.0 mix=0.8, labelled classes"))
    out = {}
    for label, (d, dll) in dists.items():
        dll = dll.copy()
        np.fill_diagonal(dll, np.inf)
        for tau in (0.5, 1.0, 2.0):
            local = _vote(d, dll, rec.yl, tau, scaled=label == "class-scaled")
            out[f"nearest by {label} tau={tau:g}, premature 0.65/0.8"] = \
                ad.premature_rule(ad.combine(rec.p, local), rec.x).argmax(1)
    return out


def product_and_f(rec: Record) -> dict[str, np.ndarray]:
    """The product mixing with the prematurity rule, and the labels of F beats left out of the vote."""
    out = {}
    for k in (1, 3):
        for mix in (0.5, 0.8):
            ad = rec.adapter({"method": "knn", "k": k, "mix": mix, "combine": "product", "classes": "labelled",
                              "premature": 0.65, "premature_margin": 0.8})
            out[f"knn-product k={k} mix={mix:g}, labelled classes, premature 0.65/0.8"] = ad.adapt(rec.p, rec.x).argmax(1)
    keep = rec.yl != 3
    for base in VOTE_BASES:
        ad = rec.adapter(_fields(base))
        ad.set_labels(rec.xl[keep], rec.yl[keep])
        out[f"{base}, premature 0.65/0.8, F labels left out"] = ad.adapt(rec.p, rec.x).argmax(1)
    return out


def stack_features(rec: Record, labelled: bool) -> np.ndarray:
    """Per beat (the scored ones, or the labelled ones with leave-one-out distances): population
    log-probabilities, log distance to each labelled class's nearest beat over the labelled N beats' typical
    one (6 for a class without labels), RR, QRS width and dominant-beat correlation relative to the labelled
    N beats."""
    ix = _names()
    x, p, d = (rec.xl, rec.pl, rec.dll) if labelled else (rec.x, rec.p, rec.d)
    dc = [np.log(d[:, rec.yl == k].min(axis=1) / rec.r + 0.1) if np.any(rec.yl == k) else np.full(len(x), 6.0)
          for k in range(4)]
    n = rec.xl[rec.yl == 0] if np.sum(rec.yl == 0) >= 2 else rec.xl
    rr, width = float(np.median(n[:, ix["pre_rr"]])), max(float(np.median(n[:, ix["qrs_width"]])), 1e-3)
    rel = [np.log(np.maximum(x[:, ix["pre_rr"]], 1e-3) / rr), np.log(np.maximum(x[:, ix["post_rr"]], 1e-3) / rr),
           x[:, ix["pre_local"]], x[:, ix["dom_corr_qrs"]], np.log(np.maximum(x[:, ix["qrs_width"]], 1e-3) / width)]
    return np.column_stack([np.log(np.clip(p, 1e-4, 1.0)), *dc, *rel])


def patient_stack(rec: Record) -> tuple[dict[str, np.ndarray], list[float]]:
    from pedstream.monitor.adapt_methods import _softmax_over, fit_logistic

    base = rec.adapter(_fields("knn k=1 mix=0.8, labelled classes"))
    fallback = base.local(rec.x)
    present, counts = np.unique(rec.yl, return_counts=True)
    out, secs = {}, []
    for l2 in (0.3, 1.0, 3.0):
        local = fallback
        if present.size >= 2 and counts.min() >= 3:
            t0 = time.perf_counter()
            f = stack_features(rec, labelled=True)
            mu, sd = f.mean(axis=0), f.std(axis=0) + 1e-6
            w = fit_logistic((f - mu) / sd, np.searchsorted(present, rec.yl), present.size, l2=l2)
            secs.append(time.perf_counter() - t0)
            local = _softmax_over(((stack_features(rec, labelled=False) - mu) / sd) @ w[:, :-1].T + w[:, -1], present, 4)
        out[f"per-patient stack l2={l2:g}, premature 0.65/0.8"] = \
            base.premature_rule(base.combine(rec.p, local), rec.x).argmax(1)
    return out, secs


def cross_stack(recs: list[Record]) -> list[dict[str, np.ndarray]]:
    """Each record's calls by the models trained on the other records (see the module docstring)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    feats = []
    for rec in recs:
        q = rec.adapter(_fields("knn k=1 mix=0.8, labelled classes")).adapt(rec.p, rec.x)
        feats.append(np.hstack([stack_features(rec, labelled=False), np.log(np.clip(q, 1e-4, 1.0))]))
    rng = np.random.default_rng(0)
    out = []
    for i, rec in enumerate(recs):
        x = np.vstack([f for j, f in enumerate(feats) if j != i])
        y = np.concatenate([r.y for j, r in enumerate(recs) if j != i])
        keep = (y >= 0) & (y < 4) & ((y != 0) | (rng.random(y.size) < 0.25))  # a quarter of the N beats
        x, y = x[keep], y[keep]
        w = np.sqrt(np.bincount(y, minlength=4).max() / np.maximum(np.bincount(y, minlength=4), 1))[y]
        hgb = HistGradientBoostingClassifier(max_iter=150, max_leaf_nodes=15, min_samples_leaf=50, random_state=0)
        hgb.fit(x, y, sample_weight=w)
        mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
        lr = LogisticRegression(C=1.0, max_iter=2000).fit((x - mu) / sd, y, sample_weight=w)
        out.append({"cross-patient stack, gradient boosting": hgb.classes_[hgb.predict_proba(feats[i]).argmax(1)],
                    "cross-patient stack, logistic": lr.classes_[lr.predict_proba((feats[i] - mu) / sd).argmax(1)]})
    return out


def pause_rule(rec: Record) -> dict[str, np.ndarray]:
    ix = _names()
    rr = rec.xl[rec.yl == 0, ix["pre_rr"]]
    out = {}
    for base in VOTE_BASES:
        call = rec.adapter(_fields(base)).adapt(rec.p, rec.x).argmax(1)
        for a in (0.75, 0.8, 0.85):
            for m in (0.9, 1.0):
                for pause in (0.1, 0.2):
                    hit = np.zeros(call.size, dtype=bool)
                    if rr.size >= 5:
                        lim = min(a * np.median(rr), m * np.quantile(rr, 0.01))
                        hit = (call == 0) & (rec.x[:, ix["pre_rr"]] < lim) & (rec.x[:, ix["post_pre"]] > pause)
                    out[f"{base}, premature 0.65/0.8, pause rule {a:g}/{m:g}/{pause:g}"] = np.where(hit, 1, call)
    return out


def refit_calls(rec: Record, model: Any, common: tuple[np.ndarray, np.ndarray, np.ndarray],
                secs: list[float]) -> dict[str, np.ndarray]:
    from pedstream.train.beat_gbm import VARIANTS, columns, predict_proba

    v = VARIANTS["HGB, part 2 without raw morphology"]
    xc, yc, wc = common
    out = {}
    for w in (20.0, 100.0):
        m2 = copy.deepcopy(model)
        m2.set_params(warm_start=True, max_iter=int(m2.max_iter) + 20)
        x, y = np.concatenate([xc, rec.xl]), np.concatenate([yc, rec.yl])
        wt = np.concatenate([wc, np.full(rec.yl.size, w)])
        keep = np.isin(y, model.classes_)
        t0 = time.perf_counter()
        m2.fit(x[keep][:, columns(v.features)], y[keep], sample_weight=wt[keep])
        secs.append(time.perf_counter() - t0)
        q = predict_proba(v, m2, rec.x)
        out[f"refit w={w:g}"] = q.argmax(1)
        out[f"refit w={w:g} + adapter"] = rec.adapter(_fields("knn k=1 mix=0.8, labelled classes")).adapt(q, rec.x).argmax(1)
    return out


def _common_sample(x: np.ndarray, y: np.ndarray, rng: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to 2000 training beats per class, weighted back to the training class mix (sqrt class weights)."""
    from pedstream.train.beat_gbm import _weights

    ok = (y >= 0) & (y < 4)
    x, y = x[ok], y[ok]
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == k))[:2000] for k in range(4)])
    back = np.bincount(y, minlength=4) / np.maximum(np.bincount(y[idx], minlength=4), 1)
    w = _weights(y, "sqrt")[idx] * back[y[idx]]
    return x[idx], y[idx], w / w.mean()


def load(data: str, folds: int) -> list[tuple[Any, np.ndarray, np.ndarray, Any, Any]]:
    """(table, population probabilities, adapter scale, fold model, common sample) per DS1 record."""
    from pedstream.train.adapt_eval import fold_models
    from pedstream.train.beat_data import DS1, build_tables
    from pedstream.train.beat_gbm import VARIANTS, columns, predict_proba

    variant = "HGB, part 2 without raw morphology"
    tables = build_tables(data, records=tuple(r for r in DS1 if (Path(data) / f"{r}.hea").is_file()))
    cols = np.asarray(columns("part2"))
    out = {}
    rng = np.random.default_rng(0)
    for test, model in fold_models(tables, variant, folds, lambda s: print(s, flush=True)):
        train = [t for t in tables if t.record not in test]
        x_tr, y_tr = np.concatenate([t.x for t in train]), np.concatenate([t.y for t in train])
        common = _common_sample(x_tr, y_tr, rng)
        for t in tables:
            if t.record in test:
                out[t.record] = (t, predict_proba(VARIANTS[variant], model, t.x), x_tr[:, cols].std(axis=0), model, common)
    return [out[t.record] for t in tables]


FAMILIES: dict[str, Callable[[Record], dict[str, np.ndarray]]] = {
    "distance-gated mixing": gated, "novelty -> V": novelty, "local vote variants": vote_variants,
    "pause rule": pause_rule, "product mixing, F labels left out": product_and_f}


def run_budget(rows: list[Any], budget: str, refit: bool, timings: dict[str, list[float]]) -> dict[str, Any]:
    from pedstream.train.adapt_eval import METHODS, beat_confusion, ectopy_scores
    from pedstream.train.beat_gbm import columns

    cols = np.asarray(columns("part2"))
    recs = [Record(t, p, s, cols, BUDGETS[budget]) for t, p, s, _, _ in rows]
    grid = [n for n, _ in METHODS]
    fams: dict[str, list[dict[str, np.ndarray]]] = {"reference": []}
    ref_calls = []
    for rec, (_, _, _, model, common) in zip(recs, rows):
        t0 = time.perf_counter()
        rec.adapter(_fields("knn k=1 mix=0.8, labelled classes")).adapt(rec.p[:1], rec.x[:1])
        timings.setdefault("reference adapter", []).append(time.perf_counter() - t0)
        calls = grid_calls(rec)
        ref_calls.append(calls[REFERENCE])
        fams["reference"].append({k: beat_confusion(rec.y, v) for k, v in calls.items()})
        extra = {name: fn(rec) for name, fn in FAMILIES.items()}
        extra["per-patient stack"], secs = patient_stack(rec)
        timings.setdefault("per-patient stack", []).extend(secs)
        if refit and budget == "5 min":
            extra["refit (global + local)"] = refit_calls(rec, model, common, timings.setdefault("refit", []))
        for name, c in extra.items():
            fams.setdefault(name, []).append({**fams["reference"][-1], **{k: beat_confusion(rec.y, v) for k, v in c.items()}})
        print(f"{budget}: record {rec.name}", flush=True)
    if budget in ("5 min", "50 beats, clinician"):
        for i, c in enumerate(cross_stack(recs)):
            fams.setdefault("cross-patient stack", []).append(
                {**fams["reference"][i], **{k: beat_confusion(recs[i].y, v) for k, v in c.items()}})
    out: dict[str, Any] = {}
    for name, per in fams.items():
        settings = grid + [k for k in per[0] if k not in grid]
        total, chosen = nested(per, settings)
        own = [k for k in per[0] if k not in grid]
        out[name] = {"nested": ectopy_scores(total), "chosen_most_often": max(set(chosen), key=chosen.count),
                     "own_settings_chosen": int(sum(c in own for c in chosen)),
                     "fixed": {k: ectopy_scores(sum(c[k] for c in per)) for k in ([REFERENCE] if name == "reference" else own)}}
    if budget == "5 min":
        out["errors"] = error_rows(recs, ref_calls)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mitdb"))
    ap.add_argument("--folds", type=int, default=11)
    ap.add_argument("--with-refit", action="store_true", help="add the boosted-on population model (slow)")
    a = ap.parse_args(argv)
    t0 = time.time()
    rows = load(a.data, a.folds)
    timings: dict[str, list[float]] = {}
    results = {b: run_budget(rows, b, a.with_refit, timings) for b in BUDGETS}
    cmd = "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/beat_adapt_methods.py" + (
        " --with-refit" if a.with_refit else "")
    doc = {"command": cmd, "records": [r[0].record for r in rows], "results": results,
           "fit_seconds": {k: {"median": float(np.median(v)), "max": float(np.max(v))} for k, v in timings.items() if v},
           "seconds": round(time.time() - t0, 1), "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "adapt_methods.json").write_text(json.dumps(doc, indent=1) + "\n")
    md = markdown(doc)
    (OUT / "adapt_methods.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
