"""A tiny but real ONNX model with pedstream's I/O contract and metadata, for engine tests.

Graph: per-channel max and min over time of ``ecg (B,12,T)`` and ``iegm (B,7,T)``, masked by
``mask (B,19)`` -> features ``(B,38)`` -> ``logits = feat @ W + b (B,C)``, ``embedding = tanh(feat @ V)
(B,D)``. Fixed random weights (seeded): deterministic, window-dependent outputs, run by a real
ONNX Runtime session through :class:`pedstream.model.runtime.ModelSession`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pedstream.config import Config
from pedstream.dsp.windowing import NORMALIZATION, window_samples
from pedstream.model.metadata import build_metadata, encode_metadata


def build_tiny_model(path: Path, cfg: Config, *, seed: int = 0, embed_dim: int = 8,
                     bias: dict[str, float] | None = None, simulated: bool = True) -> Path:
    """Write the tiny model to ``path``; ``bias`` adds a constant to chosen class logits."""
    classes = list(cfg.labels.active.classes)
    c = len(classes)
    fs = cfg.signal.fs
    t = window_samples(cfg.segments.window_s, fs)
    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, 0.6, size=(38, c)).astype(np.float32)
    b = np.zeros(c, dtype=np.float32)
    for name, v in (bias or {}).items():
        b[classes.index(name)] = v
    v_emb = rng.normal(0.0, 0.3, size=(38, embed_dim)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b"), numpy_helper.from_array(v_emb, "V"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axes_t"),
    ]
    nodes = [
        helper.make_node("Concat", ["ecg", "iegm"], ["x"], axis=1),  # (B,19,T)
        helper.make_node("ReduceMax", ["x", "axes_t"], ["mx"], keepdims=0),  # (B,19)
        helper.make_node("ReduceMin", ["x", "axes_t"], ["mn"], keepdims=0),  # (B,19)
        helper.make_node("Mul", ["mx", "mask"], ["mxm"]),
        helper.make_node("Mul", ["mn", "mask"], ["mnm"]),
        helper.make_node("Concat", ["mxm", "mnm"], ["feat"], axis=1),  # (B,38)
        helper.make_node("MatMul", ["feat", "W"], ["lw"]),
        helper.make_node("Add", ["lw", "b"], ["logits"]),
        helper.make_node("MatMul", ["feat", "V"], ["ev"]),
        helper.make_node("Tanh", ["ev"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_pedstream",
        [helper.make_tensor_value_info("ecg", TensorProto.FLOAT, ["B", 12, t]),
         helper.make_tensor_value_info("iegm", TensorProto.FLOAT, ["B", 7, t]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["B", 19])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", c]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["B", embed_dim])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    meta = build_metadata(
        model_cfg={"n_ecg": 12, "n_iegm": 7, "n_classes": c, "fs": fs, "window_samples": t, "embed_dim": embed_dim,
                   "arch": "tiny-test"},
        class_names=classes, channels=cfg.signal.channels, fs=fs, window_s=cfg.segments.window_s,
        hop_s=cfg.segments.hop_s, filters=cfg.filters.model_dump(), normalization=NORMALIZATION,
        label_scheme=cfg.labels.scheme, data_description="tiny random test model", simulated=simulated,
    )
    for k, v in encode_metadata(meta).items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def open_session(path: Path, cfg: Config, *, max_batch: int = 8):
    from pedstream.model.runtime import ModelSession, expected_metadata

    exp = expected_metadata(signal_cfg=cfg.signal, filter_cfg=cfg.filters, window_s=cfg.segments.window_s,
                            hop_s=cfg.segments.hop_s)
    return ModelSession(path=path, providers=["CPUExecutionProvider"], runtime_cfg=cfg.runtime, expected=exp,
                        max_batch=max_batch)
