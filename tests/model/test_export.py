"""ONNX export: one self-contained file, metadata embedded, dynamic batch, parity with PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from pedstream.cli import cli
from pedstream.errors import ModelError
from pedstream.model.checkpoint import save_checkpoint
from pedstream.model.export import export_onnx
from pedstream.model.metadata import NORMALIZATION, decode_metadata
from pedstream.model.network import build_model
from pedstream.model.runtime import ModelSession, check_metadata, read_metadata
from tests.model.conftest import CLASSES, tiny_cfg, tiny_metadata


def _batch(real_windows, b):
    """b real windows (cycled); every third one with its IEGM hidden (ECG-only)."""
    idx = np.arange(b) % real_windows["ecg"].shape[0]
    ecg, iegm, mask = (real_windows[k][idx].copy() for k in ("ecg", "iegm", "mask"))
    iegm[::3] = 0.0
    mask[::3, 12:] = 0.0
    return ecg, iegm, mask


def test_parity_report(exported):
    path, _, report = exported
    assert report.max_abs_logits < 1e-4 and report.max_abs_embedding < 1e-4
    assert report.batch_sizes == (1, 5)
    assert path.is_file() and not path.with_suffix(".onnx.tmp").exists()


def test_file_is_self_contained_with_dynamic_batch(exported):
    path, _, _ = exported
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no external-data files
    proto = onnx.load(str(path), load_external_data=False)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    ins = {i.name: i for i in proto.graph.input}
    outs = {o.name: o for o in proto.graph.output}
    assert set(ins) == {"ecg", "iegm", "mask"} and set(outs) == {"logits", "embedding"}
    for v in ins.values():
        batch = v.type.tensor_type.shape.dim[0]
        assert batch.dim_param and not batch.HasField("dim_value")  # symbolic batch axis
    assert [d.dim_value for d in ins["ecg"].type.tensor_type.shape.dim[1:]] == [12, 2442]


def test_metadata_round_trip(exported, cfg):
    path, model, _ = exported
    meta = read_metadata(path)
    assert meta == tiny_metadata(cfg, model.cfg)
    proto = onnx.load(str(path), load_external_data=False)
    assert decode_metadata({p.key: p.value for p in proto.metadata_props}) == meta
    assert meta["normalization"] == NORMALIZATION and meta["trained_on_simulated_data"] is True
    assert meta["channels"] == cfg.signal.channels and meta["class_names"] == CLASSES
    check_metadata(meta, signal_cfg=cfg.signal, filter_cfg=cfg.filters, window_s=2.5, hop_s=1.25)


@pytest.mark.parametrize("b", [1, 5, 37])
def test_onnxruntime_matches_torch_at_any_batch(exported, real_windows, b):
    path, model, _ = exported
    ecg, iegm, mask = _batch(real_windows, b)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, emb = sess.run(["logits", "embedding"], {"ecg": ecg, "iegm": iegm, "mask": mask})
    with torch.no_grad():
        ref_l, ref_e = model(torch.from_numpy(ecg), torch.from_numpy(iegm), torch.from_numpy(mask))
    assert logits.shape == (b, 3) and emb.shape == (b, 8)
    assert np.abs(logits - ref_l.numpy()).max() < 1e-4
    assert np.abs(emb - ref_e.numpy()).max() < 1e-4


def test_parity_failure_raises_and_leaves_no_file(tmp_path, cfg, real_windows):
    torch.manual_seed(1)
    mcfg = tiny_cfg("ecg_only")
    model = build_model(mcfg).eval()
    out = tmp_path / "m.onnx"
    with pytest.raises(ModelError, match="differ from PyTorch"):
        export_onnx(model, mcfg, tiny_metadata(cfg, mcfg), out, sample_inputs=real_windows, tol=0.0,
                    exporter="torchscript")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ModelError, match="sample_inputs"):
        export_onnx(model, mcfg, tiny_metadata(cfg, mcfg), out,
                    sample_inputs={"ecg": real_windows["ecg"][:, :, :100], "iegm": real_windows["iegm"],
                                   "mask": real_windows["mask"]})
    with pytest.raises(ModelError, match="lacks"):
        export_onnx(model, mcfg, {"format": "pedstream-model/1"}, out, sample_inputs=real_windows)
    with pytest.raises(ModelError, match="exporter 'jit'"):
        export_onnx(model, mcfg, tiny_metadata(cfg, mcfg), out, sample_inputs=real_windows, exporter="jit")


def test_export_command(tmp_path, cfg, real_windows):
    torch.manual_seed(2)
    mcfg = tiny_cfg("fusion")
    model = build_model(mcfg)
    run = tmp_path / "run"
    save_checkpoint(run, model=model, model_cfg=mcfg, class_names=CLASSES, channels=cfg.signal.channels,
                    fs=cfg.signal.fs, window_s=cfg.segments.window_s, hop_s=cfg.segments.hop_s,
                    filters=cfg.filters.model_dump(), normalization=NORMALIZATION, label_scheme={"name": "t"},
                    data_description="tiny", simulated=True, sample_inputs=real_windows)
    out = tmp_path / "model.onnx"
    res = CliRunner().invoke(cli, ["export", "--run", str(run), "--out", str(out), "--exporter", "torchscript"])
    assert res.exit_code == 0, res.output
    assert "parity vs PyTorch" in res.output and "SIMULATED" in res.output and "torchscript" in res.output
    sess = ModelSession(path=out, providers=["CPUExecutionProvider"], runtime_cfg=cfg.runtime)
    ecg, iegm, mask = _batch(real_windows, 4)
    with torch.no_grad():
        ref, _ = model.eval()(torch.from_numpy(ecg), torch.from_numpy(iegm), torch.from_numpy(mask))
    assert np.abs(sess.run(ecg, iegm, mask)[0] - ref.numpy()).max() < 1e-4
    # a run folder without a checkpoint: one clear error line, exit code 1
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(cli, ["export", "--run", str(empty), "--out", str(tmp_path / "x.onnx")])
    assert res.exit_code == 2 and "error: model" in res.output and "no checkpoint" in res.output


def test_single_branch_export_keeps_all_three_inputs(tmp_path, cfg, real_windows):
    """The legacy exporter prunes the unused ``iegm`` of ecg_only; the contract keeps it."""
    mcfg = tiny_cfg("ecg_only")
    model = build_model(mcfg).eval()
    rep = export_onnx(model, mcfg, tiny_metadata(cfg, mcfg), tmp_path / "e.onnx", sample_inputs=real_windows,
                      exporter="torchscript")
    sess = ort.InferenceSession(str(rep.path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape[1:]) for i in sess.get_inputs()] == [("ecg", [12, 2442]), ("iegm", [7, 2442]), ("mask", [19])]
    assert rep.max_abs_logits < 1e-4
