"""The default network meets the budget: <= 1.5 M parameters and <= 30 MFLOPs per 2.5 s window."""

from __future__ import annotations

import torch

from pedstream.model.config import ModelConfig
from pedstream.model.flops import FLOP_BUDGET, PARAM_BUDGET, count_flops, count_params
from pedstream.model.network import build_model


def test_default_config_within_budget(cfg):
    mc = ModelConfig.from_sections(cfg.model, signal=cfg.signal, segments=cfg.segments,
                                   n_classes=len(cfg.labels.active.classes))
    assert mc.window_samples == 2442
    model = build_model(mc)
    rep = count_flops(model)
    print(rep.summary())
    assert rep.params == count_params(model) == sum(p.numel() for p in model.parameters())
    assert rep.params <= PARAM_BUDGET
    assert rep.total_flops <= FLOP_BUDGET
    assert rep.within_budget()
    # honest counting: the convolutions and attention really are in the figure (> 10 MFLOPs)
    assert rep.matmul_flops > 10_000_000 and rep.elementwise_flops > 0


def test_every_architecture_within_budget(cfg):
    for arch in ("fusion", "ecg_only", "iegm_only", "early"):
        mc = ModelConfig.from_sections(cfg.model, signal=cfg.signal, segments=cfg.segments, n_classes=13, arch=arch)
        assert count_flops(build_model(mc)).within_budget(), arch


class _OneLinear(torch.nn.Module):
    """A model whose MACs are known by hand: Linear(2442 -> 10) on the first ECG lead."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = ModelConfig(n_classes=10)
        self.fc = torch.nn.Linear(2442, 10, bias=False)

    def forward(self, ecg, iegm, mask):
        return self.fc(ecg[:, 0]), ecg[:, 0, :4]


def test_flop_counter_counts_two_flops_per_mac():
    rep = count_flops(_OneLinear())
    assert rep.macs == 2442 * 10
    assert rep.matmul_flops == 2 * 2442 * 10
    assert rep.params == 24420
