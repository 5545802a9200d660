r"""AGCACL: Adaptive Global Class-Aware Contrastive Loss (Chen, Huang, Feng, arXiv 2509.19315).

The paper names three ingredients (prototype-based alignment, class-frequency reweighting and
globally informed hard-class modulation); its exact equations were not available to us, so this is
the formulation of pedstream issue 3, written out here in full. Notation: z_i = f(x_i)/||f(x_i)||
(B, D) the L2-normalised projection embeddings, y_i their labels, C classes, tau the SupCon
temperature, tau_p the prototype temperature, n_c the training count of class c.

(b) Class weights (Cui et al. 2019 effective number, or inverse frequency), normalised to sum C::

    r_c = (1 - beta) / (1 - beta^{n_c})      or      r_c = 1 / n_c          (r <- C r / sum r)

    r_c = 1 for every c when use_reweighting is off.

(a) Prototypes p_c (unit vectors, (C, D)). "ema": updated from each training batch *before* the
loss is evaluated, without gradient, for the classes present in the batch::

    p_c <- normalize( m_p p_c + (1 - m_p) mean_{i: y_i = c} z_i )   (first sighting: p_c <- normalize(mean))

"learnable": p_c = normalize(theta_c) with theta a trainable (C, D) parameter (only when the
prototype term is on; hard-class modulation alone tracks EMA prototypes).

(c) Global class-similarity matrix S (C, C), an EMA across batches of the prototype cosine
similarities (updated after the prototypes; both only in training mode with autograd on)::

    S <- m_s S + (1 - m_s) P P^T

and the hard-class weights of negatives, for anchor class c and negative class k != c::

    w_ck = (1 + gamma relu(S_ck)) / mean_{k' != c} (1 + gamma relu(S_ck'))      w_cc = 1

(rows have mean 1 over the other classes, so modulation redistributes rather than rescales the
negative mass; w = 1 when use_hard_mining is off or gamma = 0).

Supervised contrastive term with hard-class modulation (s_ij = z_i . z_j / tau, P(i) the batch
positives of i, A(i) all other batch samples, omega_ia = 1 if y_a = y_i else w_{y_i y_a})::

    l^con_i = -1/|P(i)| sum_{p in P(i)} log( exp(s_ip) / sum_{a in A(i)} omega_ia exp(s_ia) )

Prototype-contrastive term (pull to own prototype, push from the others, same modulation;
classes whose EMA prototype has never been seen are left out of the sum)::

    l^proto_i = -log( exp(z_i . p_{y_i} / tau_p) / sum_k w_{y_i k} exp(z_i . p_k / tau_p) )

Class-reweighted means (anchors without a positive in the batch are left out of L_con)::

    L_con   = sum_i r_{y_i} l^con_i   / sum_i r_{y_i}
    L_proto = sum_i r_{y_i} l^proto_i / sum_i r_{y_i}

Total::

    L = ce_weight * CE(logits, y) + contrastive_weight * ( L_con + prototype_weight * L_proto )

With use_prototypes, use_reweighting and use_hard_mining all off and ce_weight = 0 this is plain
SupCon (scaled by contrastive_weight); with contrastive_weight = 0 it is plain cross-entropy.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pedstream.errors import PedstreamError
from pedstream.train.losses.common import LossModule
from pedstream.train.losses.contrastive import supcon_per_anchor, weighted_mean

__all__ = ["AGCACLLoss"]


class AGCACLLoss(LossModule):
    """AGCACL (formula in the module docstring). Buffers: ``prototypes`` (C, D) (ema mode),
    ``proto_seen`` (C,) bool, ``similarity`` (C, C), ``class_weight`` (C,). Learnable mode adds the
    parameter ``prototype_params`` (C, D): give ``loss.parameters()`` to the optimiser too.
    State is only updated in training mode with autograd enabled (not under ``torch.no_grad()``)."""

    name = "agcacl"

    def __init__(
        self,
        *,
        n_classes: int,
        embed_dim: int,
        class_weight: np.ndarray,
        ce_weight: float = 1.0,
        contrastive_weight: float = 0.5,
        temperature: float = 0.1,
        use_prototypes: bool = True,
        prototype_mode: str = "ema",
        prototype_weight: float = 1.0,
        prototype_temperature: float = 0.1,
        prototype_momentum: float = 0.9,
        use_reweighting: bool = True,
        use_hard_mining: bool = True,
        hard_gamma: float = 1.0,
        similarity_momentum: float = 0.9,
    ) -> None:
        super().__init__(n_classes=n_classes)
        self.embed_dim = int(embed_dim)
        self.ce_weight = float(ce_weight)
        self.contrastive_weight = float(contrastive_weight)
        self.temperature = float(temperature)
        self.use_prototypes = bool(use_prototypes)
        self.prototype_mode = prototype_mode
        self.prototype_weight = float(prototype_weight)
        self.prototype_temperature = float(prototype_temperature)
        self.prototype_momentum = float(prototype_momentum)
        self.use_reweighting = bool(use_reweighting)
        self.use_hard_mining = bool(use_hard_mining)
        self.hard_gamma = float(hard_gamma)
        self.similarity_momentum = float(similarity_momentum)
        c, d = self.n_classes, self.embed_dim
        self.register_buffer("class_weight", torch.as_tensor(class_weight, dtype=torch.float32).reshape(c))
        self.register_buffer("similarity", torch.zeros(c, c))
        # hard mining without the prototype term still needs prototypes for S: EMA ones then
        # (learnable prototypes would get no gradient)
        if prototype_mode == "learnable" and self.use_prototypes:
            init = F.normalize(torch.randn(c, d), dim=1)
            self.prototype_params = nn.Parameter(init)
            self.register_buffer("proto_seen", torch.ones(c, dtype=torch.bool))
        else:
            self.prototype_params = None
            self.register_buffer("prototypes", torch.zeros(c, d))
            self.register_buffer("proto_seen", torch.zeros(c, dtype=torch.bool))

    # --- state -------------------------------------------------------------------------------

    def current_prototypes(self) -> torch.Tensor:
        """(C, D) unit prototypes (rows of never-seen EMA classes are 0). Differentiable when learnable."""
        if self.prototype_params is not None:
            return F.normalize(self.prototype_params, dim=1)
        return self.prototypes

    @torch.no_grad()
    def update_prototypes(self, z: torch.Tensor, y: torch.Tensor) -> None:
        """EMA update from a batch: z (B, D) unit embeddings, y (B,). No-op in learnable mode."""
        if self.prototype_params is not None:
            return
        z = z.detach()
        c = self.n_classes
        onehot = F.one_hot(y, c).to(z.dtype)  # (B, C); a matmul is deterministic on CUDA, index_add_ is not
        sums = onehot.T @ z  # (C, D)
        counts = onehot.sum(dim=0)  # (C,)
        present = counts > 0
        means = sums / counts.clamp_min(1)[:, None]
        m = self.prototype_momentum
        blended = torch.where(self.proto_seen[:, None], m * self.prototypes + (1 - m) * means, means)
        new = F.normalize(blended, dim=1)
        self.prototypes.copy_(torch.where(present[:, None], new, self.prototypes))
        self.proto_seen.logical_or_(present)

    @torch.no_grad()
    def update_similarity(self) -> None:
        """EMA of the prototype cosine-similarity matrix over pairs of seen classes."""
        p = self.current_prototypes().detach()
        sim = p @ p.T  # (C, C)
        both = self.proto_seen[:, None] & self.proto_seen[None, :]
        m = self.similarity_momentum
        self.similarity.copy_(torch.where(both, m * self.similarity + (1 - m) * sim, self.similarity))

    def hard_class_weights(self) -> torch.Tensor:
        """(C, C) weights w_ck of negatives of class k for anchors of class c (w_cc = 1)."""
        c = self.n_classes
        eye = torch.eye(c, dtype=torch.bool, device=self.similarity.device)
        raw = 1.0 + self.hard_gamma * torch.relu(self.similarity)
        if c > 1:
            off_mean = raw.masked_fill(eye, 0.0).sum(dim=1, keepdim=True) / (c - 1)
            raw = raw / off_mean
        return raw.masked_fill(eye, 1.0)

    # --- loss --------------------------------------------------------------------------------

    def compute(
        self, logits: torch.Tensor, embedding: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if embedding.shape[1] != self.embed_dim:
            raise PedstreamError(
                f"loss agcacl: embedding has {embedding.shape[1]} dimensions, expected embed_dim={self.embed_dim}"
            )
        z = F.normalize(embedding, dim=1)  # (B, D)
        ce = F.cross_entropy(logits, y)
        parts: dict[str, float] = {"ce": float(ce.detach())}
        # state learns only from batches being trained on: training mode and autograd enabled
        # (a validation pass under torch.no_grad() leaves it alone even if .eval() was forgotten)
        if self.training and torch.is_grad_enabled() and (self.use_prototypes or self.use_hard_mining):
            self.update_prototypes(z, y)  # no-op for learnable prototypes
            self.update_similarity()
        w_hard = self.hard_class_weights() if self.use_hard_mining else None  # (C, C)
        r = self.class_weight[y] if self.use_reweighting else torch.ones_like(z[:, 0])  # (B,)

        l_con, valid = supcon_per_anchor(z, y, temperature=self.temperature, class_neg_weight=w_hard)
        con = weighted_mean(l_con, r, valid)
        parts["supcon"] = float(con.detach())
        contrast = con
        if self.use_prototypes:
            proto = self._prototype_term(z, y, r, w_hard)
            parts["proto"] = float(proto.detach())
            contrast = contrast + self.prototype_weight * proto
        loss = self.ce_weight * ce + self.contrastive_weight * contrast
        return loss, parts

    def _prototype_term(
        self, z: torch.Tensor, y: torch.Tensor, r: torch.Tensor, w_hard: torch.Tensor | None
    ) -> torch.Tensor:
        p = self.current_prototypes()  # (C, D)
        logits = z @ p.T / self.prototype_temperature  # (B, C)
        if w_hard is not None:
            logits_w = logits + torch.log(w_hard[y].clamp_min(1e-12))  # w_{y_i y_i} = 1
        else:
            logits_w = logits
        seen = self.proto_seen[None, :].expand_as(logits)
        log_denom = torch.logsumexp(logits_w.masked_fill(~seen, float("-inf")), dim=1)  # (B,)
        own = logits.gather(1, y[:, None]).squeeze(1)
        valid = self.proto_seen[y]
        per = torch.where(valid, log_denom - own, torch.zeros_like(own))
        return weighted_mean(per, r, valid)
