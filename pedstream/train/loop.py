"""``pedstream train``: one training run, from a folder of WFDB records to a run folder.

A run: build (or reuse) the window cache -> split by protocol (``segment``: stratified random split of
windows, as published, which LEAKS SUBJECTS between train and test; ``subject``: grouped K-fold fold K,
no subject in two parts; ``loso``: leave subject K out) -> AdamW with linear warm-up + cosine decay ->
early stopping on validation macro-F1 -> best weights back -> test-set predictions.

RUNDIR afterwards holds::

    checkpoint.pt     weights + metadata (pedstream.model.checkpoint.save_checkpoint)
    curves.csv/.png   per epoch: lr, train loss (and loss parts), val loss, val macro-F1, val top-1
    manifest.json     records (SHA-256 of .hea/.dat/.atr), resolved config, git commit, protocol/fold,
                      subjects per part, method name, timings, leakage warning
    split.npz         (record, start) of the train/val/test windows (eval finds the test set with it)
    predictions.npz   test set: y_true, y_pred, probs (n, C), embedding (n, D), record, start, subject
    metrics.json      the evaluation of the test set (pedstream.train.evaluate)

Deterministic on CPU: torch/numpy seeded, ``torch.use_deterministic_algorithms(True)``, loaders with
seeded generators and no worker processes. CUDA, when present, runs with autocast (bf16 where the GPU
supports it, else fp16 with a gradient scaler).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pedstream.errors import ConfigError, PedstreamError
from pedstream.train.dataset import WindowDataset, WindowSet, build_windows, make_loader

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

LEAKAGE_TEXT = ("segment protocol: windows of the same subject are in train and test (as published); "
                "its scores overstate performance on new patients; use --protocol subject for that")


class SubjectLeakageWarning(UserWarning):
    """The segment protocol puts windows of one subject into both training and test."""


# --------------------------------------------------------------------------------------- utilities
def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed python-free RNGs (torch, numpy) and switch torch to deterministic kernels."""
    torch.manual_seed(int(seed))
    np.random.seed(int(seed) % (2**32))
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True


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


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _device(cfg: Any) -> torch.device:
    want = cfg.train.device
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(want)
    except RuntimeError as exc:
        raise ConfigError([("train.device", f"not a torch device: {want!r}")]) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError([("train.device", f"{want!r} requested but CUDA is not available")])
    return dev


# ------------------------------------------------------------------------------------------- split
@dataclass
class Split:
    """Window indices of each part and the subjects in them."""

    protocol: str
    fold: int
    n_folds: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    leaks_subjects: bool
    subjects: dict[str, list[str]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "fold": self.fold, "n_folds": self.n_folds,
                "n_windows": {"train": int(self.train.size), "val": int(self.val.size), "test": int(self.test.size)},
                "subjects": self.subjects, "leaks_subjects": self.leaks_subjects,
                **({"warning": LEAKAGE_TEXT} if self.leaks_subjects else {})}


