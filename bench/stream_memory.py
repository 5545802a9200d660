"""Memory of one monitored stream, and what is left of it after the stream is released.

    .venv/bin/python -m bench.stream_memory [--streams 200] [--out bench/results/stream_memory.json]

Builds ``--streams`` stream pipelines exactly as the engine does for a 977 Hz, 19-channel stream
(``StreamPipeline`` with the configuration's filters, resampler, ring of ``[stream] ring_seconds``),
feeds each 22 s of signal (rings full, windows cut), then releases them as the engine does for a
lost stream (``pedstream.monitor.release``: pipeline dropped, freed memory handed back). Reported:
resident memory (RSS) before, with all streams, and after the release; per stream. One process,
this machine."""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from pedstream.config import load_config
from pedstream.data.channels import CANONICAL_CHANNELS
from pedstream.monitor.pipeline import StreamPipeline
from pedstream.monitor.release import _TRIM
from pedstream.events import Chunk, StreamInfo

FS = 977.0


def rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=22.0)
    ap.add_argument("--out", type=Path, default=Path("bench/results/stream_memory.json"))
    a = ap.parse_args()
    cfg = load_config()
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((int(a.seconds * FS), len(CANONICAL_CHANNELS)))).astype(np.float32)
    gc.collect()
    base = rss_mib()
    pipes = []
    t0 = time.perf_counter()
    for i in range(a.streams):
        info = StreamInfo(stream_id=f"s{i}", source="mqtt", fs=FS, channel_names=list(CANONICAL_CHANNELS),
                          units=["mV"] * len(CANONICAL_CHANNELS))
        p = StreamPipeline(info=info, cfg=cfg, fs=FS, window=2442, hop=1221)
        for k in range(0, len(x), 977):
            n = min(977, len(x) - k)
            p.feed(Chunk(stream_id=info.stream_id, data=x[k:k + n], timestamps=(k + np.arange(n)) / FS, first_index=k),
                   time.monotonic())
        pipes.append(p)
    build_s = time.perf_counter() - t0
    gc.collect()
    full = rss_mib()
    pipes.clear()
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
    after = rss_mib()
    out = {
        "command": f"python -m bench.stream_memory --streams {a.streams} --seconds {a.seconds:g}",
        "machine": platform.platform(), "streams": a.streams, "fs": FS, "channels": len(CANONICAL_CHANNELS),
        "ring_seconds": cfg.stream.ring_seconds,
        "rss_mib": {"before": round(base, 1), "all_streams": round(full, 1), "after_release": round(after, 1)},
        "per_stream_mib": round((full - base) / a.streams, 3),
        "left_after_release_mib": round(after - base, 1),
        "build_and_feed_s_per_stream": round(build_s / a.streams, 4),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
