"""AGCACL against the baselines on real ECG: record-wise cross-validation of the AAMI beat classifier
inside the MIT-BIH DS1 records at hand (PhysioNet mitdb, ODC-By 1.0).

    .venv/bin/python -m bench.mitdb_cv --out bench/results/mitdb_cv            # about 45 min on 2 cores
    .venv/bin/python -m bench.mitdb_cv --out /tmp/cv --methods AGCACL,CE --folds 2 --epochs 1   # smoke

Every method gets the same budget (``configs/mitdb-aami.toml``: epochs x batches, early stopping on
the validation records of each fold) and the same folds: grouped K-fold over records (no record in two
parts). The folds' test predictions are pooled (each record is tested once) and scored with 95 %
intervals from a bootstrap over records (``pedstream compare``), plus EC57 SVEB/VEB Se, +P and F1.
Finished runs are skipped, so an interrupted plan resumes. Writes OUT/report.md(+.json) and
OUT/summary.md (the README table).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "mitdb"
CONFIG = REPO / "configs" / "mitdb-aami.toml"

METHODS: list[tuple[str, list[str]]] = [
    ("AGCACL", ['loss.name="agcacl"']),
    ("CE", ['loss.name="ce"']),
    ("weighted CE", ['loss.name="weighted_ce"']),
    ("focal", ['loss.name="focal"', 'loss.focal_alpha="class"']),
    ("logit-adjusted", ['loss.name="logit_adjusted"']),
    ("LDAM-DRW", ['loss.name="ldam_drw"']),
    ("SupCon+CE", ['loss.name="supcon_ce"']),
    ("AGCACL w/o prototypes", ['loss.name="agcacl"', "loss.use_prototypes=false"]),
    ("AGCACL w/o reweighting", ['loss.name="agcacl"', "loss.use_reweighting=false"]),
    ("AGCACL w/o hard-class modulation", ['loss.name="agcacl"', "loss.use_hard_mining=false"]),
    # AGCACL's knobs, tuned by the same cross-validation
    ("AGCACL tau=0.2", ['loss.name="agcacl"', "loss.temperature=0.2", "loss.prototype_temperature=0.2"]),
    ("AGCACL proto=0.3", ['loss.name="agcacl"', "loss.prototype_weight=0.3"]),
    ("AGCACL contrastive=0.2", ['loss.name="agcacl"', "loss.contrastive_weight=0.2"]),
    ("AGCACL inverse weights", ['loss.name="agcacl"', 'loss.class_weighting="inverse"']),
    # the training budget of the shipped recipe (not part of the equal-budget comparison)
    ("focal, 2x budget", ['loss.name="focal"', 'loss.focal_alpha="class"', "train.epochs=16", "train.patience=5"]),
]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def _summary(report: dict, command: str) -> str:
    res = report["results"]["subject"]
    lines = ["| method | macro F1 | SVEB Se | SVEB +P | SVEB F1 | VEB Se | VEB +P | VEB F1 |", "|---|---|---|---|---|---|---|---|"]

    def cell(d: dict, key: str) -> str:
        v = d.get(key)
        ci = d.get("ci95", {}).get(key)
        if v is None:
            return "–"
        return f"{v:.3f}" + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else "")

    for method, r in res.items():
        ec = r.get("ec57", {})
        sv, ve = ec.get("sveb", {}), ec.get("veb", {})
        lines.append(f"| {method} | {r['macro_f1']:.3f} | {cell(sv, 'se')} | {cell(sv, 'ppv')} | {cell(sv, 'f1')} | "
                     f"{cell(ve, 'se')} | {cell(ve, 'ppv')} | {cell(ve, 'f1')} |")
    return "\n".join([f"Made with `{command}`.", "", *lines, ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--config", type=Path, default=CONFIG)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=0, help="override train.epochs (0: the config's)")
    ap.add_argument("--methods", default="", help="comma-separated subset of method names (default: all)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra config override (repeatable)")
    a = ap.parse_args(argv)
    from pedstream.config import load_config
    from pedstream.train.compare import compare_runs
    from pedstream.train.loop import train_run

    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    common = [f"split.folds={a.folds}", f'train.cache_dir="{out / "cache"}"', "train.bootstrap=0", *a.sets]
    if a.epochs:
        common.append(f"train.epochs={a.epochs}")
    wanted = {m.strip() for m in a.methods.split(",") if m.strip()}
    plan = [(fold, name, sets) for name, sets in METHODS if not wanted or name in wanted for fold in range(a.folds)]
    timing: dict[str, float] = {}
    run_dirs = []
    for i, (fold, name, sets) in enumerate(plan):
        rd = out / "runs" / _slug(name) / f"fold{fold}"
        run_dirs.append(rd)
        if (rd / "predictions.npz").is_file():
            continue
        cfg = load_config(a.config, [*common, *sets])
        t = time.perf_counter()
        print(f"[{i + 1}/{len(plan)}] {name} · fold {fold}", flush=True)
        train_run(cfg, data=a.data, out=rd, protocol="subject", fold=fold, method=name, progress=False)
        timing[f"{_slug(name)}/fold{fold}_s"] = round(time.perf_counter() - t, 1)
        (out / "timing.json").write_text(json.dumps(timing, indent=1), encoding="utf-8")
    command = "python -m bench.mitdb_cv " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    report = compare_runs(run_dirs, out=out / "report.md", n_boot=1000, seed=0, command=command, tsne=False)
    (out / "summary.md").write_text(_summary(json.loads((out / "report.json").read_text()), command), encoding="utf-8")
    print((out / "summary.md").read_text(), flush=True)
    return 0 if report else 1


if __name__ == "__main__":
    raise SystemExit(main())
