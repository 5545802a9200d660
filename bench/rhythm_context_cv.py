"""Cross-validation of the rhythm-context layer: the learned model beside the RR-irregularity rule.

Data (../shared/data): CinC 2017 (8,528 single-lead recordings, one row per recording at its end),
MIT-BIH Arrhythmia (26 records) and vfdb (22 records), a row per 1.25 s hop, all through the serving
filters and the causal QRS detector (pedstream.train.rhythm_context_data). iaf1_afw is never read.

Protocols (every setting is chosen inside these folds; the RR rule has no setting):
- selection: context_s in {15, 30, 60} (balanced class weights), then class weights {balanced, sqrt}
  at the chosen context, by the record-wise CV macro F1 of the MIT-BIH + vfdb rows (the CinC recordings
  are 9-61 s, mostly 30 s: the context length barely changes them; the 2-core budget leaves one CinC CV,
  run at the chosen setting);
- CinC 2017: stratified 5-fold CV (train: the other CinC folds + all MIT-BIH/vfdb records), the
  challenge F1 (mean of N, AF, other F1) and per-class F1; the model's svt/vt/vf/asystole calls count as
  "other" there;
- MIT-BIH and vfdb: record-wise 5-fold CV over the 48 records (train: all CinC + the other folds'
  records), per-hop calls through the engine's alarm logic (pedstream.monitor.rhythm_alarms), episode
  scores (pedstream.score.episodes: episode and duration Se/+P, time to alarm, false alarms per hour);
- leave one database out: train without MIT-BIH (CinC + vfdb), test on MIT-BIH; without vfdb, test on vfdb;
- the RR rule alone on nsrdb-ann (AF false alarms per hour of sinus Holter) and sddb-ann (AF duration
  Se/+P), from the annotated beats (no signals there, so the learned model cannot be run on them).

    nice -n 10 .venv/bin/python bench/rhythm_context_cv.py [--quick]

Writes bench/results/rhythm_context/cv.json and cv.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import pedstream.train.rhythm_tables as _tables

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "rhythm_context"
SHARED = ROOT.parent / "shared" / "data"
HOP_S, SIGNAL_S, CONTEXTS = _tables.HOP_S, _tables.SIGNAL_S, _tables.CONTEXTS
merge, weights = _tables.merge, _tables.weights
N_FOLDS = 5
CHALLENGE = ("sinus", "af_afl", "other")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load(cfg, cache: Path) -> dict[str, dict[str, np.ndarray]]:
    return _tables.load(cfg, cache, SHARED, log=log)


def record_folds(tab: dict[str, np.ndarray], k: int) -> dict[str, int]:
    """Records -> fold, the records with the rarest rhythms spread first (round robin)."""
    from pedstream.train.rhythm_context_data import CLASSES

    recs = list(dict.fromkeys(tab["record"].tolist()))
    rare = ("vf", "asystole", "vt", "af_afl", "svt", "artefact")

    def key(r: str) -> tuple:
        y = tab["y"][tab["record"] == r]
        return tuple(-int(np.sum(y == CLASSES.index(c))) for c in rare) + (r,)

    return {r: i % k for i, r in enumerate(sorted(recs, key=key))}


def cinc_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    from sklearn.metrics import f1_score

    from pedstream.train.rhythm_context_data import CLASSES

    labels = [CLASSES.index(c) for c in ("sinus", "af_afl", "other", "artefact")]
    f1 = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    per = {c: round(float(v), 4) for c, v in zip(("N", "AF", "other", "noisy"), f1)}
    return {"challenge_f1": round(float(np.mean(f1[:3])), 4), "f1": per, "n": int(y_true.size)}


def to_cinc(probs: np.ndarray) -> np.ndarray:
    """Model calls on CinC: the argmax, with svt/vt/vf/asystole counted as 'other'."""
    from pedstream.train.rhythm_context_data import CLASSES

    y = probs.argmax(1)
    y[np.isin(y, [CLASSES.index(c) for c in ("svt", "vt", "vf", "asystole")])] = CLASSES.index("other")
    return y


def row_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    from pedstream.train.rhythm_context_data import CLASSES

    labels = sorted(set(y_true.tolist()))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {"macro_f1": round(float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)), 4),
            "per_class": {CLASSES[k]: {"precision": round(float(a), 3), "recall": round(float(b), 3),
                                       "f1": round(float(c), 3), "rows": int(d)} for k, a, b, c, d in zip(labels, p, r, f, s)}}


def feature_set(name: str) -> tuple[str, ...]:
    """``model``: the 56 model features (version 2); ``runs``: + the beat-run features (version 3)."""
    from pedstream.dsp.rhythm_features import ALL_FEATURES, MODEL_FEATURES

    if name not in ("model", "runs"):
        raise SystemExit(f"--features must be 'model' or 'runs', not {name!r}")
    return tuple(MODEL_FEATURES) if name == "model" else tuple(ALL_FEATURES)


def run_cv(data, cfg, ctx: float, wmode: str, params: dict | None = None, *, cinc_cv: bool = True,
           features: str = "model") -> dict:
    """Record-wise 5-fold CV (and with ``cinc_cv`` the CinC 5-fold CV) at one setting: out-of-fold probabilities."""
    from sklearn.model_selection import StratifiedKFold

    from pedstream.train.rhythm_context import fit, predict_proba, training_rows

    cinc = merge([data["cinc2017"]], ctx, feature_set(features))
    recs = merge([data["mitdb"], data["vfdb"]], ctx, feature_set(features))
    folds = record_folds(recs, N_FOLDS)
    rec_fold = np.asarray([folds[r] for r in recs["record"]])
    tr_rec_all = training_rows(recs)
    tr_cinc_all = training_rows(cinc, min_age_s=0, stride=1)
    p_cinc = np.zeros((cinc["y"].size, 8))
    splits = StratifiedKFold(N_FOLDS, shuffle=True, random_state=0).split(cinc["X"], cinc["y"]) if cinc_cv else []
    for k, (tr, te) in enumerate(splits):
        tr = np.intersect1d(tr, tr_cinc_all)
        X = np.concatenate([cinc["X"][tr], recs["X"][tr_rec_all]])
        y = np.concatenate([cinc["y"][tr], recs["y"][tr_rec_all]]).astype(np.int64)
        clf = fit(X, y, params=params, source_weight=weights(y, wmode))
        p_cinc[te] = predict_proba(clf, cinc["X"][te])
        log(f"ctx {ctx:g} {wmode}: CinC fold {k} done")
    p_rec = np.zeros((recs["y"].size, 8))
    for k in range(N_FOLDS):
        tr = tr_rec_all[rec_fold[tr_rec_all] != k]
        X = np.concatenate([cinc["X"][tr_cinc_all], recs["X"][tr]])
        y = np.concatenate([cinc["y"][tr_cinc_all], recs["y"][tr]]).astype(np.int64)
        clf = fit(X, y, params=params, source_weight=weights(y, wmode))
        te = np.flatnonzero(rec_fold == k)
        p_rec[te] = predict_proba(clf, recs["X"][te])
        log(f"ctx {ctx:g} {wmode}: record fold {k} done")
    lab = recs["y"] >= 0
    cm = cinc_metrics(cinc["y"], to_cinc(p_cinc)) if cinc_cv else None
    rm = row_metrics(recs["y"][lab], p_rec[lab].argmax(1))
    return {"ctx": ctx, "weights": wmode, "features": features, "cinc": cm, "records_rows": rm, "score": rm["macro_f1"],
            "_p_cinc": p_cinc, "_p_rec": p_rec, "_folds": folds}


def oof_path(cache: Path, ctx: float, wmode: str, features: str, cinc: bool) -> Path:
    """Where the out-of-fold probabilities of one setting are cached (the fits are deterministic: seed 0)."""
    from pedstream.train.rhythm_context import DEFAULT_PARAMS
    from pedstream.train.rhythm_context_data import FEATURE_VERSION

    tag = "-".join(f"{k}{v}" for k, v in sorted(DEFAULT_PARAMS.items()))
    return (cache / "rhythm_context" / "oof"
            / f"v{FEATURE_VERSION}-ctx{ctx:g}-{wmode}-{features}{'-cinc' if cinc else ''}-{tag}.npz")


def run_cv_cached(data, cfg, ctx: float, wmode: str, cache: Path, *, features: str = "model", cinc_cv: bool = True) -> dict:
    """:func:`run_cv`, its out-of-fold probabilities read from / written to :func:`oof_path` (the metrics are
    recomputed from them)."""
    path = oof_path(cache, ctx, wmode, features, cinc_cv)
    if not path.is_file():
        r = run_cv(data, cfg, ctx, wmode, cinc_cv=cinc_cv, features=features)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, rec=r["_p_rec"], **({"cinc": r["_p_cinc"]} if cinc_cv else {}))
        return r
    log(f"out-of-fold probabilities from {path}")
    with np.load(path) as z:
        p_rec, p_cinc = z["rec"], (z["cinc"] if cinc_cv else None)
    cinc = merge([data["cinc2017"]], ctx, feature_set(features))
    recs = merge([data["mitdb"], data["vfdb"]], ctx, feature_set(features))
    lab = recs["y"] >= 0
    rm = row_metrics(recs["y"][lab], p_rec[lab].argmax(1))
    return {"ctx": ctx, "weights": wmode, "features": features,
            "cinc": cinc_metrics(cinc["y"], to_cinc(p_cinc)) if cinc_cv else None, "records_rows": rm,
            "score": rm["macro_f1"], "_p_cinc": p_cinc, "_p_rec": p_rec, "_folds": record_folds(recs, N_FOLDS)}


def spans_of(cfg) -> dict[str, list]:
    from pedstream.data.loader import list_records
    from pedstream.data.rhythm_sources import read_lead, rhythm_spans

    out = {}
    for src in ("mitdb", "vfdb"):
        for p in list_records(SHARED / src):
            n = int(__import__("wfdb").rdheader(str(p)).sig_len)
            out[f"{src}:{Path(p).name}"] = rhythm_spans(p, cfg.rhythm_context.labels[src], n_samples=n)
    return out


def episodes(recs, probs, rows, spans, cfg) -> dict:
    from pedstream.dsp.rhythm_features import CONTEXT_FEATURES
    from pedstream.train.rhythm_context import score_records

    return score_records(recs, probs, rows, spans, cfg, hop_s=HOP_S, since_col=CONTEXT_FEATURES.index("since_last_s"),
                         flat_col=CONTEXT_FEATURES.index("flat_frac"))


def rule_only(cfg):
    """The configuration that scores the RR rule alone: its AF calls, the VT fast path of the alarm logic off, and
    the asystole rule that reads the model's probabilities off (the rule's one-hot calls are no model reading)."""
    return cfg.model_copy(update={"rhythm_context": cfg.rhythm_context.model_copy(
        update={"vt_run_beats": 0, "asystole_max_organized_p": 1.0})})


def rule_cinc(cinc) -> dict:
    from pedstream.train.rhythm_context_data import CLASSES

    y = np.where(cinc["rule_af"], CLASSES.index("af_afl"), CLASSES.index("sinus"))
    return cinc_metrics(cinc["y"], y)


def lodo(data, cfg, ctx, wmode, spans, features: str = "model") -> dict:
    from pedstream.train.rhythm_context import fit, predict_proba, rule_probs, training_rows

    out = {}
    fs = feature_set(features)
    for held, kept in (("mitdb", "vfdb"), ("vfdb", "mitdb")):
        tr_tabs = [merge([data["cinc2017"]], ctx, fs), merge([data[kept]], ctx, fs)]
        rows = [training_rows(tr_tabs[0], min_age_s=0, stride=1), training_rows(tr_tabs[1])]
        X = np.concatenate([t["X"][r] for t, r in zip(tr_tabs, rows)])
        y = np.concatenate([t["y"][r] for t, r in zip(tr_tabs, rows)]).astype(np.int64)
        clf = fit(X, y, source_weight=weights(y, wmode))
        te = merge([data[held]], ctx, fs)
        allr = np.arange(te["y"].size)
        p = predict_proba(clf, te["X"])
        lab = te["y"] >= 0
        out[held] = {"trained_on": ["cinc2017", kept], "rows": row_metrics(te["y"][lab], p[lab].argmax(1)),
                     "model": strip(episodes(te, p, allr, spans, cfg)),
                     "rr_rule": strip(episodes(te, rule_probs(te["rule_af"]), allr, spans, rule_only(cfg)))}
        log(f"LODO {held} done")
    return out


def strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "records"} | {"per_record_false_alarms": {
        r: v["false_alarms"] for r, v in d.get("records", {}).items() if v["false_alarms"]}}


def holter_rule(cfg) -> dict:
    """The RR rule on annotated Holter beats, one decision per 1.25 s (the RR part only)."""
    from pedstream.data.loader import list_records
    from pedstream.data.rhythm_sources import annotated_beats, rhythm_spans
    from pedstream.score.episodes import AlarmEpisode, Span, score_record, summarize
    from pedstream.train.rhythm_context import record_calls, rule_probs

    from pedstream.dsp.rr_rule import RRIrregularityRule

    rule = RRIrregularityRule()
    res = {}
    for src, ext in (("nsrdb-ann", "atr"), ("sddb-ann", "ari")):
        total = None
        for p in list_records(SHARED / src):
            try:
                b, _ = annotated_beats(p, ext)
            except Exception as exc:  # a record without beats: reported
                log(f"{src} {p}: {exc}")
                continue
            t = np.arange(b[0] + HOP_S, b[-1], HOP_S)
            ends = np.searchsorted(b, t, side="right")
            af = np.asarray([rule.is_af(b[max(0, e - 65):e]) for e in ends])
            since = t - b[np.maximum(ends - 1, 0)]
            eps = [e for e in record_calls(t, rule_probs(af), since, np.ones(t.size, bool), cfg, hop_s=HOP_S)
                   if e.label == "af_afl"]
            if src == "sddb-ann":
                try:
                    ref = [Span(s0, s1, lab if lab == "af_afl" else ("_" + lab if lab else None))
                           for s0, s1, lab in rhythm_spans(p, cfg.rhythm_context.labels["sddb"], extension="ari")]
                except Exception:  # no rhythm marks: every beat is sinus for the rule's false alarms
                    ref = [Span(float(t[0]), float(t[-1]), "_sinus")]
            else:
                ref = [Span(float(t[0]), float(t[-1]), "_sinus")]
            sc = score_record(ref, eps, ["af_afl"], start_s=float(t[0]), end_s=float(t[-1]))
            total = sc if total is None else total + sc
        res[src] = summarize(total)
        log(f"RR rule on {src} done")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=None, help="feature cache (default ~/.cache/pedstream)")
    ap.add_argument("--quick", action="store_true", help="context 30 s, balanced weights only (no selection)")
    ap.add_argument("--max-iter", type=int, default=None, help="boosting iterations (smoke runs only)")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--render", action="store_true", help="only rewrite cv.md from cv.json")
    ap.add_argument("--context", type=float, default=None, help="fixed context seconds (no selection; with --weights)")
    ap.add_argument("--weights", default=None, help="fixed class weights (no selection; with --context)")
    ap.add_argument("--features", default="model", help="model: the 56 version-2 features; runs: + the beat-run features")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="configuration override for the alarm logic, e.g. rhythm_context.vt_run_beats=3")
    a = ap.parse_args(argv)
    if a.render:
        res = json.loads((Path(a.out) / "cv.json").read_text(encoding="utf-8"))
        (Path(a.out) / "cv.md").write_text(render(res), encoding="utf-8")
        return 0
    out_dir = Path(a.out)
    if a.max_iter is not None:
        from pedstream.train.rhythm_context import DEFAULT_PARAMS

        DEFAULT_PARAMS["max_iter"] = a.max_iter
    from pedstream.config import load_config
    from pedstream.data.cinc2017 import default_cache
    from pedstream.train.rhythm_context import rule_probs

    cfg = load_config(overrides=a.set) if a.set else load_config()
    cache = Path(a.cache) if a.cache else default_cache()
    data = load(cfg, cache)
    if a.context is not None and a.weights:  # chosen beforehand (variants.md), no selection
        best = run_cv_cached(data, cfg, a.context, a.weights, cache, features=a.features)
        runs = [best]
    else:
        runs = [run_cv(data, cfg, c, "balanced", cinc_cv=False) for c in ((30.0,) if a.quick else CONTEXTS)]
        best = max(runs, key=lambda r: r["score"])
        if not a.quick:  # then the class weights at the chosen context
            runs.append(run_cv(data, cfg, best["ctx"], "sqrt", cinc_cv=False))
            best = max(runs, key=lambda r: r["score"])
        best = run_cv(data, cfg, best["ctx"], best["weights"])  # the chosen setting, with the CinC CV too
    ctx, wmode = best["ctx"], best["weights"]
    log(f"chosen: context {ctx:g} s, weights {wmode}")
    spans = spans_of(cfg)
    recs = merge([data["mitdb"], data["vfdb"]], ctx, feature_set(a.features))
    cinc = merge([data["cinc2017"]], ctx, feature_set(a.features))

    fixed = f" --context {a.context:g} --weights {a.weights}" if a.context is not None and a.weights else ""
    fixed += (f" --features {a.features}" if a.features != "model" else "") + "".join(f" --set {s}" for s in a.set)
    res: dict = {"command": "nice -n 10 .venv/bin/python bench/rhythm_context_cv.py" + (" --quick" if a.quick else "") + fixed,
                 "features": list(feature_set(a.features)),
                 "alarm_settings": {k: getattr(cfg.rhythm_context, k) for k in (
                     "vt_run_beats", "vt_run_corr", "vt_run_min_rate_bpm", "vt_run_max_artefact_p", "one_ventricular",
                     "refractory_s", "asystole_max_amp_mv", "af_rr_confirm", "vt_confirm_run", "vt_confirm_max_p",
                     "asystole_max_organized_p")},
                 "hop_s": HOP_S, "signal_s": SIGNAL_S, "folds": N_FOLDS,
                 "selection": [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs],
                 "chosen": {"context_s": ctx, "weights": wmode, "features": list(feature_set(a.features))},
                 "record_folds": best["_folds"],
                 "cinc2017": {"model": best["cinc"], "rr_rule": rule_cinc(cinc)}}
    for src in ("mitdb", "vfdb"):
        rows = np.flatnonzero(np.char.startswith(recs["record"].astype(str), src + ":"))
        res[src] = {"model": strip(episodes(recs, best["_p_rec"][rows], rows, spans, cfg)),
                    "rr_rule": strip(episodes(recs, rule_probs(recs["rule_af"][rows]), rows, spans, rule_only(cfg))),
                    "rows": row_metrics(recs["y"][rows][recs["y"][rows] >= 0],
                                        best["_p_rec"][rows][recs["y"][rows] >= 0].argmax(1))}
    res["leave_one_database_out"] = lodo(data, cfg, ctx, wmode, spans, a.features)
    res["holter_rr_rule"] = holter_rule(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cv.json").write_text(json.dumps(res, indent=1, default=float), encoding="utf-8")
    (out_dir / "cv.md").write_text(render(res), encoding="utf-8")
    print(render(res))
    return 0


def wilson(k: int, n: int, z: float = 1.96) -> str:
    """95 % Wilson interval of k / n as text ("" when n = 0)."""
    if n <= 0:
        return ""
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / d
    return f" [{max(0.0, c - h):.2f}-{min(1.0, c + h):.2f}]"


def _ep(d: dict, c: str) -> str:
    s = d["classes"].get(c)
    if not s:
        return "– | – | – | – | –"
    f = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    true = s["alarms"] - s["false_alarms"]
    return (f"{s['detected']}/{s['episodes']} ({f(s['episode_se'])}{wilson(s['detected'], s['episodes'])}) | "
            f"{true}/{s['alarms']} ({f(s['episode_ppv'])}{wilson(true, s['alarms'])}) | {f(s['duration_se'])} | "
            f"{f(s['duration_ppv'])} | {f(s['time_to_alarm_s_median'])} / {f(s['time_to_alarm_s_p95'])}")


def render(r: dict) -> str:
    L = ["# Rhythm-context layer: cross-validation (model vs RR-irregularity rule)", "",
         f"Command: `{r['command']}` (hop {r['hop_s']} s, signal {r['signal_s']} s, {r['folds']} folds).", "",
         "## Selection (inside the record-wise CV folds)", "", "| context s | class weights | MIT-BIH+vfdb row macro F1 |",
         "|---|---|---|"]
    L += [f"| {s['ctx']:g} | {s['weights']} | {s['records_rows']['macro_f1']:.3f} |" for s in r["selection"]]
    L += ["", f"Chosen: context {r['chosen']['context_s']:g} s, weights {r['chosen']['weights']}"
          + (" (fixed beforehand: the model form and feature set by `variants.md`)." if "--context" in r["command"] else ".")
          + f" Features: {len(r.get('features', [])) or 31}."
          + (f" Alarm logic: VT fast path {r['alarm_settings']['vt_run_beats']} beats, correlation < "
             f"{r['alarm_settings']['vt_run_corr']:g} (0 = off)" + "".join(
                 f", {k} = {v}" for k, v in r["alarm_settings"].items() if k not in ("vt_run_beats", "vt_run_corr"))
             + " (`[rhythm_context]`, `false_alarms.md`)." if r.get("alarm_settings") else ""), "",
          "## CinC 2017, stratified 5-fold CV (one call per recording)", "",
          "| method | challenge F1 | F1 N | F1 AF | F1 other | F1 noisy |", "|---|---|---|---|---|---|"]
    for m in ("model", "rr_rule"):
        c = r["cinc2017"][m]
        L.append(f"| {m} | {c['challenge_f1']:.3f} | {c['f1']['N']:.3f} | {c['f1']['AF']:.3f} | {c['f1']['other']:.3f} | {c['f1']['noisy']:.3f} |")
    L += ["", "The RR rule only says AF or not (its 'not' counts as N), so its other/noisy F1 are 0 by construction.", ""]
    head = ["| method | class | episodes detected (Se [95 % CI]) | true alarms (+P [95 % CI]) | duration Se | duration +P | time to alarm median / p95 s |",
            "|---|---|---|---|---|---|---|"]
    for title, blk in (("MIT-BIH, record-wise 5-fold CV", {"model": r["mitdb"]["model"], "rr_rule": r["mitdb"]["rr_rule"]}),
                       ("vfdb, record-wise 5-fold CV", {"model": r["vfdb"]["model"], "rr_rule": r["vfdb"]["rr_rule"]}),
                       ("Leave MIT-BIH out (trained on CinC + vfdb)", r["leave_one_database_out"]["mitdb"]),
                       ("Leave vfdb out (trained on CinC + MIT-BIH)", r["leave_one_database_out"]["vfdb"])):
        L += [f"## {title}", ""] + head
        for m in ("model", "rr_rule"):
            d = blk[m]
            for c in ("af_afl", "svt", "vt", "vf", "asystole"):
                if m == "rr_rule" and c != "af_afl":
                    continue
                L.append(f"| {m} | {c} | {_ep(d, c)} |")
        L += ["", " ; ".join(f"{m}: {blk[m]['false_alarms']} false alarms, {blk[m]['false_alarms_per_hour']} per monitored hour "
                            f"({blk[m]['monitored_h']} h)" for m in ("model", "rr_rule")), ""]
    L += ["## RR rule on annotated Holter beats (no signals: the model cannot run there)", "",
          "| set | AF episodes detected | duration Se | duration +P | AF false alarms | per hour | hours |", "|---|---|---|---|---|---|---|"]
    for src, d in r["holter_rr_rule"].items():
        s = d["classes"]["af_afl"]
        f = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
        L.append(f"| {src} | {s['detected']}/{s['episodes']} | {f(s['duration_se'])} | {f(s['duration_ppv'])} | "
                 f"{s['false_alarms']} | {d['false_alarms_per_hour']} | {d['monitored_h']:.1f} |")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
