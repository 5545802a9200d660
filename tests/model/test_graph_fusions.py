"""graph_fusions / graph_opt on a real export: the attention rewrite keeps the math (outputs of the rewritten
graph against the same export before the rewrite, and against PyTorch, on real windows with both modalities,
the IEGM hidden and the ECG hidden), the fused ops are really there, the FLOPs the graph computes stay those
of the torch module, and the shipped models carry the fusions and keep their metadata.

Tolerance: float32 rounding only. Logits (|logit| up to ~10) within 1e-4 absolute, embeddings (unit length)
within 1e-5; measured on the shipped monitor model: 7e-7 / 6e-8.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

import pedstream  # noqa: E402
from pedstream.model.graph_fusions import eliminate_dead_nodes, fuse_attention  # noqa: E402
from pedstream.model.graph_opt import optimize  # noqa: E402

ASSETS = Path(pedstream.__file__).parent / "assets"
SHAPES = {"ecg": (12, 2442), "iegm": (7, 2442), "mask": (19,)}


@pytest.fixture(scope="module")
def full_size():
    """(torch model, raw export proto, rewritten proto) of the shipped architecture (d_model 64, 4 heads,
    2 layers, fusion) with seeded random weights, exported by the default (dynamo) exporter."""
    from pedstream.model.config import ModelConfig
    from pedstream.model.export import _ensure_inputs, _torch_export
    from pedstream.model.network import build_model

    torch.manual_seed(0)
    mcfg = ModelConfig(n_classes=13)
    model = build_model(mcfg).eval()
    args = (torch.randn(2, 12, 2442), torch.randn(2, 7, 2442), torch.ones(2, 19))
    raw = onnx.load_from_string(_torch_export(model, args, "dynamo", ("ecg", "iegm", "mask")))
    _ensure_inputs(raw, mcfg)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(raw)
    done = optimize(rewritten)
    return model, raw, rewritten, done


def _feeds(real_windows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The real windows three times: as recorded, IEGM hidden, ECG hidden."""
    ecg, iegm, mask = (np.asarray(real_windows[k], np.float32) for k in ("ecg", "iegm", "mask"))
    no_iegm, no_ecg = mask.copy(), mask.copy()
    no_iegm[:, 12:] = 0.0
    no_ecg[:, :12] = 0.0
    return {"ecg": np.concatenate([ecg, ecg, ecg]), "iegm": np.concatenate([iegm, np.zeros_like(iegm), iegm]),
            "mask": np.concatenate([mask, no_iegm, no_ecg])}


def _run(proto, feeds, level="all"):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                     "off": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[level]
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(["logits", "embedding"], feeds)


def test_attention_fused_into_four_ops(full_size) -> None:
    _, raw, rewritten, done = full_size
    before = collections.Counter(n.op_type for n in raw.graph.node)
    after = collections.Counter(n.op_type for n in rewritten.graph.node)
    assert done["attention"] == 4 and before["Softmax"] == 4
    assert after["Attention"] == 2 and after["MultiHeadAttention"] == 2  # 2 self-attention layers, 2 cross
    assert after["Softmax"] == 0 and after["Transpose"] == 2  # left: the two stems' (B, d, L) -> (B, L, d)
    assert sum(after.values()) < sum(before.values()) - 4 * 15  # about 20 nodes per attention become 5 to 8
    onnx.checker.check_model(rewritten, full_check=True)
    assert fuse_attention(rewritten) == 0 and optimize(rewritten)["attention"] == 0  # idempotent


@pytest.mark.parametrize("level", ["all", "off"])
def test_rewritten_graph_matches_export_and_torch(full_size, real_windows, level) -> None:
    model, raw, rewritten, _ = full_size
    feeds = _feeds(real_windows)
    ref_l, ref_e = _run(raw, feeds, level)
    got_l, got_e = _run(rewritten, feeds, level)
    assert np.abs(ref_l).max() > 1e-3  # not a trivially-zero output
    np.testing.assert_allclose(got_l, ref_l, rtol=0, atol=1e-4)
    np.testing.assert_allclose(got_e, ref_e, rtol=0, atol=1e-5)
    with torch.no_grad():
        t_l, t_e = model(*(torch.from_numpy(feeds[k]) for k in ("ecg", "iegm", "mask")))
    np.testing.assert_allclose(got_l, t_l.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(got_e, t_e.numpy(), rtol=0, atol=1e-5)
    assert (got_l.argmax(1) == t_l.numpy().argmax(1)).all()


def test_graph_flops_equal_torch_count_before_and_after(full_size, tmp_path) -> None:
    from pedstream.bench.ort_flops import graph_flops
    from pedstream.model.flops import count_flops

    model, raw, rewritten, _ = full_size
    want = count_flops(model).matmul_flops
    for name, proto in (("raw", raw), ("rewritten", rewritten)):
        path = tmp_path / f"{name}.onnx"
        onnx.save(proto, str(path))
        got = graph_flops(path, SHAPES)
        assert got["matmul_flops"] == want, name  # no FLOP lost or counted twice by the fusion or the counter
        assert 0 < got["elementwise_flops"] < 0.05 * want


def test_tiny_export_is_fused_and_keeps_parity(exported) -> None:
    """export_onnx runs the rewrite (2 heads of 8, one layer) and its own torch parity check (< 1e-4)."""
    path, _, report = exported
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert ops["Attention"] == 1 and ops["MultiHeadAttention"] == 2 and ops["Softmax"] == 0
    assert report.max_abs_logits < 1e-4


def test_no_pattern_no_change() -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    g = helper.make_graph([helper.make_node("Softmax", ["x"], ["s"], axis=-1), helper.make_node("Add", ["s", "x"], ["y"])],
                          "g", [x], [y])
    proto = helper.make_model(g)
    assert fuse_attention(proto) == 0 and [n.op_type for n in proto.graph.node] == ["Softmax", "Add"]
    dead = helper.make_graph([helper.make_node("Relu", ["x"], ["unused"]), helper.make_node("Neg", ["x"], ["y"])],
                             "d", [x], [y])
    proto = helper.make_model(dead)
    assert eliminate_dead_nodes(proto) == 1 and [n.op_type for n in proto.graph.node] == ["Neg"]


def test_graph_opt_cli_keeps_metadata(exported, tmp_path) -> None:
    from pedstream.model.graph_opt import main
    from pedstream.model.runtime import read_metadata

    path, _, _ = exported
    out = tmp_path / "again.onnx"
    assert main([str(path), str(out)]) == 0
    assert read_metadata(out) == read_metadata(path)


@pytest.mark.parametrize("name", ["monitor_model.onnx", "demo_model.onnx"])
def test_shipped_models_are_fused_and_keep_their_banner(name) -> None:
    from pedstream.model.metadata import trained_on
    from pedstream.model.runtime import read_metadata

    path = ASSETS / name
    if not path.is_file():
        pytest.skip(f"{name} is not packaged")
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert ops["Attention"] == 2 and ops["MultiHeadAttention"] == 2 and ops["Softmax"] == 0 and ops["Erf"] == 0
    meta = read_metadata(path)
    assert meta["class_names"] and meta["model_config"]["arch"] == "fusion"
    if name == "monitor_model.onnx":
        assert "MIT-BIH" in trained_on(meta)
    else:
        assert meta["trained_on_simulated_data"] is True