def make_split(ws: WindowSet, cfg: Any, *, protocol: str | None = None, fold: int = 0) -> Split:
    """Split the windows by ``protocol`` (default ``split.protocol``) using :mod:`pedstream.train.splits`."""
    from pedstream.train import splits

    protocol = protocol or cfg.split.protocol
    sp = cfg.split
    labels, groups = ws.labels, ws.subjects
    if protocol == "segment":
        tr, va, te = splits.segment_split(labels, test_fraction=sp.test_fraction, val_fraction=sp.val_fraction,
                                          seed=sp.seed, groups=groups)
        n_folds = 1
        if fold != 0:
            raise ConfigError([("--fold", f"the segment protocol has one split (fold 0), got {fold}")])
    elif protocol == "subject":
        n_folds = sp.folds
        if not 0 <= fold < n_folds:
            raise ConfigError([("--fold", f"fold must be in 0..{n_folds - 1} for split.folds = {n_folds}, got {fold}")])
        tr, va, te = splits.grouped_kfold(labels, groups, folds=n_folds, fold=fold, val_fraction=sp.val_fraction,
                                          seed=sp.seed)
    elif protocol == "loso":
        uniq = sorted(set(groups.tolist()))
        n_folds = len(uniq)
        if not 0 <= fold < n_folds:
            raise ConfigError([("--fold", f"loso has one fold per subject (0..{n_folds - 1}), got {fold}")])
        tr, va, te = splits.leave_one_subject_out(labels, groups, fold=fold, val_fraction=sp.val_fraction,
                                                  seed=sp.seed)
    else:
        raise ConfigError([("split.protocol", f"expected segment, subject or loso, got {protocol!r}")])
    tr, va, te = (np.sort(np.asarray(a, dtype=np.int64)) for a in (tr, va, te))
    subj = {name: sorted(set(groups[idx].tolist())) for name, idx in (("train", tr), ("val", va), ("test", te))}
    leaks = bool(set(subj["test"]) & (set(subj["train"]) | set(subj["val"])))
    if protocol != "segment" and leaks:
        raise PedstreamError(f"split {protocol} fold {fold}: subjects in both train and test: "
                             f"{sorted(set(subj['test']) & set(subj['train']))}")
    return Split(protocol=protocol, fold=int(fold), n_folds=int(n_folds), train=tr, val=va, test=te,
                 leaks_subjects=leaks, subjects=subj)


# ------------------------------------------------------------------------------------- predictions
@torch.no_grad()
def predict(model: torch.nn.Module, ws: WindowSet, idx: np.ndarray, *, device: torch.device | str = "cpu",
            batch_size: int = 128, loss_fn: Callable[..., Any] | None = None) -> dict[str, np.ndarray | float]:
    """Run ``model`` (eval mode) on windows ``idx``.

    Returns ``probs (n, C)``, ``y_pred (n,)``, ``y_true (n,)``, ``embedding (n, D)`` and, with
    ``loss_fn``, the mean ``loss``.
    """
    model.eval()
    probs, embs, losses, ns = [], [], [], []
    ds = WindowDataset(ws, idx)
    for b in make_loader(ds, batch_size=batch_size, shuffle=False, seed=0):
        ecg, iegm, mask = (b[k].to(device) for k in ("ecg", "iegm", "mask"))
        logits, emb = model(ecg, iegm, mask)
        logits = logits.float()
        if loss_fn is not None:
            lv, _ = loss_fn(logits, emb.float(), b["label"].to(device))
            losses.append(float(lv) * len(b["label"]))
            ns.append(len(b["label"]))
        probs.append(torch.softmax(logits, dim=1).cpu().numpy())
        embs.append(emb.float().cpu().numpy())
    c = None
    out: dict[str, Any] = {}
    if probs:
        p = np.concatenate(probs)
        e = np.concatenate(embs)
    else:
        c = getattr(model, "n_classes", len(ws.classes))
        p = np.zeros((0, c), np.float32)
        e = np.zeros((0, 1), np.float32)
    out["probs"] = p.astype(np.float32)
    out["embedding"] = e.astype(np.float32)
    out["y_pred"] = p.argmax(axis=1).astype(np.int64)
    out["y_true"] = ws.labels[idx].astype(np.int64)
    if loss_fn is not None:
        out["loss"] = float(sum(losses) / max(sum(ns), 1))
    return out


def _macro_f1_top1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[float, float]:
    from sklearn.metrics import f1_score

    if y_true.size == 0:
        return float("nan"), float("nan")
    labels = sorted(set(y_true.tolist()))  # macro over the classes present in this set
    f1 = f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    return float(f1), float(np.mean(y_true == y_pred))


# --------------------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    run_dir: Path
    method: str
    best_epoch: int
    best_val_macro_f1: float
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]]
    metrics: dict[str, Any] | None
    seconds: float


def _lr_lambda(total: int, warmup: int, min_ratio: float) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(total - warmup, 1)
        t = min(max(t, 0.0), 1.0)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))

    return f


def _plot_curves(history: list[dict[str, float]], path: Path, title: str) -> None:
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


