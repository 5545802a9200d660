"""The run folder of ``pedstream train``: everything written to disk after fitting.

RUNDIR holds::

    checkpoint.pt     weights + metadata (pedstream.model.checkpoint.save_checkpoint)
    curves.csv/.png   per epoch: lr, train loss (and loss parts), val loss, val macro-F1, val top-1
    manifest.json     records (SHA-256 of .hea/.dat/.atr), resolved config, git commit, protocol/fold,
                      subjects per part, method name, timings, leakage warning
    split.npz         (record, start) of the train/val/test windows (eval finds the test set with it)
    predictions.npz   test set: y_true, y_pred, probs (n, C), embedding (n, D), record, start, subject
    metrics.json      the evaluation of the test set (pedstream.train.evaluate)

``predictions.npz`` and ``metrics.json`` are absent when the split has no test set (protocol ``all``:
score the run on another folder with ``pedstream eval``). JSON files are written atomically.
"""

from __future__ import annotations

import csv
import math
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from pedstream.errors import PedstreamError

__all__ = ["data_description", "git_commit", "plot_curves", "write_curves", "write_json", "write_split",
           "write_predictions", "write_checkpoint", "build_manifest"]


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (:func:`pedstream.fileio.write_json`)."""
    from pedstream.fileio import write_json as _write

    return _write(path, obj)


def git_commit() -> str | None:
    """The commit of the pedstream checkout (None outside git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def plot_curves(history: list[dict[str, float]], path: Path, title: str) -> None:
    """Loss (train, validation) and validation macro-F1 / top-1 per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    axes[0].plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    if any(not math.isnan(h["val_loss"]) for h in history):
        axes[0].plot(ep, [h["val_loss"] for h in history], "o-", label="validation")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    axes[1].plot(ep, [h["val_macro_f1"] for h in history], "o-", label="val macro-F1")
    axes[1].plot(ep, [h["val_top1"] for h in history], "s--", label="val top-1")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylim(0, 1)
    axes[1].legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_curves(history: list[dict[str, float]], path: Path) -> None:
    """The history as CSV (one row per epoch; columns in first-seen order)."""
    keys: list[str] = []
    for h in history:
        keys.extend(k for k in h if k not in keys)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for h in history:
            w.writerow({k: h.get(k, "") for k in keys})


def _is_simulated(ws: Any, data: Path) -> bool:
    for readme in ("README.txt", "README", "README.md"):  # pedstream data synth writes README.txt
        f = data / readme
        if f.is_file() and "SIMULATED" in f.read_text(encoding="utf-8", errors="replace"):
            return True
    for info in ws.record_info:
        try:
            text = Path(info["path"] + ".hea").read_text(encoding="utf-8", errors="replace").lower()
        except OSError:
            continue
        if "simulat" in text or "synth" in text:
            return True
    return False


def _all_leipzig(ws: Any, signal_cfg: Any) -> bool:
    from pedstream.data.loader import open_record

    if not ws.record_info:
        return False
    for info in ws.record_info:
        if not Path(info["path"] + ".hea").is_file():
            return False
        try:
            if open_record(info["path"], signal_cfg).layout is None:
                return False
        except PedstreamError:
            return False
    return True


def data_description(ws: Any, data: Path, signal_cfg: Any, name: str = "") -> tuple[str, bool, dict[str, Any]]:
    """``(description, simulated?, training_data)`` of the training records.

    ``simulated``: the folder's README or a record header says the records are simulated (pedstream
    data synth marks both). ``training_data`` is the structured summary stored in the model metadata
    (``format`` "Leipzig-format" when every record has one of the Leipzig channel layouts, else
    "WFDB"; ``records``, ``subjects``, ``windows``, ``simulated``) from which the engine builds its
    one-line banner; ``description`` is the same in words, e.g. ``"simulated Leipzig-format records
    (pedstream data synth): 29 subjects, 29 records, 1945 windows of 2.5 s at 977 Hz"``. ``name``
    (``train.data_name``) names the data set of real records, e.g. ``"MIT-BIH Arrhythmia Database ..."``.
    """
    simulated = _is_simulated(ws, data)
    fmt = "Leipzig-format" if _all_leipzig(ws, signal_cfg) else "WFDB"
    n_subj = len({i["subject"] for i in ws.record_info})
    n_rec = len(ws.record_info)
    kind = (f"simulated {fmt} records (pedstream data synth)" if simulated
            else f"{name} (real {fmt} records)" if name else f"{fmt} records")
    desc = (f"{kind}: {n_subj} subject{'s' if n_subj != 1 else ''}, {n_rec} record{'s' if n_rec != 1 else ''}, "
            f"{len(ws)} windows of {ws.window / ws.fs:.3g} s at {ws.fs:g} Hz")
    summary = {"format": fmt, "simulated": simulated, "subjects": n_subj, "records": n_rec, "windows": len(ws),
               **({"name": name} if name else {})}
    return desc, simulated, summary


def write_split(out: Path, ws: Any, split: Any) -> None:
    """``split.npz``: ``<part>_record`` and ``<part>_start`` for part in train, val, test."""
    np.savez(out / "split.npz",
             **{f"{part}_{col}": arr[idx] for part, idx in (("train", split.train), ("val", split.val),
                                                              ("test", split.test))
                for col, arr in (("record", ws.records), ("start", ws.starts))})


def write_predictions(out: Path, ws: Any, idx: np.ndarray, pred: dict[str, Any]) -> None:
    """``predictions.npz`` of windows ``idx`` from :func:`pedstream.train.predict.predict` output."""
    np.savez(out / "predictions.npz", y_true=pred["y_true"], y_pred=pred["y_pred"], probs=pred["probs"],
             embedding=pred["embedding"], record=ws.records[idx], start=ws.starts[idx], subject=ws.subjects[idx],
             classes=np.asarray(ws.classes))


def write_checkpoint(out: Path, *, model: Any, model_cfg: Any, cfg: Any, ws: Any, split: Any, fitted: Any,
                     method: str, description: tuple[str, bool, dict[str, Any]]) -> None:
    """``checkpoint.pt`` with the serving metadata and a few real validation (else training) windows."""
    from pedstream.model.checkpoint import save_checkpoint
    from pedstream.model.metadata import NORMALIZATION
    from pedstream.train.predict import input_keys

    desc, simulated, training_data = description
    sb = ws.batch(split.val[:8] if split.val.size else split.train[:8])
    label_scheme = {"name": cfg.labels.scheme, **cfg.labels.active.model_dump(mode="json")}
    extra = {"protocol": split.describe(), "method": method, "loss": cfg.loss.model_dump(mode="json"),
             "best_epoch": fitted.best_epoch, "best_val_macro_f1": fitted.best_val_macro_f1,
             "training_data": training_data,
             "trained_channels": [c for c, on in zip(cfg.signal.channels, ws.mask[split.train].any(axis=0)) if on]}
    save_checkpoint(out, model=model, model_cfg=model_cfg, class_names=ws.classes, channels=cfg.signal.channels,
                    fs=cfg.signal.fs, window_s=cfg.segments.window_s, hop_s=cfg.segments.hop_s,
                    filters=cfg.filters.model_dump(mode="json"), normalization=NORMALIZATION,
                    label_scheme=label_scheme, data_description=desc, simulated=simulated,
                    segments=cfg.segments.model_dump(mode="json"), extra=extra,
                    sample_inputs={k: sb[k] for k in input_keys(sb)})


def build_manifest(*, cfg: Any, ws: Any, data: Path, split: Any, fitted: Any, method: str, device: Any,
                   description: tuple[str, bool, dict[str, Any]], seconds_train: float) -> dict[str, Any]:
    """The ``manifest.json`` dict (``seconds_total`` is added by the caller at the end)."""
    import torch

    desc, simulated, _ = description
    counts = ws.class_counts(split.train)
    return {
        "method": method,
        "protocol": split.protocol,
        "fold": int(split.fold),
        "split": split.describe(),
        "data": {"folder": str(data.resolve()), "description": desc, "simulated": simulated,
                 "cache_key": ws.key, "cache_dir": str(ws.cache_path.parent) if ws.cache_path else None,
                 "classes": ws.classes, "n_windows": len(ws), "window_samples": ws.window, "hop_samples": ws.hop,
                 "fs": ws.fs, "storage": "float16",
                 "records": [{"name": r["name"], "subject": r["subject"], "sha256": r["sha256"],
                              "n_windows": r["n_windows"]} for r in ws.record_info]},
        "train_class_counts": {c: int(n) for c, n in zip(ws.classes, counts)},
        "config": cfg.model_dump(mode="json"),
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "device": str(device),
        "amp": fitted.amp,
        "best_epoch": fitted.best_epoch,
        "best_val_macro_f1": fitted.best_val_macro_f1,
        "epochs_run": len(fitted.history),
        "stopped_early": fitted.stopped_early,
        "seconds_train": round(seconds_train, 2),
    }
