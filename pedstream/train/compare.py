"""``pedstream compare``: the paper-style tables from a set of run folders.

Each run folder (``pedstream train``) holds its test-set predictions. Runs are grouped by
(protocol, method); the folds of one method are POOLED (their test sets are disjoint, so pooled they
cover every subject once in the subject protocol) and scored with
:func:`pedstream.train.metrics.evaluate_predictions`, with 95% intervals from a bootstrap that
resamples SUBJECTS (windows of one child are correlated; resampling windows would give intervals that
are too narrow). The macro averages of a method cover the classes that occur in its POOLED test labels
or pooled predictions (scikit-learn's convention, see :mod:`pedstream.train.metrics`): a class no fold
has and the method never predicts is left out, one it predicts without support counts as 0. The
all-class averages stay in the JSON twin under ``all_classes``.

The report (Markdown) has one table per protocol (rows = methods in the published order, columns
top-1 / macro P / R / F1 / F2 with intervals), an ablation table (AGCACL with each term switched
off), per-class F1, a plain verdict on AGCACL against the best baseline in the subject protocol, and
a t-SNE plot of the test-set embeddings of the best subject-protocol run. A JSON twin holds every
number.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pedstream.errors import PedstreamError

__all__ = ["METHOD_ORDER", "ABLATION_PREFIX", "RunRecord", "load_run", "compare_runs", "compare_command"]

METHOD_ORDER = ("AGCACL", "CE", "weighted CE", "focal", "LDAM-DRW", "logit-adjusted", "SupCon+CE", "ECG-only",
                "IEGM-only", "early fusion")
ABLATION_PREFIX = "AGCACL w/o "
PROTOCOL_TITLES = {
    "subject": "Subject-independent protocol (grouped K-fold: no subject in both training and test)",
    "loso": "Leave-one-subject-out protocol",
    "segment": "Segment protocol as published (random split of windows: LEAKS SUBJECTS, optimistic)",
}
COLUMNS = (("top1", "top-1"), ("macro_precision", "macro P"), ("macro_recall", "macro R"), ("macro_f1", "macro F1"),
           ("macro_f2", "macro F2"))


@dataclass
class RunRecord:
    """One run folder's test predictions and identity."""

    path: Path
    method: str
    protocol: str
    fold: int
    classes: list[str]
    y_true: np.ndarray  # (n,)
    y_pred: np.ndarray  # (n,)
    embedding: np.ndarray  # (n, D)
    subject: np.ndarray  # (n,)
    seconds: float
    simulated: bool
    data_description: str


def load_run(path: str | Path) -> RunRecord:
    """Read ``manifest.json`` and ``predictions.npz`` of a run folder."""
    p = Path(path)
    try:
        manifest = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
        pred = np.load(p / "predictions.npz", allow_pickle=False)
    except FileNotFoundError as exc:
        raise PedstreamError(f"run {p}: {Path(exc.filename).name} is missing (not a finished pedstream train run)") from exc
    except (OSError, ValueError) as exc:
        raise PedstreamError(f"run {p}: cannot read the run files: {exc}") from exc
    return RunRecord(path=p, method=str(manifest["method"]), protocol=str(manifest["protocol"]),
                     fold=int(manifest["fold"]), classes=[str(c) for c in pred["classes"].tolist()],
                     y_true=pred["y_true"], y_pred=pred["y_pred"], embedding=pred["embedding"],
                     subject=pred["subject"], seconds=float(manifest.get("seconds_total", float("nan"))),
                     simulated=bool(manifest["data"].get("simulated", False)),
                     data_description=str(manifest["data"].get("description", "")))


def _order_key(method: str) -> tuple[int, str]:
    if method in METHOD_ORDER:
        return (METHOD_ORDER.index(method), method)
    if method.startswith(ABLATION_PREFIX):
        return (len(METHOD_ORDER) + 1, method)
    return (len(METHOD_ORDER), method)


def _cell(res: dict[str, Any], key: str) -> str:
    ci = res.get("ci95", {}).get(key)
    v = res[key]
    return f"{v:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{v:.3f}"


def _table(rows: list[tuple[str, dict[str, Any], int]], *, delta_ref: float | None = None) -> list[str]:
    head = "| method | " + " | ".join(t for _, t in COLUMNS) + " | runs |"
    if delta_ref is not None:
        head = head[:-len(" runs |")] + " Δ macro F1 | runs |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    best = max((r["macro_f1"] for _, r, _ in rows), default=None)
    for method, res, n_runs in rows:
        cells = [_cell(res, k) for k, _ in COLUMNS]
        if best is not None and res["macro_f1"] == best:
            cells[3] = f"**{cells[3]}**"
        if delta_ref is not None:
            cells.append(f"{res['macro_f1'] - delta_ref:+.3f}")
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {n_runs} |")
    return lines


