"""CPU per stream-second of the engine's DSP alone (what its DSP thread runs), on a fixed workload.

N replayed streams of the bundled record ``x001`` (977 Hz, 19 channels, ``--seconds`` of it each),
their starts spread evenly over one hop as in ``pedstream bench engine`` (``--aligned``: all at
once), arrive in 50 ms chunks (``[replay] chunk_ms``) and are served the way the engine's ingest serves them with deferred DSP: a
stream's chunks go through the DSP, merged, once they complete its next window or the oldest has
waited ``[stream] dsp_defer_s``; the streams due in a tick go through
:func:`pedstream.monitor.bank.feed_round` 64 at a time (``_ROUND_STREAMS``). Everything runs as
fast as it can in one process (no event loop, no model): the figure is the CPU time spent inside
``feed_round`` (``dsp_cpu_ms_per_stream_s``, this thread's CPU time; ``cpu_ms_per_stream_s`` is the
whole process, the replay's own bookkeeping included) over the stream-seconds fed, so it compares
two versions on a busy machine, which wall-clock throughput does not. Each run is a fresh process.

``--variant``: a comma-separated list; ``NAME:KEY=VALUE`` runs NAME with that config override (e.g.
``batch:stream.dsp_defer_s=0.5``). ``batch`` (this checkout: the QRS detectors of a round fed together,
:func:`pedstream.dsp.qrs_bank.process_many`), ``per-stream`` (this checkout with each detector fed in
its own ``complete``, ``pedstream.monitor.bank.QRS_BATCH`` off); ``--baseline DIR`` adds
``baseline``: the same workload on another version's ``pedstream`` (a ``git archive`` of it), with
``QRS_BATCH`` off unless ``--baseline-batch`` (for a baseline that has it: then the baseline runs as
``batch`` does). The
variants run interleaved, ``--repeats`` times, in one invocation; the summary gives medians and
ratios to the first variant. ``--profile`` writes a cProfile table per variant.

    git archive REV pedstream config.toml | tar -x -C /tmp/base
    .venv/bin/python bench/dsp_cpu.py --streams 200 --seconds 20 --baseline /tmp/base --variant per-stream,batch \
        --repeats 3 --json bench/results/engine_pipeline/dsp_vector_200.json
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if "--tree" in sys.argv:  # a child run on another checkout's pedstream
    sys.path.insert(0, str(Path(sys.argv[sys.argv.index("--tree") + 1]).resolve()))
else:
    sys.path.insert(0, str(ROOT))

ROUND_STREAMS = 64
# parts of StreamPipeline.prepare also timed by --stages where a version has them (their time is inside prepare's)
PREPARE_PARTS = ("_map", "_update_clipping", "_resample", "_gap_reason")


def build(n: int, seconds: float, overrides: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """The config, geometry, stream infos and their chunk schedules."""
    from pedstream.bench.engine import replay_plans
    from pedstream.config import load_config
    from pedstream.dsp.windowing import WindowGeometry

    cfg = load_config(overrides=["alarms.strips=false", *overrides])
    geo = WindowGeometry.from_seconds(cfg.signal.fs, cfg.segments.window_s, cfg.segments.hop_s)
    plan = replay_plans(cfg, 1)[0]
    sig = plan.record.read()
    data = np.ascontiguousarray(sig.data[:, plan.columns], dtype=np.float32)  # (n, k) mV
    fs = plan.fs
    need = int(seconds * fs)
    reps = -(-need // data.shape[0])
    data = np.concatenate([data] * reps)[:need]
    chunk = max(1, int(round(cfg.replay.chunk_ms / 1000.0 * fs)))
    return cfg, geo, plan, data, chunk


def _stage_timers(acc: dict) -> None:
    """Wrap the DSP's stages (this thread's CPU time in each, into ``acc``): prepare, the filter banks,
    the windows, the QRS detectors (fed together, or in ``complete`` per stream with the rates)."""
    from pedstream.monitor import bank as bank_mod
    from pedstream.monitor import pipeline as pl

    def timed(fn, name):  # type: ignore[no-untyped-def]
        def run(*a, **kw):  # type: ignore[no-untyped-def]
            t = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                acc[name] = acc.get(name, 0.0) + time.thread_time() - t
        return run

    for name in ("filter_many", "process_many"):
        if hasattr(bank_mod, name):
            setattr(bank_mod, name, timed(getattr(bank_mod, name), name))
    for name in ("prepare", "cut_windows", "rate_meta", "complete", *PREPARE_PARTS):
        if hasattr(pl.StreamPipeline, name):
            setattr(pl.StreamPipeline, name, timed(getattr(pl.StreamPipeline, name), name))


def run_once(variant: str, n: int, seconds: float, profile: Path | None, stages: bool = False,
             aligned: bool = False, baseline_batch: bool = False) -> dict:
    import pedstream
    from pedstream.events import Chunk
    from pedstream.monitor import pipeline as pl
    from pedstream.monitor import bank as bank_mod
    from pedstream.monitor.bank import feed_round

    label = variant
    variant, _, setting = variant.partition(":")  # "batch:stream.dsp_defer_s=0.5": a variant with a config override
    cfg, geo, plan, data, chunk = build(n, seconds, (setting,) if setting else ())
    fs = plan.fs
    defer = cfg.stream.dsp_defer_s
    pipes = [pl.StreamPipeline(info=dataclasses.replace(plan.info(), stream_id=f"bed{i:04d}"), cfg=cfg, fs=geo.fs,
                               window=geo.window, hop=geo.hop) for i in range(n)]
    bank_mod.QRS_BATCH = variant == "batch" or (variant == "baseline" and baseline_batch)
    acc: dict[str, float] = {}
    if stages:
        _stage_timers(acc)
    # stream i starts i/n of a hop late (as `bench engine` spreads its replayed streams)
    offsets = [0 if aligned else int(round(i / n * geo.hop / geo.fs * fs)) for i in range(n)]
    total = data.shape[0]
    tick = chunk
    pos = [0] * n  # next sample to deliver
    fed = [0] * n  # next sample to feed
    need = [1] * n  # samples that complete the stream's next window (the engine's figure, updated after each feed)
    wait_from = [None] * n  # tick time (samples) at which the oldest pending chunk arrived
    stream_s = 0.0
    prof = cProfile.Profile() if profile else None
    dsp = 0.0  # CPU time of this thread inside feed_round
    c0 = time.process_time()
    w0 = time.perf_counter()
    if prof:
        prof.enable()
    t = 0
    end = total + max(offsets) + tick
    while t < end:
        t += tick
        due = []
        for i in range(n):
            avail = min(total, max(0, t - offsets[i]))  # delivered in whole chunks
            avail = (avail // chunk) * chunk if avail < total else total
            if avail > pos[i]:
                if wait_from[i] is None:
                    wait_from[i] = t
                pos[i] = avail
            pend = pos[i] - fed[i]
            if pend <= 0:
                continue
            if pend >= need[i] or t - wait_from[i] >= defer * fs or pos[i] >= total:
                due.append(i)
        for g in range(0, len(due), ROUND_STREAMS):
            items = []
            for i in due[g:g + ROUND_STREAMS]:
                a, b = fed[i], pos[i]
                ts = (np.arange(a, b) / fs).astype(np.float64)
                items.append((pipes[i], Chunk(stream_id=pipes[i].stream_id, data=data[a:b], timestamps=ts, first_index=a,
                                              seq=0), float(t)))
                fed[i], wait_from[i] = b, None
            t_dsp = time.thread_time()
            results = feed_round(items)
            dsp += time.thread_time() - t_dsp
            for (pipe, res), i in zip(results, due[g:g + ROUND_STREAMS]):
                if isinstance(res, Exception):
                    raise res
                need[i] = pipe.samples_to_window()
    if prof:
        prof.disable()
    cpu = time.process_time() - c0
    wall = time.perf_counter() - w0
    stream_s = n * total / fs
    out = {"variant": label, "streams": n, "seconds": seconds, "aligned": aligned, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
           "cpu_ms_per_stream_s": round(1000 * cpu / stream_s, 4),
           "dsp_cpu_ms_per_stream_s": round(1000 * dsp / stream_s, 4),
           "windows": int(sum(p.windows_made for p in pipes)),
           "beats": int(sum(p.qrs.n_beats for p in pipes if p.qrs is not None)),
           "hr_sum": round(float(sum(p.heart_rate or 0.0 for p in pipes)), 6),
           "pedstream": str(Path(pedstream.__file__).parent), "loadavg_1min": os.getloadavg()[0]}
    if stages:  # shares of the DSP's CPU (complete: what the per-stream path does after the filters)
        out["stage_share"] = {k: round(v / dsp, 3) for k, v in sorted(acc.items())}
    if prof and profile:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(40)
        profile.parent.mkdir(parents=True, exist_ok=True)
        profile.write_text(f"# variant {variant}, {n} streams x {seconds:g} s\n" + s.getvalue())
    return out


def child(variant: str, n: int, seconds: float, tree: Path | None, profile: Path | None, stages: bool = False,
          aligned: bool = False, baseline_batch: bool = False) -> dict:
    """One run in a fresh process (``tree``: import pedstream from that checkout instead)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", variant, "--streams", str(n), "--seconds", str(seconds)]
    if tree is not None:
        cmd += ["--tree", str(tree)]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    if stages:
        cmd += ["--stages"]
    if aligned:
        cmd += ["--aligned"]
    if baseline_batch:
        cmd += ["--baseline-batch"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--variant", default="per-stream,batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", type=Path, default=None, help="folder for one cProfile table per variant (one extra run each)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="a checkout of another version (e.g. `git archive REV pedstream config.toml`): adds the variant "
                         "'baseline', run on that version's pedstream")
    ap.add_argument("--baseline-batch", action="store_true",
                    help="the baseline feeds a round's QRS detectors together (QRS_BATCH on), as the variant 'batch' does")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--stages", action="store_true",
                    help="one more run per variant with the CPU time of each DSP stage (wrapped: a little slower)")
    ap.add_argument("--aligned", action="store_true", help="every stream starts at once (its windows end together)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tree", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # a child: one run, one JSON line
        print(json.dumps(run_once(args.one, args.streams, args.seconds, args.profile, args.stages, args.aligned,
                                  args.baseline_batch)))
        return
    variants = (["baseline"] if args.baseline else []) + args.variant.split(",")
    load0 = os.getloadavg()
    runs: list[dict] = []
    for _ in range(args.repeats):
        for v in variants:
            r = child(v, args.streams, args.seconds, args.baseline if v == "baseline" else None, None, False, args.aligned,
                      args.baseline_batch)
            runs.append(r)
            print(json.dumps(r), flush=True)
    stage_runs = []
    if args.stages:
        for v in variants:
            r = child(v, args.streams, args.seconds, args.baseline if v == "baseline" else None, None, True, args.aligned,
                      args.baseline_batch)
            stage_runs.append({"variant": v, "stage_share": r["stage_share"], "dsp_cpu_ms_per_stream_s": r["dsp_cpu_ms_per_stream_s"]})
            print(json.dumps(stage_runs[-1]), flush=True)
    if args.profile:
        for v in variants:
            child(v, args.streams, args.seconds, args.baseline if v == "baseline" else None, args.profile / f"profile_{v}.txt",
                  aligned=args.aligned, baseline_batch=args.baseline_batch)
    summary = {}
    for v in variants:
        rs = [r for r in runs if r["variant"] == v]
        summary[v] = {"dsp_cpu_ms_per_stream_s_median": statistics.median(r["dsp_cpu_ms_per_stream_s"] for r in rs),
                      "dsp_cpu_ms_per_stream_s_min": min(r["dsp_cpu_ms_per_stream_s"] for r in rs),
                      "cpu_ms_per_stream_s_median": statistics.median(r["cpu_ms_per_stream_s"] for r in rs),
                      "windows": rs[0]["windows"], "beats": rs[0]["beats"], "hr_sum": rs[0]["hr_sum"]}
    if len(variants) > 1:
        base = summary[variants[0]]["dsp_cpu_ms_per_stream_s_median"]
        for v in variants[1:]:
            summary[v]["dsp_ratio_to_" + variants[0]] = round(summary[v]["dsp_cpu_ms_per_stream_s_median"] / base, 3)
    result = {"command": " ".join(["bench/dsp_cpu.py", *sys.argv[1:]]), "summary": summary, "runs": runs,
              "stage_runs": stage_runs,
              "loadavg_before": load0, "loadavg_after": os.getloadavg(), "cpu_count": os.cpu_count(),
              "python": platform.python_version(), "numpy": np.__version__}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
