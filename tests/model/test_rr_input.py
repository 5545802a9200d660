"""Beat models take a fourth input, ``rr (B, K)``: network, checkpoint, ONNX export and runtime agree."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from pedstream.dsp.rr import RR_FEATURES
from pedstream.errors import ModelError
from pedstream.model.export import export_onnx
from pedstream.model.network import build_model
from pedstream.model.runtime import ModelSession, read_metadata
from tests.model.conftest import tiny_cfg, tiny_metadata

K = len(RR_FEATURES)
SEGMENTS = {"mode": "beat", "window_s": 2.5, "rr_features": True, "rr_local_beats": 10, "rr_long_beats": 250}


def _rr(b: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.3, 1.5, size=(b, K)).astype(np.float32)


@pytest.fixture(scope="module")
def rr_export(tmp_path_factory, cfg, real_windows):
    torch.manual_seed(0)
    mcfg = tiny_cfg(arch="ecg_only", n_rr=K)
    model = build_model(mcfg).eval()
    path = tmp_path_factory.mktemp("rr") / "beat.onnx"
    samples = {**real_windows, "rr": _rr(real_windows["ecg"].shape[0])}
    report = export_onnx(model, mcfg, tiny_metadata(cfg, mcfg, segments=SEGMENTS), path, sample_inputs=samples)
    return path, model, report, samples


def test_rr_changes_the_output_and_is_required(real_windows):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(arch="ecg_only", n_rr=K)).eval()
    x = {k: torch.from_numpy(real_windows[k][:2]) for k in ("ecg", "iegm", "mask")}
    with torch.no_grad():
        a, _ = model(**x, rr=torch.from_numpy(_rr(2, 1)))
        b, _ = model(**x, rr=torch.from_numpy(_rr(2, 2)))
    assert not torch.allclose(a, b)
    with pytest.raises(ModelError, match="rr must be"):
        model(**x)


def test_export_has_rr_input_and_parity(rr_export):
    path, _, report, _ = rr_export
    assert report.max_abs_logits < 1e-4
    ins = [i.name for i in onnx.load(str(path)).graph.input]
    assert ins == ["ecg", "iegm", "mask", "rr"]
    meta = read_metadata(path)
    assert meta["inputs"]["rr"] == [None, K] and meta["segments"]["rr_long_beats"] == 250


def test_runtime_runs_rr_and_matches_torch(rr_export):
    path, model, _, samples = rr_export
    sess = ModelSession(path=path, providers=["CPUExecutionProvider"])
    assert sess.n_rr == K
    got, _ = sess.run(samples["ecg"], samples["iegm"], samples["mask"], rr=samples["rr"])
    with torch.no_grad():
        ref, _ = model(*(torch.from_numpy(samples[k]) for k in ("ecg", "iegm", "mask", "rr")))
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-4)
    with pytest.raises(ModelError, match="takes an rr input"):
        sess.run(samples["ecg"], samples["iegm"], samples["mask"])


def test_metadata_refuses_rr_model_without_rr_settings(cfg):
    mcfg = tiny_cfg(arch="ecg_only", n_rr=K)
    with pytest.raises(ModelError, match="rr_features"):
        tiny_metadata(cfg, mcfg)


def test_flops_count_a_model_with_rr_input():
    from pedstream.model.flops import count_flops

    rep = count_flops(build_model(tiny_cfg(arch="ecg_only", n_rr=K)))
    assert rep.total_flops > 0
