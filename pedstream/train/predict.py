"""Model inputs from a batch, and inference over a set of windows (``predict``).

:func:`model_inputs` is the ONE place that decides which batch entries the network receives: ``ecg``
(B, 12, T), ``iegm`` (B, 7, T), ``mask`` (B, 19) and, when the batch carries it, ``rr`` (B, K)
RR-interval features. Fitting, validation and evaluation all call ``model(**model_inputs(b, device))``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch

from pedstream.train.dataset import WindowDataset, WindowSet, make_loader

__all__ = ["MODEL_INPUTS", "OPTIONAL_INPUTS", "input_keys", "model_inputs", "predict"]

MODEL_INPUTS = ("ecg", "iegm", "mask")  # always passed
OPTIONAL_INPUTS = ("rr",)  # passed when the batch has them


def input_keys(batch: Mapping[str, Any]) -> list[str]:
    """Names of the network inputs ``batch`` provides: ``ecg``, ``iegm``, ``mask`` (+ ``rr`` if present)."""
    return [*MODEL_INPUTS, *(k for k in OPTIONAL_INPUTS if k in batch)]


def model_inputs(batch: Mapping[str, Any], device: torch.device | str) -> dict[str, torch.Tensor]:
    """The network's keyword inputs from a batch dict, moved to ``device``.

    ``ecg``, ``iegm``, ``mask`` always (KeyError if missing); ``rr`` only when present in the batch.
    numpy arrays are converted with :func:`torch.as_tensor`.
    """
    return {k: torch.as_tensor(batch[k]).to(device) for k in input_keys(batch)}


@torch.no_grad()
def predict(model: torch.nn.Module, ws: WindowSet, idx: np.ndarray, *, device: torch.device | str = "cpu",
            batch_size: int = 128, loss_fn: Callable[..., Any] | None = None) -> dict[str, np.ndarray | float]:
    """Run ``model`` (eval mode) on windows ``idx``.

    Returns ``probs (n, C)``, ``y_pred (n,)``, ``y_true (n,)``, ``embedding (n, D)`` and, with
    ``loss_fn``, the mean ``loss``.
    """
    model.eval()
    probs, embs, losses, ns = [], [], [], []
    for b in make_loader(WindowDataset(ws, idx), batch_size=batch_size, shuffle=False, seed=0):
        logits, emb = model(**model_inputs(b, device))
        logits = logits.float()
        if loss_fn is not None:
            lv, _ = loss_fn(logits, emb.float(), b["label"].to(device))
            losses.append(float(lv) * len(b["label"]))
            ns.append(len(b["label"]))
        probs.append(torch.softmax(logits, dim=1).cpu().numpy())
        embs.append(emb.float().cpu().numpy())
    if probs:
        p, e = np.concatenate(probs), np.concatenate(embs)
    else:
        p = np.zeros((0, getattr(model, "n_classes", len(ws.classes))), np.float32)
        e = np.zeros((0, 1), np.float32)
    out: dict[str, Any] = {"probs": p.astype(np.float32), "embedding": e.astype(np.float32),
                           "y_pred": p.argmax(axis=1).astype(np.int64), "y_true": ws.labels[idx].astype(np.int64)}
    if loss_fn is not None:
        out["loss"] = float(sum(losses) / max(sum(ns), 1))
    return out
