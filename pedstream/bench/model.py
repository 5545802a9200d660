"""``pedstream bench model``: ONNX Runtime windows/s and latency per provider and batch, PyTorch eager
beside it, FLOPs per window, achieved GFLOP/s and the fraction of this run's matrix-multiply peak.

Method (everything in one process, one run):

- **peak**: numpy float32 ``1024 x 1024 @ 1024 x 1024`` (2 * 1024^3 FLOPs each), repeated for
  ``--seconds`` after one warm-up, at the start and again at the end; ``peak_gflops`` is the best
  repetition of both (BLAS on all cores), so ``fraction_of_peak`` is not flattered;
- **ONNX Runtime**: :class:`~pedstream.model.runtime.ModelSession` (the engine's session, with the
  ``[runtime]`` settings: threads, graph optimisation, execution mode, I/O binding on GPU providers),
  one session per provider; batch by batch, every engine in turn (a change of load hits them alike):
  a warm-up call, then calls on the same random normalised
  windows for ``--seconds`` (at least ``min_calls``); latency = one ``run()`` call, host arrays in
  and out (so the copies to and from a GPU are counted); ``windows_per_s`` = windows / total time;
- **PyTorch eager** (when torch is installed): the same architecture built from the model's
  metadata (``model_config``) with random weights (the cost does not depend on the weights),
  ``eval()``, ``torch.inference_mode()``, torch's default threads and 1 thread, same inputs and timing
  (``speedup_vs_torch`` is against the faster of the two);
- **FLOPs per window**: :func:`pedstream.model.flops.count_flops` (needs torch; conv/linear/matmul
  at 2 FLOPs per MAC plus an element-wise estimate): ``gflops`` = windows/s x FLOPs per window.

- **profile**: ONNX Runtime's profiler on the CPU at batch 32: kernel time per operator type
  (``ort_profile_cpu``), so where the time goes is in the result.

A requested provider that is not installed, or that ONNX Runtime fell back from, is a row with
``status`` saying so, never a silent CPU figure under a GPU name.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pedstream.bench.common import machine_info, summary_ms

__all__ = ["PROVIDERS", "matmul_peak", "time_calls", "model_bench", "flops_per_window", "ort_profile"]

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def matmul_peak(*, seconds: float = 1.0, n: int = 1024) -> dict[str, Any]:
    """Best and median GFLOP/s of a float32 ``n x n`` numpy matmul over ``seconds``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up (BLAS threads start)
    times = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < 5:
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - t0)
    flops = 2.0 * n ** 3
    return {"n": n, "dtype": "float32", "repeats": len(times), "peak_gflops": round(flops / min(times) / 1e9, 1),
            "median_gflops": round(flops / float(np.median(times)) / 1e9, 1)}


def time_calls(fn: Callable[[], Any], *, batch: int, seconds: float, min_calls: int = 5,
               warmup: int = 2) -> dict[str, Any]:
    """Call ``fn`` ``warmup`` times, then for ``seconds`` (at least ``min_calls``): latency median/p99 per
    call (ms) and windows/s."""
    for _ in range(warmup):
        fn()
    lat = []
    t_start = time.perf_counter()
    while time.perf_counter() - t_start < seconds or len(lat) < min_calls:
        t0 = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t0)
    total = sum(lat)
    return {"calls": len(lat), "windows_per_s": round(batch * len(lat) / total, 1), **summary_ms(lat)}


def flops_per_window(model_config: dict[str, Any]) -> tuple[Any, int | None, str]:
    """(torch model with random weights, total FLOPs per window, note) for the metadata's
    ``model_config``; (None, None, why) without torch."""
    if importlib.util.find_spec("torch") is None:
        return None, None, "torch not installed: no PyTorch eager row, no FLOP count"
    import torch

    from pedstream.model.config import ModelConfig
    from pedstream.model.flops import count_flops
    from pedstream.model.network import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig.from_dict(model_config)).eval()
    report = count_flops(model)
    return model, report.total_flops, report.summary()


