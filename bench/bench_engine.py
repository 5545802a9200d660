"""Engine benchmarks: inference throughput vs batch size, and real-time capacity in streams.

    .venv/bin/python -m bench.bench_engine [--model PATH] [--streams 1,4,8,16,32] [--seconds 20]

1. **Throughput**: ``ModelSession.run`` on random normalised windows, windows/s for each batch size.
2. **Capacity**: N simultaneous 977 Hz, 19-channel streams (the bundled simulated record ``x001``,
   looped, replayed in-process at speed 1, i.e. real time) through the full engine (mapping,
   filter bank, ring buffer, windows, QRS, batched ONNX Runtime, alarms). For each N: windows
   classified, dropped windows, end-to-end latency p50/p99 (last sample of the window received ->
   call emitted). N is *sustained* when nothing is dropped and p99 < the hop (1.25 s): the engine
   keeps up in real time (and at most one window per stream is still in flight when the run stops). The sweep stops after the first N that is not sustained.

Default model: the packaged demo model; when it is not there yet, a randomly initialised FusionNet
with the default ``[model]`` settings (same architecture and cost as the demo model) is exported
and the result says so. Writes ``bench/results/engine.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from pedstream.config import load_config

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "engine.json"
RECORD = ROOT / "pedstream" / "assets" / "demo_records" / "x001"


def random_fusion_model(cfg, out: Path) -> Path:
    """Export an untrained FusionNet (default [model] config) with proper metadata (needs torch)."""
    import torch

    from pedstream.dsp.windowing import NORMALIZATION
    from pedstream.model.config import ModelConfig
    from pedstream.model.export import export_onnx
    from pedstream.model.metadata import build_metadata
    from pedstream.model.network import build_model

    classes = list(cfg.labels.active.classes)
    mcfg = ModelConfig.from_sections(cfg.model, signal=cfg.signal, segments=cfg.segments, n_classes=len(classes))
    torch.manual_seed(0)
    model = build_model(mcfg).eval()
    meta = build_metadata(model_cfg=mcfg.to_dict(), class_names=classes, channels=cfg.signal.channels, fs=cfg.signal.fs,
                          window_s=cfg.segments.window_s, hop_s=cfg.segments.hop_s, filters=cfg.filters.model_dump(),
                          normalization=NORMALIZATION, label_scheme=cfg.labels.scheme,
                          data_description="UNTRAINED random FusionNet (benchmark only)", simulated=True)
    t = mcfg.window_samples
    rng = np.random.default_rng(0)
    samples = {"ecg": rng.standard_normal((4, 12, t)).astype(np.float32),
               "iegm": rng.standard_normal((4, 7, t)).astype(np.float32), "mask": np.ones((4, 19), np.float32)}
    export_onnx(model, mcfg, meta, out, sample_inputs=samples)
    return out


def throughput(session, batches: list[int], min_s: float = 1.5) -> list[dict]:
    t = session.window_samples
    out = []
    rng = np.random.default_rng(1)
    for b in batches:
        ecg = rng.standard_normal((b, 12, t)).astype(np.float32)
        iegm = rng.standard_normal((b, 7, t)).astype(np.float32)
        mask = np.ones((b, 19), np.float32)
        session.run(ecg, iegm, mask)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < min_s or n < 3:
            session.run(ecg, iegm, mask)
            n += 1
        dt = time.perf_counter() - t0
        out.append({"batch": b, "windows_per_s": round(b * n / dt, 1), "ms_per_batch": round(1000 * dt / n, 2)})
        print(f"  batch {b:3d}: {b * n / dt:8.1f} windows/s  {1000 * dt / n:7.2f} ms/batch", flush=True)
    return out


class _PreloadedRecord:
    """The record read once into memory, shared by every stream (``--preload``): the replay source's
    per-stream disk reads (wfdb, in threads) are then not part of the measurement."""

    def __init__(self, rec) -> None:
        self._rec, self._sig = rec, rec.read()

    def __getattr__(self, name):
        return getattr(self._rec, name)

    def read(self, start: int = 0, stop: int | None = None):
        import dataclasses

        stop = self._rec.n_samples if stop is None else stop
        return dataclasses.replace(self._sig, data=self._sig.data[start:stop], clipped=self._sig.clipped[start:stop],
                                   start=start)


async def capacity_one(cfg, session, n: int, seconds: float, preload: bool = False) -> dict:
    import dataclasses

    from pedstream.monitor.engine import Engine
    from pedstream.transports.replay import ReplaySource, plan_replay

    if preload:
        first = plan_replay([RECORD], cfg.signal, stream_id="bed000")[0]
        first = dataclasses.replace(first, record=_PreloadedRecord(first.record))
        plans = [dataclasses.replace(first, stream_id=f"bed{i:03d}") for i in range(n)]
    else:
        plans = [plan_replay([RECORD], cfg.signal, stream_id=f"bed{i:03d}")[0] for i in range(n)]
    q: asyncio.Queue = asyncio.Queue()
    src = ReplaySource(events=q, plans=plans, speed=1.0, chunk_ms=cfg.replay.chunk_ms, loop=True)
    with tempfile.TemporaryDirectory() as tmp:
        eng = Engine(cfg=cfg, session=session, sources=[src], alarms_dir=Path(tmp))
        def _cpu() -> float:  # this process and its DSP worker processes ([stream] workers > 1)
            total = time.process_time()
            if eng.workers is not None:
                import psutil

                for w in eng.workers.workers.values():
                    with contextlib.suppress(psutil.Error):
                        t = psutil.Process(w.proc.pid).cpu_times()
                        total += t.user + t.system
            return total

        async with eng:  # measured from here: the sources start when the engine (and its workers) are up
            t0, cpu0 = time.perf_counter(), _cpu()
            await asyncio.sleep(seconds)  # the measurement period of a real-time run
            wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    s = eng.summary()
    hop_ms = cfg.segments.hop_s * 1000
    # windows that the samples sent make complete (first window starts after the filter settles)
    first = eng.pipelines[plans[0].stream_id]._first_start(0) if eng.pipelines else 0
    expected = sum(max(0, (sent - first - eng.window) // eng.hop + 1) for sent in src.samples_sent.values())
    behind = expected - s["windows_classified"] - s["dropped_windows"]
    ratio = sum(src.samples_sent.values()) / (n * plans[0].fs * wall)  # samples delivered / real time
    sustained = (ratio > 0.9 and s["dropped_windows"] == 0 and s["e2e_latency_ms_p99"] is not None and s["e2e_latency_ms_p99"] < hop_ms
                 and behind <= n)
    res = {"streams": n, "seconds": round(wall, 1), "windows": s["windows_classified"], "windows_expected": expected,
           "windows_behind": behind, "realtime_ratio": round(ratio, 3), "dropped": s["dropped_windows"],
           "e2e_ms_p50": s["e2e_latency_ms_p50"], "e2e_ms_p99": s["e2e_latency_ms_p99"],
           "inference_ms_p50": s["inference_ms_p50"], "batch_mean": s["batch_mean"], "sustained": sustained,
           # CPU seconds this process used (all threads) per second of one stream's signal delivered: the cost
           # per stream, which a busy shared machine changes much less than the wall-clock figures
           "cpu_s": round(cpu, 2), "cpu_ms_per_stream_s": round(1000 * cpu / max(ratio * n * wall, 1e-9), 3),
           "loadavg_1m": round(os.getloadavg()[0], 2)}
    print(f"  {n:3d} streams: {res['windows']}/{expected} windows, real-time ratio {ratio:.2f}, dropped {res['dropped']}, e2e ms p50 "
          f"{res['e2e_ms_p50'] or float('nan'):.1f} p99 {res['e2e_ms_p99'] or float('nan'):.1f}, "
          f"batch {res['batch_mean'] or 0:.2f}, CPU {res['cpu_ms_per_stream_s']:.2f} ms per stream-second (load "
          f"{res['loadavg_1m']}) -> {'sustained' if sustained else 'NOT sustained'}", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--streams", default="1,4,8,16,32")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--batches", default="1,2,4,8,16,32")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--workers", type=int, default=None, help="[stream] workers (DSP processes; default: config)")
    ap.add_argument("--preload", action="store_true",
                    help="read the record once into memory for all streams (no per-stream wfdb reads in the source)")
    args = ap.parse_args()
    cfg = load_config(overrides=["alarms.strips=false"] + ([] if args.workers is None else [f"stream.workers={args.workers}"]))
    from pedstream.model.runtime import ModelSession, expected_metadata
    from pedstream.monitor.assembly import default_model_path

    model = args.model or default_model_path()
    note = ""
    if not model.is_file():
        model = random_fusion_model(cfg, Path(tempfile.mkdtemp()) / "random_fusion.onnx")
        note = "demo model not present: an UNTRAINED FusionNet with the default [model] config was used (same cost)"
        print(note)
    exp = expected_metadata(signal_cfg=cfg.signal, filter_cfg=cfg.filters, window_s=cfg.segments.window_s,
                            hop_s=cfg.segments.hop_s)
    batches = [int(b) for b in args.batches.split(",")]
    session = ModelSession(path=model, runtime_cfg=cfg.runtime, expected=exp, max_batch=max(batches + [cfg.stream.max_batch]))
    print(f"model {model} providers {session.providers}")
    print("inference throughput:")
    thr = throughput(session, batches)
    print("real-time capacity (977 Hz x 19 channels per stream, replay speed 1):")
    cap = []
    for n in (int(x) for x in args.streams.split(",")):
        r = asyncio.run(capacity_one(cfg, session, n, args.seconds, preload=args.preload))
        cap.append(r)
        if not r["sustained"]:
            break
    sustained = [r["streams"] for r in cap if r["sustained"]]
    result = {
        "model": str(model), "model_note": note, "providers": session.providers,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "config": {"max_batch": cfg.stream.max_batch, "max_wait_ms": cfg.stream.max_wait_ms,
                   "queue_windows": cfg.stream.queue_windows, "preload": args.preload, "workers": cfg.stream.workers, "window_s": cfg.segments.window_s, "hop_s": cfg.segments.hop_s},
        "throughput": thr, "capacity": cap, "max_sustained_streams": max(sustained) if sustained else 0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"max sustained streams: {result['max_sustained_streams']} (tested {[r['streams'] for r in cap]}); wrote {args.out}")


if __name__ == "__main__":
    main()
