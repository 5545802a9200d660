"""What the MQTT path itself costs, per process: the publisher, the broker and the engine's
:class:`~pedstream.transports.mqtt.source.MQTTSource` (no DSP, no model: the source's events are only
counted), for N streams of ``x001`` (977 Hz, 19 channels) in real time.

    python -m pedstream.bench.mqttcost --streams 100,300 --seconds 15 [--json FILE] [--publisher-arg=--bundle-kib=64]

For each N: CPU seconds of each process over the measurement (``psutil``, user + system), as
milliseconds of CPU per stream-second delivered (``*_ms_per_stream_s``: 1000 means one full core per
stream; 3.3 means 300 streams take one core),
the real-time ratio (samples delivered / N x fs x wall), events per second, the transport lag
(``lag_ms_p50``/``p99``: arrival at the source minus the publisher's time of the chunk's last sample,
both on this machine's clock; includes the chunk's own ``chunk_ms`` of nothing: a chunk leaves when
its first sample is due), and the
source's counters (rejected messages, queue-full drops). The measurement starts once every stream
has delivered data. CPU figures on a shared machine are noisy; each process's figure is its own CPU
time, so other load on the machine does not add to it (it may slow the run, which shows in the ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import psutil

from pedstream.bench.mosquitto import Mosquitto

__all__ = ["mqtt_cost_one", "main"]


class _CountingQueue(asyncio.Queue):
    """Counts the samples of each stream's ``ChunkReceived`` and keeps nothing (unbounded growth
    would measure the allocator, not MQTT)."""

    def __init__(self) -> None:
        super().__init__()
        self.samples: Counter[str] = Counter()
        self.events = 0
        self.lags: list[float] = []  # arrival - publisher time of the chunk's last sample (same machine clock)
        self.keep_lags = False

    def put_nowait(self, item: Any) -> None:
        self.events += 1
        chunk = getattr(item, "chunk", None)
        if chunk is not None:
            self.samples[chunk.stream_id] += int(chunk.data.shape[0])
            if self.keep_lags:
                self.lags.append(time.time() - float(chunk.timestamps[-1]))


def _pct(xs: list[float], q: float) -> float | None:
    import numpy as np

    return None if not xs else round(float(np.percentile(xs, q)) * 1000.0, 2)


def _cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


async def mqtt_cost_one(n: int, seconds: float, *, broker: Mosquitto, publisher_args: list[str] | None = None,
                        fs: float = 977.0, prefix: str = "pedstream/v1") -> dict[str, Any]:
    """One N: publisher process + broker + in-process source; the figures of the module docstring."""
    from pedstream.config import load_config
    from pedstream.transports.mqtt.source import MQTTSource

    cfg = load_config()
    q = _CountingQueue()
    src = MQTTSource(cfg.mqtt, events=q, host=broker.host, port=broker.port, topic_prefix=prefix,
                                 max_streams=n + 16, max_queued_messages=max(10_000, 40 * n))
    pub = subprocess.Popen([sys.executable, "-m", "pedstream.bench.publish", "--to", "mqtt", "--host", broker.host,
                            "--port", str(broker.port), "--streams", str(n), "--seconds", str(seconds), "--loop",
                            "--prefix", prefix, *(publisher_args or [])],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    me, pp = psutil.Process(), psutil.Process(pub.pid)
    bp = psutil.Process(broker.proc.pid)  # type: ignore[union-attr]
    try:
        async with src:
            deadline = time.monotonic() + 30.0 + n / 10.0
            while len(q.samples) < n and time.monotonic() < deadline and pub.poll() is None:
                await asyncio.sleep(0.05)
            ready = len(q.samples)
            await asyncio.sleep(3.0)  # past the start-up burst (backlog of the first seconds)
            c0 = (_cpu_s(pp), _cpu_s(bp), _cpu_s(me))
            s0, e0, t0 = sum(q.samples.values()), q.events, time.perf_counter()
            q.keep_lags = True
            await asyncio.sleep(seconds)
            q.keep_lags = False
            wall = time.perf_counter() - t0
            c1 = (_cpu_s(pp), _cpu_s(bp), _cpu_s(me))
            delivered, events = sum(q.samples.values()) - s0, q.events - e0
            totals = src.totals()
    finally:
        pub.terminate()
        try:
            _, err = pub.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pub.kill()
            _, err = pub.communicate(timeout=5)
    stream_s = delivered / fs  # stream-seconds delivered (an overloaded run is not flattered by its shortfall)
    per = 1000.0 / max(stream_s, 1e-9)
    cpu = [b - a for a, b in zip(c0, c1)]
    return {"streams": n, "streams_ready": ready, "seconds": round(wall, 2),
            "realtime_ratio": round(delivered / (n * fs * wall), 3), "events_per_s": round(events / wall, 1),
            "publisher_ms_per_stream_s": round(cpu[0] * per, 3), "broker_ms_per_stream_s": round(cpu[1] * per, 3),
            "source_ms_per_stream_s": round(cpu[2] * per, 3),
            "cpu_s": {"publisher": round(cpu[0], 2), "broker": round(cpu[1], 2), "source": round(cpu[2], 2)},
            "lag_ms_p50": _pct(q.lags, 50), "lag_ms_p99": _pct(q.lags, 99),
            "source_totals": totals, "publisher_stderr_tail": (err or b"").decode(errors="replace")[-300:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", default="100")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--publisher-arg", action="append", default=[],
                    help="extra argument for python -m pedstream.bench.publish (repeatable)")
    args = ap.parse_args(argv)
    broker = Mosquitto().start()
    out = []
    try:
        for n in [int(x) for x in args.streams.split(",")]:
            r = asyncio.run(mqtt_cost_one(n, args.seconds, broker=broker, publisher_args=args.publisher_arg))
            out.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "publisher_stderr_tail"}), flush=True)
    finally:
        broker.stop()
    if args.json:
        from pedstream.bench.common import machine_info

        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"bench": "mqttcost", "command": " ".join(sys.argv), "machine": machine_info(),
                       "publisher_args": args.publisher_arg, "results": out}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
