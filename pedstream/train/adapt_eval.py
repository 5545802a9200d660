"""The patient-specific protocol for the feature beat classifier: population model plus each patient's labelled beats.

``pedstream eval --adapt-minutes 5 --data DIR`` (de Chazal and Reilly 2006; Kiranyaz 2016): record-wise
cross-validation over the records of ``DIR`` (MIT-BIH DS1: 11 folds of 2 records). For every held-out
record:

1. the *population* model is the fold model trained on the other folds' records (the common set);
2. it is adapted with the record's labelled beats: every beat of its first ``N`` minutes
   (``--adapt-minutes N``), or ``n`` beats of its first 5 minutes (``--adapt-beats n``: the earliest
   non-N beats, up to half of ``n``, the rest N beats spread evenly, as a clinician confirming the
   ectopic beats they see and a few normal ones; or drawn at random, ``selection="random"``, 3 draws);
3. the beats after the labelled span (after ``max(N, 5)`` minutes) are scored: SVEB and VEB Se, +P, F1
   (gross, one-vs-rest over every beat, pooled over the records); the population model is scored on the
   same beats beside it.

Adaptation methods (:data:`METHODS`), one chosen per held-out record by the pooled score of the other
records (nested: a record never chooses its own method):

- :data:`METHODS` (``knn k mix``, ``prototype mix``, ``knn-product k mix``, ``nearest tau mix``, each
  also with ``labelled classes``): :class:`pedstream.monitor.adapt.PatientAdapter`, the live monitor's
  few-shot adapter (a vote of the nearest labelled beats, of the class means or of each class's nearest
  beat, mixed with the population probabilities over every class, or only among the classes the labels
  hold); what the monitor does when a clinician labels beats; ``, premature a/m``: the same with the
  patient-relative prematurity rule (a beat called N whose RR before it is under ``a`` times the median, or
  ``m`` times the 1 % quantile, of the RR before the patient's labelled N beats is called S);
- ``refit w``: a patient-specific model, as the published protocol trains one: the fold's gradient-boosting
  model grown by ``REFIT_TREES`` more boosting iterations fitted on the patient's labelled beats (each with
  weight ``w``) together with a class-stratified sample of the common set (up to ``REFIT_COMMON`` beats
  per class, weight 1), so the new trees correct the population model where this patient differs.

Everything the evaluation needs (feature tables, population CV predictions, refitted models' predictions)
is cached under ``~/.cache/pedstream`` (:func:`pedstream.train.beat_data.default_cache`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["LINEAR_METHODS", "METHODS", "REFIT_COMMON", "REFIT_TREES", "REFIT_WEIGHTS", "adapt_eval", "beat_confusion",
           "ectopy_scores", "eval_adapt_command", "fold_models", "format_markdown", "local_key", "pick_labels"]



def _adapt_settings() -> tuple[tuple[str, dict[str, Any]], ...]:
    out: list[tuple[str, dict[str, Any]]] = []
    for classes in ("all", "labelled"):
        tail = "" if classes == "all" else ", labelled classes"
        out += [(f"knn k={k} mix={mix}{tail}", {"method": "knn", "k": k, "mix": mix, "classes": classes})
                for k in (1, 3, 5, 9) for mix in (0.5, 0.8, 1.0)]
        out += [(f"prototype mix={mix}{tail}", {"method": "prototype", "k": 1, "mix": mix, "classes": classes})
                for mix in (0.5, 0.8)]
        out += [(f"knn-product k={k} mix={mix}{tail}", {"method": "knn", "k": k, "mix": mix, "combine": "product",
                                                         "classes": classes}) for k in (3, 9) for mix in (0.5, 0.8)]
        out += [(f"nearest tau={tau} mix=0.8{tail}", {"method": "nearest", "k": 1, "mix": 0.8, "tau": tau,
                                                      "classes": classes}) for tau in (0.5, 1.0, 2.0)]
    # the weight from the label count of the class the vote goes to (few S labels move an S vote less)
    out += [(f"knn k=1 mix=0.8, labelled classes, weight by class n_half={h:g}",
             {"method": "knn", "k": 1, "mix": 0.8, "n_half": h, "classes": "labelled", "weight_by": "class"})
            for h in (2.0, 10.0)]
    # patient-relative prematurity: a beat called N with an RR before it under premature x the median (or
    # margin x the 1 % quantile) of the patient's labelled N beats' is called S, on the best votes above
    for name, fields in [(n, f) for n, f in out if n in _PREMATURE_ON]:
        out += [(f"{name}, premature {pre:g}/{margin:g}", {**fields, "premature": pre, "premature_margin": margin})
                for pre in (0.65, 0.7, 0.75) for margin in (0.8, 0.9)]
    return tuple(out)


_PREMATURE_ON = ("knn k=1 mix=0.8, labelled classes", "nearest tau=0.5 mix=0.8, labelled classes",
                 "nearest tau=1.0 mix=0.8, labelled classes", "nearest tau=2.0 mix=0.8, labelled classes")


# every few-shot setting of the monitor's adapter that the protocol chooses among: (name, AdaptSettings fields);
# ", labelled classes": the labels mix only among the classes they hold (the population's other classes kept)
METHODS: tuple[tuple[str, dict[str, Any]], ...] = _adapt_settings()
# a per-patient linear model (L2 logistic regression) over the RR ratios, or the RR ratios and the template
# correlations, mixed among the labelled classes (the nearest labelled beat while a labelled class has < 3
# labels); tried by the same nested choice (bench/beat_adapt.py --with-linear), it lost, so it is not in METHODS
LINEAR_METHODS: tuple[tuple[str, dict[str, Any]], ...] = tuple(
    (f"linear {feat} l2={l2:g} mix={mix}, labelled classes",
     {"method": "linear", "k": 1, "mix": mix, "features": feat, "l2": l2, "min_class": 3, "classes": "labelled"})
    for feat in ("rr", "rr+tpl") for l2 in (0.1, 1.0) for mix in (0.8, 1.0))
REFIT_WEIGHTS = (5.0, 20.0)
REFIT_TREES = 40
REFIT_COMMON = 2000
SCORE_FROM_S = 300.0  # beats labelled from the first 5 minutes; scored after them


def local_key(settings: Any) -> tuple[Any, ...]:
    """The knobs of an :class:`~pedstream.monitor.adapt.AdaptSettings` that its local vote depends on (settings
    that differ only in how the vote is mixed share one local vote)."""
    return (settings.method, settings.k, settings.tau, settings.features, settings.l2, settings.min_class)


def pick_labels(t: np.ndarray, y: np.ndarray, *, minutes: float | None = None, beats: int | None = None,
                selection: str = "clinician", seed: int = 0, first_s: float = SCORE_FROM_S) -> np.ndarray:
    """Indices of one record's labelled beats (see the module docstring); beats without a reference class
    (``y < 0``, or Q) are never labelled."""
    ok = (y >= 0) & (y < 4)
    if minutes is not None:
        return np.flatnonzero((t < 60.0 * minutes) & ok)
    first = np.flatnonzero((t < first_s) & ok)
    n = int(beats or 0)
    if selection == "random":
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(first, min(n, first.size), replace=False))
    ect = first[y[first] > 0][: n // 2]
    norm = first[y[first] == 0]
    take = norm[np.linspace(0, norm.size - 1, min(n - ect.size, norm.size)).astype(int)] if norm.size else norm
    return np.sort(np.concatenate([ect, take]))


def beat_confusion(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(5, 4) counts: reference class (N, S, V, F, Q) by called class (N, S, V, F); ``y < 0`` not counted."""
    return np.asarray([[np.sum((y == i) & (pred == j)) for j in range(4)] for i in range(5)], dtype=np.int64)


