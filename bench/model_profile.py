"""Per-operator profile of the model under ONNX Runtime (CPU), as markdown, for bench/results/model_profile.md.

    .venv/bin/python bench/model_profile.py [--model FILE] [--threads 1,2] [--batch 32] [--runs 30]

For each intra-op thread count: ONNX Runtime's profiler over ``--runs`` calls at ``--batch`` (after the
session's warm-up), per operator type the kernel time per call, its share, the node count, the MFLOPs per
call from the shapes ONNX Runtime executed and the achieved GFLOP/s; then the FLOPs per window of the
graph itself (:func:`pedstream.bench.ort_flops.graph_flops`) and the CPU time per window (process time:
all threads of the process), so the table can be read against the matmul peak of ``pedstream bench model``.
The machine is shared: run it twice and keep the quieter run (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from pedstream.bench.model import _inputs, ort_profile
    from pedstream.bench.ort_flops import graph_flops
    from pedstream.config import load_config
    from pedstream.model.runtime import ModelSession
    from pedstream.monitor.assembly import default_model_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--runs", type=int, default=30)
    a = ap.parse_args()
    model = a.model or default_model_path()
    cfg = load_config()
    print(f"model `{model}`, batch {a.batch}, {a.runs} profiled calls; load average at start "
          f"{os.getloadavg()[0]:.2f}\n")
    for t in (int(x) for x in a.threads.split(",")):
        c = cfg.model_copy(update={"runtime": cfg.runtime.model_copy(update={"intra_op_threads": t})})
        prof = ort_profile(c, model, batch=a.batch, runs=a.runs, top=16)
        sess = ModelSession(path=model, providers=["CPUExecutionProvider"], runtime_cfg=c.runtime, max_batch=a.batch)
        x = _inputs(sess._shapes, a.batch, np.random.default_rng(3))
        c0 = time.process_time()
        for _ in range(a.runs):
            sess.run(x["ecg"], x["iegm"], x["mask"])
        cpu_ms = (time.process_time() - c0) / a.runs * 1000
        print(f"### {t} intra-op thread{'s' if t > 1 else ''}: wall {prof['wall_ms_per_run']} ms per call, kernels "
              f"{prof['kernel_ms_per_run']} ms, CPU {cpu_ms:.2f} ms per call ({cpu_ms / a.batch:.3f} ms per window)\n")
        print("| operator | ms per call | share | nodes | MFLOP per call | GFLOP/s |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in prof["ops"]:
            g = f"{r['gflops']:.0f}" if r["mflop_per_run"] and r["gflops"] else "-"
            print(f"| {r['op']} | {r['ms_per_run']:.3f} | {100 * r['share']:.1f} % | {r['nodes']} | "
                  f"{r['mflop_per_run']:.1f} | {g} |")
        print(f"| (other operators) | {prof['other_ms_per_run']:.3f} | | | | |\n")
    g = graph_flops(model, sess._shapes)
    print(f"graph FLOPs per window: {g['matmul_flops'] / 1e6:.2f} M in MatMul/Gemm/Conv/attention "
          f"+ {g['elementwise_flops'] / 1e6:.2f} M element-wise")


if __name__ == "__main__":
    main()
