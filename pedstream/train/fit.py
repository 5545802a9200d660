"""Fitting one model: AdamW with linear warm-up + cosine decay, early stopping on validation macro-F1.

:func:`fit` knows nothing about run folders: it takes a built model and loss, the window set and the
train/validation indices, and returns the model with its best weights loaded plus the per-epoch
history (:class:`FitResult`). CUDA, when used, runs with autocast (bf16 where the GPU supports it,
else fp16 with a gradient scaler). Determinism (seeding, deterministic kernels) is
:func:`seed_everything`'s job, called by the orchestrator before the model is built.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from pedstream.errors import ConfigError, PedstreamError
from pedstream.train.dataset import WindowDataset, WindowSet, make_loader
from pedstream.train.predict import model_inputs, predict

__all__ = ["FitResult", "fit", "macro_f1_top1", "resolve_device", "seed_everything"]


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed python-free RNGs (torch, numpy) and switch torch to deterministic kernels."""
    torch.manual_seed(int(seed))
    np.random.seed(int(seed) % (2**32))
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True


def resolve_device(want: str) -> torch.device:
    """``train.device`` ("auto", "cpu", "cuda", "cuda:1", ...) -> a usable torch device."""
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(want)
    except RuntimeError as exc:
        raise ConfigError([("train.device", f"not a torch device: {want!r}")]) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError([("train.device", f"{want!r} requested but CUDA is not available")])
    return dev


def macro_f1_top1(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """Validation macro-F1 (over the classes present in ``y_true``) and top-1; NaN for an empty set."""
    from sklearn.metrics import f1_score

    if y_true.size == 0:
        return float("nan"), float("nan")
    labels = sorted(set(y_true.tolist()))
    f1 = f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    return float(f1), float(np.mean(y_true == y_pred))


def lr_lambda(total: int, warmup: int, min_ratio: float) -> Callable[[int], float]:
    """Per-step LR factor: linear warm-up over ``warmup`` steps, then cosine down to ``min_ratio``."""
    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        t = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))

    return f


@dataclass
class FitResult:
    """What :func:`fit` returns: the model (best weights loaded, eval mode) and how it got there."""

    model: torch.nn.Module
    history: list[dict[str, float]]
    best_epoch: int
    best_val_macro_f1: float | None  # None without a validation set
    stopped_early: bool
    amp: str | None  # "bfloat16" / "float16" when autocast was used


@dataclass
class _Step:
    """Optimiser state of one fit."""

    opt: torch.optim.Optimizer
    sched: Any
    scaler: Any
    params: list[torch.nn.Parameter]
    use_amp: bool
    amp_dtype: torch.dtype