def _write_curves(history: list[dict[str, float]], path: Path) -> None:
    keys: list[str] = []
    for h in history:
        for k in h:
            if k not in keys:
                keys.append(k)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for h in history:
            w.writerow({k: h.get(k, "") for k in keys})


def _data_description(ws: WindowSet, data: Path, signal_cfg: Any) -> tuple[str, bool, dict[str, Any]]:
    """``(description, simulated?, training_data)`` of the training records.

    ``simulated``: the folder's README or a record header says the records are simulated (pedstream
    data synth marks both). ``training_data`` is the structured summary stored in the model metadata
    (``format`` "Leipzig-format" when every record has one of the Leipzig channel layouts, else
    "WFDB"; ``records``, ``subjects``, ``windows``, ``simulated``) from which the engine builds its
    one-line banner; ``description`` is the same in words, e.g. ``"simulated Leipzig-format records
    (pedstream data synth): 29 subjects, 29 records, 1945 windows of 2.5 s at 977 Hz"``.
    """
    from pedstream.data.loader import open_record

    simulated = False
    for readme in ("README.txt", "README", "README.md"):  # pedstream data synth writes README.txt
        f = data / readme
        if f.is_file() and "SIMULATED" in f.read_text(encoding="utf-8", errors="replace"):
            simulated = True
    leipzig = bool(ws.record_info)
    for info in ws.record_info:
        hea = Path(info["path"] + ".hea")
        try:
            text = hea.read_text(encoding="utf-8", errors="replace").lower()
        except OSError:
            leipzig = False
            continue
        if "simulat" in text or "synth" in text:
            simulated = True
        if leipzig:
            try:
                leipzig = open_record(info["path"], signal_cfg).layout is not None
            except PedstreamError:
                leipzig = False
    fmt = "Leipzig-format" if leipzig else "WFDB"
    n_subj = len({i["subject"] for i in ws.record_info})
    n_rec = len(ws.record_info)
    kind = f"simulated {fmt} records (pedstream data synth)" if simulated else f"{fmt} records"
    desc = (f"{kind}: {n_subj} subject{'s' if n_subj != 1 else ''}, {n_rec} record{'s' if n_rec != 1 else ''}, "
            f"{len(ws)} windows of {ws.window / ws.fs:.3g} s at {ws.fs:g} Hz")
    summary = {"format": fmt, "simulated": simulated, "subjects": n_subj, "records": n_rec, "windows": len(ws)}
    return desc, simulated, summary


