"""``build_loss``: the one entry point the training loop uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

import numpy as np

from pedstream.config import LossName, LossSection
from pedstream.errors import ConfigError
from pedstream.train.losses.agcacl import AGCACLLoss
from pedstream.train.losses.baselines import (
    CrossEntropyLoss,
    FocalLoss,
    LDAMDRWLoss,
    LogitAdjustedLoss,
    SupConCELoss,
    WeightedCrossEntropyLoss,
)
from pedstream.train.losses.common import LossModule, check_counts, class_weights

__all__ = ["LOSS_NAMES", "build_loss"]

LOSS_NAMES: tuple[str, ...] = get_args(LossName)


def build_loss(
    loss_cfg: LossSection, *, n_classes: int, class_counts: Sequence[int] | np.ndarray, embed_dim: int
) -> LossModule:
    """Build the loss named by ``loss_cfg.name``.

    Args:
        loss_cfg: the ``[loss]`` section.
        n_classes: C.
        class_counts: training-set sample count per class, (C,) (zeros allowed: counted as one).
        embed_dim: D of the projection embedding (used by the contrastive losses).

    Returns:
        a LossModule: ``loss, parts = module(logits (B, C), embedding (B, D), y (B,))``. Move it to
        the model's device with ``.to(device)``, call ``.on_epoch(epoch)`` at each epoch start, put
        ``module.parameters()`` in the optimiser (non-empty only for learnable AGCACL prototypes)
        and save ``module.state_dict()`` with the checkpoint.
    """
    if loss_cfg.name not in LOSS_NAMES:
        raise ConfigError([("loss.name", f"expected one of {', '.join(LOSS_NAMES)}, got {loss_cfg.name!r}")])
    if n_classes < 2:
        raise ConfigError([("n_classes", f"need at least 2 classes, got {n_classes}")], source="build_loss")
    if embed_dim < 1:
        raise ConfigError([("embed_dim", f"must be >= 1, got {embed_dim}")], source="build_loss")
    counts = check_counts(class_counts, n_classes)
    weights = class_weights(counts, scheme=loss_cfg.class_weighting, beta=loss_cfg.beta)
    c = loss_cfg
    name = c.name
    if name == "ce":
        return CrossEntropyLoss(n_classes=n_classes)
    if name == "weighted_ce":
        return WeightedCrossEntropyLoss(n_classes=n_classes, class_weight=weights)
    if name == "focal":
        return FocalLoss(n_classes=n_classes, gamma=c.focal_gamma, alpha=weights if c.focal_alpha == "class" else None)
    if name == "ldam_drw":
        return LDAMDRWLoss(
            n_classes=n_classes, counts=counts, max_margin=c.ldam_max_margin, scale=c.ldam_scale,
            drw_epoch=c.drw_epoch, class_weight=weights,
        )
    if name == "logit_adjusted":
        return LogitAdjustedLoss(n_classes=n_classes, counts=counts, tau=c.logit_adjust_tau)
    if name == "supcon_ce":
        return SupConCELoss(
            n_classes=n_classes, ce_weight=c.ce_weight, contrastive_weight=c.contrastive_weight,
            temperature=c.temperature,
        )
    return AGCACLLoss(
        n_classes=n_classes,
        embed_dim=embed_dim,
        class_weight=weights,
        ce_weight=c.ce_weight,
        contrastive_weight=c.contrastive_weight,
        temperature=c.temperature,
        use_prototypes=c.use_prototypes,
        prototype_mode=c.prototype_mode,
        prototype_weight=c.prototype_weight,
        prototype_temperature=c.prototype_temperature,
        prototype_momentum=c.prototype_momentum,
        use_reweighting=c.use_reweighting,
        use_hard_mining=c.use_hard_mining,
        hard_gamma=c.hard_gamma,
        similarity_momentum=c.similarity_momentum,
    )
