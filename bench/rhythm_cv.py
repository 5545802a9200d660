"""Cross-validation of the monitor model: MIT-BIH record-wise folds beside the simulated subject folds.

Each fold K trains one model (pedstream.train.monitor, configs/monitor.toml) on the simulated subjects
outside subject fold K plus the MIT-BIH records outside record fold K (record_folds: stratified so the
AF, VT, paced and pre-excited records spread over the folds), and scores the simulated test subjects
and the MIT-BIH test records apart. No record is ever in training and test. ../shared/data/iafdb
is never read. Results: bench/results/rhythm_cv/<variant>/fold<K>/ (run folders: ignored by git) and
bench/results/rhythm_cv/summary.{json,md} (per-class F1 / recall per fold and pooled over the folds).

The baseline row scores the previous shipped model (pedstream/assets/demo_model.onnx, simulated data
only) on every MIT-BIH rhythm window, which it never saw.

    nice -n 10 .venv/bin/python bench/rhythm_cv.py run [--variant NAME --set KEY=VALUE ...]
    .venv/bin/python bench/rhythm_cv.py summary
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "rhythm_cv"
SHARED = ROOT.parent / "shared" / "data"


def _cfg(sets: list[str]):
    from pedstream.config import load_config

    return load_config(ROOT / "configs" / "monitor.toml", sets)


def cmd_run(a: argparse.Namespace) -> int:
    from pedstream.train.monitor import train_monitor
    from pedstream.train.rundir import write_json

    cfg = _cfg(a.sets)
    vdir = OUT / a.variant
    vdir.mkdir(parents=True, exist_ok=True)
    write_json(vdir / "settings.json", {"sets": a.sets, "folds": a.folds, "mix": cfg.mix.model_dump(mode="json"),
                                        "train": cfg.train.model_dump(mode="json"), "loss": cfg.loss.name})
    for k in ([a.only_fold] if a.only_fold is not None else range(a.folds)):
        res_path = vdir / f"fold{k}" / "result.json"
        if res_path.is_file() and not a.force:
            print(f"{a.variant} fold {k}: done already ({res_path})", flush=True)
            continue
        t0 = time.time()
        res = train_monitor(cfg, sim=a.sim, real=a.real, noise=a.noise, out=vdir / f"fold{k}", fold=k, n_folds=a.folds,
                            cache_dir=a.cache)
        write_json(res_path, res)
        print(f"{a.variant} fold {k}: {time.time() - t0:.0f} s", flush=True)
    return 0


def _per_class(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, dict[str, float]]:
    from sklearn.metrics import precision_recall_fscore_support

    labels = sorted(set(y_true.tolist()))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {classes[k]: {"precision": float(pp), "recall": float(rr), "f1": float(ff), "support": int(ss)}
            for k, pp, rr, ff, ss in zip(labels, p, r, f, s)}


def _block(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    pc = _per_class(y_true, y_pred, classes)
    return {"n": int(y_true.size), "accuracy": float(np.mean(y_true == y_pred)),
            "macro_f1": float(np.mean([v["f1"] for v in pc.values()])),
            "macro_recall": float(np.mean([v["recall"] for v in pc.values()])), "per_class": pc}


def _baseline(real: Path, cache: Path) -> dict | None:
    """The demo model (simulated data only) on every MIT-BIH rhythm window."""
    import onnxruntime as ort

    from pedstream.train.rhythm_data import build_rhythm_windows

    onnx = ROOT / "pedstream" / "assets" / "demo_model.onnx"
    if not onnx.is_file():
        return None
    cfg = _cfg([])
    ws = build_rhythm_windows(real, cfg, cache_dir=cache)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(onnx), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    preds = []
    for j in range(0, len(ws), 128):
        b = ws.batch(np.arange(j, min(j + 128, len(ws))))
        preds.append(sess.run(None, {n: b[n] for n in names})[0].argmax(1))
    y_pred = np.concatenate(preds)
    out = _block(ws.labels, y_pred, ws.classes)
    out["per_record_folds"] = None
    return out


def cmd_summary(a: argparse.Namespace) -> int:
    from pedstream.train.rundir import write_json

    summary: dict = {"variants": {}, "protocol": {
        "real": "MIT-BIH record-wise folds (pedstream.train.monitor.record_folds); every rhythm window of a test "
                "record, at most mix.eval_windows_per_class_record per (record, class), evenly spaced",
        "sim": "simulated Leipzig-format subject folds (grouped K-fold, split.folds), as the demo model report"}}
    for vdir in sorted(p for p in OUT.iterdir() if p.is_dir() and (p / "settings.json").is_file()):
        folds = sorted(vdir.glob("fold*/result.json"))
        if not folds:
            continue
        v = {"settings": json.loads((vdir / "settings.json").read_text()), "folds": []}
        pooled = {"sim": ([], []), "real": ([], [])}
        classes = None
        for rp in folds:
            res = json.loads(rp.read_text())
            classes = res["classes"]
            row = {"fold": res["fold"], "best_epoch": res["best_epoch"], "seconds": res["seconds"],
                   "real_test_records": res["real_test_records"], "sim_test_subjects": res["sim_test_subjects"]}
            for tag in ("sim", "real"):
                pz = rp.parent / f"predictions_{tag}.npz"
                if pz.is_file():
                    z = np.load(pz)
                    row[tag] = _block(z["y_true"], z["y_pred"], classes)
                    pooled[tag][0].append(z["y_true"])
                    pooled[tag][1].append(z["y_pred"])
            v["folds"].append(row)
        v["pooled"] = {tag: _block(np.concatenate(t), np.concatenate(p), classes)
                       for tag, (t, p) in pooled.items() if t}
        if classes is not None:
            from sklearn.metrics import confusion_matrix

            t, p = (np.concatenate(x) for x in pooled["real"]) if pooled["real"][0] else (None, None)
            if t is not None:
                v["pooled_real_confusion"] = {"classes": classes,
                                              "matrix": confusion_matrix(t, p, labels=range(len(classes))).tolist()}
        summary["variants"][vdir.name] = v
    cached = OUT / "baseline_demo_model.json"  # the baseline depends only on the data and the old model
    base = json.loads(cached.read_text()) if cached.is_file() else _baseline(Path(a.real), Path(a.cache))
    if base is not None and not cached.is_file():
        write_json(cached, base)
    if base is not None:
        summary["baseline_demo_model_on_mitdb"] = base
    write_json(OUT / "summary.json", summary)
    (OUT / "summary.md").write_text(render(summary), encoding="utf-8")
    print(render(summary))
    return 0


def render(s: dict) -> str:
    lines = ["# Monitor model cross-validation (bench/rhythm_cv.py)", "",
             "- MIT-BIH: " + s["protocol"]["real"], "- simulated: " + s["protocol"]["sim"], ""]
    for name, v in s["variants"].items():
        st = v["settings"]
        lines += [f"## {name}", "", f"settings: real windows per (record, class) {st['mix']['max_windows_per_class_record']}, "
                  f"noise SNR {st['mix']['snr_db'][0]:g}-{st['mix']['snr_db'][1]:g} dB (p {st['mix']['noise_prob']:g}), "
                  f"lead dropout {st['mix']['lead_dropout']:g}, {st['train']['epochs']} epochs x "
                  f"{st['train']['steps_per_epoch']} steps, patience {st['train']['patience']}, loss {st['loss']}", ""]
        for tag, title in (("real", "MIT-BIH record-wise CV"), ("sim", "simulated subject CV")):
            if tag not in v["pooled"]:
                continue
            cls = list(v["pooled"][tag]["per_class"])
            lines += [f"### {title}: F1 / recall per fold and pooled", "",
                      "| class | " + " | ".join(f"fold {r['fold']} F1 / rec (n)" for r in v["folds"]) + " | pooled F1 / rec (n) |",
                      "|---|" + "---|" * (len(v["folds"]) + 1)]
            for c in cls:
                cells = []
                for r in v["folds"]:
                    pc = r.get(tag, {}).get("per_class", {}).get(c)
                    cells.append(f"{pc['f1']:.2f} / {pc['recall']:.2f} ({pc['support']})" if pc else "–")
                pc = v["pooled"][tag]["per_class"][c]
                cells.append(f"{pc['f1']:.2f} / {pc['recall']:.2f} ({pc['support']})")
                lines.append(f"| {c} | " + " | ".join(cells) + " |")
            lines.append("| macro F1 (classes with test windows) | " + " | ".join(
                f"{r[tag]['macro_f1']:.3f}" if tag in r else "–" for r in v["folds"]) + f" | {v['pooled'][tag]['macro_f1']:.3f} |")
            lines.append("| accuracy | " + " | ".join(
                f"{r[tag]['accuracy']:.3f}" if tag in r else "–" for r in v["folds"]) + f" | {v['pooled'][tag]['accuracy']:.3f} |")
            lines.append("")
        lines += ["test records per fold: " + "; ".join(f"fold {r['fold']}: {' '.join(r['real_test_records'])}"
                                                       for r in v["folds"]), ""]
    b = s.get("baseline_demo_model_on_mitdb")
    if b:
        lines += ["## Baseline: the previous shipped model (simulated data only) on every MIT-BIH rhythm window", "",
                  "| class | F1 | recall | n |", "|---|---|---|---|"]
        lines += [f"| {c} | {v['f1']:.2f} | {v['recall']:.2f} | {v['support']} |" for c, v in b["per_class"].items()]
        lines += [f"| macro F1 | {b['macro_f1']:.3f} | | {b['n']} |", f"| accuracy | {b['accuracy']:.3f} | | |", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["run", "summary", "baseline"])
    ap.add_argument("--variant", default="monitor")
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--only-fold", type=int, default=None, help="run just this fold (folds can run in parallel)")
    ap.add_argument("--sim", default=str(ROOT / "build" / "monitor" / "sim"))
    ap.add_argument("--real", default=str(SHARED / "mitdb"))
    ap.add_argument("--noise", default=str(SHARED / "nstdb"))
    ap.add_argument("--cache", default=str(ROOT / "build" / "monitor" / "cache"))
    a = ap.parse_args(argv)
    if a.command == "baseline":
        from pedstream.train.rundir import write_json

        OUT.mkdir(parents=True, exist_ok=True)
        write_json(OUT / "baseline_demo_model.json", _baseline(Path(a.real), Path(a.cache)))
        return 0
    return cmd_run(a) if a.command == "run" else cmd_summary(a)


if __name__ == "__main__":
    sys.exit(main())
