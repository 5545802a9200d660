"""Throughput of the per-stream DSP chain (what the engine runs for every stream).

One stream of 19 channels arrives in chunks of 32 samples at ``--fs-in`` Hz (default 1000, so the
resampler does real work; ``--fs-in 977`` measures the pass-through case) and goes through
StreamResampler -> FilterBank (977 Hz) -> RingBuffer -> Windower (2.5 s windows, 1.25 s hop) ->
normalize_window; optionally OnlineQRSDetector on lead II (``--qrs``). Reports samples/s (input
samples per second of CPU wall time) and x-real-time for one stream, the median of ``--runs`` runs,
each over ``--seconds`` of signal, and writes bench/results/dsp.json.

    .venv/bin/python bench/bench_dsp.py [--fs-in 1000] [--seconds 60] [--runs 5] [--chunk 32] [--qrs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pedstream.config import FilterConfig  # noqa: E402
from pedstream.dsp import (  # noqa: E402
    FilterBank,
    OnlineQRSDetector,
    RingBuffer,
    StreamResampler,
    Windower,
    normalize_window,
    window_samples,
)

FS = 977.0


def one_run(x: np.ndarray, *, fs_in: float, chunk: int, qrs: bool) -> dict[str, float]:
    rs = StreamResampler(fs_in=fs_in, fs_out=FS, n_channels=19)
    bank = FilterBank(fs=FS, cfg=FilterConfig())
    win = window_samples(2.5, FS)
    ring = RingBuffer(n_channels=19, capacity=4 * win)
    windower = Windower(window=win, hop=window_samples(1.25, FS))
    det = OnlineQRSDetector(fs=FS) if qrs else None
    present = np.ones(19, dtype=bool)
    t_stage = {"resample": 0.0, "filter": 0.0, "ring+window": 0.0, "normalize": 0.0, "qrs": 0.0}
    n_windows = 0
    t0 = time.perf_counter()
    for i in range(0, len(x), chunk):
        a = time.perf_counter()
        y = rs.process(x[i : i + chunk])  # (k, 19)
        b = time.perf_counter()
        f = bank.process(y)
        c = time.perf_counter()
        ring.write(f, None)
        starts = windower.update(ring.total_written)
        d = time.perf_counter()
        for s in starts:
            w, _ = ring.read(s, s + win)
            normalize_window(w.T, present)
            n_windows += 1
        e = time.perf_counter()
        if det is not None:
            det.process(f[:, 1])
        g = time.perf_counter()
        t_stage["resample"] += b - a
        t_stage["filter"] += c - b
        t_stage["ring+window"] += d - c
        t_stage["normalize"] += e - d
        t_stage["qrs"] += g - e
    elapsed = time.perf_counter() - t0
    return {"elapsed_s": elapsed, "windows": n_windows, **{f"{k}_s": v for k, v in t_stage.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fs-in", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--qrs", action="store_true", help="also run the QRS detector on lead II")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "dsp.json")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]

    rng = np.random.default_rng(0)
    n = int(args.seconds * args.fs_in)
    t = np.arange(n) / args.fs_in
    x = (0.05 * rng.standard_normal((n, 19)) + np.sin(2 * np.pi * 1.7 * t)[:, None]).astype(np.float32)  # (n, 19) mV
    one_run(x[: int(args.fs_in)], fs_in=args.fs_in, chunk=args.chunk, qrs=args.qrs)  # warm caches / imports
    runs = [one_run(x, fs_in=args.fs_in, chunk=args.chunk, qrs=args.qrs) for _ in range(args.runs)]
    med = statistics.median(r["elapsed_s"] for r in runs)
    result = {
        "chain": "StreamResampler -> FilterBank -> RingBuffer -> Windower -> normalize_window" + (" + OnlineQRSDetector" if args.qrs else ""),
        "channels": 19,
        "fs_in": args.fs_in,
        "fs_out": FS,
        "chunk": args.chunk,
        "signal_seconds": args.seconds,
        "runs": args.runs,
        "median_elapsed_s": med,
        "samples_per_s": n / med,
        "x_realtime_per_stream": args.seconds / med,
        "us_per_chunk": med / (n / args.chunk) * 1e6,
        "stage_share": {k[:-2]: statistics.median(r[k] for r in runs) / med for k in runs[0] if k.endswith("_s") and k != "elapsed_s"},
        "windows_per_run": runs[0]["windows"],
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": platform.processor() or "unknown",
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "loadavg_1min_before_after": [load_before, os.getloadavg()[0]],  # a shared machine inflates times
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"{result['chain']}: 19 ch, {args.fs_in:g} -> {FS:g} Hz, chunks of {args.chunk}")
    print(f"  median of {args.runs} runs over {args.seconds:g} s: {result['samples_per_s']:,.0f} samples/s = "
          f"{result['x_realtime_per_stream']:,.0f}x real time per stream ({result['us_per_chunk']:.0f} us per chunk)")
    print("  stage share: " + ", ".join(f"{k} {v:.0%}" for k, v in result["stage_share"].items()))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
