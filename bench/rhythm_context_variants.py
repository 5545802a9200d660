"""Rhythm-context model variants side by side, by the same cross-validation, with the RR rule beside them.

Every variant gets out-of-fold probabilities from the same folds as bench/rhythm_context_cv.py:
CinC 2017 stratified 5-fold (train: the other CinC folds + all MIT-BIH/vfdb records) and record-wise
5-fold over the 48 MIT-BIH + vfdb records (train: all CinC + the other folds' records). Scores: CinC
challenge F1; MIT-BIH and vfdb per-class episode Se / +P through the engine's alarm logic, AF time to
alarm, false alarms per monitored hour; pooled counts with Wilson 95 % intervals.

Variants (``--variants`` picks some; out-of-fold probabilities are cached so a table is re-rendered
without refitting):
- ``gbm_v1``: the shipped form until now (gradient-boosted trees, the 31 version-1 features, 30 s, sqrt weights);
- ``gbm_v2``: the same trees on the 56 version-2 features (multi-scale RR + beat morphology), 30 s;
- ``gbm_v1_bal`` / ``gbm_v2_bal``: balanced class weights (every class the same total weight);
- ``gbm_v1rr`` / ``gbm_v1morph``: the version-1 features + only the new RR part / only the morphology part;
- ``gbm_v2_60``: ``gbm_v2`` with a 60 s RR context;
- ``gbm_v2_big``: ``gbm_v2`` with 300 iterations, learning rate 0.05, 31 leaves;
- ``cnn_<loss>`` / ``gru_<loss>``: a causal 1-D CNN (or a GRU) over the last 64 RR intervals + MLP over the
  v2 features (:mod:`pedstream.train.rhythm_seq`), losses ``ce``, ``weighted_ce``, ``focal``, ``agcacl``;
- ``a+b``: the mean of two variants' probability vectors (e.g. ``gbm_v1+gbm_v2``, ``gbm_v2+cnn_ce``);
- ``<variant>&rule``: its AF probability kept only where the RR rule says AF (else moved to sinus).

    nice -n 10 .venv/bin/python bench/rhythm_context_variants.py [--variants gbm_v1,gbm_v2,...] [--epochs 8]
        [--stride 8] [--records-only] [--table variants]

Writes bench/results/rhythm_context/variants.{json,md}.
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
ALL_VARIANTS = ("gbm_v1", "gbm_v2", "gbm_v2_60", "gbm_v2_big", "cnn_ce", "cnn_weighted_ce", "cnn_focal", "cnn_agcacl")
BIG = {"max_iter": 300, "learning_rate": 0.05, "max_leaf_nodes": 31}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def spec(name: str) -> dict:
    from pedstream.dsp.rhythm_features import ALL_FEATURES, EXTRA_RR_FEATURES, MORPH_FEATURES, V1_FEATURES

    if name == "gbm_v1":
        return {"kind": "gbm", "features": V1_FEATURES, "ctx": 30.0, "params": None}
    if name == "gbm_v2":
        return {"kind": "gbm", "features": ALL_FEATURES, "ctx": 30.0, "params": None}
    if name == "gbm_v1_bal":
        return {"kind": "gbm", "features": V1_FEATURES, "ctx": 30.0, "params": None, "weights": "balanced"}
    if name == "gbm_v2_bal":
        return {"kind": "gbm", "features": ALL_FEATURES, "ctx": 30.0, "params": None, "weights": "balanced"}
    if name == "gbm_v1rr":
        return {"kind": "gbm", "features": V1_FEATURES + EXTRA_RR_FEATURES, "ctx": 30.0, "params": None}
    if name == "gbm_v1morph":
        return {"kind": "gbm", "features": V1_FEATURES + MORPH_FEATURES, "ctx": 30.0, "params": None}
    if name == "gbm_v2_60":
        return {"kind": "gbm", "features": ALL_FEATURES, "ctx": 60.0, "params": None}
    if name == "gbm_v2_big":
        return {"kind": "gbm", "features": ALL_FEATURES, "ctx": 30.0, "params": BIG}
    if name.startswith(("gru_", "cnn_")):
        return {"kind": name[:3], "features": ALL_FEATURES, "ctx": 30.0, "loss": name[4:]}
    raise SystemExit(f"unknown variant {name!r}")


def oof(name: str, data, cfg, cache: Path, epochs: int, stride: int = 8, records_only: bool = False) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities ``{"cinc": (n_cinc, 8), "rec": (n_rec, 8)}`` of one variant (cached);
    ``records_only``: no CinC folds (its probabilities NaN)."""
    import rhythm_context_cv as cv
    from sklearn.model_selection import StratifiedKFold

    from pedstream.train.rhythm_context import fit, predict_proba, training_rows
    from pedstream.train.rhythm_seq import fit_seq, predict_seq
    from pedstream.train.rhythm_tables import merge, weights

    s = spec(name)
    tag = name + (f"-e{epochs}" if s["kind"] != "gbm" else "") + f"-s{stride}" + ("-rec" if records_only else "")
    path = cache / f"{tag}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {"cinc": z["cinc"], "rec": z["rec"]}
    cinc = merge([data["cinc2017"]], s["ctx"], s["features"])
    recs = merge([data["mitdb"], data["vfdb"]], s["ctx"], s["features"])
    folds = cv.record_folds(recs, cv.N_FOLDS)
    rec_fold = np.asarray([folds[r] for r in recs["record"]])
    tr_rec_all = training_rows(recs, stride=stride)
    tr_cinc_all = training_rows(cinc, min_age_s=0, stride=1)

    def train_predict(parts_tr, parts_te):
        X = np.concatenate([t["X"][i] for t, i in parts_tr])
        y = np.concatenate([t["y"][i] for t, i in parts_tr]).astype(np.int64)
        if s["kind"] == "gbm":
            clf = fit(X, y, params=s["params"], source_weight=weights(y, s.get("weights", "sqrt")))
            return [predict_proba(clf, t["X"][i]) for t, i in parts_te]
        seq = np.concatenate([t["rr_seq"][i] for t, i in parts_tr])
        m = fit_seq(seq, X, y, cfg, loss=s["loss"], epochs=epochs, kind=s["kind"])
        return [predict_seq(m, t["rr_seq"][i], t["X"][i]) for t, i in parts_te]

    p_cinc = np.full((cinc["y"].size, 8), np.nan if records_only else 0.0)
    splits = [] if records_only else StratifiedKFold(cv.N_FOLDS, shuffle=True, random_state=0).split(cinc["X"], cinc["y"])
    for k, (tr, te) in enumerate(splits):
        tr = np.intersect1d(tr, tr_cinc_all)
        p_cinc[te] = train_predict([(cinc, tr), (recs, tr_rec_all)], [(cinc, te)])[0]
        log(f"{name}: CinC fold {k} done")
    p_rec = np.zeros((recs["y"].size, 8))
    for k in range(cv.N_FOLDS):
        tr = tr_rec_all[rec_fold[tr_rec_all] != k]
        te = np.flatnonzero(rec_fold == k)
        p_rec[te] = train_predict([(cinc, tr_cinc_all), (recs, tr)], [(recs, te)])[0]
        log(f"{name}: record fold {k} done")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, cinc=p_cinc, rec=p_rec)
    return {"cinc": p_cinc, "rec": p_rec}