def _tsne_plot(run: RunRecord, out_png: Path, *, seed: int, max_points: int = 1500) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    n = run.embedding.shape[0]
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(n, max_points), replace=False))
    emb = run.embedding[idx]
    perplexity = float(min(30.0, max(2.0, (idx.size - 1) / 3)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(emb)
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    cmap = plt.get_cmap("tab20")
    for k, name in enumerate(run.classes):
        sel = run.y_true[idx] == k
        if sel.any():
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=cmap(k % 20), label=f"{name} ({int(sel.sum())})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of test embeddings · {run.method} · {run.protocol} fold {run.fold}", fontsize=9)
    ax.legend(fontsize=7, markerscale=2, loc="best", frameon=False)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def compare_runs(runs: Sequence[str | Path], *, out: str | Path, n_boot: int = 1000, seed: int = 0,
                 tsne: bool = True, command: str | None = None) -> dict[str, Any]:
    """Write the Markdown report ``out`` (+ ``.json`` twin, + ``_tsne.png``); return the numbers."""
    from pedstream.train.metrics import evaluate_predictions

    if not runs:
        raise PedstreamError("compare: no run folders given")
    recs = [load_run(r) for r in runs]
    classes = recs[0].classes
    for r in recs[1:]:
        if r.classes != classes:
            raise PedstreamError(f"compare: run {r.path} has classes {r.classes}, run {recs[0].path} has {classes}")
    groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in recs:
        groups[(r.protocol, r.method)].append(r)

    results: dict[str, dict[str, Any]] = defaultdict(dict)
    for (protocol, method), rs in sorted(groups.items()):
        yt = np.concatenate([r.y_true for r in rs])
        yp = np.concatenate([r.y_pred for r in rs])
        subj = np.concatenate([r.subject.astype(str) for r in rs])
        res = evaluate_predictions(yt, yp, class_names=classes, n_boot=n_boot, seed=seed, groups=subj)
        res["runs"] = [str(r.path) for r in rs]
        res["folds"] = sorted(r.fold for r in rs)
        res["seconds"] = float(sum(r.seconds for r in rs))
        res["best_run"] = str(max(rs, key=_f1).path)
        results[protocol][method] = res

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    simulated = any(r.simulated for r in recs)
    lines = ["# pedstream method comparison", ""]
    if command:
        lines += ["Made with:", "", "```", command, "```", ""]
    lines += [f"Data: {recs[0].data_description}.",
              ("**Trained and tested on SIMULATED Leipzig-format records, not real patients; "
               "these numbers say how the methods compare on the simulator, nothing clinical.**" if simulated else ""),
              "",
              f"Metrics on the pooled test predictions of all folds of a method; {_macro_scope(results, classes)} "
              f"(scikit-learn's convention: a class neither in the test labels nor predicted is left out, one "
              f"predicted without test support counts with precision 0; the averages over all {len(classes)} "
              f"classes are in the JSON twin under `all_classes`); 95% intervals from {n_boot} bootstrap "
              f"resamples of subjects, over that fixed set of classes. Best macro F1 in bold.", ""]
    for protocol in sorted(results, key=lambda p: ("subject", "loso", "segment").index(p)
                           if p in ("subject", "loso", "segment") else 9):
        rows = [(m, res, len(res["runs"])) for m, res in sorted(results[protocol].items(), key=lambda kv: _order_key(kv[0]))
                if not m.startswith(ABLATION_PREFIX)]
        if rows:
            lines += [f"## {PROTOCOL_TITLES.get(protocol, protocol)}", "", *_table(rows), ""]
    for protocol in results:
        abl = [(m, res, len(res["runs"])) for m, res in sorted(results[protocol].items(), key=lambda kv: _order_key(kv[0]))
               if m == "AGCACL" or m.startswith(ABLATION_PREFIX)]
        if len(abl) > 1 and abl[0][0] == "AGCACL":
            lines += [f"## Ablation of AGCACL ({protocol} protocol)", "",
                      *_table(abl, delta_ref=abl[0][1]["macro_f1"]), ""]
    verdict = _verdict(results)
    if verdict:
        lines += ["## Verdict", "", verdict, ""]
    # per-class F1 of the main protocol
    main = "subject" if "subject" in results else ("loso" if "loso" in results else next(iter(results)))
    methods = [m for m in sorted(results[main], key=_order_key)]
    lines += [f"## Per-class F1 ({main} protocol; support = test windows)", "",
              "| class | support | " + " | ".join(methods) + " |", "|" + "---|" * (len(methods) + 2)]
    for c in classes:
        sup = results[main][methods[0]]["per_class"][c]["support"]
        lines.append(f"| {c} | {sup} | " + " | ".join(
            f"{results[main][m]['per_class'][c]['f1']:.2f}" if c in results[main][m]["evaluated_classes"] else "–"
            for m in methods) + " |")
    lines += ["", "– = the class is neither in the test labels nor predicted by that method (not scored).", ""]
    png = None
    if tsne:
        best_method = max(results[main], key=lambda m: results[main][m]["macro_f1"])
        best_run = next(r for r in recs if str(r.path) == results[main][best_method]["best_run"])
        png = out.with_name(out.stem + "_tsne.png")
        _tsne_plot(best_run, png, seed=seed)
        lines += ["## Embedding of the test set", "",
                  f"![t-SNE]({png.name}) t-SNE of the projection embeddings of the test windows of the best "
                  f"{main}-protocol run ({best_method}, {best_run.path.name}), coloured by true class.", ""]
    total_s = sum(r.seconds for r in recs)
    lines += [f"{len(recs)} runs, {total_s / 60:.1f} min of training and evaluation in total. "
              f"Written {time.strftime('%Y-%m-%d %H:%M')}.", ""]
    out.write_text("\n".join(line for line in lines) + "\n", encoding="utf-8")
    summary = {"classes": classes, "results": results, "verdict": verdict, "simulated": simulated,
               "tsne_png": str(png) if png else None, "command": command}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1, default=_json_default), encoding="utf-8")
    return summary


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def _f1(r: RunRecord) -> float:
    """Macro F1 of one run over the classes in its test labels or predictions (scikit-learn's default)."""
    from sklearn.metrics import f1_score

    return float(f1_score(r.y_true, r.y_pred, average="macro", zero_division=0))


