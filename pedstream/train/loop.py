"""``pedstream train``: one training run, from a folder of WFDB records to a run folder.

A run: build (or reuse) the window cache -> split by protocol (``segment``: stratified random split of
windows, as published, which LEAKS SUBJECTS between train and test; ``subject``: grouped K-fold fold K,
no subject in two parts; ``loso``: leave subject K out; ``all``: every record trains except a few
validation subjects, no test set) -> :func:`pedstream.train.fit.fit` (AdamW with linear warm-up +
cosine decay, early stopping on validation macro-F1, best weights back) -> test-set predictions ->
the run folder (:mod:`pedstream.train.rundir` lists its files).

Deterministic on CPU: torch/numpy seeded, ``torch.use_deterministic_algorithms(True)``, loaders with
seeded generators and no worker processes. CUDA, when present, runs with autocast (bf16 where the GPU
supports it, else fp16 with a gradient scaler).

Module map: :mod:`~pedstream.train.splits` (protocols), :mod:`~pedstream.train.fit` (the epoch loop),
:mod:`~pedstream.train.predict` (model inputs, inference), :mod:`~pedstream.train.rundir` (files),
:mod:`~pedstream.train.evaluate` (metrics of predictions). This module only wires them together.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pedstream.errors import PedstreamError
from pedstream.train import rundir
from pedstream.train.dataset import WindowSet, build_windows
from pedstream.train.evaluate import evaluate_arrays
from pedstream.train.fit import FitResult, fit, resolve_device, seed_everything
from pedstream.train.predict import predict
from pedstream.train.splits import LEAKAGE_TEXT, Split, SubjectLeakageWarning, make_split

__all__ = [
    "SubjectLeakageWarning",
    "Split",
    "TrainResult",
    "make_split",
    "method_name",
    "seed_everything",
    "predict",
    "train_run",
]


def method_name(cfg: Any) -> str:
    """Human name of the method a config trains: loss name, architecture, AGCACL ablations."""
    arch = getattr(cfg.model, "arch", "fusion")
    if arch == "ecg_only":
        return "ECG-only"
    if arch == "iegm_only":
        return "IEGM-only"
    if arch == "early":
        return "early fusion"
    names = {"agcacl": "AGCACL", "ce": "CE", "weighted_ce": "weighted CE", "focal": "focal",
             "ldam_drw": "LDAM-DRW", "logit_adjusted": "logit-adjusted", "supcon_ce": "SupCon+CE"}
    loss = cfg.loss
    base = names.get(loss.name, loss.name)
    if loss.name == "agcacl":
        off = [label for flag, label in (("use_prototypes", "prototypes"), ("use_reweighting", "reweighting"),
                                         ("use_hard_mining", "hard-class modulation"))
               if not getattr(loss, flag, True)]
        if off:
            base += " w/o " + ", ".join(off)
    return base


@dataclass
class TrainResult:
    run_dir: Path
    method: str
    best_epoch: int
    best_val_macro_f1: float  # NaN without a validation set
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]]
    metrics: dict[str, Any] | None  # None without a test set (protocol all) or with evaluate_test=False
    seconds: float


def _build(cfg: Any, ws: WindowSet, split: Split, device: torch.device) -> tuple[Any, torch.nn.Module, Any]:
    """(model config, model, loss) for this window set; the loss sees the training class counts."""
    from pedstream.model.config import ModelConfig
    from pedstream.model.network import build_model
    from pedstream.train.losses import build_loss

    n_classes = len(ws.classes)
    model_cfg = ModelConfig.from_sections(cfg.model, signal=cfg.signal, segments=cfg.segments, n_classes=n_classes)
    model = build_model(model_cfg).to(device)
    loss_fn = build_loss(cfg.loss, n_classes=n_classes, class_counts=ws.class_counts(split.train),
                         embed_dim=model_cfg.embed_dim).to(device)
    return model_cfg, model, loss_fn


def _evaluate_test(out: Path, model: torch.nn.Module, ws: WindowSet, split: Split, *, cfg: Any,
                   device: torch.device) -> dict[str, Any] | None:
    """Predict the test windows, write predictions.npz + metrics.json; None when there are none."""
    if not split.test.size:
        return None
    tc = cfg.train
    pt = predict(model, ws, split.test, device=device, batch_size=max(tc.batch_size, 64))
    rundir.write_predictions(out, ws, split.test, pt)
    metrics = evaluate_arrays(pt["y_true"], pt["y_pred"], ws.classes, n_boot=tc.bootstrap, seed=tc.seed,
                              probs=pt["probs"])
    rundir.write_json(out / "metrics.json", metrics)
    return metrics


def train_run(cfg: Any, *, data: str | Path, out: str | Path, protocol: str | None = None, fold: int = 0,
              method: str | None = None, cache_dir: str | Path | None = None, progress: bool = True,
              console: Any = None, evaluate_test: bool = True) -> TrainResult:
    """Train one model as ``cfg`` says and fill the run folder ``out``. See the module docstring."""
    from rich.console import Console

    t0 = time.perf_counter()
    console = console or Console(stderr=True)
    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed, deterministic=cfg.train.deterministic)
    device = resolve_device(cfg.train.device)
    protocol = protocol or cfg.split.protocol
    method = method or method_name(cfg)

    ws = build_windows(data, cfg, cache_dir=cache_dir, progress=progress)
    console.print(f"[bold]{method}[/] · {len(ws)} windows from {len(ws.record_info)} records "
                  f"({'cache hit' if ws.cache_hit else 'built'}) · protocol {protocol} fold {fold} · {device}")
    split = make_split(ws, cfg, protocol=protocol, fold=fold)
    if split.warning:
        console.print(f"[yellow]warning:[/] {split.warning}")
    if split.leaks_subjects:
        warnings.warn(LEAKAGE_TEXT, SubjectLeakageWarning, stacklevel=2)
        console.print(f"[yellow]warning:[/] {LEAKAGE_TEXT}")
    if split.train.size == 0:
        raise PedstreamError(f"split {protocol} fold {fold}: no training windows")

    model_cfg, model, loss_fn = _build(cfg, ws, split, device)
    fitted: FitResult = fit(model, loss_fn, ws, train=split.train, val=split.val, tc=cfg.train, device=device,
                            console=console, progress=progress)
    desc = rundir.data_description(ws, data, cfg.signal, cfg.train.data_name)
    rundir.write_checkpoint(out, model=model.cpu(), model_cfg=model_cfg, cfg=cfg, ws=ws, split=split, fitted=fitted,
                            method=method, description=desc)
    model.to(device)
    rundir.write_curves(fitted.history, out / "curves.csv")
    rundir.plot_curves(fitted.history, out / "curves.png", f"{method} · {protocol} fold {fold}")
    rundir.write_split(out, ws, split)
    manifest = rundir.build_manifest(cfg=cfg, ws=ws, data=data, split=split, fitted=fitted, method=method,
                                     device=device, description=desc, seconds_train=time.perf_counter() - t0)
    metrics = _evaluate_test(out, model, ws, split, cfg=cfg, device=device) if evaluate_test else None
    manifest["seconds_total"] = round(time.perf_counter() - t0, 2)
    rundir.write_json(out / "manifest.json", manifest)
    best = fitted.best_val_macro_f1
    console.print(f"run folder {out}: best epoch {fitted.best_epoch}"
                  + (f", val macro-F1 {best:.3f}" if best is not None else "")
                  + (f", test macro-F1 {metrics['macro_f1']:.3f}" if metrics else "")
                  + ("" if split.test.size else ", no test set (score it with pedstream eval --data OTHER)")
                  + f" ({manifest['seconds_total']:.0f} s)")
    return TrainResult(run_dir=out, method=method, best_epoch=fitted.best_epoch,
                       best_val_macro_f1=float("nan") if best is None else best, epochs_run=len(fitted.history),
                       stopped_early=fitted.stopped_early, history=fitted.history, metrics=metrics,
                       seconds=manifest["seconds_total"])


