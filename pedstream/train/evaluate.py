"""``pedstream eval``: score a trained run on a data folder.

By default (``--split auto``) the run's TEST windows are scored when DIR is the folder the run was
trained on (its records and SHA-256 hashes match the run's manifest): the (record, start) pairs stored
in ``split.npz`` select them. When DIR holds other data every window is scored (``--split all``). A run
trained with ``--protocol all`` has no test windows: it is scored on another folder (MIT-BIH DS2 for a
DS1 run); ``--split auto`` on its own training folder is refused (``--split all`` scores the training
windows, which says little).

Reported (and written with ``--json``), keys exactly::

    top1, macro_precision, macro_recall, macro_f1, macro_f2,
    per_class: {name: {precision, recall, f1, support}}, classes, confusion (C x C, rows = true)

plus ``ci95`` (95% percentile-bootstrap intervals of the five summary metrics, resampling windows, or
subjects with ``--subject-bootstrap``), ``evaluated_classes``, ``all_classes``, ``present_classes``,
``macro_auroc``, ``n`` and ``split``; with the AAMI classes (N, S, V, F, Q) also ``ec57``:
``{veb, sveb}: {se, ppv, f1, tp, fn, fp, ci95}`` (:func:`pedstream.train.metrics.ec57_statistics`, which
states the EC57 convention; F classified as V is not a VEB false positive).

Bad input (not a run folder, --split test on other data, classes that differ from the model's, no
windows) raises :class:`~pedstream.errors.ConfigError` (``error: eval: ...``, exit code 2). The JSON and
PNG are written only after everything succeeded, each through a temporary file and ``os.replace``. The metric definitions (macro over the classes that occur in the
test labels or predictions, zero_division = 0; ``all_classes`` repeats them over every configured
class) are those of :func:`pedstream.train.metrics.evaluate_predictions`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pedstream.errors import ConfigError

__all__ = ["RUN_SECTIONS", "SUMMARY_KEYS", "evaluate_arrays", "evaluate_run", "render_report", "eval_command", "run_config",
           "write_atomically"]

SUMMARY_KEYS = ("top1", "macro_precision", "macro_recall", "macro_f1", "macro_f2")


def evaluate_arrays(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, classes: Sequence[str],
                    *, n_boot: int = 1000, seed: int = 0, probs: np.ndarray | None = None,
                    groups: Sequence[Any] | np.ndarray | None = None) -> dict[str, Any]:
    """Metrics of predictions ``y_pred`` (n,) against ``y_true`` (n,) (class indices into ``classes``).

    Thin wrapper over :func:`pedstream.train.metrics.evaluate_predictions` (macro over the classes in
    the test labels or predictions, ``ci95`` percentile-bootstrap intervals; with ``groups`` (n,)
    subject ids the bootstrap resamples subjects).
    """
    from pedstream.train.metrics import evaluate_predictions

    return evaluate_predictions(y_true, y_pred, class_names=list(classes), y_prob=probs, n_boot=n_boot, seed=seed,
                                groups=groups)


def _is_training_data(manifest: dict[str, Any], ws: Any) -> bool:
    want = {r["name"]: r["sha256"] for r in manifest["data"]["records"]}
    have = {r["name"]: r["sha256"] for r in ws.record_info}
    return bool(have) and all(want.get(n) == h for n, h in have.items())


def _bad(key: str, msg: str) -> ConfigError:
    return ConfigError([(key, msg)], source="eval")


def _load_run(run: Path) -> tuple[dict[str, Any], Any]:
    mpath = run / "manifest.json"
    if not mpath.is_file():
        raise _bad("--run", f"{run} has no manifest.json: not a run folder written by pedstream train")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _bad("--run", f"{mpath} is not readable JSON ({exc})") from exc
    return manifest, run_config(manifest, where=str(mpath))


#: The configuration sections that decide how a trained model sees data (the rest -- monitor, alarms,
#: transports -- may change between versions without making a run folder unreadable).
RUN_SECTIONS = ("signal", "filters", "labels", "segments", "split", "model", "train", "loss")


def run_config(manifest: dict[str, Any], *, where: str = "manifest") -> Any:
    """The :class:`~pedstream.config.Config` a run was trained with, from its manifest: the sections of
    :data:`RUN_SECTIONS` as stored, every other section at today's defaults."""
    from pydantic import ValidationError

    from pedstream.config import Config

    stored = manifest.get("config") or {}
    try:
        return Config.model_validate({k: stored[k] for k in RUN_SECTIONS if k in stored})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _bad("--run", f"{where}: the training configuration no longer validates: "
                            f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from exc


def _test_windows(run: Path, ws: Any, data: Path, *, same: bool, protocol: str | None) -> np.ndarray:
    if not same:
        raise _bad("--split", f"test: {data} is not the data {run} was trained on "
                              "(record names or SHA-256 hashes differ); use --split all")
    sp = np.load(run / "split.npz")
    want = set(zip(sp["test_record"].tolist(), sp["test_start"].tolist()))
    if not want:
        raise _bad("--split", f"{run} (protocol {protocol}) has no test windows in {data}, the data it was trained "
                              "on; evaluate it on another folder, or --split all to score its training windows")
    idx = np.asarray([i for i, key in enumerate(zip(ws.records.tolist(), ws.starts.tolist())) if key in want],
                     dtype=np.int64)
    if idx.size != len(want):
        raise _bad("--data", f"{data}: found {idx.size} of the run's {len(want)} test windows")
    return idx


def evaluate_run(run: str | Path, data: str | Path, *, split: str = "auto", cache_dir: str | Path | None = None,
                 n_boot: int | None = None, device: str = "cpu", confusion_png: str | Path | None = None,
                 progress: bool = False, subject_bootstrap: bool = False) -> dict[str, Any]:
    """Score the run's model on ``data`` (see the module docstring). Returns the metrics dict.

    ``confusion_png``: also draw the confusion matrix there (written atomically).
    """
    from pedstream.model.checkpoint import load_checkpoint
    from pedstream.train.dataset import build_windows
    from pedstream.train.predict import predict

    run, data = Path(run), Path(data)
    if split not in ("auto", "test", "all"):
        raise _bad("--split", f"must be auto, test or all, got {split!r}")
    manifest, cfg = _load_run(run)
    model, meta = load_checkpoint(run)
    if cache_dir is None:
        cache_dir = manifest.get("data", {}).get("cache_dir")
    ws = build_windows(data, cfg, cache_dir=cache_dir, progress=progress)
    if list(ws.classes) != list(meta["class_names"]):
        raise _bad("--data", f"the data's classes {ws.classes} differ from the model's {meta['class_names']}")
    same = _is_training_data(manifest, ws)
    if split == "auto":
        split = "test" if same else "all"
    if split == "test":
        idx = _test_windows(run, ws, data, same=same, protocol=manifest.get("protocol"))
    else:
        idx = np.arange(len(ws), dtype=np.int64)
    if idx.size == 0:
        raise _bad("--data", f"{data}: no windows to evaluate")
    pr = predict(model.to(device), ws, idx, device=device)
    boot = cfg.train.bootstrap if n_boot is None else n_boot
    res = evaluate_arrays(pr["y_true"], pr["y_pred"], ws.classes, n_boot=boot, seed=cfg.train.seed,
                          probs=pr["probs"], groups=ws.subjects[idx] if subject_bootstrap else None)
    res.update(split=split, run=str(run), data=str(data), method=manifest.get("method"),
               protocol=manifest.get("protocol"))
    if confusion_png is not None:
        write_atomically({Path(confusion_png): _png_writer(res)})
    return res


def _png_writer(res: dict[str, Any]) -> Callable[[Path], None]:
    from pedstream.train.metrics import plot_confusion

    return lambda tmp: plot_confusion(res, tmp)


def write_atomically(writers: dict[Path, Callable[[Path], None]]) -> None:
    """:func:`pedstream.fileio.replace_atomically`; an unwritable target is a :class:`ConfigError`."""
    from pedstream.fileio import replace_atomically

    try:
        replace_atomically(writers)
    except OSError as exc:
        raise _bad("output", exc.strerror or str(exc)) from exc


def _fmt_ci(res: dict[str, Any], key: str) -> str:
    ci = res.get("ci95", {}).get(key)
    return f"{res[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def render_report(res: dict[str, Any], console: Any = None) -> None:
    """Rich tables: summary with 95% CI, per-class P/R/F1/support, confusion matrix."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    evaluated = res.get("evaluated_classes")
    caption = None
    if evaluated is not None:
        caption = f"macro over the {len(evaluated)} classes that occur in the test labels or predictions"
        ac = res.get("all_classes")
        if ac and len(evaluated) < len(res["classes"]):
            caption += f"; over all {len(res['classes'])} classes macro F1 {ac['macro_f1']:.3f}"
    t = Table(title=f"{res.get('method') or 'model'} · {res.get('split', '')} · n = {res.get('n')}", caption=caption)
    t.add_column("metric")
    t.add_column("value [95% CI]", justify="right")
    for k in SUMMARY_KEYS:
        t.add_row(k, _fmt_ci(res, k))
    console.print(t)
    pc = Table(title="per class")
    for col in ("class", "precision", "recall", "F1", "support"):
        pc.add_column(col, justify="left" if col == "class" else "right")
    for name, v in res["per_class"].items():
        pc.add_row(name, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"]))
    console.print(pc)
    cm = Table(title="confusion (rows true, columns predicted)")
    cm.add_column("")
    for i, _ in enumerate(res["classes"]):
        cm.add_column(str(i), justify="right")
    for i, (name, row) in enumerate(zip(res["classes"], res["confusion"])):
        cm.add_row(f"{i} {name}", *[str(v) if v else "·" for v in row])
    console.print(cm)
    _render_ec57(res, console)


def _render_ec57(res: dict[str, Any], console: Any) -> None:
    """AAMI EC57 VEB / SVEB table (only when ``res`` has ``ec57``)."""
    from rich.table import Table

    ec = res.get("ec57")
    if not ec:
        return
    t = Table(title="AAMI EC57 (VEB: F classified V is not a false positive)")
    for col in ("", "Se [95% CI]", "+P [95% CI]", "F1 [95% CI]", "TP", "FN", "FP"):
        t.add_column(col, justify="left" if not col else "right")
    for part in ("veb", "sveb"):
        e = ec[part]
        ci = e.get("ci95") or {}

        def cell(k: str) -> str:
            if e[k] is None:
                return "n/a"
            return f"{e[k]:.3f}" + (f" [{ci[k][0]:.3f}, {ci[k][1]:.3f}]" if ci.get(k) else "")

        t.add_row(part.upper(), cell("se"), cell("ppv"), cell("f1"), str(e["tp"]), str(e["fn"]), str(e["fp"]))
    console.print(t)


def eval_command(*, run: Path, data: Path, json_path: Path | None, split: str, png: Path | None,
                 cache_dir: Path | None, subject_bootstrap: bool = False) -> dict[str, Any]:
    """CLI body of ``pedstream eval``: evaluate, print, then write the PNG (and JSON) atomically."""
    png = png if png is not None else (json_path.with_suffix(".png") if json_path else run / "confusion.png")
    res = evaluate_run(run, data, split=split, cache_dir=cache_dir, progress=True, subject_bootstrap=subject_bootstrap)
    render_report(res)
    writers: dict[Path, Callable[[Path], None]] = {Path(png): _png_writer(res)}
    if json_path is not None:
        text = json.dumps(res, indent=1)
        writers[Path(json_path)] = lambda tmp: tmp.write_text(text, encoding="utf-8")
    write_atomically(writers)
    return res
