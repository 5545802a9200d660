"""Training losses: AGCACL (arXiv 2509.19315) and the baselines, behind one interface.

``build_loss(loss_cfg, *, n_classes, class_counts, embed_dim) -> LossModule``;
``LossModule.forward(logits (B, C), embedding (B, D), y (B,)) -> (loss, parts dict[str, float])``.
Imports torch.
"""

from pedstream.train.losses.agcacl import AGCACLLoss
from pedstream.train.losses.baselines import (
    CrossEntropyLoss,
    FocalLoss,
    LDAMDRWLoss,
    LogitAdjustedLoss,
    SupConCELoss,
    WeightedCrossEntropyLoss,
    ldam_margins,
)
from pedstream.train.losses.common import LossModule, class_weights
from pedstream.train.losses.contrastive import supcon_per_anchor
from pedstream.train.losses.factory import LOSS_NAMES, build_loss

__all__ = [
    "LOSS_NAMES",
    "build_loss",
    "LossModule",
    "AGCACLLoss",
    "CrossEntropyLoss",
    "WeightedCrossEntropyLoss",
    "FocalLoss",
    "LDAMDRWLoss",
    "LogitAdjustedLoss",
    "SupConCELoss",
    "class_weights",
    "ldam_margins",
    "supcon_per_anchor",
]
