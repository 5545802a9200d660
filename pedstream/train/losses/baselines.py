"""The baselines AGCACL is compared against, on the same ``LossModule`` interface.

All of them read only the logits except ``supcon_ce``. Class counts n_c are the training-set
counts; class weights come from :func:`pedstream.train.losses.common.class_weights`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pedstream.train.losses.common import LossModule
from pedstream.train.losses.contrastive import supcon_per_anchor, weighted_mean

__all__ = [
    "CrossEntropyLoss",
    "WeightedCrossEntropyLoss",
    "FocalLoss",
    "LDAMDRWLoss",
    "LogitAdjustedLoss",
    "SupConCELoss",
    "ldam_margins",
]


class CrossEntropyLoss(LossModule):
    """``ce``: L = mean_i -log softmax(logits_i)[y_i]."""

    name = "ce"

    def compute(self, logits, embedding, y):
        loss = F.cross_entropy(logits, y)
        return loss, {"ce": float(loss.detach())}


class WeightedCrossEntropyLoss(LossModule):
    """``weighted_ce``: L = sum_i w_{y_i} CE_i / sum_i w_{y_i} (w: inverse frequency or effective number)."""

    name = "weighted_ce"

    def __init__(self, *, n_classes: int, class_weight: np.ndarray) -> None:
        super().__init__(n_classes=n_classes)
        self.register_buffer("class_weight", torch.as_tensor(class_weight, dtype=torch.float32).reshape(n_classes))

    def compute(self, logits, embedding, y):
        loss = F.cross_entropy(logits, y, weight=self.class_weight)
        return loss, {"ce": float(loss.detach())}


class FocalLoss(LossModule):
    """``focal`` (Lin et al. 2017), multi-class::

        FL_i = -alpha_{y_i} (1 - p_{i,y_i})^gamma log p_{i,y_i};  L = sum_i FL_i / sum_i alpha_{y_i}

    alpha = 1 (``focal_alpha = "none"``) or the class weights (``"class"``); gamma = 0 and no alpha is CE.
    """

    name = "focal"

    def __init__(self, *, n_classes: int, gamma: float, alpha: np.ndarray | None) -> None:
        super().__init__(n_classes=n_classes)
        self.gamma = float(gamma)
        a = np.ones(n_classes) if alpha is None else alpha
        self.register_buffer("alpha", torch.as_tensor(a, dtype=torch.float32).reshape(n_classes))

    def compute(self, logits, embedding, y):
        logp = F.log_softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)  # (B,)
        p = logp.exp()
        per = -((1.0 - p).clamp_min(0.0) ** self.gamma) * logp
        a = self.alpha[y]
        loss = (a * per).sum() / a.sum()
        return loss, {"focal": float(loss.detach())}


def ldam_margins(counts: np.ndarray, max_margin: float) -> np.ndarray:
    """LDAM margins (Cao et al. 2019): Delta_c ∝ n_c^{-1/4}, scaled so the largest is ``max_margin``.
    A class with no training samples counts as one."""
    m = 1.0 / np.power(np.maximum(np.asarray(counts, dtype=np.float64), 1.0), 0.25)
    return m * (max_margin / m.max())


class LDAMDRWLoss(LossModule):
    """``ldam_drw`` (Cao et al. 2019)::

        L_i = w_{y_i} * CE( s * (logits_i - Delta_{y_i} e_{y_i}), y_i ),   mean weighted by w

    Deferred re-weighting: w = 1 before epoch ``drw_epoch`` and the class weights (effective number
    / inverse frequency) from then on, switched by :meth:`on_epoch`. The margin is subtracted from
    the true-class logit only during training; predictions use the raw logits.
    """

    name = "ldam_drw"

    def __init__(
        self, *, n_classes: int, counts: np.ndarray, max_margin: float, scale: float, drw_epoch: int,
        class_weight: np.ndarray,
    ) -> None:
        super().__init__(n_classes=n_classes)
        self.scale = float(scale)
        self.drw_epoch = int(drw_epoch)
        self.register_buffer("margins", torch.as_tensor(ldam_margins(counts, max_margin), dtype=torch.float32))
        self.register_buffer("class_weight", torch.as_tensor(class_weight, dtype=torch.float32).reshape(n_classes))

    @property
    def drw_active(self) -> bool:
        """True once on_epoch(e) was called with e >= drw_epoch."""
        return int(self.epoch) >= self.drw_epoch

    def compute(self, logits, embedding, y):
        shift = F.one_hot(y, self.n_classes).to(logits.dtype) * self.margins[y][:, None]  # (B, C)
        z = self.scale * (logits - shift)
        weight = self.class_weight if self.drw_active else None
        loss = F.cross_entropy(z, y, weight=weight)
        return loss, {"ldam": float(loss.detach()), "drw": float(self.drw_active)}


class LogitAdjustedLoss(LossModule):
    """``logit_adjusted`` (Menon et al. 2021): L = CE(logits + tau log pi, y) with pi the training
    class prior; predictions use the raw logits, which shifts them towards rare classes."""

    name = "logit_adjusted"

    def __init__(self, *, n_classes: int, counts: np.ndarray, tau: float) -> None:
        super().__init__(n_classes=n_classes)
        n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
        self.tau = float(tau)
        self.register_buffer("log_prior", torch.as_tensor(np.log(n / n.sum()), dtype=torch.float32))

    def compute(self, logits, embedding, y):
        loss = F.cross_entropy(logits + self.tau * self.log_prior, y)
        return loss, {"ce": float(loss.detach())}


class SupConCELoss(LossModule):
    """``supcon_ce`` (Khosla et al. 2020): L = ce_weight CE + contrastive_weight mean_i l^con_i on the
    L2-normalised embeddings (no prototypes, no reweighting, no hard-class modulation)."""

    name = "supcon_ce"

    def __init__(self, *, n_classes: int, ce_weight: float, contrastive_weight: float, temperature: float) -> None:
        super().__init__(n_classes=n_classes)
        self.ce_weight = float(ce_weight)
        self.contrastive_weight = float(contrastive_weight)
        self.temperature = float(temperature)

    def compute(self, logits, embedding, y):
        z = F.normalize(embedding, dim=1)
        ce = F.cross_entropy(logits, y)
        l_con, valid = supcon_per_anchor(z, y, temperature=self.temperature)
        con = weighted_mean(l_con, torch.ones_like(l_con), valid)
        loss = self.ce_weight * ce + self.contrastive_weight * con
        return loss, {"ce": float(ce.detach()), "supcon": float(con.detach())}
