"""Acceptance run: AGCACL vs every baseline, both protocols, on 29 simulated subjects, then the tables.

    .venv/bin/python -m bench.train_compare --out bench/results/compare            # full (estimated 65-75 min on 2 quiet cores)
    .venv/bin/python -m bench.train_compare --out /tmp/cmp_smoke --smoke           # 2 methods, tiny

Steps: (1) ``pedstream data synth --records 29 --minutes M --follow-real <leipzig-annotations>`` into
OUT/data (skipped when it is there); (2) one ``pedstream train`` run per (protocol, fold, method) into
OUT/runs/<protocol>/<method>/fold<k> (in-process ``train_run``, same code path as the CLI; finished
runs are skipped, so an interrupted plan resumes); (3) ``pedstream compare`` over all runs into
OUT/report.md (+ .json, _tsne.png); (4) OUT/timing.json with the wall time of every step.

Budget (measured: one 20-epoch x 40-batch run of the default model took 1.7 min on this 2-core machine,
so 14 x 40 with early stopping is about 1.2 min; 49 runs + synthesis + compare ~ 65-75 min): the window cache is built once and reused;
windows are capped per (subject, class) to tame the sinus majority; each run trains a fixed number of
batches per epoch with early stopping, about 60-90 s on 2 cores. Methods: the ten rows of the paper's
table (architecture baselines use the AGCACL loss, so only the architecture changes) plus three
AGCACL ablations (subject protocol only).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REAL = REPO.parent / "shared" / "data" / "leipzig-annotations"

METHODS: list[tuple[str, list[str]]] = [
    ("AGCACL", ['loss.name="agcacl"']),
    ("CE", ['loss.name="ce"']),
    ("weighted CE", ['loss.name="weighted_ce"']),
    ("focal", ['loss.name="focal"', 'loss.focal_alpha="class"']),
    ("LDAM-DRW", ['loss.name="ldam_drw"']),
    ("logit-adjusted", ['loss.name="logit_adjusted"']),
    ("SupCon+CE", ['loss.name="supcon_ce"']),
    ("ECG-only", ['loss.name="agcacl"', 'model.arch="ecg_only"']),
    ("IEGM-only", ['loss.name="agcacl"', 'model.arch="iegm_only"']),
    ("early fusion", ['loss.name="agcacl"', 'model.arch="early"']),
]
ABLATIONS: list[tuple[str, list[str]]] = [
    ("AGCACL w/o prototypes", ['loss.name="agcacl"', "loss.use_prototypes=false"]),
    ("AGCACL w/o reweighting", ['loss.name="agcacl"', "loss.use_reweighting=false"]),
    ("AGCACL w/o hard-class modulation", ['loss.name="agcacl"', "loss.use_hard_mining=false"]),
]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--real", type=Path, default=REAL, help="Leipzig annotation tables to follow (--follow-real)")
    ap.add_argument("--records", type=int, default=29)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--folds", type=int, default=3, help="subject-protocol folds (all are run and pooled)")
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--steps", type=int, default=40, help="batches per epoch")
    ap.add_argument("--cap", type=int, default=40, help="max windows per (subject, class)")
    ap.add_argument("--protocols", default="segment,subject")
    ap.add_argument("--no-ablations", action="store_true")
    ap.add_argument("--methods", default="", help="comma-separated subset of method names (default: all)")
    ap.add_argument("--smoke", action="store_true", help="2 methods, 6 records x 1 min, 2 folds, 2 epochs x 4 steps")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra config override (repeatable)")
    a = ap.parse_args(argv)
    if a.smoke:
        a.records, a.minutes, a.folds, a.epochs, a.steps, a.no_ablations = 6, 1.0, 2, 2, 4, True
        a.methods = a.methods or "AGCACL,CE"
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    t_all = time.perf_counter()

    data = out / "data"
    t = time.perf_counter()
    if not (data / "RECORDS").is_file():
        cmd = [sys.executable, "-m", "pedstream.cli", "data", "synth", "--out", str(data), "--records", str(a.records),
               "--minutes", str(a.minutes), "--seed", "0"]
        if a.real.is_dir():
            cmd += ["--follow-real", str(a.real)]
        print("+", shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    timing["synth_s"] = round(time.perf_counter() - t, 1)

    from pedstream.config import load_config
    from pedstream.train.compare import compare_runs
    from pedstream.train.loop import train_run

    common = [f"train.epochs={a.epochs}", f"train.steps_per_epoch={a.steps}", "train.patience=5", "split.val_fraction=0.2",
              f"train.max_windows_per_class_subject={a.cap}", "train.bootstrap=200", f"split.folds={a.folds}",
              f'train.cache_dir="{out / "cache"}"', "train.warmup_epochs=0.5", *a.sets]
    if a.smoke:
        common += ["model.d_model=16", "model.n_heads=2", "model.n_layers=1", "model.embed_dim=16",
                   "model.stem_widths=[8, 8, 16]"]
    wanted = {m.strip() for m in a.methods.split(",") if m.strip()}
    plan: list[tuple[str, int, str, list[str]]] = []
    for protocol in [p.strip() for p in a.protocols.split(",") if p.strip()]:
        methods = METHODS + ([] if a.no_ablations or protocol != "subject" else ABLATIONS)
        folds = range(a.folds) if protocol == "subject" else range(1)
        for fold in folds:
            for name, sets in methods:
                if wanted and name not in wanted:
                    continue
                plan.append((protocol, fold, name, sets))
    print(f"{len(plan)} runs", flush=True)
    run_dirs: list[Path] = []
    for i, (protocol, fold, name, sets) in enumerate(plan):
        rd = out / "runs" / protocol / _slug(name) / f"fold{fold}"
        run_dirs.append(rd)
        if (rd / "manifest.json").is_file() and (rd / "predictions.npz").is_file():
            continue
        cfg = load_config(None, [*common, *sets])
        t = time.perf_counter()
        print(f"[{i + 1}/{len(plan)}] {name} · {protocol} fold {fold}", flush=True)
        train_run(cfg, data=data, out=rd, protocol=protocol, fold=fold, method=name, progress=False)
        timing[f"{protocol}/{_slug(name)}/fold{fold}_s"] = round(time.perf_counter() - t, 1)
        (out / "timing.json").write_text(json.dumps(timing, indent=1), encoding="utf-8")

    t = time.perf_counter()
    command = "python -m bench.train_compare " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    compare_runs(run_dirs, out=out / "report.md", n_boot=1000, seed=0, command=command)
    timing["compare_s"] = round(time.perf_counter() - t, 1)
    timing["total_s"] = round(time.perf_counter() - t_all, 1)
    (out / "timing.json").write_text(json.dumps(timing, indent=1), encoding="utf-8")
    print(f"report: {out / 'report.md'} · total {timing['total_s'] / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
