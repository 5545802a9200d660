"""Markdown report of one evaluated model (used for the shipped demo model's report).

    python -m pedstream.train.report --eval EVAL.json --run RUNDIR [--onnx MODEL.onnx] [--script CMD] --out REPORT.md

It states in plain words what the model was trained on (taken from the run's manifest, which knows
whether the records were simulated), the protocol and the subjects in each part, and the
``pedstream eval`` numbers: summary with 95% intervals (macro over the classes that occur in the test
labels or predictions, see :mod:`pedstream.train.metrics`; the all-class average is quoted below it when
some classes were not scored), per-class table, confusion matrix.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["model_report", "main"]

_KEYS = (("top1", "top-1 accuracy"), ("macro_precision", "macro precision"), ("macro_recall", "macro recall"),
         ("macro_f1", "macro F1"), ("macro_f2", "macro F2"))


def model_report(res: dict[str, Any], manifest: dict[str, Any], *, onnx: Path | None = None,
                 script: str | None = None) -> str:
    """The Markdown text (see the module docstring)."""
    data = manifest["data"]
    simulated = bool(data.get("simulated"))
    split = manifest["split"]
    lines = [f"# Demo model: {manifest['method']} ({manifest['protocol']} protocol)", ""]
    if simulated:
        lines += ["**Trained on simulated Leipzig-format data, not for clinical use.** The records were written by "
                  "`pedstream data synth`: each follows the real beat-by-beat label sequence of one child of the "
                  "Leipzig Heart Center ECG-Database, but every signal sample is simulated. These numbers say how "
                  "well the model separates the simulator's rhythms; they say nothing about real patients.", ""]
    else:
        lines += ["**Not for clinical use.**", ""]
    lines += [f"- data: {data['description']}",
              f"- protocol: {split['protocol']}, fold {split['fold']} of {split['n_folds']}; subjects in "
              f"train {len(split['subjects']['train'])}, validation {len(split['subjects']['val'])}, "
              f"test {len(split['subjects']['test'])} (no subject in two parts)"
              if not split.get("leaks_subjects") else f"- protocol: {split['protocol']} (LEAKS SUBJECTS)",
              f"- test subjects: {', '.join(split['subjects']['test'])}",
              f"- best epoch {manifest['best_epoch']} of {manifest['epochs_run']}, "
              f"{manifest['seconds_total'] / 60:.1f} min on {manifest['device']} (torch {manifest['torch']})",
              f"- git commit: {manifest.get('git_commit') or 'unknown'}"]
    if onnx is not None and onnx.is_file():
        lines.append(f"- ONNX file: `{onnx.name}`, {onnx.stat().st_size / 1e6:.2f} MB")
    evaluated = res.get("evaluated_classes")
    if evaluated is None:  # written before evaluated_classes existed: macro over all classes
        scope = "Macro averages over all classes of the label scheme (a class absent from the test set scores 0)"
    else:
        scope = (f"Macro averages over the {len(evaluated)} classes that occur in the test labels or predictions "
                 "(scikit-learn's convention: a class neither in the test set nor predicted is left out; one "
                 "predicted without test support would count with precision 0)")
    lines += ["", f"## Test set ({res['n']} windows)", "",
              scope + "; 95% percentile-bootstrap intervals" + (" resampling subjects." if res.get("n_groups") else "."),
              "", "| metric | value | 95% CI |", "|---|---|---|"]
    for k, label in _KEYS:
        ci = res.get("ci95", {}).get(k)
        lines.append(f"| {label} | {res[k]:.3f} | " + (f"{ci[0]:.3f} – {ci[1]:.3f}" if ci else "–") + " |")
    ac = res.get("all_classes")
    if evaluated is not None and ac and len(evaluated) < len(res["classes"]):
        absent = [c for c in res["classes"] if c not in evaluated]
        ci = ac.get("ci95", {}).get("macro_f1")
        lines += ["", f"Not scored (no test windows, never predicted): {', '.join(absent)}. Averaged over all "
                      f"{len(res['classes'])} classes instead, with those scoring 0: macro F1 {ac['macro_f1']:.3f}"
                      + (f" ({ci[0]:.3f} – {ci[1]:.3f})" if ci else "") + f", macro recall {ac['macro_recall']:.3f}."]
    pc = res.get("present_classes")
    if evaluated is None and pc and len(pc.get("classes", [])) < len(res["classes"]):
        lines += ["", f"Over the {len(pc['classes'])} classes present in the test set: macro F1 "
                      f"{pc['macro_f1']:.3f}, macro recall {pc['macro_recall']:.3f}."]
    lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for name, v in res["per_class"].items():
        lines.append(f"| {name} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
    lines += ["", "Confusion matrix (rows true, columns predicted):", "", "| true \\ pred | "
              + " | ".join(res["classes"]) + " |", "|" + "---|" * (len(res["classes"]) + 1)]
    for name, row in zip(res["classes"], res["confusion"]):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    if script:
        lines += ["", "## How it was made", "", f"`bash {script}` runs exactly these commands:", "", "```"]
        text = Path(script).read_text(encoding="utf-8") if Path(script).is_file() else script
        lines += [ln for ln in text.splitlines() if ln.strip()]
        lines += ["```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Markdown report of one evaluated run")
    ap.add_argument("--eval", dest="eval_json", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--onnx", type=Path, default=None)
    ap.add_argument("--script", default=None)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    res = json.loads(a.eval_json.read_text(encoding="utf-8"))
    manifest = json.loads((a.run / "manifest.json").read_text(encoding="utf-8"))
    a.out.write_text(model_report(res, manifest, onnx=a.onnx, script=a.script), encoding="utf-8")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
