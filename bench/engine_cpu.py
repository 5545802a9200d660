"""CPU per stream-second of the whole engine, independent of how busy the machine is: N replayed
streams of the bundled record ``x001`` (24 s each, 977 Hz, 19 channels, 50 ms chunks) go through the
engine (ingest, DSP, batched ONNX Runtime, alarms; strips off) as fast as it takes them, a few
chunks ahead at most (lossless: nothing is dropped), and the process's CPU time is divided by the
stream-seconds replayed. Wall-clock figures (``pedstream bench engine``) need an idle machine; this
one compares two versions of the engine on a shared one.

    .venv/bin/python bench/engine_cpu.py --streams 100 [--set stream.dsp_thread=false]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override, as pedstream --set")
    args = ap.parse_args()
    print(run(args.streams, args.overrides))


def run(n: int, overrides: list[str]) -> dict:
    from pedstream.bench.engine import replay_plans
    from pedstream.config import load_config
    from pedstream.model.runtime import ModelSession, expected_metadata
    from pedstream.monitor.assembly import default_model_path
    from pedstream.monitor.engine import Engine
    from pedstream.transports.replay import ReplaySource

    cfg = load_config(overrides=["alarms.strips=false", *overrides])
    exp = expected_metadata(signal_cfg=cfg.signal, filter_cfg=cfg.filters, window_s=cfg.segments.window_s,
                            hop_s=cfg.segments.hop_s)
    session = ModelSession(path=default_model_path(), runtime_cfg=cfg.runtime, expected=exp, max_batch=cfg.stream.max_batch)
    plans = replay_plans(cfg, n)

    async def go() -> dict:
        q: asyncio.Queue = asyncio.Queue()
        eng: Engine | None = None

        async def throttle(sid: str, final: bool) -> None:  # a few chunks ahead at most: lossless
            while eng is not None and (eng.ingest_depth(sid) > 20 or q.qsize() > 4 * n):
                await asyncio.sleep(0.002)

        src = ReplaySource(events=q, plans=plans, speed=float("inf"), chunk_ms=cfg.replay.chunk_ms, throttle=throttle)
        with tempfile.TemporaryDirectory() as tmp:
            eng = Engine(cfg=cfg, session=session, sources=[src], alarms_dir=Path(tmp))
            t0, c0 = time.perf_counter(), os.times()
            async with eng:
                async with asyncio.timeout(900):
                    while sum(1 for st in eng.status.values() if st.quality == "loss") < n:  # every record ended
                        await asyncio.sleep(0.05)
                    while eng.batcher.pending or eng.batcher.busy:
                        await asyncio.sleep(0.01)
            c1, wall = os.times(), time.perf_counter() - t0
        s = eng.summary()
        cpu = c1.user + c1.system - c0.user - c0.system
        stream_s = n * (plans[0].stop - plans[0].start) / plans[0].fs
        return {"streams": n, "overrides": overrides, "windows": s["windows_classified"], "dropped": s["dropped_windows"],
                "dropped_samples": s["dropped_samples"], "cpu_s": round(cpu, 2), "wall_s": round(wall, 1),
                "cpu_ms_per_stream_s": round(1000 * cpu / stream_s, 3)}

    return asyncio.run(go())


if __name__ == "__main__":
    main()
