"""Record-wise cross-validation of the per-beat classifiers inside MIT-BIH DS1 (22 records).

Every variant of pedstream.train.beat_gbm (gradient boosting on pedstream.dsp.beat_features, LDA as
de Chazal 2004, an RR-only rule) is scored on the pooled beats of the test folds: SVEB and VEB Se, +P,
F1 (gross, one-vs-rest over every beat), with 95 % intervals from 1000 bootstrap resamples of records.
Two scopes: every beat, and the beats after the first 5 minutes of each record (the scope of the
few-shot protocol, bench/beat_adapt.py). The folds: 11, two records each (round-robin over DS1's order).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/beat_cv.py [--variants NAME ...] [--data DIR]

Writes bench/results/beat_cv/cv.json and cv.md; CV predictions are cached under
~/.cache/pedstream/beat_cv (so a rerun only fits new variants).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "beat_cv"
# the window-level network figures of bench/results/mitdb_cv/summary.md (3-fold record-wise CV of DS1)
NETWORK = {"AGCACL (network, mitdb_cv)": {"SVEB": {"Se": 0.112, "+P": 0.164, "F1": 0.133},
                                          "VEB": {"Se": 0.618, "+P": 0.495, "F1": 0.550}},
           "focal (network, shipped recipe, mitdb_cv)": {"SVEB": {"Se": 0.399, "+P": 0.405, "F1": 0.402},
                                                         "VEB": {"Se": 0.560, "+P": 0.673, "F1": 0.611}}}
PUBLISHED = "de Chazal 2004 about 0.51 / 0.80; Guo 2019 0.61 / 0.90; Niu 2020 0.77 / 0.90 (SVEB F1 / VEB F1, DS1 -> DS2)"


def bootstrap(y: np.ndarray, pred: np.ndarray, rec: np.ndarray, *, n: int = 1000, seed: int = 0) -> dict:
    """95 % intervals of SVEB/VEB F1 from resampling records."""
    from pedstream.train.beat_gbm import scores

    rng = np.random.default_rng(seed)
    ids = np.unique(rec)
    by = {i: np.flatnonzero(rec == i) for i in ids}
    f1 = {"SVEB": [], "VEB": []}
    for _ in range(n):
        idx = np.concatenate([by[i] for i in rng.choice(ids, ids.size)])
        s = scores(y[idx], pred[idx])
        for k in f1:
            f1[k].append(s[k]["F1"])
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in f1.items()}


def run_variant(v, tables, folds: int, cache: Path) -> dict:
    from pedstream.dsp.beat_features import FEATURE_VERSION
    from pedstream.train.beat_gbm import cross_validate

    key = hashlib.sha256(json.dumps([FEATURE_VERSION, asdict(v), folds, [t.record for t in tables], [int(t.y.size) for t in tables],
                                     int(tables[0].x.shape[1])], sort_keys=True).encode()).hexdigest()[:16]
    f = cache / f"{key}.npz"
    if f.is_file():
        z = np.load(f)
        return {k: z[k] for k in z.files} | {"cached": True}
    t0 = time.time()
    r = cross_validate(v, tables, folds=folds)
    r["seconds"] = np.asarray(time.time() - t0)
    np.savez(f, **r)
    return r | {"cached": False}


def summarise(name: str, r: dict) -> dict:
    from pedstream.train.beat_gbm import scores

    pred = r["proba"].argmax(axis=1)
    later = r["t"] >= 300.0
    out = {"all": scores(r["y"], pred), "after_5_min": scores(r["y"][later], pred[later]),
           "seconds": float(r.get("seconds", 0.0))}
    out["all"]["F1_95"] = bootstrap(r["y"], pred, r["record"])
    return out


def table(results: dict, scope: str) -> list[str]:
    rows = ["| variant | SVEB Se | SVEB +P | SVEB F1 [95 %] | VEB Se | VEB +P | VEB F1 [95 %] |", "|---|---|---|---|---|---|---|"]
    for name, s in results.items():
        a = s[scope]
        ci = a.get("F1_95", {})
        cell = lambda k: f"{a[k]['F1']:.3f}" + (f" [{ci[k][0]:.2f}, {ci[k][1]:.2f}]" if k in ci else "")
        rows.append(f"| {name} | {a['SVEB']['Se']:.3f} | {a['SVEB']['+P']:.3f} | {cell('SVEB')} | "
                    f"{a['VEB']['Se']:.3f} | {a['VEB']['+P']:.3f} | {cell('VEB')} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    from pedstream.train.beat_data import build_tables, default_cache
    from pedstream.train.beat_gbm import VARIANTS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mitdb"))
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--folds", type=int, default=11)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    a = ap.parse_args(argv)
    unknown = [v for v in a.variants if v not in VARIANTS]
    if unknown:
        print(f"error: unknown variants {unknown}; known: {list(VARIANTS)}", file=sys.stderr)
        return 2
    cache = default_cache() / "beat_cv"
    cache.mkdir(parents=True, exist_ok=True)
    tables = build_tables(a.data, progress=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    old = json.loads((out / "cv.json").read_text()) if (out / "cv.json").is_file() else {}
    results = dict(old.get("variants", {}))
    for name in a.variants:
        r = run_variant(VARIANTS[name], tables, a.folds, cache)
        results[name] = summarise(name, r) | {"spec": asdict(VARIANTS[name])}
        s = results[name]["all"]
        print(f"{name}: SVEB F1 {s['SVEB']['F1']:.3f} VEB F1 {s['VEB']['F1']:.3f} "
              f"({'cached' if r['cached'] else '%.0f s' % float(r['seconds'])})", flush=True)
    results = {k: results[k] for k in VARIANTS if k in results}
    cmd = "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/beat_cv.py"
    counts = np.bincount(np.concatenate([t.y for t in tables]), minlength=5).tolist()
    doc = {"command": cmd, "folds": a.folds, "records": [t.record for t in tables], "beats": dict(zip("NSVFQ", counts)),
           "variants": results, "network_reference": NETWORK, "published_ds2": PUBLISHED,
           "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (out / "cv.json").write_text(json.dumps(doc, indent=1) + "\n")
    md = [f"# Beat classifiers: record-wise CV inside MIT-BIH DS1", "", f"Made with `{cmd}` ({doc['written']}).", "",
          f"{len(tables)} records, {sum(counts)} reference beats (N {counts[0]}, S {counts[1]}, V {counts[2]}, "
          f"F {counts[3]}, Q {counts[4]}); {a.folds} record-wise folds; features from the reference beat positions "
          "(pedstream.dsp.beat_features, causal); gross SVEB/VEB statistics over the pooled test beats, "
          "one-vs-rest over every beat; F1 95 % intervals from 1000 bootstrap resamples of records.", "",
          "## Every beat", "", *table(results, "all"), "",
          "## Beats after the first 5 minutes of each record (the few-shot scope)", "", *table(results, "after_5_min"), "",
          "## For comparison (not the same protocol)", "",
          "| model | SVEB Se | SVEB +P | SVEB F1 | VEB Se | VEB +P | VEB F1 |", "|---|---|---|---|---|---|---|"]
    for name, s in NETWORK.items():
        md.append(f"| {name} | {s['SVEB']['Se']:.3f} | {s['SVEB']['+P']:.3f} | {s['SVEB']['F1']:.3f} | "
                  f"{s['VEB']['Se']:.3f} | {s['VEB']['+P']:.3f} | {s['VEB']['F1']:.3f} |")
    md += ["", "The network figures are 1 s windows in a 3-fold record-wise CV of the same 22 records "
           "(bench/results/mitdb_cv/summary.md). Published inter-patient results are on DS2, which is not here: "
           + PUBLISHED + "."]
    (out / "cv.md").write_text("\n".join(md) + "\n")
    print(f"wrote {out / 'cv.json'} and cv.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
