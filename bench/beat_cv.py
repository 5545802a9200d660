"""Record-wise cross-validation of the per-beat classifiers inside MIT-BIH DS1 (22 records).

Every variant of pedstream.train.beat_gbm (gradient boosting on pedstream.dsp.beat_features, LDA as
de Chazal 2004, an RR-only rule) is scored on the pooled beats of the test folds: SVEB and VEB Se, +P,
F1 (gross, one-vs-rest over every beat), with 95 % intervals from 1000 bootstrap resamples of records.
Two scopes: every beat, and the beats after the first 5 minutes of each record (the scope of the
few-shot protocol, bench/beat_adapt.py). The folds: 11, two records each (round-robin over DS1's order).
Each variant also gets a "+ class-prior shift (nested)" row: its S and V probabilities multiplied by
factors in SHIFT_GRID chosen, for each record, on the pooled CV predictions of the other 21 records.

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


NOISY_TEST = ("all", 12.0, "test")  # the robustness scope: real nstdb noise from the half training never sees


def augment_tables(v, data: str, positions: str) -> list:
    """The noisy training copies a variant asks for (``augment = "<kind>@<snr>"``, the training half of the noise)."""
    from pedstream.train.beat_data import build_tables

    if not v.augment:
        return []
    kind, snr = v.augment.split("@")
    return build_tables(data, positions=positions, noise=(kind, float(snr), "train"))


def run_variant(v, tables, folds: int, cache: Path, positions: str = "reference", train_tables=None, *,
                data: str | None = None, noisy_test=None) -> dict:
    from pedstream.dsp.beat_features import FEATURE_VERSION
    from pedstream.train.beat_gbm import cross_validate

    extra = ([positions] if positions != "reference" else []) + (["train-reference"] if train_tables is not None else [])
    extra += ["noisy-test"] if noisy_test else []
    key = hashlib.sha256(json.dumps([FEATURE_VERSION, *extra, asdict(v), folds, [t.record for t in tables], [int(t.y.size) for t in tables],
                                     int(tables[0].x.shape[1])], sort_keys=True).encode()).hexdigest()[:16]
    f = cache / f"{key}.npz"
    if f.is_file():
        z = np.load(f)
        return {k: z[k] for k in z.files} | {"cached": True}
    t0 = time.time()
    aug = augment_tables(v, data or str(ROOT.parent / "shared" / "data" / "mitdb"), "reference")
    r = cross_validate(v, tables, folds=folds, train_tables=train_tables, extra_train=aug, also_score=noisy_test or ())
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
    if "also_proba" in r:
        out["noisy_test"] = scores(r["also_y"], r["also_proba"].argmax(axis=1))
    return out


SHIFT_GRID = (0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0)


def _mean_f1(y: np.ndarray, pred: np.ndarray) -> float:
    from pedstream.train.beat_gbm import scores

    s = scores(y, pred)
    return 0.5 * (s["SVEB"]["F1"] + s["VEB"]["F1"])


def best_shift(proba: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The S and V probability multipliers of SHIFT_GRID with the best mean SVEB/VEB F1 on these beats."""
    best, arg = -1.0, (1.0, 1.0)
    for a_s in SHIFT_GRID:
        for a_v in SHIFT_GRID:
            f = _mean_f1(y, (proba * np.asarray([1.0, a_s, a_v, 1.0])).argmax(axis=1))
            if f > best:
                best, arg = f, (a_s, a_v)
    return arg


def nested_shift(r: dict) -> dict:
    """Class-prior shift chosen per record on the other records' CV predictions (nested), applied to it."""
    out = np.zeros_like(r["proba"])
    chosen = []
    for i in np.unique(r["record"]):
        m = r["record"] == i
        a_s, a_v = best_shift(r["proba"][~m], r["y"][~m])
        chosen.append((a_s, a_v))
        out[m] = r["proba"][m] * np.asarray([1.0, a_s, a_v, 1.0])
        if "also_proba" in r:
            r = {**r, "also_proba": np.where((r["also_record"] == i)[:, None],
                                             r["also_proba"] * np.asarray([1.0, a_s, a_v, 1.0]), r["also_proba"])}
    return {**r, "proba": out, "shift_chosen": np.asarray(chosen)}


