"""ModelSession (ONNX Runtime), provider selection and the metadata checks the engine relies on."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from pedstream.config import FilterConfig, RuntimeSection, SignalConfig
from pedstream.errors import ModelError, ModelMismatchError
from pedstream.model.runtime import (
    ModelSession,
    check_metadata,
    expected_metadata,
    read_metadata,
    select_providers,
    softmax,
)
from tests.model.conftest import CLASSES


def _check(meta, cfg, **kw):
    args = dict(signal_cfg=cfg.signal, filter_cfg=cfg.filters, window_s=cfg.segments.window_s,
                hop_s=cfg.segments.hop_s)
    args.update(kw)
    return check_metadata(meta, **args)


def test_runtime_import_does_not_import_torch():
    code = "import sys, pedstream.model, pedstream.model.runtime; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_provider_selection_falls_back_to_cpu_here():
    assert "CUDAExecutionProvider" not in ort.get_available_providers()  # this machine has no GPU
    chosen = select_providers(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
                              runtime_cfg=RuntimeSection())
    assert chosen == [("CPUExecutionProvider", {})]
    assert select_providers(["CUDAExecutionProvider"], runtime_cfg=RuntimeSection()) == [("CPUExecutionProvider", {})]
    with pytest.raises(ModelError, match="'CudaProvider' is not an ONNX Runtime execution provider"):
        select_providers(["CudaProvider"], runtime_cfg=RuntimeSection())


def test_gpu_provider_options_when_available(tmp_path):
    rt = RuntimeSection(trt_fp16=True, trt_cache=True, trt_cache_dir=str(tmp_path / "cache"), cuda_device=1)
    profile = {"trt_profile_min_shapes": "mask:1x19", "trt_profile_max_shapes": "mask:32x19"}
    chosen = dict(select_providers(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
                                   runtime_cfg=rt, available=["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                                              "CPUExecutionProvider"], trt_profile=profile))
    assert list(chosen) == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt = chosen["TensorrtExecutionProvider"]
    assert trt["trt_fp16_enable"] is True and trt["trt_engine_cache_enable"] is True and trt["device_id"] == 1
    assert trt["trt_engine_cache_path"] == str(tmp_path / "cache") and (tmp_path / "cache").is_dir()
    assert trt["trt_profile_max_shapes"] == "mask:32x19"
    assert chosen["CUDAExecutionProvider"] == {"device_id": 1}
    no_cache = dict(select_providers(["TensorrtExecutionProvider"], runtime_cfg=RuntimeSection(trt_cache=False, trt_fp16=False),
                                     available=["TensorrtExecutionProvider", "CPUExecutionProvider"]))
    assert "trt_engine_cache_enable" not in no_cache["TensorrtExecutionProvider"]
    assert no_cache["TensorrtExecutionProvider"]["trt_fp16_enable"] is False


def test_session_runs_any_batch_and_exposes_metadata(exported, cfg, real_windows):
    path, model, _ = exported
    exp = expected_metadata(signal_cfg=cfg.signal, filter_cfg=cfg.filters, window_s=2.5, hop_s=1.25, class_names=CLASSES)
    rt = RuntimeSection(intra_op_threads=1, warmup_runs=2)
    s = ModelSession(path=path, runtime_cfg=rt, expected=exp, max_batch=8)
    assert s.providers == ["CPUExecutionProvider"] and not s.on_gpu and not s.io_binding
    assert s.class_names == CLASSES and s.window_samples == 2442 and s.fs == 977.0
    assert s.channels == cfg.signal.channels and s.simulated and s.notes == []
    assert s.metadata == read_metadata(path)
    import torch

    for b in (1, 5, 37):
        idx = np.arange(b) % 5
        ecg, iegm, mask = (real_windows[k][idx] for k in ("ecg", "iegm", "mask"))
        logits, emb = s.run(ecg, iegm, mask)
        with torch.no_grad():
            ref, _ = model(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (ecg, iegm, mask)))
        assert logits.shape == (b, 3) and emb.shape == (b, 8)
        assert np.abs(logits - ref.numpy()).max() < 1e-4
        # I/O binding (the GPU path) gives the same numbers; it also works on the CPU provider
        bl, be = s.run(ecg, iegm, mask, io_binding=True)
        np.testing.assert_allclose(bl, logits, atol=1e-6)
        np.testing.assert_allclose(be, emb, atol=1e-6)
        p = s.predict_proba(ecg, iegm, mask)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
        assert (p.argmax(1) == logits.argmax(1)).all()


def test_session_refuses_bad_inputs_and_files(exported, tmp_path, real_windows):
    path, _, _ = exported
    s = ModelSession(path=path, providers=["CPUExecutionProvider"], runtime_cfg=RuntimeSection(warmup_runs=0))
    e, i, m = (real_windows[k] for k in ("ecg", "iegm", "mask"))
    with pytest.raises(ModelError, match=r"input ecg has shape \(5, 12, 2000\)"):
        s.run(e[:, :, :2000], i, m)
    with pytest.raises(ModelError, match="input mask has shape"):
        s.run(e, i, m[:3])
    with pytest.raises(ModelError, match="no such model file"):
        ModelSession(path=tmp_path / "none.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="onnxruntime cannot open it"):
        ModelSession(path=bad)


def test_check_metadata_accepts_matching_and_notes_hop(exported, cfg):
    meta = read_metadata(exported[0])
    assert _check(meta, cfg) == []
    assert _check(meta, cfg, class_names=CLASSES) == []
    notes = _check(meta, cfg, hop_s=0.5)
    assert len(notes) == 1 and "hop_s" in notes[0]
    # settle_s only marks warm-up output; it does not change the signal the model sees
    assert _check(meta, cfg, filter_cfg=FilterConfig(settle_s=5.0)) == []


@pytest.mark.parametrize("change, field, expected, got", [
    (dict(signal_cfg=SignalConfig(fs=1000.0)), "fs", "1000.0", "977.0"),
    (dict(signal_cfg=SignalConfig(iegm=["ABL12", "RVA12", "CS12", "CS34", "CS56", "CS78", "HRA"])), "channels", "HRA", "CS90"),
    (dict(filter_cfg=FilterConfig(mains_hz=60.0)), "filters.mains_hz", "60.0", "50.0"),
    (dict(filter_cfg=FilterConfig(iegm_highpass_hz=10.0)), "filters.iegm_highpass_hz", "10.0", "30.0"),
    (dict(window_s=5.0), "window_s", "5.0", "2.5"),
    (dict(class_names=["sinus", "vt", "avrt"]), "class_names", "'vt', 'avrt'", "'avrt', 'vt'"),
])
def test_check_metadata_refuses_mismatch(exported, cfg, change, field, expected, got):
    meta = read_metadata(exported[0])
    with pytest.raises(ModelMismatchError) as info:
        _check(meta, cfg, **change)
    err = info.value
    assert err.field == field
    msg = str(err)
    assert f"metadata field '{field}'" in msg and expected in msg and got in msg and "\n" not in msg


def test_check_metadata_refuses_other_normalisation(exported, cfg):
    meta = dict(read_metadata(exported[0]), normalization="minmax")
    with pytest.raises(ModelMismatchError, match="'normalization' is 'minmax', configuration expects 'window_zscore'"):
        _check(meta, cfg)


def test_session_refuses_mismatched_model(exported, cfg):
    exp = expected_metadata(signal_cfg=cfg.signal, filter_cfg=FilterConfig(mains_hz=60.0), window_s=2.5, hop_s=1.25)
    with pytest.raises(ModelMismatchError, match="filters.mains_hz"):
        ModelSession(path=exported[0], expected=exp)


def test_softmax_is_stable():
    p = softmax(np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(p, [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-6)
    assert p.dtype == np.float32


def test_a_beat_model_given_as_the_rhythm_model_is_named_as_such():
    """Regression: the beat model passed as --model was refused with "fs is 360.0, configuration expects 977.0"."""
    from pathlib import Path

    from pedstream.config import load_config
    from pedstream.errors import ModelError
    from pedstream.monitor.assembly import open_model

    beat = Path(__file__).resolve().parents[2] / "models" / "mitdb-aami" / "model.onnx"
    with pytest.raises(ModelError, match=r"is a beat model .* --set stream.beat_model="):
        open_model(load_config(), beat)
