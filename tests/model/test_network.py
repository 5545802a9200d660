"""FusionNet and its baselines: shapes for every channel subset, missing modalities, no NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pedstream.data.channels import CANONICAL_CHANNELS, ECG_CHANNELS, LEIPZIG_LAYOUTS
from pedstream.errors import ModelError
from pedstream.model.config import ARCHS, ModelConfig
from pedstream.model.network import build_model
from tests.model.conftest import CLASSES, tiny_cfg

T = 2442


def layout_mask(names) -> torch.Tensor:
    return torch.tensor([1.0 if c in names else 0.0 for c in CANONICAL_CHANNELS])  # (19,)


def subset_masks() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    masks = {"full": torch.ones(19), "ecg_only": layout_mask(ECG_CHANNELS),
             "iegm_only": layout_mask(CANONICAL_CHANNELS[12:]), "iaf_like": layout_mask(["II", "V1", "aVF", "CS12", "CS34"]),
             "single_lead": layout_mask(["II"])}
    for name, chans in LEIPZIG_LAYOUTS.items():
        masks[f"leipzig_{name}"] = layout_mask(chans)
    for i in range(4):
        m = (torch.rand(19, generator=g) < 0.5).float()
        m[int(torch.randint(0, 19, (1,), generator=g))] = 1.0  # at least one channel
        masks[f"random_{i}"] = m
    return masks


def inputs(mask: torch.Tensor, b: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    m = mask.expand(b, -1).clone()  # (B, 19)
    ecg = torch.randn(b, 12, T, generator=g) * m[:, :12, None]
    iegm = torch.randn(b, 7, T, generator=g) * m[:, 12:, None]
    return ecg, iegm, m


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {a: build_model(tiny_cfg(a)).eval() for a in ARCHS}


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_and_finite_for_every_channel_subset(models, arch):
    model = models[arch]
    with torch.no_grad():
        for name, mask in subset_masks().items():
            logits, emb = model(*inputs(mask))
            assert logits.shape == (3, len(CLASSES)), name
            assert emb.shape == (3, 8), name
            assert torch.isfinite(logits).all() and torch.isfinite(emb).all(), f"{arch}/{name} not finite"
            # the embedding is L2-normalised
            assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5), name


def test_absent_iegm_is_ignored_and_training_gradients_are_finite():
    torch.manual_seed(1)
    model = build_model(tiny_cfg("fusion"))
    ecg, iegm, mask = inputs(layout_mask(ECG_CHANNELS), b=4)
    junk = torch.randn_like(iegm) * 50  # garbage on absent channels must not matter
    model.eval()
    with torch.no_grad():
        a, ea = model(ecg, iegm, mask)
        b, eb = model(ecg, junk, mask)
    assert torch.equal(a, b) and torch.equal(ea, eb)
    # all IEGM absent in a training batch: no NaN in outputs or gradients
    model.train()
    logits, emb = model(ecg, iegm, mask)
    (logits.logsumexp(1).mean() + emb.sum()).backward()
    for n, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), n


def test_fusion_uses_both_modalities_when_present():
    torch.manual_seed(2)
    model = build_model(tiny_cfg("fusion")).eval()
    ecg, iegm, mask = inputs(torch.ones(19), b=2)
    with torch.no_grad():
        base, _ = model(ecg, iegm, mask)
        other_iegm, _ = model(ecg, torch.flip(iegm, dims=[2]), mask)
        other_ecg, _ = model(torch.flip(ecg, dims=[2]), iegm, mask)
    assert (base - other_iegm).abs().max() > 1e-4
    assert (base - other_ecg).abs().max() > 1e-4


def test_single_modality_baselines_ignore_the_other_input():
    torch.manual_seed(3)
    ecg, iegm, mask = inputs(torch.ones(19), b=2)
    with torch.no_grad():
        m = build_model(tiny_cfg("ecg_only")).eval()
        assert torch.equal(m(ecg, iegm, mask)[0], m(ecg, torch.zeros_like(iegm), mask)[0])
        m = build_model(tiny_cfg("iegm_only")).eval()
        assert torch.equal(m(ecg, iegm, mask)[0], m(torch.zeros_like(ecg), iegm, mask)[0])


def test_modality_dropout_hides_the_iegm_in_training_only():
    torch.manual_seed(4)
    model = build_model(tiny_cfg("fusion", modality_dropout=1.0))
    ecg, iegm, mask = inputs(torch.ones(19), b=4)
    hidden = mask.clone()
    hidden[:, 12:] = 0
    model.train()
    dropped, _ = model(ecg, iegm, mask)
    ecg_only, _ = model(ecg, torch.zeros_like(iegm), hidden)
    assert torch.allclose(dropped, ecg_only, atol=1e-6)
    model.eval()
    with torch.no_grad():
        full, _ = model(ecg, iegm, mask)
        masked, _ = model(ecg, torch.zeros_like(iegm), hidden)
    assert (full - masked).abs().max() > 1e-4  # eval mode keeps the IEGM


def test_batch_composition_does_not_change_a_sample(models):
    model = models["fusion"]
    ecg, iegm, mask = inputs(torch.ones(19), b=4, seed=5)
    mask[1, 12:] = 0  # mixed batch: one sample without IEGM
    iegm[1] = 0
    with torch.no_grad():
        batch, _ = model(ecg, iegm, mask)
        for i in range(4):
            single, _ = model(ecg[i:i + 1], iegm[i:i + 1], mask[i:i + 1])
            assert torch.allclose(single[0], batch[i], atol=1e-5)


def test_real_windows_run(models, real_windows):
    args = [torch.from_numpy(real_windows[k]) for k in ("ecg", "iegm", "mask")]
    with torch.no_grad():
        for arch, model in models.items():
            logits, emb = model(*args)
            assert logits.shape == (5, 3) and torch.isfinite(logits).all(), arch


def test_bad_shapes_raise_model_error(models):
    model = models["fusion"]
    ecg, iegm, mask = inputs(torch.ones(19), b=2)
    with pytest.raises(ModelError, match="ecg must be"):
        model(ecg[:, :11], iegm, mask)
    with pytest.raises(ModelError, match="iegm must be"):
        model(ecg, iegm[:, :, :100], mask)
    with pytest.raises(ModelError, match="mask must be"):
        model(ecg, iegm, mask[:, :18])


def test_config_round_trip_and_validation(cfg):
    mc = ModelConfig.from_sections(cfg.model, signal=cfg.signal, segments=cfg.segments, n_classes=13)
    assert mc.window_samples == 2442 and mc.n_channels == 19 and mc.arch == "fusion"
    assert ModelConfig.from_dict(mc.to_dict()) == mc
    assert 24 <= mc.n_tokens() <= 40  # "a few dozen tokens" per modality
    with pytest.raises(ModelError, match="divisible"):
        ModelConfig(n_classes=3, d_model=30, n_heads=4)
    with pytest.raises(ModelError, match="arch"):
        ModelConfig(n_classes=3, arch="late")
    with pytest.raises(ModelError, match="unknown model config keys"):
        ModelConfig.from_dict({**mc.to_dict(), "depth": 3})
    assert np.isclose(mc.fs, 977.0)