def _make_step(model: torch.nn.Module, loss_fn: torch.nn.Module, tc: Any, device: torch.device,
               steps_per_epoch: int) -> _Step:
    params = list(model.parameters()) + [p for p in loss_fn.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda(tc.epochs * steps_per_epoch, int(round(tc.warmup_epochs * steps_per_epoch)), tc.min_lr_ratio))
    use_amp = bool(tc.amp and device.type == "cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    return _Step(opt=opt, sched=sched, scaler=scaler, params=params, use_amp=use_amp, amp_dtype=amp_dtype)


def _train_epoch(model: torch.nn.Module, loss_fn: Any, loader: Any, st: _Step, *, epoch: int, tc: Any,
                 device: torch.device, on_step: Callable[[float], None],
                 augment: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, float]:
    """One pass over ``loader``; returns ``lr``, ``train_loss`` and ``train_<part>`` means."""
    model.train()
    tot, n_seen, parts_sum = 0.0, 0, {}
    for b in loader:
        if augment is not None:
            b = augment(b)
        y = b["label"].to(device)
        with torch.autocast(device_type=device.type, dtype=st.amp_dtype, enabled=st.use_amp):
            logits, emb = model(**model_inputs(b, device))
        loss, parts = loss_fn(logits.float(), emb.float(), y)
        if not torch.isfinite(loss):
            raise PedstreamError(f"training diverged at epoch {epoch + 1}: loss is {float(loss)}")
        st.opt.zero_grad(set_to_none=True)
        st.scaler.scale(loss).backward()
        if tc.grad_clip > 0:
            st.scaler.unscale_(st.opt)
            torch.nn.utils.clip_grad_norm_(st.params, tc.grad_clip)
        st.scaler.step(st.opt)
        st.scaler.update()
        st.sched.step()
        bs = int(y.shape[0])
        tot += float(loss.detach()) * bs
        n_seen += bs
        for k, v in parts.items():
            parts_sum[k] = parts_sum.get(k, 0.0) + float(v) * bs
        on_step(tot / n_seen)
    row = {"lr": float(st.opt.param_groups[0]["lr"]), "train_loss": tot / max(n_seen, 1)}
    row.update({f"train_{k}": v / max(n_seen, 1) for k, v in parts_sum.items() if k != "total"})
    return row


def _validate(model: torch.nn.Module, loss_fn: Any, ws: WindowSet, val: np.ndarray, *, device: torch.device,
              batch_size: int) -> dict[str, float]:
    if val.size == 0:
        return {"val_loss": float("nan"), "val_macro_f1": float("nan"), "val_top1": float("nan")}
    pv = predict(model, ws, val, device=device, batch_size=batch_size, loss_fn=loss_fn)
    f1, top1 = macro_f1_top1(pv["y_true"], pv["y_pred"])
    return {"val_loss": float(pv["loss"]), "val_macro_f1": f1, "val_top1": top1}


def fit(model: torch.nn.Module, loss_fn: torch.nn.Module, ws: WindowSet, *, train: np.ndarray, val: np.ndarray,
        tc: Any, device: torch.device, console: Any, progress: bool = True,
        augment: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> FitResult:
    """Train ``model`` on windows ``train`` as ``tc`` (the ``[train]`` section) says.

    ``augment``: called on each training batch (dict of CPU tensors) before the model sees it, e.g.
    :class:`pedstream.train.rhythm_data.NoiseMixer`; never on validation windows.

    Early stopping: after ``tc.patience`` epochs without a better validation macro-F1 (only with a
    validation set; without one the last epoch is kept). The best epoch's weights are loaded back.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    n_per_epoch = tc.steps_per_epoch * tc.batch_size if tc.steps_per_epoch > 0 else None
    loader = make_loader(WindowDataset(ws, train), batch_size=tc.batch_size, shuffle=True, seed=tc.seed,
                         balanced=tc.balanced_sampling, num_samples=n_per_epoch)
    st = _make_step(model, loss_fn, tc, device, len(loader))
    history: list[dict[str, float]] = []
    best_f1, best_epoch, bad, best_state, stopped_early = -1.0, -1, 0, None, False
    has_val = val.size > 0
    cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn()]
    with Progress(*cols, console=console, disable=not progress, transient=False) as prog:
        ep_task = prog.add_task("epochs", total=tc.epochs, info="")
        for epoch in range(tc.epochs):
            if hasattr(loss_fn, "on_epoch"):
                loss_fn.on_epoch(epoch)
            st_task = prog.add_task(f"epoch {epoch + 1}", total=len(loader), info="")
            te0 = time.perf_counter()
            row: dict[str, float] = {"epoch": epoch + 1, **_train_epoch(
                model, loss_fn, loader, st, epoch=epoch, tc=tc, device=device, augment=augment,
                on_step=lambda loss: prog.update(st_task, advance=1, info=f"loss {loss:.4f}"))}
            prog.remove_task(st_task)
            row.update(_validate(model, loss_fn, ws, val, device=device, batch_size=max(tc.batch_size, 64)))
            row["seconds"] = time.perf_counter() - te0
            history.append(row)
            score = row["val_macro_f1"] if has_val else float(epoch)  # no validation: keep the last epoch
            if score > best_f1:
                best_f1, best_epoch, bad = score, epoch + 1, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
            prog.update(ep_task, advance=1, info=f"val macro-F1 {row['val_macro_f1']:.3f} (best {best_f1:.3f} @ "
                        f"{best_epoch})" if has_val else "")
            if has_val and bad >= tc.patience:
                stopped_early = True
                console.print(f"early stop after epoch {epoch + 1}: no better validation macro-F1 for {tc.patience} epochs")
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(model=model, history=history, best_epoch=best_epoch, best_val_macro_f1=best_f1 if has_val else None,
                     stopped_early=stopped_early, amp=str(st.amp_dtype).replace("torch.", "") if st.use_amp else None)