def table(results: dict, scope: str) -> list[str]:
    rows = ["| variant | SVEB Se | SVEB +P | SVEB F1 [95 %] | VEB Se | VEB +P | VEB F1 [95 %] |", "|---|---|---|---|---|---|---|"]
    for name, s in results.items():
        if scope not in s:
            continue
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
    ap.add_argument("--positions", choices=("reference", "engine"), default="reference",
                    help="beat positions: the reference annotations, or the beats the live engine classifies "
                         "(its QRS detector; labelled by the reference beat within 150 ms; needs --model once)")
    ap.add_argument("--train-reference", action="store_true",
                    help="with --positions engine: train at the reference beats, score at the engine's")
    ap.add_argument("--model", default=str(ROOT / "models" / "mitdb-beats" / "model.onnx"),
                    help="a feature beat model to run the engine with (positions only)")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--no-noisy-test", dest="noisy_test", action="store_false",
                    help="skip the robustness scope (every test beat again with real nstdb noise at 12 dB)")
    ap.add_argument("--no-shift", dest="shift", action="store_false",
                    help="skip the class-prior shift rows (S and V multipliers chosen on the other records)")
    a = ap.parse_args(argv)
    unknown = [v for v in a.variants if v not in VARIANTS]
    if unknown:
        print(f"error: unknown variants {unknown}; known: {list(VARIANTS)}", file=sys.stderr)
        return 2
    cache = default_cache() / "beat_cv"
    cache.mkdir(parents=True, exist_ok=True)
    tables = build_tables(a.data, progress=True, positions=a.positions, model=a.model)
    noisy = (build_tables(a.data, progress=True, noise=NOISY_TEST) if a.positions == "reference" and a.noisy_test
             else None)
    train_tables = build_tables(a.data) if a.train_reference and a.positions == "engine" else None
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    old = json.loads((out / "cv.json").read_text()) if (out / "cv.json").is_file() else {}
    results = dict(old.get("variants", {}))
    for name in a.variants:
        r = run_variant(VARIANTS[name], tables, a.folds, cache, a.positions, train_tables, data=a.data,
                        noisy_test=noisy)
        results[name] = summarise(name, r) | {"spec": asdict(VARIANTS[name])}
        if a.shift and VARIANTS[name].model != "rule":
            rs = nested_shift(r)
            vals, counts_ = np.unique(rs["shift_chosen"], axis=0, return_counts=True)
            results[name + " + class-prior shift (nested)"] = summarise(name, rs) | {
                "spec": asdict(VARIANTS[name]), "shift_most_often": vals[int(np.argmax(counts_))].tolist(),
                "shift_all_records": list(best_shift(r["proba"], r["y"]))}
        s = results[name]["all"]
        print(f"{name}: SVEB F1 {s['SVEB']['F1']:.3f} VEB F1 {s['VEB']['F1']:.3f} "
              f"({'cached' if r['cached'] else '%.0f s' % float(r['seconds'])})", flush=True)
    results = {k2: results[k2] for k in VARIANTS for k2 in (k, k + " + class-prior shift (nested)") if k2 in results}
    score = lambda k: 0.5 * (results[k]["all"]["SVEB"]["F1"] + results[k]["all"]["VEB"]["F1"])
    exportable = [k for k in results if results[k]["spec"]["model"] == "hgb"]
    best = max(exportable, key=score) if exportable else None
    chosen = None if best is None else {
        "row": best, "variant": results[best]["spec"]["name"], "mean_F1": score(best),
        "shift": results[best].get("shift_all_records"),
        "rule": "the exported model family (HGB) row with the best mean of SVEB F1 and VEB F1 over every beat"}
    cmd = "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/beat_cv.py" + (
        f" --positions engine --out {Path(a.out).relative_to(ROOT) if Path(a.out).is_relative_to(ROOT) else a.out}"
        if a.positions == "engine" else "") + (" --train-reference" if train_tables is not None else "") + (" --variants " + " ".join(f"'{v}'" for v in a.variants)
                                                if a.variants != list(VARIANTS) else "")
    all_y = np.concatenate([t.y for t in tables])
    counts = np.bincount(all_y[all_y >= 0], minlength=5).tolist()
    doc = {"command": cmd, "positions": a.positions, "trained_at": "reference" if train_tables is not None else a.positions,
           "folds": a.folds, "records": [t.record for t in tables], "beats": dict(zip("NSVFQ", counts)),
           "variants": results, "chosen": chosen, "network_reference": NETWORK, "published_ds2": PUBLISHED,
           "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (out / "cv.json").write_text(json.dumps(doc, indent=1) + "\n")
    for k in results:  # each row keeps the command that computed it (rows of earlier runs are kept)
        if k.split(" + class-prior shift")[0] in a.variants or "command" not in results[k]:
            results[k]["command"] = cmd if k.split(" + class-prior shift")[0] in a.variants else old.get("command", cmd)
    (out / "cv.json").write_text(json.dumps(doc, indent=1) + "\n")
    older = sorted({results[k]["command"] for k in results} - {cmd})
    md = [f"# Beat classifiers: record-wise CV inside MIT-BIH DS1", "", f"Made with `{cmd}` ({doc['written']})"
          + ("; the rows of other variants come from earlier runs: " + "; ".join(f"`{c}`" for c in older)
             + " (each row's command is in cv.json)" if older else "") + ".", "",
          f"{len(tables)} records, {sum(counts)} reference beats (N {counts[0]}, S {counts[1]}, V {counts[2]}, "
          f"F {counts[3]}, Q {counts[4]}); {a.folds} record-wise folds; features from the "
          + ("reference beat positions " if a.positions == "reference" else
             f"beats the live engine classifies ({int(np.sum(all_y < 0))} detections with no reference beat within "
             "150 ms count as false calls when called S or V; reference beats the engine does not classify are not scored) ")
          + ("(models trained at the reference beat positions) " if train_tables is not None else "")
          + "(pedstream.dsp.beat_features, causal); gross SVEB/VEB statistics over the pooled test beats, "
          "one-vs-rest over every beat; F1 95 % intervals from 1000 bootstrap resamples of records.", "",
          "## Every beat", "", *table(results, "all"), "",
          "## Beats after the first 5 minutes of each record (the few-shot scope)", "", *table(results, "after_5_min"), "",
          *(["## Every beat again with real noise (robustness)", "",
             f"The same test beats with real nstdb noise added to lead II before the filters: baseline wander, muscle "
             f"artefact and electrode motion (118e00 minus 118) at equal power, {NOISY_TEST[1]:g} dB (nstdb's SNR), "
             "from the half of each noise record that training (the 'nstdb noise' rows) never uses. Rows from "
             "earlier runs without this scope are not listed.", "", *table(results, "noisy_test"), ""]
            if any("noisy_test" in r for r in results.values()) else []),
          f"Chosen for the shipped model: **{chosen['row']}** ({chosen['rule']}; its class-prior shift, when "
          f"the row has one, re-chosen on all 22 records: {chosen['shift']})." if chosen else "", "",
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
