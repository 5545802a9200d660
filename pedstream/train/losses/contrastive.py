"""Supervised contrastive terms on L2-normalised embeddings (Khosla et al. 2020, "L_out" form).

One view per sample (no augmentation pairs): the positives of anchor i are the other samples in
the batch with the same label.
"""

from __future__ import annotations

import torch

__all__ = ["supcon_per_anchor", "weighted_mean"]


def supcon_per_anchor(
    z: torch.Tensor, y: torch.Tensor, *, temperature: float, class_neg_weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor supervised contrastive loss.

    With s_ij = z_i . z_j / tau, P(i) = {p != i : y_p = y_i}, A(i) = {a != i}::

        l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip) / sum_{a in A(i)} omega_ia exp(s_ia) )

    where omega_ia = 1 for same-class a and omega_ia = W[y_i, y_a] for negatives when
    ``class_neg_weight`` W (C, C) is given (AGCACL hard-class modulation), else 1.

    Args:
        z: (B, D) L2-normalised embeddings.
        y: (B,) int64 labels.
        temperature: tau > 0.
        class_neg_weight: optional (C, C) non-negative weights of negatives by (anchor class, class).

    Returns:
        (loss (B,), valid (B,) bool): anchors without any positive in the batch are not valid and
        their loss is 0.
    """
    b = z.shape[0]
    if b < 2:  # no pairs: nothing to contrast
        return z.sum(dim=1) * 0.0, torch.zeros(b, dtype=torch.bool, device=z.device)
    sim = z @ z.T / temperature  # (B, B)
    eye = torch.eye(b, dtype=torch.bool, device=z.device)
    same = y[:, None] == y[None, :]  # (B, B)
    pos = same & ~eye
    # numerical stability: subtract each row's max over a != i (a constant per row, cancels)
    sim = sim - sim.masked_fill(eye, float("-inf")).max(dim=1, keepdim=True).values.detach()
    log_w = torch.zeros_like(sim)
    if class_neg_weight is not None:
        w = class_neg_weight[y[:, None], y[None, :]]  # (B, B)
        log_w = torch.where(same, torch.zeros_like(sim), torch.log(w.clamp_min(1e-12)))
    denom_terms = (sim + log_w).masked_fill(eye, float("-inf"))
    log_denom = torch.logsumexp(denom_terms, dim=1, keepdim=True)  # (B, 1)
    log_prob = sim - log_denom  # (B, B)
    n_pos = pos.sum(dim=1)  # (B,)
    valid = n_pos > 0
    mean_log_prob_pos = (log_prob * pos).sum(dim=1) / n_pos.clamp_min(1)
    loss = torch.where(valid, -mean_log_prob_pos, torch.zeros_like(mean_log_prob_pos))
    return loss, valid


def weighted_mean(values: torch.Tensor, weights: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """sum_i w_i v_i / sum_i w_i over valid i; 0 (still in the graph) when nothing is valid."""
    w = weights * valid.to(weights.dtype)
    total = w.sum()
    if float(total) <= 0.0:
        return values.sum() * 0.0
    return (w * values).sum() / total
