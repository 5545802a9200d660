"""``pedstream bench model``: ONNX Runtime windows/s and latency per provider and batch, PyTorch eager
beside it, FLOPs per window, achieved GFLOP/s and the fraction of this run's matrix-multiply peak.

Method (everything in one process, one run):

- **peak**: float32 ``1024 x 1024 @ 1024 x 1024`` (2 * 1024^3 FLOPs each) by numpy's BLAS and by
  ONNX Runtime's own MatMul (MLAS) in turn, both on the threads ONNX Runtime uses (``[runtime]
  intra_op_threads``, 0 = every core), repeated for ``--seconds`` after one warm-up, at the start and
  again at the end; ``peak_gflops`` is the best repetition of either library (:func:`matmul_peak`:
  numpy's OpenBLAS runs AVX2 kernels here, MLAS AVX-512), so ``fraction_of_peak`` is not flattered;
- **ONNX Runtime**: :class:`~pedstream.model.runtime.ModelSession` (the engine's session, with the
  ``[runtime]`` settings: threads, graph optimisation, execution mode, I/O binding on GPU providers),
  one session per provider; batch by batch, every engine in turn (a change of load hits them alike):
  a warm-up call, then calls on the same random normalised
  windows for ``--seconds`` (at least ``min_calls``); latency = one ``run()`` call, host arrays in
  and out (so the copies to and from a GPU are counted); ``windows_per_s`` = windows / total time;
- **PyTorch eager** (when torch is installed): the same architecture built from the model's
  metadata (``model_config``) with random weights (the cost does not depend on the weights),
  ``eval()``, ``torch.inference_mode()``, torch's default threads and 1 thread, same inputs and timing
  and, on a machine with several cores, 1 thread per caller with one caller per core
  (``torch-eager-concurrent``); ``speedup_vs_torch`` is against the fastest of these;
- **ONNX Runtime, every core** (``onnxruntime-concurrent``): one session with 1 intra-op thread and one
  calling thread per core, each running whole batches (throughput without the per-operator thread
  synchronisation that costs a 2-thread session on these small tensors); same peak (same threads);
- **FLOPs per window**: :func:`pedstream.model.flops.count_flops` (needs torch; conv/linear/matmul
  at 2 FLOPs per MAC plus an element-wise estimate): ``gflops`` = windows/s x FLOPs per window;
  ``flops_per_window_graph`` counts the ONNX graph itself (:func:`pedstream.bench.ort_flops.graph_flops`),
  a check that the fused graph computes what the torch module does (the two matmul counts are equal),
  and the count used when torch is not installed.

- **profile**: ONNX Runtime's profiler on the CPU at batch 32: kernel time, FLOPs and GFLOP/s per
  operator type (``ort_profile_cpu``), so where the time goes is in the result.

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
from pedstream.config import Config

__all__ = ["PROVIDERS", "matmul_peak", "time_calls", "time_concurrent", "model_bench", "flops_per_window", "ort_profile"]

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def _blas_info() -> dict[str, Any]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"note": "threadpoolctl not installed: BLAS threads not known"}
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return {k: pool.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
    return {"note": "no BLAS thread pool found"}


def _ort_matmul(n: int, b: np.ndarray, threads: int, spinning: bool) -> Any:
    """An ONNX Runtime session of one float32 ``n x n`` MatMul (constant right side) on ``threads`` threads."""
    import onnxruntime as ort

    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:  # the onnx package comes with the train extra
        return None
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul_peak",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
                              [numpy_helper.from_array(b, "b")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def matmul_peak(*, seconds: float = 1.0, n: int = 1024, threads: int | None = None,
                spinning: bool = False) -> dict[str, Any]:
    """Best and median GFLOP/s of a float32 ``n x n`` matmul over ``seconds``, on ``threads`` threads (default:
    all cores), by two libraries taken in turn: numpy's BLAS (its thread pool limited to ``threads`` with
    threadpoolctl) and ONNX Runtime's own MatMul kernel (MLAS, ``threads`` intra-op threads). ``peak_gflops``
    is the better of the two: on this AVX-512 machine numpy's OpenBLAS runs its Haswell (AVX2) kernels at about
    100-117 GFLOP/s per core where ONNX Runtime's MLAS reaches 150-213, so a numpy-only peak flattered
    ``fraction_of_peak`` by about 1.5-1.8x."""
    import os

    threads = int(threads or os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    try:
        from threadpoolctl import threadpool_limits

        limit: Any = lambda: threadpool_limits(limits=threads, user_api="blas")  # noqa: E731
    except ImportError:
        from contextlib import nullcontext

        limit = nullcontext
    sess = _ort_matmul(n, b, threads, spinning)
    feeds = {"a": a}
    calls = {"numpy": lambda: np.matmul(a, b, out=out)}
    if sess is not None:
        calls["onnxruntime"] = lambda: sess.run(None, feeds)
    with limit():
        blas = _blas_info()
        for fn in calls.values():  # warm-up (thread pools start)
            fn()
        times: dict[str, list[float]] = {k: [] for k in calls}
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end or min(len(v) for v in times.values()) < 5:
            for key, fn in calls.items():  # in turn, so a change of load hits both alike
                t0 = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t0)
    flops = 2.0 * n ** 3
    per = {k: {"peak_gflops": round(flops / min(v) / 1e9, 1), "median_gflops": round(flops / float(np.median(v)) / 1e9, 1),
               "repeats": len(v)} for k, v in times.items()}
    best = max(per, key=lambda k: per[k]["peak_gflops"])
    return {"n": n, "dtype": "float32", "threads": threads, "repeats": per[best]["repeats"],
            "peak_gflops": per[best]["peak_gflops"], "median_gflops": per[best]["median_gflops"], "peak_source": best,
            "numpy": {**per["numpy"], "blas": blas},
            "onnxruntime": per.get("onnxruntime", "not measured: the onnx package is not installed")}


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


def ort_profile(cfg: Config, model: Path, *, batch: int = 32, runs: int = 20, top: int = 14) -> dict[str, Any]:
    """ONNX Runtime's profiler on the CPU at ``batch`` (the ``[runtime]`` session options): per operator type
    the kernel time (ms per run, share of the kernel total), node count, MFLOPs per run from the shapes as
    executed and achieved GFLOP/s (:func:`pedstream.bench.ort_flops.profile_table`), largest first, plus the
    kernel total and the wall time per run. Blocked (NCHWc) convolutions run on channels padded to the block,
    so their FLOPs here include the padding."""
    import json
    import tempfile

    from pedstream.bench.ort_flops import profile_table
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
    return {"batch": batch, "runs": runs, "wall_ms_per_run": round(1000 * wall, 2), **profile_table(events, runs, top)}


def time_concurrent(fn: Callable[[], Any], *, batch: int, seconds: float, callers: int,
                    min_calls: int = 5) -> dict[str, Any]:
    """``callers`` threads each calling ``fn`` (one warm-up each) until ``seconds`` have passed (at least
    ``min_calls`` calls each): windows/s of all together, latency of one call."""
    import threading

    lat: list[list[float]] = [[] for _ in range(callers)]
    go = threading.Barrier(callers + 1)

    def worker(k: int) -> None:
        fn()
        go.wait()
        while time.perf_counter() < t_end or len(lat[k]) < min_calls:
            t0 = time.perf_counter()
            fn()
            lat[k].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(callers)]
    t_end = float("inf")  # set once every caller has warmed up (the workers read it on each loop)
    for t in threads:
        t.start()
    go.wait()
    t_start = time.perf_counter()
    t_end = t_start + seconds
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    flat = [x for v in lat for x in v]
    return {"calls": len(flat), "callers": callers, "windows_per_s": round(batch * len(flat) / wall, 1),
            **summary_ms(flat)}


def _inputs(shapes: dict[str, tuple[int, ...]], batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {}
    for name, tail in shapes.items():
        feeds[name] = (np.ones((batch, *tail), np.float32) if name == "mask"
                       else rng.standard_normal((batch, *tail), dtype=np.float32))
    return feeds


def _peak(cfg: Config, seconds: float) -> dict[str, Any]:
    import os

    threads = int(getattr(cfg.runtime, "intra_op_threads", 0) or os.cpu_count() or 1)
    return matmul_peak(seconds=seconds, threads=threads, spinning=bool(getattr(cfg.runtime, "allow_spinning", False)))


def model_bench(cfg: Config, *, model: Path, providers: Sequence[str], batches: Sequence[int], seconds: float,
                torch_eager: bool = True, quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark (see the module docstring) and return the JSON-ready result."""
    import os

    from pedstream.bench.ort_flops import graph_flops
    from pedstream.model.runtime import ModelSession, read_metadata

    meta = read_metadata(model)
    peak = _peak(cfg, seconds)
    log(f"matmul peak (float32 1024^3, {peak['threads']} threads): {peak['peak_gflops']} GFLOP/s best "
        f"({peak['peak_source']}), {peak['median_gflops']} median; numpy {peak['numpy']['peak_gflops']}")
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
    cores = os.cpu_count() or 1
    concurrent = None  # throughput on every core: one 1-thread session, one caller per core
    if "cpu" in sessions and cores > 1:
        concurrent = ModelSession(path=model, providers=["CPUExecutionProvider"], max_batch=max(batches),
                                  runtime_cfg=cfg.runtime.model_copy(update={"intra_op_threads": 1}))
    graph = graph_flops(model, shapes) if shapes is not None else None
    if flops is None and graph is not None:
        flops, flop_note = graph["total_flops"], "counted on the ONNX graph (torch not installed)"
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
        if concurrent is not None:
            r = time_concurrent(lambda: concurrent.run(x["ecg"], x["iegm"], x["mask"], rr=x.get("rr")),
                                batch=b, seconds=seconds, callers=cores)
            rows.append({"engine": "onnxruntime-concurrent", "provider": "cpu", "batch": b, "status": "ok",
                         "threads": 1, "io_binding": False, **r})
            log(f"  onnxruntime {cores} x 1 thr batch {b:5d}: {r['windows_per_s']:9.1f} windows/s, "
                f"median {r['median_ms']:.2f} ms")
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
            if threads == 1 and concurrent is not None:  # torch the same way: 1 thread, one caller per core
                r = time_concurrent(call, batch=b, seconds=seconds, callers=cores)
                rows.append({"engine": "torch-eager-concurrent", "provider": "cpu", "batch": b, "status": "ok",
                             "threads": 1, **r})
                log(f"  torch eager {cores} x 1 thr batch {b:5d}: {r['windows_per_s']:9.1f} windows/s")
        if torch_threads:
            torch.set_num_threads(default_threads)
    peak2 = _peak(cfg, seconds)  # again at the end: the best of both is the peak
    peak = {**peak, "peak_gflops": max(peak["peak_gflops"], peak2["peak_gflops"]),
            "peak_gflops_start_end": [peak["peak_gflops"], peak2["peak_gflops"]], "end": {
                k: peak2[k] for k in ("peak_source", "numpy", "onnxruntime")}}
    profile = ort_profile(cfg, model, runs=5 if quick else 20) if "cpu" in providers else None
    eager: dict[int, float] = {}
    for r in rows:  # the fastest torch configuration at each batch (1 caller or one per core)
        if r["engine"].startswith("torch-eager") and r.get("status") == "ok":
            eager[r["batch"]] = max(eager.get(r["batch"], 0.0), r["windows_per_s"])
    for r in rows:
        if r.get("status") != "ok":
            continue
        if flops:
            r["gflops"] = round(r["windows_per_s"] * flops / 1e9, 2)
            if r["provider"] == "cpu":
                r["fraction_of_peak"] = round(r["gflops"] / peak["peak_gflops"], 3)
        if r["engine"].startswith("onnxruntime") and r["batch"] in eager:
            r["speedup_vs_torch"] = round(r["windows_per_s"] / eager[r["batch"]], 2)
    rt = cfg.runtime
    return {"bench": "model", "quick": quick, "model": str(model), "machine": machine_info(),
            "flops_per_window": flops, "flops_note": flop_note, "flops_per_window_graph": graph, "matmul": peak,
            "runtime": {k: getattr(rt, k, None) for k in ("intra_op_threads", "inter_op_threads", "graph_optimization",
                                                          "execution_mode", "io_binding", "allow_spinning")},
            "ort_profile_cpu": profile,
            "torch_weights": "random (same architecture and cost as the model)" if torch_model is not None else None,
            "results": rows}
