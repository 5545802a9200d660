"""Checkpoint format: save -> load gives the same network and plain-JSON metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pedstream.errors import ModelError
from pedstream.model.checkpoint import CHECKPOINT_NAME, load_checkpoint, load_sample_inputs, save_checkpoint
from pedstream.model.metadata import NORMALIZATION
from pedstream.model.network import build_model
from tests.model.conftest import CLASSES, tiny_cfg


def _save(path, cfg, model, mcfg, **kw):
    args = dict(model=model, model_cfg=mcfg, class_names=CLASSES, channels=cfg.signal.channels, fs=cfg.signal.fs,
                window_s=2.5, hop_s=1.25, filters=cfg.filters.model_dump(), normalization=NORMALIZATION,
                label_scheme={"name": "leipzig"}, data_description="tiny test", simulated=True,
                extra={"protocol": "subject"})
    args.update(kw)
    return save_checkpoint(path, **args)


def test_round_trip(tmp_path, cfg, real_windows):
    torch.manual_seed(0)
    mcfg = tiny_cfg("early")
    model = build_model(mcfg).eval()
    p = _save(tmp_path, cfg, model, mcfg, sample_inputs=real_windows)
    assert p == tmp_path / CHECKPOINT_NAME
    loaded, meta = load_checkpoint(tmp_path)
    assert not loaded.training and loaded.cfg == mcfg
    x = [torch.from_numpy(real_windows[k]) for k in ("ecg", "iegm", "mask")]
    with torch.no_grad():
        assert torch.equal(model(*x)[0], loaded(*x)[0])
    json.dumps(meta)  # plain JSON
    assert meta["class_names"] == CLASSES and meta["channels"] == cfg.signal.channels
    assert meta["ecg_channels"] == cfg.signal.ecg and meta["iegm_channels"] == cfg.signal.iegm
    assert meta["window_samples"] == 2442 and meta["fs"] == 977.0 and meta["hop_s"] == 1.25
    assert meta["trained_on_simulated_data"] is True and meta["protocol"] == "subject"
    assert meta["normalization"] == "window_zscore" and meta["filters"]["mains_hz"] == 50.0
    samples = load_sample_inputs(p)
    for k in ("ecg", "iegm", "mask"):
        np.testing.assert_array_equal(samples[k], real_windows[k])


def test_without_samples_and_bad_inputs(tmp_path, cfg):
    mcfg = tiny_cfg()
    model = build_model(mcfg)
    p = _save(tmp_path / "a.pt", cfg, model, mcfg)
    assert load_sample_inputs(p) is None
    with pytest.raises(ModelError, match="channels has 18 names"):
        _save(tmp_path / "b.pt", cfg, model, mcfg, channels=cfg.signal.channels[:18])
    with pytest.raises(ModelError, match="class_names has 2 names"):
        _save(tmp_path / "c.pt", cfg, model, mcfg, class_names=["a", "b"])
    with pytest.raises(ModelError, match="sample_inputs"):
        _save(tmp_path / "d.pt", cfg, model, mcfg, sample_inputs={"ecg": np.zeros((2, 12, 100)),
                                                                  "iegm": np.zeros((2, 7, 100)), "mask": np.ones((2, 19))})
    with pytest.raises(ModelError, match="extra key 'fs'"):
        _save(tmp_path / "e.pt", cfg, model, mcfg, extra={"fs": 1})


def test_load_refuses_bad_files(tmp_path, cfg):
    with pytest.raises(ModelError, match="no checkpoint here"):
        load_checkpoint(tmp_path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ModelError, match="not a pedstream-checkpoint"):
        load_checkpoint(other)
    # weights that do not fit the stored config
    mcfg = tiny_cfg()
    p = _save(tmp_path / "w.pt", cfg, build_model(tiny_cfg(d_model=32)), mcfg)
    with pytest.raises(ModelError, match="weights do not fit"):
        load_checkpoint(p)