def ort_profile(cfg: Any, model: Path, *, batch: int = 32, runs: int = 20, top: int = 12) -> dict[str, Any]:
    """ONNX Runtime's profiler on the CPU at ``batch``: kernel time per operator type (ms per run, share of
    the kernel total, node count), largest first, plus the kernel total and the wall time per run."""
    import json
    import tempfile

    from pedstream.model.runtime import ModelSession

    with tempfile.TemporaryDirectory() as tmp:
        sess = ModelSession(path=model, providers=["CPUExecutionProvider"], runtime_cfg=cfg.runtime, max_batch=batch,
                            profile_prefix=str(Path(tmp) / "ort"))
        x = _inputs(sess._shapes, batch, np.random.default_rng(2))
        t0 = time.perf_counter()
        for _ in range(runs):
            sess.run(x["ecg"], x["iegm"], x["mask"], rr=x.get("rr"))
        wall = (time.perf_counter() - t0) / runs
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, list[float]] = {}
    warm = None
    for e in events:  # the warm-up runs of the session come first: count only the last `runs` model runs
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            warm = e["ts"] if warm is None else warm
    runs_ts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    start = runs_ts[-runs] if len(runs_ts) >= runs else 0
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time") and e["ts"] >= start:
            op = e.get("args", {}).get("op_name", "?")
            per_op.setdefault(op, []).append(float(e["dur"]))
    total = sum(sum(v) for v in per_op.values()) or 1.0
    rows = sorted(({"op": op, "ms_per_run": round(sum(v) / runs / 1000, 3), "share": round(sum(v) / total, 3),
                    "nodes": len(v) // runs} for op, v in per_op.items()), key=lambda r: -r["ms_per_run"])
    return {"batch": batch, "runs": runs, "wall_ms_per_run": round(1000 * wall, 2),
            "kernel_ms_per_run": round(total / runs / 1000, 2), "ops": rows[:top]}


def _inputs(shapes: dict[str, tuple[int, ...]], batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {}
    for name, tail in shapes.items():
        feeds[name] = (np.ones((batch, *tail), np.float32) if name == "mask"
                       else rng.standard_normal((batch, *tail), dtype=np.float32))
    return feeds


def model_bench(cfg: Any, *, model: Path, providers: Sequence[str], batches: Sequence[int], seconds: float,
                torch_eager: bool = True, quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark (see the module docstring) and return the JSON-ready result."""
    from pedstream.model.runtime import ModelSession, read_metadata

    meta = read_metadata(model)
    peak = matmul_peak(seconds=seconds)
    log(f"matmul peak (numpy float32 1024^3): {peak['peak_gflops']} GFLOP/s best, {peak['median_gflops']} median")
    torch_model, flops, flop_note = flops_per_window(meta["model_config"]) if torch_eager else (None, None, "")
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(1)
    sessions: dict[str, Any] = {}
    shapes = None
    for key in providers:
        name = PROVIDERS[key]
        try:
            session = ModelSession(path=model, providers=[name], runtime_cfg=cfg.runtime, max_batch=max(batches))
        except Exception as exc:  # a provider that cannot even open the model is a row, not a crash
            rows.append({"engine": "onnxruntime", "provider": key, "status": f"failed: {exc}"})
            continue
        shapes = session._shapes
        if session.providers[0] != name:
            why = "not installed" if name not in session.available_providers else "ONNX Runtime fell back to CPU"
            rows.append({"engine": "onnxruntime", "provider": key, "status": f"unavailable: {why}",
                         "session_providers": session.providers, "log": session.session_log})
            continue
        sessions[key] = session
    torch_threads: list[int] = []
    if torch_model is not None and shapes is not None:
        import torch

        default_threads = torch.get_num_threads()
        torch_threads = sorted({default_threads, 1}, reverse=True)
    for b in batches:  # each batch: every engine one after the other, so load changes hit them alike
        x = _inputs(shapes, b, rng) if shapes is not None else {}
        for key, session in sessions.items():
            r = time_calls(lambda: session.run(x["ecg"], x["iegm"], x["mask"], rr=x.get("rr")),
                           batch=b, seconds=seconds)
            rows.append({"engine": "onnxruntime", "provider": key, "batch": b, "status": "ok",
                         "io_binding": session.io_binding, **r})
            log(f"  onnxruntime {key:8s} batch {b:5d}: {r['windows_per_s']:9.1f} windows/s, "
                f"median {r['median_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms")
        for threads in torch_threads:
            import torch

            tx = {k: torch.from_numpy(v) for k, v in x.items()}
            torch.set_num_threads(threads)

            def call() -> Any:
                with torch.inference_mode():
                    return torch_model(**tx)

            r = time_calls(call, batch=b, seconds=seconds)
            rows.append({"engine": "torch-eager", "provider": "cpu", "batch": b, "status": "ok", "threads": threads, **r})
            log(f"  torch eager {threads} thr   batch {b:5d}: {r['windows_per_s']:9.1f} windows/s, "
                f"median {r['median_ms']:.2f} ms")
        if torch_threads:
            torch.set_num_threads(default_threads)
    peak2 = matmul_peak(seconds=seconds)  # again at the end: the best of both is the peak
    peak = {**peak, "peak_gflops": max(peak["peak_gflops"], peak2["peak_gflops"]),
            "peak_gflops_start_end": [peak["peak_gflops"], peak2["peak_gflops"]]}
    profile = ort_profile(cfg, model, runs=5 if quick else 20) if "cpu" in providers else None
    eager: dict[int, float] = {}
    for r in rows:  # the best torch configuration at each batch
        if r["engine"] == "torch-eager":
            eager[r["batch"]] = max(eager.get(r["batch"], 0.0), r["windows_per_s"])
    for r in rows:
        if r.get("status") != "ok":
            continue
        if flops:
            r["gflops"] = round(r["windows_per_s"] * flops / 1e9, 2)
            if r["provider"] == "cpu":
                r["fraction_of_peak"] = round(r["gflops"] / peak["peak_gflops"], 3)
        if r["engine"] == "onnxruntime" and r["batch"] in eager:
            r["speedup_vs_torch"] = round(r["windows_per_s"] / eager[r["batch"]], 2)
    rt = cfg.runtime
    return {"bench": "model", "quick": quick, "model": str(model), "machine": machine_info(),
            "flops_per_window": flops, "flops_note": flop_note, "matmul": peak,
            "runtime": {k: getattr(rt, k, None) for k in ("intra_op_threads", "inter_op_threads", "graph_optimization",
                                                          "execution_mode", "io_binding")},
            "ort_profile_cpu": profile,
            "torch_weights": "random (same architecture and cost as the model)" if torch_model is not None else None,
            "results": rows}
