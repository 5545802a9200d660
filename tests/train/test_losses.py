"""Tests for pedstream.train.losses: AGCACL, its switches, and the six baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pedstream.config import LossSection, load_config
from pedstream.errors import ConfigError, PedstreamError
from pedstream.train.losses import LOSS_NAMES, build_loss, class_weights, ldam_margins

COUNTS = [48, 12, 6]  # imbalanced toy training set


def _toy(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three separable Gaussian blobs in 6-D with 48/12/6 samples."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[3.0, 0, 0, 0, 0, 0], [0, 3.0, 0, 0, 0, 0], [0, 0, 3.0, 0, 0, 0]])
    y = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in enumerate(COUNTS)])
    x = centers[y] + 0.7 * torch.randn(len(y), 6, generator=g)
    return x, y


class TinyNet(nn.Module):
    """Linear encoder -> embedding (B, 8); linear head -> logits (B, 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(6, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.enc(x)
        return self.head(e), e


def _cfg(**kw) -> LossSection:
    return LossSection(**kw)


def _reference_supcon(z: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    """Khosla et al. L_out written out with Python loops (independent of the implementation)."""
    z = F.normalize(z, dim=1)
    terms = []
    for i in range(len(y)):
        positives = [p for p in range(len(y)) if p != i and y[p] == y[i]]
        if not positives:
            continue
        denom = sum(torch.exp(z[i] @ z[a] / tau) for a in range(len(y)) if a != i)
        li = -sum(torch.log(torch.exp(z[i] @ z[p] / tau) / denom) for p in positives) / len(positives)
        terms.append(li)
    return torch.stack(terms).mean()


@pytest.mark.parametrize("name", [*LOSS_NAMES, "agcacl_learnable"])
def test_each_loss_decreases_on_toy_separable_problem(name: str) -> None:
    torch.manual_seed(0)
    if name == "agcacl_learnable":
        cfg = _cfg(name="agcacl", prototype_mode="learnable")
    elif name == "ldam_drw":
        cfg = _cfg(name=name, drw_epoch=1)
    else:
        cfg = _cfg(name=name)
    loss_fn = build_loss(cfg, n_classes=3, class_counts=COUNTS, embed_dim=8)
    net = TinyNet()
    opt = torch.optim.Adam([*net.parameters(), *loss_fn.parameters()], lr=0.05)
    x, y = _toy()
    history = []
    for step in range(40):
        loss_fn.on_epoch(step // 20)  # LDAM-DRW: re-weighting from the second "epoch" on
        logits, emb = net(x)
        loss, parts = loss_fn(logits, emb, y)
        assert math.isfinite(parts["total"]) and parts["total"] == pytest.approx(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    first, last = history[0], history[-1]
    if name == "ldam_drw":  # the objective changes at step 20: compare within each phase
        assert history[19] < 0.5 * history[0] and history[-1] < history[20]
    else:
        assert last < 0.5 * first, history
    with torch.no_grad():
        acc = (net(x)[0].argmax(1) == y).float().mean().item()
    assert acc >= 0.95


def test_agcacl_with_all_extras_off_and_no_ce_equals_plain_supcon() -> None:
    cfg = _cfg(ce_weight=0.0, contrastive_weight=1.0, use_prototypes=False, use_reweighting=False,
               use_hard_mining=False, temperature=0.2)
    loss_fn = build_loss(cfg, n_classes=3, class_counts=COUNTS, embed_dim=5)
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(10, 5, generator=g)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
    logits = torch.randn(10, 3, generator=g)
    loss, parts = loss_fn(logits, emb, y)
    expected = _reference_supcon(emb, y, 0.2)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert set(parts) == {"ce", "supcon", "total"}
    # the supcon_ce baseline with ce_weight=0 is the same objective
    sc = build_loss(_cfg(name="supcon_ce", ce_weight=0.0, contrastive_weight=1.0, temperature=0.2),
                    n_classes=3, class_counts=COUNTS, embed_dim=5)
    assert float(sc(logits, emb, y)[0]) == pytest.approx(float(expected), rel=1e-5)


def test_agcacl_with_contrastive_weight_zero_equals_cross_entropy() -> None:
    loss_fn = build_loss(_cfg(contrastive_weight=0.0), n_classes=3, class_counts=COUNTS, embed_dim=4)
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(9, 3, generator=g, requires_grad=True)
    emb = torch.randn(9, 4, generator=g, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1])
    loss, _ = loss_fn(logits, emb, y)
    loss.backward()
    ref_logits = logits.detach().clone().requires_grad_(True)
    ref = F.cross_entropy(ref_logits, y)
    ref.backward()
    assert float(loss) == pytest.approx(float(ref), rel=1e-6)
    assert torch.allclose(logits.grad, ref_logits.grad, atol=1e-7)
    assert emb.grad is None or torch.count_nonzero(emb.grad) == 0


def _rare_grad_norm(use_reweighting: bool, emb0: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    cfg = _cfg(ce_weight=0.0, contrastive_weight=1.0, use_prototypes=False, use_hard_mining=False,
               use_reweighting=use_reweighting)
    loss_fn = build_loss(cfg, n_classes=2, class_counts=[1000, 10], embed_dim=emb0.shape[1])
    emb = emb0.clone().requires_grad_(True)
    loss, _ = loss_fn(torch.zeros(len(y), 2), emb, y)
    loss.backward()
    return float(emb.grad[y == 1].norm()), float(emb.grad[y == 0].norm())


def test_reweighting_enlarges_rare_class_anchor_gradients() -> None:
    y = torch.tensor([0] * 12 + [1] * 3)  # a batch dominated by the frequent class
    emb0 = torch.randn(15, 8, generator=torch.Generator().manual_seed(3))
    rare_off, _ = _rare_grad_norm(False, emb0, y)
    rare_on, _ = _rare_grad_norm(True, emb0, y)
    assert rare_on > 1.5 * rare_off
    # and the value is exactly the class-weighted mean of the per-anchor SupCon terms
    from pedstream.train.losses import supcon_per_anchor

    w = torch.as_tensor(class_weights(np.array([1000, 10]), scheme="effective", beta=0.999), dtype=torch.float32)
    per, valid = supcon_per_anchor(F.normalize(emb0, dim=1), y, temperature=0.1)
    expected = (w[y] * per).sum() / w[y][valid].sum()
    cfg = _cfg(ce_weight=0.0, contrastive_weight=1.0, use_prototypes=False, use_hard_mining=False)
    got = build_loss(cfg, n_classes=2, class_counts=[1000, 10], embed_dim=8)(torch.zeros(15, 2), emb0, y)[0]
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


def test_hard_class_modulation_upweights_negatives_from_the_confused_class() -> None:
    # two class-0 samples (the only anchors with a positive), one class-1 and one class-2 negative
    y = torch.tensor([0, 0, 1, 2])
    emb0 = torch.randn(4, 6, generator=torch.Generator().manual_seed(4))

    def grads(hard: bool) -> torch.Tensor:
        cfg = _cfg(ce_weight=0.0, contrastive_weight=1.0, use_prototypes=False, use_reweighting=False,
                   use_hard_mining=hard, hard_gamma=2.0, similarity_momentum=1.0)  # S frozen
        loss_fn = build_loss(cfg, n_classes=3, class_counts=[10, 10, 10], embed_dim=6)
        s = torch.zeros(3, 3)
        s[0, 1] = s[1, 0] = 0.9  # class 1 is confused with class 0, class 2 is not
        loss_fn.similarity.copy_(s)
        emb = emb0.clone().requires_grad_(True)
        loss_fn(torch.zeros(4, 3), emb, y)[0].backward()
        return emb.grad.norm(dim=1)  # (4,)

    off, on = grads(False), grads(True)
    assert on[2] > 1.2 * off[2]  # class-1 negative pushed harder
    assert on[3] < off[3]  # class-2 negative less
    # the weights themselves: row 0 = [1, 2.8, 1] / mean(2.8, 1) off the diagonal
    loss_fn = build_loss(_cfg(hard_gamma=2.0, similarity_momentum=1.0), n_classes=3, class_counts=[1, 1, 1],
                         embed_dim=6)
    loss_fn.similarity[0, 1] = 0.9
    w = loss_fn.hard_class_weights()
    assert w[0, 1] == pytest.approx(2.8 / 1.9) and w[0, 2] == pytest.approx(1.0 / 1.9) and w[0, 0] == 1.0


def test_prototypes_and_similarity_follow_an_ema_and_checkpoint() -> None:
    cfg = _cfg(prototype_momentum=0.75, similarity_momentum=0.5)
    loss_fn = build_loss(cfg, n_classes=3, class_counts=COUNTS, embed_dim=4)
    g = torch.Generator().manual_seed(5)
    y1 = torch.tensor([0, 0, 1, 1])  # class 2 absent in the first batch
    e1 = torch.randn(4, 4, generator=g)
    loss_fn(torch.zeros(4, 3), e1, y1)
    z1 = F.normalize(e1, dim=1)
    p0 = F.normalize(z1[:2].mean(0), dim=0)
    p1 = F.normalize(z1[2:].mean(0), dim=0)
    assert torch.allclose(loss_fn.prototypes[0], p0, atol=1e-6)
    assert torch.allclose(loss_fn.prototypes[1], p1, atol=1e-6)
    assert loss_fn.proto_seen.tolist() == [True, True, False]
    assert torch.count_nonzero(loss_fn.prototypes[2]) == 0
    assert float(loss_fn.similarity[0, 1]) == pytest.approx(0.5 * float(p0 @ p1), abs=1e-6)
    assert float(loss_fn.similarity[0, 2]) == 0.0  # unseen class: untouched

    e2 = torch.randn(3, 4, generator=g)
    y2 = torch.tensor([0, 2, 2])
    loss_fn(torch.zeros(3, 3), e2, y2)
    z2 = F.normalize(e2, dim=1)
    p0b = F.normalize(0.75 * p0 + 0.25 * z2[0], dim=0)
    assert torch.allclose(loss_fn.prototypes[0], p0b, atol=1e-6)
    assert torch.allclose(loss_fn.prototypes[1], p1, atol=1e-6)  # absent: unchanged
    assert float(loss_fn.similarity[0, 1]) == pytest.approx(0.5 * 0.5 * float(p0 @ p1) + 0.5 * float(p0b @ p1), abs=1e-6)

    # no_grad (validation) and eval mode leave the state alone; a fresh module loaded from the
    # state_dict gives the same loss
    state = {k: v.clone() for k, v in loss_fn.state_dict().items()}
    e3 = torch.randn(5, 4, generator=g)
    y3 = torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        val = float(loss_fn(torch.zeros(5, 3), e3, y3)[0])
    loss_fn.eval()
    assert float(loss_fn(torch.zeros(5, 3), e3, y3)[0]) == pytest.approx(val)
    for k, v in loss_fn.state_dict().items():
        assert torch.equal(v, state[k]), k
    clone = build_loss(cfg, n_classes=3, class_counts=COUNTS, embed_dim=4)
    clone.load_state_dict(state)
    clone.eval()
    assert float(clone(torch.zeros(5, 3), e3, y3)[0]) == pytest.approx(val)


def test_ldam_margins_grow_as_classes_get_rarer_and_drw_switches_on() -> None:
    counts = np.array([1000, 100, 10, 0])
    m = ldam_margins(counts, 0.5)
    assert m[0] < m[1] < m[2] < m[3] == pytest.approx(0.5)  # n=0 counts as n=1
    assert m[1] / m[0] == pytest.approx((100 / 1000) ** -0.25)

    cfg = _cfg(name="ldam_drw", ldam_max_margin=0.5, ldam_scale=2.0, drw_epoch=3)
    loss_fn = build_loss(cfg, n_classes=3, class_counts=[1000, 100, 10], embed_dim=4)
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(6))
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    marg = torch.as_tensor(ldam_margins(np.array([1000, 100, 10]), 0.5), dtype=torch.float32)
    shifted = 2.0 * (logits - F.one_hot(y, 3) * marg[y][:, None])
    loss_fn.on_epoch(2)
    assert float(loss_fn(logits, torch.zeros(6, 4), y)[0]) == pytest.approx(float(F.cross_entropy(shifted, y)))
    loss_fn.on_epoch(3)
    w = torch.as_tensor(class_weights(np.array([1000, 100, 10]), scheme="effective", beta=0.999), dtype=torch.float32)
    got, parts = loss_fn(logits, torch.zeros(6, 4), y)
    assert float(got) == pytest.approx(float(F.cross_entropy(shifted, y, weight=w)))
    assert parts["drw"] == 1.0 and int(loss_fn.state_dict()["epoch"]) == 3


def _train_1d(name: str) -> float:
    """Fraction of a balanced test set predicted as the rare class after training a 1-D logistic model."""
    g = torch.Generator().manual_seed(7)
    x = torch.cat([torch.randn(900, 1, generator=g) - 1.0, torch.randn(100, 1, generator=g) + 1.0])
    y = torch.cat([torch.zeros(900, dtype=torch.long), torch.ones(100, dtype=torch.long)])
    torch.manual_seed(0)
    net = nn.Linear(1, 2)
    loss_fn = build_loss(_cfg(name=name), n_classes=2, class_counts=[900, 100], embed_dim=1)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    for _ in range(150):
        loss = loss_fn(net(x), x, y)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = torch.cat([torch.randn(500, 1, generator=g) - 1.0, torch.randn(500, 1, generator=g) + 1.0])
    with torch.no_grad():
        return float((net(test).argmax(1) == 1).float().mean())


def test_logit_adjustment_shifts_predictions_towards_the_rare_class() -> None:
    rare_ce = _train_1d("ce")
    rare_la = _train_1d("logit_adjusted")
    assert rare_la > rare_ce + 0.15  # CE's boundary sits deep inside the rare class
    assert 0.35 < rare_la < 0.65  # LA recovers roughly the balanced (midpoint) boundary


def test_focal_weighted_ce_and_class_weights_against_hand_computation() -> None:
    logits = torch.randn(7, 3, generator=torch.Generator().manual_seed(8))
    y = torch.tensor([0, 1, 2, 0, 0, 1, 2])
    focal0 = build_loss(_cfg(name="focal", focal_gamma=0.0), n_classes=3, class_counts=COUNTS, embed_dim=2)
    assert float(focal0(logits, torch.zeros(7, 2), y)[0]) == pytest.approx(float(F.cross_entropy(logits, y)))
    focal2 = build_loss(_cfg(name="focal", focal_gamma=2.0), n_classes=3, class_counts=COUNTS, embed_dim=2)
    p = F.softmax(logits, 1)[torch.arange(7), y]
    assert float(focal2(logits, torch.zeros(7, 2), y)[0]) == pytest.approx(float((-(1 - p) ** 2 * p.log()).mean()))

    w_inv = class_weights(np.array(COUNTS), scheme="inverse", beta=0.0)
    assert w_inv == pytest.approx(np.array([1 / 48, 1 / 12, 1 / 6]) / (1 / 48 + 1 / 12 + 1 / 6) * 3)
    w_eff = class_weights(np.array(COUNTS), scheme="effective", beta=0.9)
    raw = np.array([(1 - 0.9) / (1 - 0.9**n) for n in COUNTS])
    assert w_eff == pytest.approx(raw / raw.sum() * 3)
    assert class_weights(np.array(COUNTS), scheme="effective", beta=0.0) == pytest.approx(np.ones(3))

    wce = build_loss(_cfg(name="weighted_ce", class_weighting="inverse"), n_classes=3, class_counts=COUNTS,
                     embed_dim=2)
    per = F.cross_entropy(logits, y, reduction="none")
    wt = torch.as_tensor(w_inv, dtype=torch.float32)[y]
    assert float(wce(logits, torch.zeros(7, 2), y)[0]) == pytest.approx(float((wt * per).sum() / wt.sum()))


def test_bad_inputs_raise_domain_errors() -> None:
    with pytest.raises(ConfigError, match="class_counts"):
        build_loss(_cfg(), n_classes=3, class_counts=[1, 2], embed_dim=4)
    with pytest.raises(ConfigError, match="class_counts"):
        build_loss(_cfg(), n_classes=2, class_counts=[-1, 2], embed_dim=4)
    loss_fn = build_loss(_cfg(), n_classes=3, class_counts=COUNTS, embed_dim=4)
    with pytest.raises(PedstreamError, match=r"logits must be \(B, 3\)"):
        loss_fn(torch.zeros(4, 2), torch.zeros(4, 4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(PedstreamError, match="embed_dim=4"):
        loss_fn(torch.zeros(4, 3), torch.zeros(4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ConfigError, match="loss.name"):
        load_config(overrides=["loss.name=bogus"])
    with pytest.raises(ConfigError, match="nothing to train"):
        load_config(overrides=["loss.ce_weight=0", "loss.contrastive_weight=0"])


def test_single_sample_and_classless_batches_stay_finite() -> None:
    loss_fn = build_loss(_cfg(), n_classes=3, class_counts=COUNTS, embed_dim=4)
    emb = torch.randn(1, 4, requires_grad=True)
    loss, parts = loss_fn(torch.zeros(1, 3), emb, torch.tensor([2]))
    loss.backward()
    assert math.isfinite(float(loss)) and parts["supcon"] == 0.0 and torch.isfinite(emb.grad).all()
