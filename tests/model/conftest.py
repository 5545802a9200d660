"""Shared fixtures for the model tests: a tiny network, real input windows, one exported ONNX file.

Real signal: the bundled PhysioNet iafdb excerpt ``tests/fixtures/real/iaf1_afw`` (surface ECG II,
V1, aVF + coronary-sinus electrograms CS12..CS90 at 1000 Hz; see tests/fixtures/real/README.md),
resampled to 977 Hz, filtered and z-scored exactly as the engine does (pedstream.model.samples).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pedstream.config import Config, load_config
from pedstream.model.config import ModelConfig

REAL = Path(__file__).resolve().parent.parent / "fixtures" / "real" / "iaf1_afw"
CLASSES = ["sinus", "avrt", "vt"]


def tiny_cfg(arch: str = "fusion", **kw) -> ModelConfig:
    base = dict(n_classes=len(CLASSES), arch=arch, d_model=16, n_heads=2, n_layers=1, ff_mult=1,
                embed_dim=8, stem_widths=(8, 8, 16), dropout=0.0, modality_dropout=0.0, gate_init=0.5)
    base.update(kw)
    return ModelConfig(**base)


@pytest.fixture(scope="session")
def cfg() -> Config:
    return load_config()


@pytest.fixture(scope="session")
def real_windows(cfg: Config) -> dict[str, np.ndarray]:
    """5 real windows: ecg (5,12,2442), iegm (5,7,2442), mask (5,19) (II, V1, aVF + CS present)."""
    from pedstream.model.samples import record_windows

    return record_windows([REAL], cfg, n=5)


def tiny_metadata(cfg: Config, mcfg: ModelConfig, **overrides) -> dict:
    from pedstream.model.metadata import NORMALIZATION, build_metadata

    kw = dict(model_cfg=mcfg.to_dict(), class_names=CLASSES, channels=cfg.signal.channels, fs=cfg.signal.fs,
              window_s=cfg.segments.window_s, hop_s=cfg.segments.hop_s, filters=cfg.filters.model_dump(),
              normalization=NORMALIZATION, label_scheme={"name": "test"},
              data_description="untrained tiny test network", simulated=True)
    kw.update(overrides)
    return build_metadata(**kw)


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, cfg: Config, real_windows: dict[str, np.ndarray]):
    """(onnx path, torch model, parity report) of a tiny seeded fusion net exported on real windows."""
    import torch

    from pedstream.model.export import export_onnx
    from pedstream.model.network import build_model

    torch.manual_seed(0)
    mcfg = tiny_cfg()
    model = build_model(mcfg).eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    report = export_onnx(model, mcfg, tiny_metadata(cfg, mcfg), path, sample_inputs=real_windows)
    return path, model, report
