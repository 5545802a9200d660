"""A small sequence model of the rhythm context (torch, CPU): a GRU over the last RR intervals beside an MLP
over the context features, for the cross-validation against the gradient-boosted trees.

Input per row: ``rr_seq`` (the last 64 RR intervals of the last 30 s, zero-padded in front; the tables of
:mod:`pedstream.train.rhythm_context_data`) and ``X`` (context features). Per RR step the GRU sees
``[rr clipped to 3 s, rr / median - 1, log(rr / previous rr), valid]``; the features are scaled by the
training rows' median and IQR and clipped to +/-10. GRU(4 -> 32) last state (or a causal 1-D CNN, 2 x 32
channels, max over time) + Linear(K -> 64) -> 64-d embedding -> 8 logits. The loss is any of :mod:`pedstream.train.losses` (``ce``, ``weighted_ce``,
``focal``, ``agcacl``; the embedding is what the contrastive part of AGCACL sees), with the ``[loss]``
section of the configuration for its settings.

    model = fit_seq(rr_seq, X, y, cfg, loss="agcacl")
    probs = predict_seq(model, rr_seq, X)   # (n, 8)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from pedstream.train.rhythm_context_data import CLASSES

if TYPE_CHECKING:  # pragma: no cover
    from pedstream.config import Config

__all__ = ["SeqModel", "fit_seq", "predict_seq"]

HIDDEN = 32
EMBED = 64


def _seq_inputs(rr_seq: np.ndarray) -> np.ndarray:
    """(n, L) RR seconds (0 = padding) -> (n, L, 4) GRU inputs."""
    rr = np.asarray(rr_seq, dtype=np.float64)
    valid = rr > 0
    cnt = valid.sum(1)
    med = np.ones(rr.shape[0])
    for i in np.flatnonzero(cnt):
        med[i] = float(np.median(rr[i][valid[i]]))
    rel = np.where(valid, rr / med[:, None] - 1.0, 0.0)
    prev = np.concatenate([rr[:, :1], rr[:, :-1]], axis=1)
    ok = valid & (prev > 0)
    ratio = np.where(ok, np.log(np.clip(rr, 1e-3, None) / np.clip(prev, 1e-3, None)), 0.0)
    out = np.stack([np.clip(rr, 0, 3.0), np.clip(rel, -2, 5), np.clip(ratio, -3, 3), valid.astype(np.float64)], axis=2)
    return out.astype(np.float32)


@dataclass
class SeqModel:
    net: Any
    center: np.ndarray
    scale: np.ndarray
    fit_seconds: float


def _net(k: int, kind: str = "gru") -> Any:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kind = kind
            if kind == "gru":
                self.gru = nn.GRU(4, HIDDEN, batch_first=True)
            else:  # a causal 1-D CNN over the RR steps (left-padded convolutions), global max over time
                self.cnn = nn.Sequential(nn.ConstantPad1d((4, 0), 0.0), nn.Conv1d(4, HIDDEN, 5), nn.ReLU(),
                                         nn.ConstantPad1d((8, 0), 0.0), nn.Conv1d(HIDDEN, HIDDEN, 5, dilation=2),
                                         nn.ReLU())
            self.feat = nn.Sequential(nn.Linear(k, 64), nn.ReLU())
            self.embed = nn.Sequential(nn.Linear(HIDDEN + 64, EMBED), nn.ReLU())
            self.head = nn.Linear(EMBED, len(CLASSES))

        def forward(self, seq: "torch.Tensor", x: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
            if self.kind == "gru":
                _, h = self.gru(seq)
                z = h[-1]
            else:
                z = self.cnn(seq.transpose(1, 2)).amax(dim=2)
            e = self.embed(torch.cat([z, self.feat(x)], dim=1))
            return self.head(e), e

    return Net()


def _scale(X: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.clip((np.asarray(X, np.float64) - center) / scale, -10, 10).astype(np.float32)


def fit_seq(rr_seq: np.ndarray, X: np.ndarray, y: np.ndarray, cfg: "Config", *, loss: str = "ce", epochs: int = 12,
            batch: int = 256, lr: float = 2e-3, seed: int = 0, kind: str = "gru",
            log: Callable[[str], None] | None = None) -> SeqModel:
    """Train on rows ``(rr_seq, X, y)`` (``y`` in :data:`CLASSES` indices) with the named loss; ``kind``
    the RR encoder: ``gru`` or ``cnn`` (causal dilated 1-D convolutions, max over time; cheaper on CPU)."""
    import torch

    from pedstream.train.losses.factory import build_loss

    t0 = time.time()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=np.int64)
    center = np.median(X, axis=0)
    q1, q3 = np.percentile(X, [25, 75], axis=0)
    scale = np.where(q3 - q1 > 1e-9, q3 - q1, np.maximum(np.abs(center), 1.0))
    xs = torch.from_numpy(_scale(X, center, scale))
    ss = torch.from_numpy(_seq_inputs(rr_seq))
    yt = torch.from_numpy(y)
    if kind not in ("gru", "cnn"):
        raise ValueError(f"sequence encoder must be 'gru' or 'cnn', not {kind!r}")
    net = _net(X.shape[1], kind)
    counts = np.bincount(y, minlength=len(CLASSES))
    lf = build_loss(cfg.loss.model_copy(update={"name": loss}), n_classes=len(CLASSES), class_counts=counts,
                    embed_dim=EMBED)
    opt = torch.optim.AdamW(list(net.parameters()) + list(lf.parameters()), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * ((y.size + batch - 1) // batch))
    for ep in range(epochs):
        net.train()
        lf.train()
        lf.on_epoch(ep)
        order = rng.permutation(y.size)
        tot = 0.0
        for i in range(0, y.size, batch):
            b = torch.from_numpy(order[i: i + batch])
            if b.numel() < 2:
                continue
            logits, emb = net(ss[b], xs[b])
            l, _ = lf(logits, emb, yt[b])
            opt.zero_grad()
            l.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            sched.step()
            tot += float(l.detach()) * b.numel()
        if log:
            log(f"  epoch {ep}: loss {tot / y.size:.4f}")
    net.eval()
    return SeqModel(net, center, scale, round(time.time() - t0, 1))


def predict_seq(model: SeqModel, rr_seq: np.ndarray, X: np.ndarray, batch: int = 4096) -> np.ndarray:
    """(n, len(CLASSES)) softmax probabilities."""
    import torch

    xs = torch.from_numpy(_scale(X, model.center, model.scale))
    ss = torch.from_numpy(_seq_inputs(rr_seq))
    out = []
    with torch.no_grad():
        for i in range(0, xs.shape[0], batch):
            logits, _ = model.net(ss[i: i + batch], xs[i: i + batch])
            out.append(torch.softmax(logits, dim=1).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, len(CLASSES)))
