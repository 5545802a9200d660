"""The learned model combined with the RR-irregularity rule for AF, by nested record-wise CV.

Variants of the AF probability fed to the alarm logic (out-of-fold probabilities of the record-wise CV,
cached by bench/rhythm_context_alarms.py; the other classes unchanged):
``model`` p(af); ``and`` p(af) only where the rule says AF (else 0); ``or`` 1 where the rule says AF,
else p(af). For each fold the variant with the best AF episode F1 on the other folds' records is scored
on the fold's records (nested); MIT-BIH + vfdb, 48 records.

    nice -n 10 .venv/bin/python bench/rhythm_context_ensemble.py

Writes bench/results/rhythm_context/ensemble.{json,md}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "results" / "rhythm_context"


def main() -> int:
    import rhythm_context_cv as cv
    from rhythm_context_alarms import objective  # noqa: F401

    from pedstream.config import load_config
    from pedstream.data.cinc2017 import default_cache
    from pedstream.train.rhythm_context_data import CLASSES

    cfg = load_config()
    chosen = json.loads((OUT / "cv.json").read_text())["chosen"]
    ctx, wmode = float(chosen["context_s"]), chosen["weights"]
    p = np.load(default_cache() / "rhythm_context" / f"oof-{ctx:g}-{wmode}.npz")["p"]
    data = cv.load(cfg, default_cache())
    recs = cv.merge([data["mitdb"], data["vfdb"]], ctx)
    folds = cv.record_folds(recs, cv.N_FOLDS)
    spans = cv.spans_of(cfg)
    names = np.asarray(recs["record"]).astype(str)
    af = CLASSES.index("af_afl")
    rule = recs["rule_af"].astype(float)
    variants = {"model": p[:, af], "and": p[:, af] * rule, "or": np.maximum(p[:, af], rule)}
    per: dict[str, list] = {}
    for v, col in variants.items():
        q = p.copy()
        q[:, af] = col
        per[v] = []
        for k in range(cv.N_FOLDS):
            rows = np.flatnonzero(np.asarray([folds[r] == k for r in names]))
            per[v].append(cv.episodes(recs, q[rows], rows, spans, cfg)["classes"]["af_afl"]
                          | {"_fa": cv.episodes(recs, q[rows], rows, spans, cfg)["false_alarms"]})
        cv.log(f"variant {v} scored")

    def total(blocks: list[dict]) -> dict:
        t = {f: sum(b[f] for b in blocks) for f in ("episodes", "detected", "alarms", "false_alarms", "_fa")}
        t["se"] = t["detected"] / t["episodes"] if t["episodes"] else 0.0
        t["ppv"] = (t["alarms"] - t["false_alarms"]) / t["alarms"] if t["alarms"] else 0.0
        t["f1"] = 0.0 if t["se"] + t["ppv"] == 0 else 2 * t["se"] * t["ppv"] / (t["se"] + t["ppv"])
        return t

    nested, picks = [], []
    for k in range(cv.N_FOLDS):
        best = max(variants, key=lambda v: total([per[v][j] for j in range(cv.N_FOLDS) if j != k])["f1"])
        picks.append(best)
        nested.append(per[best][k])
    res = {"command": "nice -n 10 .venv/bin/python bench/rhythm_context_ensemble.py", "model": chosen,
           "variants": {v: total(b) for v, b in per.items()}, "nested": total(nested), "nested_picks": picks}
    (OUT / "ensemble.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    L = ["# AF: model, model AND RR rule, model OR RR rule (nested record-wise CV, MIT-BIH + vfdb)", "",
         f"Command: `{res['command']}`.", "", "| variant | AF episodes detected (Se) | AF alarms true (+P) | AF F1 | false alarms, all classes |",
         "|---|---|---|---|---|"]
    for v, t in list(res["variants"].items()) + [("nested choice", res["nested"])]:
        L.append(f"| {v} | {t['detected']}/{t['episodes']} ({t['se']:.2f}) | {t['alarms'] - t['false_alarms']}/{t['alarms']} "
                 f"({t['ppv']:.2f}) | {t['f1']:.2f} | {t['_fa']} |")
    L += ["", "Picks per fold: " + ", ".join(picks), ""]
    (OUT / "ensemble.md").write_text("\n".join(L), encoding="utf-8")
    print("\n".join(L))
    return 0


if __name__ == "__main__":
    sys.exit(main())
