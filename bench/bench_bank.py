"""DSP cost per chunk without the engine: S streams of the bundled record through StreamPipeline,
one round of chunks at a time, either ``feed`` per stream (the per-stream path) or
``pedstream.monitor.bank.feed_round`` (all streams' filter banks in one call per band).

    .venv/bin/python -m bench.bench_bank --streams 200 --chunk 49 [--mode bank|each]

CPU time of this process (``time.process_time``), so a busy shared machine distorts it less than
wall-clock time. Prints microseconds per chunk and the streams one core could keep in real time
for this part of the engine (no source, no inference, no events).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from pedstream.config import load_config
from pedstream.monitor.bank import feed_round
from pedstream.monitor.pipeline import StreamPipeline
from pedstream.transports.replay import plan_replay
from pedstream.events import Chunk

RECORD = Path(__file__).resolve().parent.parent / "pedstream" / "assets" / "demo_records" / "x001"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=49, help="samples per chunk (49 = 50 ms at 977 Hz)")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--mode", choices=["bank", "each"], default="bank")
    args = ap.parse_args()
    cfg = load_config(overrides=["alarms.strips=false"])
    plan = plan_replay([RECORD], cfg.signal, stream_id="b")[0]
    n_total = int(args.seconds * plan.fs)
    data = plan.record.read(0, min(n_total, plan.record.n_samples)).data[:, plan.columns].astype(np.float32)
    pipes = [StreamPipeline(info=dataclasses.replace(plan, stream_id=f"b{i}").info(), cfg=cfg, fs=cfg.signal.fs,
                            window=int(round(cfg.segments.window_s * cfg.signal.fs)),
                            hop=int(round(cfg.segments.hop_s * cfg.signal.fs))) for i in range(args.streams)]
    n_chunks = data.shape[0] // args.chunk
    windows, t0 = 0, time.process_time()
    for c in range(n_chunks):
        sl = slice(c * args.chunk, (c + 1) * args.chunk)
        ts = 100.0 + np.arange(sl.start, sl.stop) / plan.fs
        items = [(p, Chunk(stream_id=p.stream_id, data=data[sl], timestamps=ts, first_index=sl.start), 0.0) for p in pipes]
        if args.mode == "bank":
            windows += sum(len(r.windows) for _, r in feed_round(items))
        else:
            windows += sum(len(p.feed(ch, t).windows) for p, ch, t in items)
    cpu = time.process_time() - t0
    sig_s = n_chunks * args.chunk / plan.fs
    print(f"{args.mode}: {args.streams} streams x {sig_s:.1f} s, chunks of {args.chunk}: {cpu:.2f} CPU s, "
          f"{1e6 * cpu / (args.streams * n_chunks):.1f} us per chunk, {1e3 * cpu / (args.streams * sig_s):.2f} ms per "
          f"stream-second -> one core: ~{args.streams * sig_s / cpu:.0f} streams; {windows} windows")


if __name__ == "__main__":
    main()
