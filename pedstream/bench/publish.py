"""The publisher process of the benchmarks: N streams of the bundled record ``x001`` (977 Hz, 19
channels, 24 s; ``--loop`` repeats it) in real time over MQTT or LSL, so the measured process does
not also pay for publishing.

    python -m pedstream.bench.publish --to mqtt --port P --streams N --seconds S [--prefix pedstream/v1]
    python -m pedstream.bench.publish --to lsl --streams N --seconds S --session-id ID [--id-prefix ing]

Stream ids ``<id-prefix><k>`` (4 digits). At the end prints one JSON line ``{"sent": {id: samples}}``
to stdout. For LSL the ``[lsl]`` settings of the default config are applied with ``--session-id``
(the receiving process uses the same one, so no other LSL traffic on the machine mixes in).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RECORD = Path(__file__).resolve().parents[1] / "assets" / "demo_records" / "x001"


def grid_offsets(n: int, spread_s: float, chunk_ms: float) -> list[float] | None:
    """Stream k starts ``spread_s * k / n`` after the first, rounded down to whole chunks (so within
    ``[0, spread_s)``); None for no spread."""
    if spread_s <= 0 or n < 1:
        return None
    step = chunk_ms / 1000.0
    return [int(spread_s * k / n / step + 1e-9) * step for k in range(n)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--to", choices=["mqtt", "lsl"], required=True)
    ap.add_argument("--streams", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--prefix", default="pedstream/v1")
    ap.add_argument("--session-id", default=None)
    ap.add_argument("--id-prefix", default="bed")
    ap.add_argument("--chunk-ms", type=float, default=50.0)
    ap.add_argument("--spread-s", type=float, default=0.0,
                    help="MQTT: stream k starts k/N of this many seconds after the first, on the chunk grid "
                         "(chunks of different streams still fall due together, so bundles stay full)")
    ap.add_argument("--bundle-bytes", type=int, default=0,
                    help="MQTT: data messages due together go in bundles of at most this many bytes (0: one per chunk)")
    ap.add_argument("--wait-consumers-s", type=float, default=0.0)
    ap.add_argument("--loop", action="store_true", help="Loop the record until terminated (no JSON line then).")
    args = ap.parse_args(argv)

    from pedstream.config import load_config
    from pedstream.transports.replay import plan_replay

    over = [f'lsl.session_id="{args.session_id}"'] if args.session_id else []
    cfg = load_config(overrides=over)
    import dataclasses

    from pedstream.bench.engine import MemoryRecord

    # the record read once into memory for every stream: the publisher pays for publishing, not for N disk reads
    first = plan_replay([RECORD], cfg.signal, stream_id=f"{args.id_prefix}0000",
                        seconds=None if args.loop else args.seconds)[0]
    first = dataclasses.replace(first, record=MemoryRecord(first.record))
    plans = [dataclasses.replace(first, stream_id=f"{args.id_prefix}{i:04d}") for i in range(args.streams)]
    def run(coro: object) -> dict[str, int]:
        async def with_pool() -> dict[str, int]:
            # every outlet waits for its consumer in a thread (wait_for_consumers): one thread each
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=args.streams + 8))
            return await coro  # type: ignore[misc]

        return asyncio.run(with_pool())

    if args.to == "mqtt":
        from pedstream.transports.mqtt.publisher import replay_to_mqtt

        sent = run(replay_to_mqtt(plans, host=args.host, port=args.port, prefix=args.prefix, speed=1.0,
                                          chunk_ms=args.chunk_ms, loop=args.loop, encoding="binary",
                                  bundle_bytes=args.bundle_bytes,
                                  start_offsets=grid_offsets(args.streams, args.spread_s, args.chunk_ms)))
    else:
        from pedstream.transports.lsl.config import configure_lsl_from
        from pedstream.transports.lsl.outlet import replay_to_lsl

        configure_lsl_from(cfg.lsl)
        sent = run(replay_to_lsl(plans, speed=1.0, chunk_ms=args.chunk_ms, loop=args.loop,
                                         wait_for_consumers_s=args.wait_consumers_s, linger_s=1.0))
    sys.stdout.write(json.dumps({"sent": sent}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