def ectopy_scores(c: np.ndarray) -> dict[str, dict[str, float]]:
    """Gross SVEB and VEB Se, +P, F1 and support of a :func:`beat_confusion` (one-vs-rest over every beat)."""
    out = {}
    for name, k in (("SVEB", 1), ("VEB", 2)):
        se, ppv = c[k, k] / max(c[k].sum(), 1), c[k, k] / max(c[:, k].sum(), 1)
        out[name] = {"Se": float(se), "+P": float(ppv), "F1": float(2 * se * ppv / (se + ppv)) if se + ppv else 0.0,
                     "support": int(c[k].sum())}
    return out


def _mean_f1(c: np.ndarray) -> float:
    s = ectopy_scores(c)
    return 0.5 * (s["SVEB"]["F1"] + s["VEB"]["F1"])


def _budgets(minutes: Sequence[float], beats: Sequence[int], selection: str) -> list[dict[str, Any]]:
    out = [{"name": f"{m:g} min", "minutes": float(m), "beats": None, "selection": "all"} for m in minutes]
    for n in beats:
        out.append({"name": f"{n} beats, {selection}", "minutes": None, "beats": int(n), "selection": selection})
    return out


def fold_models(tables: Sequence[Any], variant: str, folds: int,
                say: Callable[[str], None] = lambda s: None) -> Any:
    """Yield ``(test records, population model trained on the other folds' records)`` for each record-wise
    fold of ``tables`` (:func:`pedstream.train.beat_gbm.record_folds`), each model cached under
    ``<cache>/adapt_eval`` by the variant, the folds and the tables' records and sizes."""
    from pedstream.train.beat_data import default_cache
    from pedstream.train.beat_gbm import VARIANTS, fit, record_folds

    v = VARIANTS[variant]
    names = [t.record for t in tables]
    cache = default_cache() / "adapt_eval"
    cache.mkdir(parents=True, exist_ok=True)
    for test in record_folds(names, folds):
        tag = hashlib.sha256(json.dumps([asdict(v), folds, names, [int(t.y.size) for t in tables],
                                         int(tables[0].x.shape[1]), test], sort_keys=True,
                                        default=str).encode()).hexdigest()[:16]
        f = cache / f"fold-{tag}.pkl"
        if f.is_file():
            model = pickle.loads(f.read_bytes())
        else:
            say(f"population model without {', '.join(test)} ({variant})")
            train = [t for t in tables if t.record not in test]
            model = fit(v, np.concatenate([t.x for t in train]), np.concatenate([t.y for t in train]))
            f.write_bytes(pickle.dumps(model))
        yield test, model


