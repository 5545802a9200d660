"""Shared pieces of every training loss: the module interface, class weights, input checks.

Every loss in :mod:`pedstream.train.losses` is a :class:`LossModule`: ``forward(logits (B, C),
embedding (B, D), y (B,)) -> (loss scalar tensor, parts: dict[str, float])``. State that must
survive a checkpoint (prototypes, similarity matrix, epoch counter, class weights) lives in
registered buffers, so ``state_dict()`` carries it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from pedstream.errors import ConfigError, PedstreamError

__all__ = ["LossModule", "class_weights", "check_counts"]


class LossModule(nn.Module):
    """Base class. Subclasses implement :meth:`compute`; :meth:`forward` checks shapes and casts.

    Attributes:
        name: the ``[loss].name`` this module implements.
        n_classes: C.
    """

    name: str = "base"

    def __init__(self, *, n_classes: int) -> None:
        super().__init__()
        self.n_classes = int(n_classes)
        # epoch index last passed to on_epoch (-1 = never); a buffer so a resumed run knows it
        self.register_buffer("epoch", torch.tensor(-1, dtype=torch.long))

    def on_epoch(self, epoch: int) -> None:
        """Call at the start of every epoch (0-based). LDAM-DRW switches its weights here."""
        self.epoch.fill_(int(epoch))

    def forward(
        self, logits: torch.Tensor, embedding: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """logits (B, C), embedding (B, D), y (B,) int class indices -> (scalar loss, parts).

        Inputs are cast to float32 (safe under autocast). ``parts`` holds detached floats, always
        including ``"total"``.
        """
        if logits.ndim != 2 or logits.shape[1] != self.n_classes:
            raise PedstreamError(
                f"loss {self.name}: logits must be (B, {self.n_classes}), got {tuple(logits.shape)}"
            )
        b = logits.shape[0]
        if embedding.ndim != 2 or embedding.shape[0] != b:
            raise PedstreamError(f"loss {self.name}: embedding must be ({b}, D), got {tuple(embedding.shape)}")
        if y.ndim != 1 or y.shape[0] != b:
            raise PedstreamError(f"loss {self.name}: y must be ({b},), got {tuple(y.shape)}")
        if b == 0:
            raise PedstreamError(f"loss {self.name}: empty batch")
        y = y.long()
        loss, parts = self.compute(logits.float(), embedding.float(), y)
        parts["total"] = float(loss.detach())
        return loss, parts

    def compute(
        self, logits: torch.Tensor, embedding: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:  # pragma: no cover - abstract
        raise NotImplementedError


def check_counts(class_counts: Sequence[int] | np.ndarray, n_classes: int) -> np.ndarray:
    """Validate training-set class counts -> float64 array (C,). Raises ConfigError when wrong."""
    try:
        counts = np.asarray(class_counts, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ConfigError([("class_counts", f"expected {n_classes} numbers: {exc}")], source="build_loss") from exc
    if counts.shape[0] != n_classes:
        raise ConfigError(
            [("class_counts", f"expected {n_classes} counts (one per class), got {counts.shape[0]}")],
            source="build_loss",
        )
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ConfigError([("class_counts", "counts must be finite and >= 0")], source="build_loss")
    if counts.sum() <= 0:
        raise ConfigError([("class_counts", "all counts are zero")], source="build_loss")
    return counts


def class_weights(counts: np.ndarray, *, scheme: str, beta: float) -> np.ndarray:
    """Per-class weights (C,) normalised to sum to C.

    ``"effective"`` (Cui et al. 2019): w_c ∝ (1 - beta) / (1 - beta^{n_c}) (the inverse effective
    number of samples; beta = 0 gives uniform weights, beta -> 1 inverse frequency).
    ``"inverse"``: w_c ∝ 1 / n_c. A class with no training samples is treated as having one
    (so its weight is finite and the largest).
    """
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    if scheme == "effective":
        raw = (1.0 - beta) / (1.0 - np.power(beta, n)) if beta > 0 else np.ones_like(n)
    elif scheme == "inverse":
        raw = 1.0 / n
    else:
        raise ConfigError([("loss.class_weighting", f"expected 'effective' or 'inverse', got {scheme!r}")])
    return raw / raw.sum() * len(n)
