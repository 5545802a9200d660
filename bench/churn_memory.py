"""The monitor's memory under stream-id churn over MQTT: waves of short-lived streams.

    .venv/bin/python -m bench.churn_memory [--waves 6] [--per-wave 250] [--every 9] [--json bench/results/churn_memory.json]

A private mosquitto on a free loopback port; one engine (the packaged model, ``[mqtt]`` defaults except
``lost_timeout_s``, the MQTT source tracking every id) in this process. Every ``--every`` seconds a wave
of ``--per-wave`` new stream ids each publishes one meta (977 Hz, 19 channels) and one chunk of
``--chunk-s`` seconds, then falls silent: each stream is reported lost ``lost_timeout_s`` later and its
pipeline released (``pedstream.monitor.release``). Reported: the process's resident memory (RSS) before
the first wave, just before each next wave, and after the last wave's streams were released; the ids
seen, released and their rows kept. Same process as the publishers (their share is a few MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pedstream.bench.common import command_line, machine_info, rss_mib
from pedstream.bench.mosquitto import Mosquitto
from pedstream.config import load_config
from pedstream.data.channels import CANONICAL_CHANNELS
from pedstream.monitor.assembly import open_model
from pedstream.monitor.engine import Engine
from pedstream.transports.mqtt import MQTTPublisher, MQTTSource
from pedstream.transports.mqtt.wire import encode_binary, encode_meta

FS = 977.0
PREFIX = "pedstream/churn"


async def _wave(pub: MQTTPublisher, ids: list[str], x: np.ndarray, meta: Any) -> None:
    for sid in ids:
        await pub.publish_meta(sid, meta)
    for sid in ids:
        await pub.publish_data(sid, encode_binary(x, seq=0, first_sample=0, t=time.time()))


async def _until(pred: Any, timeout_s: float) -> bool:
    """Poll the engine's own counters (a benchmark of a running engine, not a test)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.2)
    return pred()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_config(overrides=["alarms.strips=false", f"mqtt.lost_timeout_s={args.lost_timeout}"])
    session = open_model(cfg, None)
    broker = Mosquitto().start()
    rng = np.random.default_rng(0)
    x = (0.05 * rng.standard_normal((int(args.chunk_s * FS), len(CANONICAL_CHANNELS)))).astype(np.float32)
    meta = encode_meta(fs=FS, channels=list(CANONICAL_CHANNELS), units="mV")
    q: asyncio.Queue = asyncio.Queue()
    src = MQTTSource(cfg.mqtt, events=q, host=broker.host, port=broker.port, topic_prefix=PREFIX,
                     max_streams=max(args.per_wave + 16, cfg.mqtt.max_streams))
    rss: dict[str, float | None] = {}
    waves: list[dict[str, Any]] = []
    try:
        async with Engine(cfg=cfg, session=session, sources=[src], alarms_dir=Path(args.tmp)) as eng:
            await asyncio.wait_for(src.connected.wait(), 10)
            rss["before"] = rss_mib()
            async with MQTTPublisher(host=broker.host, port=broker.port, prefix=PREFIX) as pub:
                for w in range(args.waves):
                    t0 = time.monotonic()
                    ids = [f"w{w}s{i}" for i in range(args.per_wave)]
                    await _wave(pub, ids, x, meta)
                    seen = await _until(lambda: all(i in eng.streams for i in ids), args.every)
                    await asyncio.sleep(max(0.0, args.every - (time.monotonic() - t0)))
                    waves.append({"wave": w, "all_seen": seen, "rss_mib": rss_mib(),
                                  "streams_tracked": len(eng.streams), "released": eng.summary()["streams_released"]})
            total = args.waves * args.per_wave
            done = await _until(lambda: eng.summary()["streams_released"] >= total, args.lost_timeout + 30)
            await asyncio.sleep(3.0)  # one more release sweep (malloc_trim at most every 2 s)
            rss["after_release"] = rss_mib()
            summ = eng.summary()
            return {"rss_mib": rss, "waves": waves, "all_released": done, "streams_tracked_at_end": len(eng.streams),
                    "streams_released": summ["streams_released"], "windows_classified": summ["windows_classified"]}
    finally:
        broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--waves", type=int, default=6)
    ap.add_argument("--per-wave", type=int, default=250)
    ap.add_argument("--every", type=float, default=9.0, help="seconds between waves")
    ap.add_argument("--chunk-s", type=float, default=1.0, help="seconds of signal in each stream's one chunk")
    ap.add_argument("--lost-timeout", type=float, default=5.0, help="[mqtt] lost_timeout_s")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--tmp", default="/tmp/pedstream-churn-alarms")
    args = ap.parse_args()
    res = asyncio.run(run(args))
    before, after = res["rss_mib"]["before"], res["rss_mib"]["after_release"]
    peak = max(w["rss_mib"] for w in res["waves"])
    out = {"bench": "churn_memory", "command": command_line(), "machine": machine_info(), "settings": vars(args)
           | {"json": str(args.json), "tmp": args.tmp}, **res, "peak_rss_mib": peak,
           "left_after_release_mib": None if before is None or after is None else round(after - before, 1)}
    for w in res["waves"]:
        print(f"wave {w['wave']}: RSS {w['rss_mib']:.0f} MiB, tracked {w['streams_tracked']}, released {w['released']}")
    print(f"before {before:.0f} MiB, peak {peak:.0f} MiB, after release {after:.0f} MiB; "
          f"released {res['streams_released']} of {args.waves * args.per_wave}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