def adapt_eval(data: str | Path, *, minutes: Sequence[float] = (5.0,), beats: Sequence[int] = (),
               selection: str = "clinician", variant: str | None = None, folds: int = 11,
               methods: Sequence[tuple[str, dict[str, Any]]] = METHODS, refit_weights: Sequence[float] = REFIT_WEIGHTS,
               records: Sequence[str] | None = None, score_from_s: float = SCORE_FROM_S,
               progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the protocol (module docstring) on the records of ``data``; returns the results as a dict
    (``results[budget]``: ``scores``, ``population`` on the same beats, ``mean_labels``, the method
    chosen per record). ``variant``: the population model (:data:`pedstream.train.beat_gbm.VARIANTS`;
    default: the shipped model's, ``models/mitdb-beats/manifest.json``). ``score_from_s``: the span the
    beat budgets draw their labels from and the scoring starts after (5 minutes)."""
    from pedstream.monitor.adapt import AdaptSettings, PatientAdapter
    from pedstream.train.beat_data import DS1, build_tables
    from pedstream.train.beat_gbm import CLASSES, VARIANTS, columns, predict_proba

    say = progress or (lambda s: None)
    t_start = time.time()
    if variant is None:
        man = Path(__file__).resolve().parents[2] / "models" / "mitdb-beats" / "manifest.json"
        variant = json.loads(man.read_text())["model_config"]["variant"] if man.is_file() else \
            "HGB, part 2 without raw morphology"
    v = VARIANTS[variant]
    if records is None:  # DS1's records found in the folder, else every annotated record there
        records = [r for r in DS1 if (Path(data) / f"{r}.hea").is_file()] or sorted(
            p.stem for p in Path(data).glob("*.atr"))
    tables = build_tables(data, records=tuple(records))
    if len(tables) < folds:
        raise ValueError(f"{len(tables)} records for {folds} record-wise folds: give more records or fewer folds")
    names = [t.record for t in tables]
    # the labelled beats are compared on every feature the engine computes for this model
    adapt_cols = np.asarray(columns("part2" if v.features.startswith("part2") else "part1"))
    budgets = _budgets(minutes, beats, selection)
    settings = [name for name, _ in methods]
    refit = v.model == "hgb"
    settings += [f"refit w={w:g}" for w in refit_weights] if refit else []
    # conf[budget][record] -> (S, 5, 4) confusions of the scored beats under each setting
    conf: dict[str, list[np.ndarray]] = {b["name"]: [np.zeros(0)] * len(tables) for b in budgets}
    base: dict[str, list[np.ndarray]] = {b["name"]: [np.zeros(0)] * len(tables) for b in budgets}
    n_labels: dict[str, list[int]] = {b["name"]: [] for b in budgets}
    rng = np.random.default_rng(0)
    for test, model in fold_models(tables, variant, folds, say):
        train = [t for t in tables if t.record not in test]
        x_tr, y_tr = np.concatenate([t.x for t in train]), np.concatenate([t.y for t in train])
        common = np.concatenate([rng.permutation(np.flatnonzero(y_tr == k))[:REFIT_COMMON] for k in range(len(CLASSES))])
        scale = x_tr[:, adapt_cols].std(axis=0)
        for i, tab in enumerate(tables):
            if tab.record not in test:
                continue
            p = predict_proba(v, model, tab.x)
            for b in budgets:
                scored = tab.t >= max(score_from_s, 60.0 * (b["minutes"] or 0.0))
                seeds = (0, 1, 2) if b["selection"] == "random" else (0,)
                per = np.zeros((len(settings), 5, 4), dtype=np.int64)
                per_base = np.zeros((5, 4), dtype=np.int64)
                for seed in seeds:
                    lab = pick_labels(tab.t, tab.y, minutes=b["minutes"], beats=b["beats"], selection=b["selection"],
                                      seed=seed, first_s=score_from_s)
                    n_labels[b["name"]].append(int(lab.size))
                    per_base += beat_confusion(tab.y[scored], p[scored].argmax(1))
                    local: dict[tuple[str, int, float], np.ndarray] = {}
                    for s_i, (_, fields) in enumerate(methods):
                        ad = PatientAdapter(classes=CLASSES, scale=scale, columns=adapt_cols,
                                            settings=AdaptSettings(**fields))
                        ad.set_labels(tab.x[lab], tab.y[lab])
                        key = local_key(ad.settings)  # the local vote's own knobs
                        if key not in local:
                            local[key] = ad.local(tab.x[scored])
                        q = ad.premature_rule(ad.combine(p[scored], local[key]), tab.x[scored])
                        per[s_i] += beat_confusion(tab.y[scored], q.argmax(1))
                    for w_i, w in enumerate(refit_weights if refit else ()):
                        m2 = copy.deepcopy(model)
                        m2.set_params(warm_start=True, max_iter=int(m2.max_iter) + REFIT_TREES)
                        xs = np.concatenate([x_tr[common], tab.x[lab]])
                        ys = np.concatenate([y_tr[common], tab.y[lab]])
                        wt = np.concatenate([np.ones(common.size), np.full(lab.size, float(w))])
                        known = np.isin(ys, model.classes_)  # boosting goes on over the model's own classes
                        if set(np.unique(ys[known])) == set(model.classes_.tolist()):
                            m2.fit(xs[known][:, columns(v.features)], ys[known], sample_weight=wt[known])
                            q = predict_proba(v, m2, tab.x[scored])
                        else:  # a class of the model missing from these rows: no refit
                            q = p[scored]
                        per[len(methods) + w_i] += beat_confusion(tab.y[scored], q.argmax(1))
                conf[b["name"]][i] = per
                base[b["name"]][i] = per_base
            say(f"record {tab.record} done ({time.time() - t_start:.0f} s)")
    results: dict[str, Any] = {}
    for b in budgets:
        c = conf[b["name"]]
        total = np.zeros((5, 4), dtype=np.int64)
        chosen = []
        for i in range(len(tables)):
            pooled = sum(c[j] for j in range(len(tables)) if j != i)
            s = int(np.argmax([_mean_f1(pooled[k]) for k in range(len(settings))]))
            chosen.append(settings[s])
            total += c[i][s]
        most = settings.index(max(settings, key=chosen.count))  # the setting chosen most often (the first of ties)
        results[b["name"]] = {
            "budget": b, "scores": ectopy_scores(total), "population": ectopy_scores(sum(base[b["name"]])),
            "mean_labels": float(np.mean(n_labels[b["name"]])), "chosen_per_record": dict(zip(names, chosen)),
            "chosen_most_often": settings[most],
            "chosen_settings": dict(methods[most][1]) if most < len(methods) else None,
            "fixed_setting_scores": {s: ectopy_scores(sum(c[i][k] for i in range(len(tables)))) for k, s in enumerate(settings)}}
    return {"variant": variant, "folds": folds, "records": names, "settings": settings, "results": results,
            "seconds": round(time.time() - t_start, 1), "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def format_markdown(doc: dict[str, Any], command: str) -> str:
    """The results as a Markdown page (one row per budget, the population model on the same beats beside it)."""
    md = ["# Patient-specific beat classification: record-wise CV inside MIT-BIH DS1", "",
          f"Made with `{command}` ({doc['written']}).", "",
          f"Population model: `{doc['variant']}`, trained on the other folds' records ({doc['folds']} record-wise "
          f"folds, {len(doc['records'])} records); each held-out record adapted with its own labelled beats, the "
          "method chosen per record on the other records (nested); scored: the beats after the labelled span "
          "(after 5 minutes, or after N minutes when N > 5), gross statistics pooled over the records; "
          "the population row of each budget is the same model on the same beats without labels.", "",
          "| labels | labelled beats per record (mean) | SVEB Se | SVEB +P | SVEB F1 | VEB Se | VEB +P | VEB F1 "
          "| population SVEB F1 | population VEB F1 | method chosen most often |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in doc["results"].items():
        s, p = r["scores"], r["population"]
        md.append(f"| {name} | {r['mean_labels']:.0f} | {s['SVEB']['Se']:.3f} | {s['SVEB']['+P']:.3f} | "
                  f"{s['SVEB']['F1']:.3f} | {s['VEB']['Se']:.3f} | {s['VEB']['+P']:.3f} | {s['VEB']['F1']:.3f} | "
                  f"{p['SVEB']['F1']:.3f} | {p['VEB']['F1']:.3f} | {r['chosen_most_often']} |")
    md += ["", "Every adaptation setting with one fixed choice for all records (SVEB F1 / VEB F1):", "",
           "| setting | " + " | ".join(doc["results"]) + " |", "|---|" + "---|" * len(doc["results"])]
    for s in doc["settings"]:
        md.append(f"| {s} | " + " | ".join(f"{r['fixed_setting_scores'][s]['SVEB']['F1']:.3f} / "
                                           f"{r['fixed_setting_scores'][s]['VEB']['F1']:.3f}"
                                           for r in doc["results"].values()) + " |")
    return "\n".join(md) + "\n"


def eval_adapt_command(*, data: Path, minutes: Sequence[float], beats: Sequence[int], selection: str = "clinician",
                       variant: str | None = None, json_path: Path | None = None, md_path: Path | None = None,
                       command: str = "pedstream eval --adapt-minutes 5") -> dict[str, Any]:
    """``pedstream eval --adapt-minutes N [--adapt-beats n ...]``: run :func:`adapt_eval`, print the table,
    write JSON/Markdown when asked."""
    from pedstream.errors import PedstreamError

    try:
        doc = adapt_eval(data, minutes=minutes, beats=beats, selection=selection, variant=variant,
                         progress=lambda s: print(s, flush=True))
    except (ValueError, KeyError) as exc:
        raise PedstreamError(f"eval --adapt-*: {exc}") from exc
    doc["command"] = command
    md = format_markdown(doc, command)
    print(md)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    if md_path is not None:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(md, encoding="utf-8")
    return doc