def and_rule(p: np.ndarray, rule_af: np.ndarray) -> np.ndarray:
    from pedstream.train.rhythm_context_data import CLASSES

    q = p.copy()
    af, sr = CLASSES.index("af_afl"), CLASSES.index("sinus")
    m = ~rule_af
    q[m, sr] += q[m, af]
    q[m, af] = 0.0
    return q


def scores(p: dict[str, np.ndarray], data, cfg, spans) -> dict:
    import rhythm_context_cv as cv

    from pedstream.train.rhythm_tables import merge

    cinc = merge([data["cinc2017"]], 30.0)
    recs = merge([data["mitdb"], data["vfdb"]], 30.0)
    out = {"cinc2017": None if np.isnan(p["cinc"]).any() else cv.cinc_metrics(cinc["y"], cv.to_cinc(p["cinc"]))}
    for src in ("mitdb", "vfdb"):
        rows = np.flatnonzero(np.char.startswith(recs["record"].astype(str), src + ":"))
        out[src] = cv.strip(cv.episodes(recs, p["rec"][rows], rows, spans, cfg))
    return out


def rule_scores(data, cfg, spans) -> dict:
    import rhythm_context_cv as cv

    from pedstream.train.rhythm_context import rule_probs
    from pedstream.train.rhythm_tables import merge

    cinc = merge([data["cinc2017"]], 30.0)
    recs = merge([data["mitdb"], data["vfdb"]], 30.0)
    out = {"cinc2017": cv.rule_cinc(cinc)}
    for src in ("mitdb", "vfdb"):
        rows = np.flatnonzero(np.char.startswith(recs["record"].astype(str), src + ":"))
        out[src] = cv.strip(cv.episodes(recs, rule_probs(recs["rule_af"][rows]), rows, spans, cfg))
    return out