def train_run(
    cfg: Any,
    *,
    data: str | Path,
    out: str | Path,
    protocol: str | None = None,
    fold: int = 0,
    method: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    console: Any = None,
    evaluate_test: bool = True,
) -> TrainResult:
    """Train one model as ``cfg`` says and fill the run folder ``out``. See the module docstring."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pedstream.dsp.windowing import window_samples  # noqa: F401  (the engine's definition, via dataset)
    from pedstream.model.checkpoint import save_checkpoint
    from pedstream.model.config import ModelConfig
    from pedstream.model.metadata import NORMALIZATION
    from pedstream.model.network import build_model
    from pedstream.train.losses import build_loss

    t0 = time.perf_counter()
    console = console or Console(stderr=True)
    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    seed_everything(tc.seed, deterministic=tc.deterministic)
    device = _device(cfg)
    protocol = protocol or cfg.split.protocol
    method = method or method_name(cfg)

    ws = build_windows(data, cfg, cache_dir=cache_dir, progress=progress)
    console.print(f"[bold]{method}[/] · {len(ws)} windows from {len(ws.record_info)} records "
                  f"({'cache hit' if ws.cache_hit else 'built'}) · protocol {protocol} fold {fold} · {device}")
    split = make_split(ws, cfg, protocol=protocol, fold=fold)
    if split.leaks_subjects:
        warnings.warn(LEAKAGE_TEXT, SubjectLeakageWarning, stacklevel=2)
        console.print(f"[yellow]warning:[/] {LEAKAGE_TEXT}")
    if split.train.size == 0:
        raise PedstreamError(f"split {protocol} fold {fold}: no training windows")
    n_classes = len(ws.classes)
    counts = ws.class_counts(split.train)

    model_cfg = ModelConfig.from_sections(cfg.model, signal=cfg.signal, segments=cfg.segments, n_classes=n_classes)
    model = build_model(model_cfg).to(device)
    loss_fn = build_loss(cfg.loss, n_classes=n_classes, class_counts=counts,
                         embed_dim=model_cfg.embed_dim).to(device)
    params = list(model.parameters()) + [p for p in loss_fn.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)

    n_per_epoch = tc.steps_per_epoch * tc.batch_size if tc.steps_per_epoch > 0 else None
    train_loader = make_loader(WindowDataset(ws, split.train), batch_size=tc.batch_size, shuffle=True,
                               seed=tc.seed, balanced=tc.balanced_sampling, num_samples=n_per_epoch)
    steps = len(train_loader)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(tc.epochs * steps, int(round(tc.warmup_epochs * steps)), tc.min_lr_ratio))

    use_amp = bool(tc.amp and device.type == "cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    history: list[dict[str, float]] = []
    best_f1, best_epoch, bad, best_state = -1.0, -1, 0, None
    stopped_early = False
    has_val = split.val.size > 0
    cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn()]
    with Progress(*cols, console=console, disable=not progress, transient=False) as prog:
        ep_task = prog.add_task("epochs", total=tc.epochs, info="")
        for epoch in range(tc.epochs):
            model.train()
            if hasattr(loss_fn, "on_epoch"):
                loss_fn.on_epoch(epoch)
            st_task = prog.add_task(f"epoch {epoch + 1}", total=steps, info="")
            tot, n_seen, parts_sum = 0.0, 0, {}
            te0 = time.perf_counter()
            for b in train_loader:
                ecg, iegm, mask, y = (b[k].to(device) for k in ("ecg", "iegm", "mask", "label"))
                with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                    logits, emb = model(ecg, iegm, mask)
                loss, parts = loss_fn(logits.float(), emb.float(), y)
                if not torch.isfinite(loss):
                    raise PedstreamError(f"training diverged at epoch {epoch + 1}: loss is {float(loss)}")
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if tc.grad_clip > 0:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
                bs = int(y.shape[0])
                tot += float(loss.detach()) * bs
                n_seen += bs
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + float(v) * bs
                prog.update(st_task, advance=1, info=f"loss {tot / n_seen:.4f}")
            prog.remove_task(st_task)
            row: dict[str, float] = {"epoch": epoch + 1, "lr": float(opt.param_groups[0]["lr"]),
                                     "train_loss": tot / max(n_seen, 1)}
            for k, v in parts_sum.items():
                if k != "total":
                    row[f"train_{k}"] = v / max(n_seen, 1)
            if has_val:
                pv = predict(model, ws, split.val, device=device, batch_size=max(tc.batch_size, 64), loss_fn=loss_fn)
                f1, top1 = _macro_f1_top1(pv["y_true"], pv["y_pred"], n_classes)
                row.update(val_loss=float(pv["loss"]), val_macro_f1=f1, val_top1=top1)
            else:
                row.update(val_loss=float("nan"), val_macro_f1=float("nan"), val_top1=float("nan"))
            row["seconds"] = time.perf_counter() - te0
            history.append(row)
            score = row["val_macro_f1"] if has_val else float(epoch)  # no validation: keep the last epoch
            if score > best_f1:
                best_f1, best_epoch, bad = score, epoch + 1, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
            prog.update(ep_task, advance=1, info=f"val macro-F1 {row['val_macro_f1']:.3f} (best {best_f1:.3f} @ {best_epoch})"
                        if has_val else "")
            if has_val and bad >= tc.patience:
                stopped_early = True
                console.print(f"early stop after epoch {epoch + 1}: no better validation macro-F1 for {tc.patience} epochs")
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()

    # ---------------------------------------------------------------- run folder
    desc, simulated, training_data = _data_description(ws, data, cfg.signal)
    sample_idx = split.val[:8] if split.val.size else split.train[:8]
    sb = ws.batch(sample_idx)
    label_scheme = {"name": cfg.labels.scheme, **cfg.labels.active.model_dump(mode="json")}
    extra = {"protocol": split.describe(), "method": method, "loss": cfg.loss.model_dump(mode="json"),
             "best_epoch": best_epoch, "best_val_macro_f1": None if not has_val else best_f1,
             "training_data": training_data}
    save_checkpoint(out, model=model.cpu(), model_cfg=model_cfg, class_names=ws.classes, channels=cfg.signal.channels,
                    fs=cfg.signal.fs, window_s=cfg.segments.window_s, hop_s=cfg.segments.hop_s,
                    filters=cfg.filters.model_dump(mode="json"), normalization=NORMALIZATION,
                    label_scheme=label_scheme, data_description=desc, simulated=simulated, extra=extra,
                    sample_inputs={k: sb[k] for k in ("ecg", "iegm", "mask")})
    model.to(device)
    _write_curves(history, out / "curves.csv")
    _plot_curves(history, out / "curves.png", f"{method} · {protocol} fold {fold}")
    np.savez(out / "split.npz",
             **{f"{part}_{col}": arr[idx] for part, idx in (("train", split.train), ("val", split.val),
                                                              ("test", split.test))
                for col, arr in (("record", ws.records), ("start", ws.starts))})
    seconds_train = time.perf_counter() - t0
    manifest = {
        "method": method,
        "protocol": protocol,
        "fold": int(fold),
        "split": split.describe(),
        "data": {"folder": str(data.resolve()), "description": desc, "simulated": simulated,
                 "cache_key": ws.key, "cache_dir": str(ws.cache_path.parent) if ws.cache_path else None, "classes": ws.classes, "n_windows": len(ws),
                 "window_samples": ws.window, "hop_samples": ws.hop, "fs": ws.fs, "storage": "float16",
                 "records": [{"name": r["name"], "subject": r["subject"], "sha256": r["sha256"],
                              "n_windows": r["n_windows"]} for r in ws.record_info]},
        "train_class_counts": {c: int(n) for c, n in zip(ws.classes, counts)},
        "config": cfg.model_dump(mode="json"),
        "git_commit": _git_commit(),
        "torch": torch.__version__,
        "device": str(device),
        "amp": str(amp_dtype).replace("torch.", "") if use_amp else None,
        "best_epoch": best_epoch,
        "best_val_macro_f1": None if not has_val else best_f1,
        "epochs_run": len(history),
        "stopped_early": stopped_early,
        "seconds_train": round(seconds_train, 2),
    }
    metrics = None
    if split.test.size and evaluate_test:
        from pedstream.train.evaluate import evaluate_arrays

        pt = predict(model, ws, split.test, device=device, batch_size=max(tc.batch_size, 64))
        np.savez(out / "predictions.npz", y_true=pt["y_true"], y_pred=pt["y_pred"], probs=pt["probs"],
                 embedding=pt["embedding"], record=ws.records[split.test], start=ws.starts[split.test],
                 subject=ws.subjects[split.test], classes=np.asarray(ws.classes))
        metrics = evaluate_arrays(pt["y_true"], pt["y_pred"], ws.classes, n_boot=tc.bootstrap, seed=tc.seed,
                                  probs=pt["probs"])
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    manifest["seconds_total"] = round(time.perf_counter() - t0, 2)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    console.print(f"run folder {out}: best epoch {best_epoch}"
                  + (f", val macro-F1 {best_f1:.3f}" if has_val else "")
                  + (f", test macro-F1 {metrics['macro_f1']:.3f}" if metrics else "")
                  + f" ({manifest['seconds_total']:.0f} s)")
    return TrainResult(run_dir=out, method=method, best_epoch=best_epoch, best_val_macro_f1=best_f1,
                       epochs_run=len(history), stopped_early=stopped_early, history=history, metrics=metrics,
                       seconds=manifest["seconds_total"])