def _macro_scope(results: dict[str, dict[str, Any]], classes: list[str]) -> str:
    """'macro over the N classes that occur in the test labels or predictions' (N per method when they differ)."""
    sets = {(proto, m): tuple(res["evaluated_classes"]) for proto, rs in results.items() for m, res in rs.items()}
    if len(set(sets.values())) == 1:
        names = next(iter(sets.values()))
        listed = f": {', '.join(names)}" if len(names) < len(classes) else ""
        return f"macro over the {len(names)} classes that occur in the test labels or predictions{listed}"
    per = ", ".join(f"{m} ({proto}) {len(names)}" for (proto, m), names in sorted(sets.items()))
    return (f"macro over the classes that occur in the pooled test labels or predictions of each method "
            f"(of {len(classes)} classes; how many per method: {per})")


def _verdict(results: dict[str, dict[str, Any]]) -> str:
    proto = "subject" if "subject" in results else ("loso" if "loso" in results else None)
    if proto is None or "AGCACL" not in results[proto]:
        return ""
    res = results[proto]
    base = {m: r for m, r in res.items() if m != "AGCACL" and not m.startswith(ABLATION_PREFIX)}
    if not base:
        return ""
    best = max(base, key=lambda m: base[m]["macro_f1"])
    a, b = res["AGCACL"], base[best]
    lo, hi = a["ci95"].get("macro_f1", [None, None]) if a.get("ci95") else (None, None)
    diff = a["macro_f1"] - b["macro_f1"]
    overlap = ""
    if a.get("ci95") and b.get("ci95"):
        bl, bh = b["ci95"]["macro_f1"]
        overlap = (" The 95% intervals overlap, so the difference is not resolved with this many subjects."
                   if lo <= bh and bl <= hi else " The 95% intervals do not overlap.")
    if diff > 0:
        return (f"In the {proto} protocol AGCACL reaches macro F1 {a['macro_f1']:.3f}, ahead of the best baseline "
                f"({best}, {b['macro_f1']:.3f}) by {diff:+.3f}.{overlap}")
    return (f"In the {proto} protocol AGCACL (macro F1 {a['macro_f1']:.3f}) does NOT beat the best baseline "
            f"({best}, {b['macro_f1']:.3f}; difference {diff:+.3f}).{overlap}")


def compare_command(*, runs: Sequence[Path], out: Path, n_boot: int, seed: int, tsne: bool, command: str | None) -> None:
    """CLI body of ``pedstream compare``: write the report and print where it went."""
    from rich.console import Console

    summary = compare_runs(runs, out=out, n_boot=n_boot, seed=seed, tsne=tsne, command=command)
    con = Console()
    con.print(out.read_text(encoding="utf-8"), markup=False, highlight=False)
    con.print(f"wrote {out} and {out.with_suffix('.json')}" + (f" and {summary['tsne_png']}" if summary["tsne_png"] else ""))