def _cls(d: dict, c: str) -> dict:
    return d["classes"].get(c) or {"detected": 0, "episodes": 0, "alarms": 0, "false_alarms": 0,
                                   "time_to_alarm_s_median": None}


def selection_score(r: dict) -> float:
    """The pre-declared CV criterion: mean of CinC challenge F1 and the pooled (MIT-BIH + vfdb) episode F1
    of AF, VT and VF (F1 of episode Se and alarm +P)."""
    vals = [] if r["cinc2017"] is None else [r["cinc2017"]["challenge_f1"]]
    for c in ("af_afl", "vt", "vf"):
        a, b = _cls(r["mitdb"], c), _cls(r["vfdb"], c)
        det, eps = a["detected"] + b["detected"], a["episodes"] + b["episodes"]
        al, fa = a["alarms"] + b["alarms"], a["false_alarms"] + b["false_alarms"]
        se = det / eps if eps else 0.0
        ppv = (al - fa) / al if al else 0.0
        vals.append(2 * se * ppv / (se + ppv) if se + ppv > 0 else 0.0)
    return round(float(np.mean(vals)), 4)


def render(res: dict) -> str:
    from rhythm_context_cv import wilson

    def ep(d: dict, c: str) -> str:
        s = _cls(d, c)
        true = s["alarms"] - s["false_alarms"]
        return (f"{s['detected']}/{s['episodes']}{wilson(s['detected'], s['episodes'])} | "
                f"{true}/{s['alarms']}{wilson(true, s['alarms'])}")

    L = ["# Rhythm-context model variants (cross-validation, records and recordings never seen in training)", "",
         f"Command: `{res['command']}`", "",
         "Same folds as `bench/rhythm_context_cv.py`: CinC 2017 stratified 5-fold, MIT-BIH + vfdb record-wise 5-fold "
         "(48 records). Episodes through the engine's alarm logic (`[rhythm_context]` settings). Counts pooled over "
         "the folds, 95 % Wilson intervals. `score` = mean of CinC challenge F1 and the pooled MIT-BIH + vfdb "
         "episode F1 of AF, VT, VF (the selection criterion, fixed before the runs). The RR rule only calls AF.", "",
         "| variant | score | CinC F1 (N / AF / other / noisy) | MIT-BIH AF episodes found | MIT-BIH AF true alarms | "
         "MIT-BIH AF time to alarm median s | MIT-BIH false alarms / h | vfdb VT found | vfdb VT true alarms | "
         "vfdb VF found | vfdb VF true alarms | vfdb false alarms / h |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in res["variants"].items():
        c = r["cinc2017"]
        cc = "– (not run)" if c is None else (f"{c['challenge_f1']:.3f} ({c['f1']['N']:.2f} / {c['f1']['AF']:.2f} / "
                                             f"{c['f1']['other']:.2f} / {c['f1']['noisy']:.2f})")
        tta = _cls(r["mitdb"], "af_afl")["time_to_alarm_s_median"]
        L.append(f"| {name} | {r.get('score', '–')} | {cc} | {ep(r['mitdb'], 'af_afl')} | "
                 f"{'–' if tta is None else f'{tta:.1f}'} | {r['mitdb']['false_alarms_per_hour']} | {ep(r['vfdb'], 'vt')} | "
                 f"{ep(r['vfdb'], 'vf')} | {r['vfdb']['false_alarms_per_hour']} |")
    L += ["", "The RR rule's false alarms per hour count its AF alarms only; the models' count every alarm class "
          "(AF, SVT, VT, VF, asystole).", ""]
    if res.get("notes"):
        L += [res["notes"], ""]
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    import rhythm_context_cv as cv

    from pedstream.config import load_config
    from pedstream.data.cinc2017 import default_cache
    from pedstream.train.rhythm_tables import load, merge

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default=",".join(ALL_VARIANTS + ("gbm_v2&rule",)))
    ap.add_argument("--epochs", type=int, default=8, help="GRU / CNN epochs")
    ap.add_argument("--stride", type=int, default=8, help="every stride-th hop of a record's rhythm is a training row")
    ap.add_argument("--records-only", action="store_true", help="selection subset: no CinC folds (score without CinC)")
    ap.add_argument("--table", default="variants", help="output name: <out>/<table>.{json,md}")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    cfg = load_config()
    cache = default_cache()
    data = load(cfg, cache, log=log)
    spans = cv.spans_of(cfg)
    oof_dir = cache / "rhythm_context" / "oof-variants"
    out_json = Path(a.out) / f"{a.table}.json"
    res = json.loads(out_json.read_text()) if out_json.is_file() else {"variants": {}}
    res["command"] = "nice -n 10 .venv/bin/python bench/rhythm_context_variants.py" + (
        "" if a.variants == ap.get_default("variants") else f" --variants '{a.variants}'") + (
        f" --epochs {a.epochs}" if a.epochs != 8 else "") + (f" --stride {a.stride}" if a.stride != 8 else "") + (
        " --records-only" if a.records_only else "") + (f" --table {a.table}" if a.table != "variants" else "")
    res["notes"] = (f"Training rows: every CinC recording, every {a.stride}th hop of each MIT-BIH/vfdb rhythm (at least 2 s into "
                    f"it); sequence models {a.epochs} epochs." + (" Selection subset: record-wise folds only, no CinC "
                                                                  "folds (score without the CinC term)." if a.records_only else ""))
    res["variants"].setdefault("rr_rule", rule_scores(data, cfg, spans))
    if a.records_only:
        res["variants"]["rr_rule"]["cinc2017"] = None
    recs = merge([data["mitdb"], data["vfdb"]], 30.0)
    cinc = merge([data["cinc2017"]], 30.0)
    for name in a.variants.split(","):
        if "+" in name:
            x, y = name.split("+")
            px, py = (oof(v, data, cfg, oof_dir, a.epochs, a.stride, a.records_only) for v in (x, y))
            p = {k: (px[k] + py[k]) / 2 for k in px}
        elif name.endswith("&rule"):
            px = oof(name[: -len("&rule")], data, cfg, oof_dir, a.epochs, a.stride, a.records_only)
            p = {"cinc": and_rule(px["cinc"], cinc["rule_af"]), "rec": and_rule(px["rec"], recs["rule_af"])}
        else:
            p = oof(name, data, cfg, oof_dir, a.epochs, a.stride, a.records_only)
        r = scores(p, data, cfg, spans)
        r["score"] = selection_score(r)
        res["variants"][name] = r
        log(f"{name}: score {r['score']}, CinC F1 {(r['cinc2017'] or {}).get('challenge_f1')}")
        Path(a.out).mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(res, indent=1, default=float), encoding="utf-8")
        (Path(a.out) / f"{a.table}.md").write_text(render(res), encoding="utf-8")
    res["variants"]["rr_rule"]["score"] = selection_score(res["variants"]["rr_rule"] | (
        {"cinc2017": None} if a.records_only else {}))
    out_json.write_text(json.dumps(res, indent=1, default=float), encoding="utf-8")
    (Path(a.out) / f"{a.table}.md").write_text(render(res), encoding="utf-8")
    print(render(res))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
