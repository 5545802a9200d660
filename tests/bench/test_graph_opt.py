"""graph_opt: the exported exact-GELU groups of the shipped demo model become com.microsoft.Gelu nodes and
its 1-D convolutions 2-D ones; the outputs stay equal up to float32 rounding; a graph without the
patterns is left alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from pedstream.model.graph_opt import conv1d_as_conv2d, fuse_gelu, optimize  # noqa: E402
import pedstream  # noqa: E402

DEMO = Path(pedstream.__file__).parent / "assets" / "demo_model.onnx"  # exported before graph_opt existed


def default_model_path() -> Path:
    if not DEMO.is_file():
        pytest.skip("the packaged demo model is not there")
    return DEMO


def _run(proto, feeds):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["logits", "embedding"], feeds)


def test_fuse_gelu_on_the_demo_model() -> None:
    proto = onnx.load(str(default_model_path()))
    before = [n.op_type for n in proto.graph.node]
    fused = onnx.load(str(default_model_path()))
    n = fuse_gelu(fused)
    after = [n.op_type for n in fused.graph.node]
    if "Erf" not in before:  # already fused at export
        assert n == 0
        return
    assert n == before.count("Erf") and after.count("Gelu") == n and "Erf" not in after
    assert len(after) == len(before) - 4 * n
    onnx.checker.check_model(fused, full_check=True)
    rng = np.random.default_rng(0)
    t = 2442
    feeds = {"ecg": rng.standard_normal((6, 12, t), dtype=np.float32),
             "iegm": rng.standard_normal((6, 7, t), dtype=np.float32), "mask": np.ones((6, 19), np.float32)}
    feeds["mask"][3:, 12:] = 0.0  # the ECG-only path too
    for ref, got in zip(_run(proto, feeds), _run(fused, feeds)):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    assert fuse_gelu(fused) == 0  # nothing left to fuse


def test_graph_without_gelu_is_unchanged() -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    g = helper.make_graph([helper.make_node("Erf", ["x"], ["e"]), helper.make_node("Add", ["e", "x"], ["y"])],
                          "g", [x], [y])
    proto = helper.make_model(g)
    assert fuse_gelu(proto) == 0 and [n.op_type for n in proto.graph.node] == ["Erf", "Add"]


def test_conv1d_as_conv2d_same_outputs() -> None:
    proto = onnx.load(str(default_model_path()))
    before = sum(1 for n in proto.graph.node if n.op_type == "Conv")
    rewritten = onnx.load(str(default_model_path()))
    done = optimize(rewritten)
    convs = [n for n in rewritten.graph.node if n.op_type == "Conv"]
    if done["conv2d"] == 0:  # the file was exported with graph_opt already: every conv is 2-D
        inits = {i.name: i for i in proto.graph.initializer}
        assert all(len(inits[c.input[1]].dims) == 4 for c in convs)
        return
    assert len(convs) == before and done["conv2d"] == before > 0
    inits = {i.name: i for i in rewritten.graph.initializer}
    assert all(len(inits[c.input[1]].dims) == 4 and inits[c.input[1]].dims[2] == 1 for c in convs)
    onnx.checker.check_model(rewritten, full_check=True)
    rng = np.random.default_rng(1)
    feeds = {"ecg": rng.standard_normal((5, 12, 2442), dtype=np.float32),
             "iegm": rng.standard_normal((5, 7, 2442), dtype=np.float32), "mask": np.ones((5, 19), np.float32)}
    feeds["mask"][:2, :12] = 0.0  # the IEGM-only path
    for ref, got in zip(_run(proto, feeds), _run(rewritten, feeds)):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    assert conv1d_as_conv2d(rewritten) == 0  # idempotent
