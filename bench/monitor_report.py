"""Write the shipped monitor model's report (pedstream/assets/monitor_model_report.{md,json}).

Sections: what the model was trained on (from the ONNX metadata), the cross-validation of
bench/rhythm_cv.py (MIT-BIH record-wise folds and the simulated subject folds, per class, per fold and
pooled; the previous simulated-only model on MIT-BIH as the baseline), the one real ECG+IEGM check
(iaf1_afw replayed through `pedstream run`, never used in training or tuning) and the alarms scored by
`pedstream score episodes` (bench/monitor_episodes.py: MIT-BIH through each CV fold's model on its
held-out records, pooled by bench/pool_episodes.py; the shipped model on held-out simulated records;
the previous demo model beside it).

    .venv/bin/python bench/monitor_report.py --run RUN --cv bench/results/rhythm_cv/summary.json \\
        --variant monitor --onnx pedstream/assets/monitor_model.onnx --iaf CALLS.jsonl [--iaf-baseline CALLS.jsonl] \\
        --script bench/make_monitor_model.sh --out pedstream/assets/monitor_model_report \\
        [--episodes-mitdb POOLED.json --episodes-mitdb-baseline DEMO.json --episodes-sim SIM.json \\
         --episodes-sim-baseline DEMO_SIM.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def _calls(path: str | None) -> dict | None:
    if not path or not Path(path).is_file():
        return None
    ev = [json.loads(ln) for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip().startswith("{")]
    calls = [e for e in ev if e.get("kind") == "call"]
    first = [e["label"] for e in calls if e.get("t_signal_end", 0) - calls[0]["t_signal"] < 70] if calls else []
    return {"windows": len(calls), "calls": dict(collections.Counter(e["label"] for e in calls).most_common()),
            "calls_first_70_s": dict(collections.Counter(first).most_common()),
            "alarms": dict(collections.Counter(e.get("label") for e in ev if e.get("kind") == "alarm_on").most_common())}


def main(argv: list[str] | None = None) -> int:
    from monitor_episodes import episodes_json, episodes_md
    from rhythm_cv import render

    from pedstream.model.runtime import read_metadata

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--cv", required=True)
    ap.add_argument("--variant", default="monitor")
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--iaf")
    ap.add_argument("--iaf-baseline")
    ap.add_argument("--script", default="bench/make_monitor_model.sh")
    ap.add_argument("--out", required=True)
    for name in ("mitdb", "mitdb-baseline", "sim", "sim-baseline"):
        ap.add_argument(f"--episodes-{name}", help="`pedstream score episodes` JSON (pooled for mitdb)")
    a = ap.parse_args(argv)
    meta = read_metadata(a.onnx)
    manifest = json.loads((Path(a.run) / "manifest.json").read_text())
    cv = json.loads(Path(a.cv).read_text())
    v = cv["variants"][a.variant]
    mine = {r["fold"]: r for r in v["folds"]}
    report = {
        "model": {"file": Path(a.onnx).name, "size_bytes": Path(a.onnx).stat().st_size,
                  "trained_on": meta["training_data"]["trained_on"], "data_description": meta["data_description"],
                  "training_data": meta["training_data"], "class_names": meta["class_names"],
                  "best_epoch": manifest["best_epoch"], "epochs_run": manifest["epochs_run"],
                  "train_class_counts": manifest["train_class_counts"], "git_commit": manifest["git_commit"],
                  "seconds_train": manifest["seconds_train"], "torch": manifest["torch"], "device": manifest["device"],
                  "mix": manifest["config"]["mix"]},
        "cv": {"variant": a.variant, "protocol": cv["protocol"], **v},
        "baseline_demo_model_on_mitdb": cv.get("baseline_demo_model_on_mitdb"),
        "iaf1_afw": {"model": _calls(a.iaf), "previous_demo_model": _calls(a.iaf_baseline)},
        "score_episodes": episodes_json(a),
    }
    out = Path(a.out)
    (out.with_suffix(".json")).write_text(json.dumps(report, indent=1), encoding="utf-8")
    m = report["model"]
    cvmd = render({"protocol": cv["protocol"], "variants": {a.variant: v},
                   **({"baseline_demo_model_on_mitdb": cv["baseline_demo_model_on_mitdb"]}
                      if cv.get("baseline_demo_model_on_mitdb") else {})})
    cvmd = "\n".join(ln.replace("# ", "## ", 1) if ln.startswith("#") else ln for ln in cvmd.splitlines()[1:])
    lines = [f"# Monitor model: {m['file']}", "",
             f"**Trained on {m['trained_on']}.** Simulated Leipzig-format records (`pedstream data synth`: real "
             "children's label sequences, simulated signals) and real adult ECG from the MIT-BIH Arrhythmia "
             "Database (2 leads, rhythm annotations mapped onto the Leipzig classes by `[labels.rhythm.mitdb]`), "
             "with real noise from the MIT-BIH Noise Stress Test Database mixed into training. No child's real "
             "ECG and no real IEGM was used: these figures say nothing about real pediatric patients.", "",
             f"- data: {m['data_description']}",
             f"- best epoch {m['best_epoch']} of {m['epochs_run']}, {m['seconds_train'] / 60:.1f} min on {m['device']} "
             f"(torch {m['torch']}), git commit {m['git_commit']}",
             f"- training windows per class: " + ", ".join(f"{k} {n}" for k, n in m["train_class_counts"].items() if n),
             f"- ONNX file `{m['file']}`, {m['size_bytes'] / 1e6:.2f} MB; classes {', '.join(m['class_names'])}", "",
             "## In short", "",
             f"- unseen MIT-BIH records (record-wise CV, pooled over {len(v['folds'])} folds): macro-F1 "
             f"{v['pooled']['real']['macro_f1']:.3f} over the classes with test windows, accuracy "
             f"{v['pooled']['real']['accuracy']:.3f}"
             + (f"; the previous simulated-only model on the same windows: macro-F1 "
                f"{cv['baseline_demo_model_on_mitdb']['macro_f1']:.3f}, accuracy "
                f"{cv['baseline_demo_model_on_mitdb']['accuracy']:.3f}" if cv.get("baseline_demo_model_on_mitdb") else ""),
             "- per class on unseen records (F1 / recall): " + ", ".join(
                 f"{c} {x['f1']:.2f} / {x['recall']:.2f}" for c, x in v["pooled"]["real"]["per_class"].items()
                 if x["support"] > 1),
             f"- simulated subjects (subject CV, pooled): macro-F1 {v['pooled']['sim']['macro_f1']:.3f}, accuracy "
             f"{v['pooled']['sim']['accuracy']:.3f}",
             "- other settings tried (bench/results/rhythm_cv/summary.md), macro-F1 per fold, MIT-BIH / simulated, "
             f"against {a.variant} on the same fold: " + "; ".join(
                 f"{name} fold {r['fold']}: {r['real']['macro_f1']:.3f} / {r['sim']['macro_f1']:.3f} against "
                 f"{mine[r['fold']]['real']['macro_f1']:.3f} / {mine[r['fold']]['sim']['macro_f1']:.3f}"
                 for name, o in cv["variants"].items() if name != a.variant
                 for r in o["folds"] if r["fold"] in mine and "real" in r and "sim" in r), "",
             "## Cross-validation (bench/rhythm_cv.py): settings were chosen by this only", "",
             "Each fold trains one model on the simulated subjects outside subject fold K and the MIT-BIH records "
             "outside record fold K, then scores the held-out simulated subjects and MIT-BIH records apart. The "
             "shipped model is trained the same way on all records (early stopping on validation subjects/records).",
             cvmd, "", "## The one real ECG+IEGM check: iaf1_afw (never used in training or tuning)", ""]
    iaf = report["iaf1_afw"]
    if iaf["model"]:
        for who, key in (("this model", "model"), ("previous demo model (simulated only)", "previous_demo_model")):
            r = iaf[key]
            if r:
                lines.append(f"- {who}: {r['windows']} windows called " + ", ".join(f"{k} {n}" for k, n in r["calls"].items())
                             + "; first 70 s (AF before adenosine): " + ", ".join(f"{k} {n}" for k, n in r["calls_first_70_s"].items())
                             + "; alarms: " + (", ".join(f"{k} {n}" for k, n in r["alarms"].items()) or "none"))
        lines += ["", "`pedstream run --source replay --records ../shared/data/iafdb/iaf1_afw --headless --set "
                  "replay.speed=20` (the recording is atrial fibrillation, adenosine at 70 s)."]
    lines += ["", *episodes_md(report["score_episodes"]), "",
              "## How it was made", "", f"`bash {a.script}` runs exactly these commands:", "", "```",
              (ROOT / a.script).read_text(encoding="utf-8").rstrip(), "```", ""]
    (out.with_suffix(".md")).write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
