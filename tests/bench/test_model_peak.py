"""pedstream bench model's yardsticks: the matmul peak is measured on the requested threads by numpy and ONNX
Runtime both (the better one is the peak), FLOPs of profiled nodes follow the 2-per-MAC convention, the
shipped model's graph computes exactly the FLOPs the torch module counts, and concurrent callers are timed
together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pedstream
from pedstream.bench.model import matmul_peak, time_concurrent
from pedstream.bench.ort_flops import graph_flops, node_flops

MONITOR = Path(pedstream.__file__).parent / "assets" / "monitor_model.onnx"


def test_matmul_peak_on_given_threads_best_of_both_libraries() -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("threadpoolctl")
    p = matmul_peak(seconds=0.05, n=256, threads=1)
    assert p["threads"] == 1 and p["n"] == 256
    assert p["numpy"]["blas"]["num_threads"] == 1  # BLAS limited to the thread count ONNX Runtime uses
    both = {"numpy": p["numpy"]["peak_gflops"], "onnxruntime": p["onnxruntime"]["peak_gflops"]}
    assert p["peak_gflops"] == max(both.values()) and p["peak_source"] == max(both, key=both.get)
    assert p["peak_gflops"] >= p["median_gflops"] > 0
    assert min(p["numpy"]["repeats"], p["onnxruntime"]["repeats"]) >= 5


def test_node_flops_convention() -> None:
    assert node_flops("MatMul", [[2, 53, 64]], [[2, 53, 128]]) == (2 * 2 * 53 * 64 * 128, 0)
    assert node_flops("Gemm", [[4, 64]], [[4, 13]]) == (2 * 4 * 64 * 13, 0)
    # conv: 2 x outputs x (C_in / group x kernel)
    assert node_flops("Conv", [[1, 12, 1, 2442], [24, 12, 1, 7]], [[1, 24, 1, 611]]) == (2 * 24 * 611 * 12 * 7, 0)
    # packed self-attention: q/k/v projections + Q K^T + P V (the prepacked weight is not in the profile)
    assert node_flops("Attention", [[1, 53, 64], [192], [1, 1, 53, 53]], [[1, 53, 64]]) == (
        2 * 53 * 64 * 192 + 2 * 2 * 53 * 53 * 64, 0)
    assert node_flops("MultiHeadAttention", [[1, 26, 64], [1, 26, 64], [1, 26, 64]], [[1, 26, 64]])[0] == 4 * 26 * 26 * 64
    assert node_flops("Transpose", [[2, 3]], [[3, 2]]) == (0, 0) and node_flops("Gelu", [[5]], [[5]]) == (0, 5)


def test_shipped_graph_computes_the_torch_count() -> None:
    torch = pytest.importorskip("torch")
    if not MONITOR.is_file():
        pytest.skip("monitor model not packaged")
    from pedstream.model.config import ModelConfig
    from pedstream.model.flops import count_flops
    from pedstream.model.network import build_model
    from pedstream.model.runtime import read_metadata

    meta = read_metadata(MONITOR)
    torch.manual_seed(0)
    want = count_flops(build_model(ModelConfig.from_dict(meta["model_config"])))
    got = graph_flops(MONITOR, {"ecg": (12, 2442), "iegm": (7, 2442), "mask": (19,)})
    assert got["matmul_flops"] == want.matmul_flops  # fused attention: nothing lost, nothing counted twice
    assert abs(got["total_flops"] - want.total_flops) < 0.02 * want.total_flops


def test_time_concurrent_runs_every_caller() -> None:
    a = np.ones((64, 64), np.float32)
    r = time_concurrent(lambda: a @ a, batch=4, seconds=0.05, callers=2, min_calls=3)
    assert r["callers"] == 2 and r["calls"] >= 6 and r["windows_per_s"] > 0
    assert 0 < r["median_ms"] <= r["p99_ms"]
