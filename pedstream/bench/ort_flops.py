"""FLOPs and kernel time per operator from ONNX Runtime's profiler (no torch).

:func:`node_flops` counts one profiled node from the shapes ONNX Runtime recorded for it, with the
convention of :mod:`pedstream.model.flops`: 2 FLOPs per multiply-accumulate of MatMul / Gemm / Conv /
attention, 1 FLOP per output element of every other computing op (views, copies and layout changes
count 0). :func:`graph_flops` runs a model once at batch 1 with every ONNX Runtime graph optimisation
off and sums its nodes: what the exported graph computes per window, independent of torch (a check on
:func:`pedstream.model.flops.count_flops`, which counts the torch module). :func:`profile_table` is the
per-operator table of a profiled run: time, share, FLOPs and achieved GFLOP/s per operator type.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ["node_flops", "graph_flops", "profile_table", "node_events"]

_MATMUL = {"MatMul", "FusedMatMul", "Gemm", "MatMulInteger"}
_CONV = {"Conv", "FusedConv", "NchwcConv"}
_FREE = {"Reshape", "Squeeze", "Unsqueeze", "Shape", "Expand", "Concat", "Slice", "Gather", "Transpose", "Split",
         "Identity", "Flatten", "ReorderInput", "ReorderOutput", "Cast", "Constant", "ConstantOfShape", "Size"}


def _shapes(arg: Iterable[Mapping[str, Any]]) -> list[list[int]]:
    return [list(next(iter(d.values()))) for d in arg]


def node_flops(op: str, ins: list[list[int]], outs: list[list[int]]) -> tuple[int, int]:
    """(matmul-class FLOPs, element-wise FLOPs) of one node from its input/output shapes."""
    if not outs:
        return 0, 0
    out = outs[0]
    n_out = int(np.prod(out)) if out else 1
    try:
        if op in _MATMUL:
            a = ins[0]
            k = a[-2] if len(a) >= 2 and len(out) >= 2 and a[-1] == out[-2] and a[-2] != out[-2] else a[-1]
            return 2 * n_out * int(k), 0
        if op in _CONV:
            return 2 * n_out * int(np.prod(ins[1][1:])), 0
        if op == "Attention":  # packed q/k/v projection (weight prepacked: not in the profile) + Q K^T + P V
            b, s, d_in = ins[0]
            d = out[-1]
            return 2 * b * s * d_in * 3 * d + 4 * b * s * s * d, 0
        if op == "MultiHeadAttention":  # Q K^T + P V (projections are separate MatMuls)
            b, lq, d = ins[0]
            lk = ins[1][1]
            return 4 * b * lq * lk * d, n_out
    except (IndexError, ValueError, TypeError):
        return 0, 0
    return (0, 0) if op in _FREE else (0, n_out)


def node_events(events: list[dict[str, Any]], runs: int) -> list[dict[str, Any]]:
    """The node kernel events of the last ``runs`` model runs of a profile."""
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    start = starts[-runs] if len(starts) >= runs else 0
    return [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
            and e["ts"] >= start]


def profile_table(events: list[dict[str, Any]], runs: int, top: int = 14) -> dict[str, Any]:
    """Per operator type over the last ``runs`` runs: ms per run, share of kernel time, nodes, MFLOPs per
    run (shapes as executed) and GFLOP/s, largest time first; plus the kernel total."""
    per: dict[str, list[float]] = {}
    for e in node_events(events, runs):
        a = e.get("args", {})
        op = a.get("op_name", "?")
        mm, ew = node_flops(op, _shapes(a.get("input_type_shape", [])), _shapes(a.get("output_type_shape", [])))
        row = per.setdefault(op, [0.0, 0, 0])
        row[0] += float(e["dur"])
        row[1] += 1
        row[2] += mm + ew
    total = sum(r[0] for r in per.values()) or 1.0
    rows = []
    for op, (us, n, fl) in sorted(per.items(), key=lambda kv: -kv[1][0]):
        rows.append({"op": op, "ms_per_run": round(us / runs / 1000, 3), "share": round(us / total, 3),
                     "nodes": int(n) // runs, "mflop_per_run": round(fl / runs / 1e6, 2),
                     "gflops": round(fl / us / 1e3, 1) if us else 0.0})
    return {"kernel_ms_per_run": round(total / runs / 1000, 2), "ops": rows[:top],
            "other_ms_per_run": round(sum(r["ms_per_run"] for r in rows[top:]), 3)}


def graph_flops(model: str | Path, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """FLOPs per window of the ONNX graph itself: one batch-1 run with graph optimisation off, every node
    counted by :func:`node_flops`. ``shapes``: input name -> shape without the batch axis."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.intra_op_num_threads = 1
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "flops")
        sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feeds = {k: (np.ones((1, *s), np.float32) if k == "mask" else rng.standard_normal((1, *s), dtype=np.float32))
                 for k, s in shapes.items()}
        sess.run(None, feeds)
        events = json.loads(Path(sess.end_profiling()).read_text())
    mm = ew = 0
    for e in node_events(events, 1):
        a = e.get("args", {})
        f = node_flops(a.get("op_name", "?"), _shapes(a.get("input_type_shape", [])),
                       _shapes(a.get("output_type_shape", [])))
        mm, ew = mm + f[0], ew + f[1]
    return {"matmul_flops": mm, "elementwise_flops": ew, "total_flops": mm + ew}
