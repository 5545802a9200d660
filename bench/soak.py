"""Soak bench (issue 10): N replayed streams and a hostile publisher over a local mosquitto into
``pedstream run --source mqtt`` for a long time; memory and lateness over time.

    .venv/bin/python -m bench.soak [--streams 50] [--minutes 30] [--model PATH]

Not a test. What runs:

- a private ``mosquitto`` on a free 127.0.0.1 port (``persistence false``);
- the monitor: ``pedstream run --source mqtt --headless`` (the packaged demo model unless ``--model``)
  as a subprocess, its events read from stdout;
- N normal streams: the bundled record ``x001`` (977 Hz, 19 channels) looped in real time
  (speed 1) by :func:`pedstream.transports.mqtt.publisher.replay_to_mqtt` under the ids ``soak000``...,
  one MQTT client each, in this process;
- a hostile publisher (its own client), every second: 20 random-byte data messages on ``hostile-junk``,
  a 400 kB ``[[[[`` message on the meta and data topics of ``hostile-deep``, a retained junk meta on
  ``hostile-retained-<k>`` (k cycling over 8 ids; all cleared at the end), a new junk stream id
  ``hostile-id-<n>`` and a flood of 400 valid messages (a genuine meta, 40 x its declared rate) on
  ``hostile-flood``.

Sampled every 10 s: the monitor's RSS (``/proc/<pid>/status`` VmRSS). For each call of a normal
stream its lateness = the wall-clock time the call was emitted (event ``t``) minus its window's end
on the publisher's clock (``t_signal_end``; at speed 1 the publisher's clock is the wall clock):
what a clinician would see as delay, publishing and the broker included (the replay sends each
chunk when its first sample is due, so a call can come up to one chunk, ``--chunk-ms``, "early"). Writes
``bench/results/soak.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "soak.json"
RECORD = ROOT / "pedstream" / "assets" / "demo_records" / "x001"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(folder: Path, port: int) -> subprocess.Popen:
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\n"
                    "max_queued_messages 100000\n", encoding="utf-8")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)  # a bench, not a test: polling the port is fine
    proc.kill()
    raise SystemExit("mosquitto did not start")


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def iso_to_epoch(t: str) -> float:
    return datetime.fromisoformat(t).timestamp()


class EventReader(threading.Thread):
    """Reads the monitor's stdout JSON lines: lateness per normal stream's call, counts by (stream kind)."""

    def __init__(self, proc: subprocess.Popen, window_s: float) -> None:
        super().__init__(daemon=True)
        self.proc, self.window_s = proc, window_s
        self.lateness: dict[str, list[tuple[float, float]]] = {}  # stream -> [(elapsed s, lateness s)]
        self.counts: dict[str, dict[str, int]] = {}
        self.errors: list[dict] = []
        self.t0 = time.time()
        self.lock = threading.Lock()

    def run(self) -> None:
        for line in self.proc.stdout:
            if not line.startswith("{"):
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            sid, kind = str(e.get("stream")), str(e.get("kind"))
            with self.lock:
                c = self.counts.setdefault(sid, {})
                c[kind] = c.get(kind, 0) + 1
                if kind == "error" and len(self.errors) < 2000:
                    self.errors.append({"stream": sid, "message": str(e.get("message", ""))[:160]})
                if kind == "call" and sid.startswith("soak"):
                    end = e.get("t_signal_end")
                    if end is None and e.get("t_signal") is not None:
                        end = e["t_signal"] + self.window_s
                    if end is not None:
                        now = iso_to_epoch(e["t"])
                        self.lateness.setdefault(sid, []).append((now - self.t0, now - float(end)))


async def hostile(host: str, port: int, stop: asyncio.Event, stats: dict[str, int]) -> None:
    """Junk, deep JSON, retained junk, id churn and a flood, once a second, until ``stop``."""
    from pedstream.transports.mqtt.client import make_client
    from pedstream.transports.mqtt.wire import encode_binary, encode_meta

    rng = np.random.default_rng(7)
    fs, n_ch, chunk = 250.0, 2, 25
    flood_meta = encode_meta(fs=fs, channels=["I", "II"], units="mV", dtype="float32", scale=1.0,
                             encoding="binary", t0=time.time(), session="flood")
    seq = 0
    k = 0
    async with make_client(host, port, identifier="soak-hostile", auth=None, timeout_s=5.0) as c:
        await c.publish("pedstream/v1/hostile-flood/meta", flood_meta, qos=1, retain=True, timeout=5.0)
        while not stop.is_set():
            t_next = time.monotonic() + 1.0
            for _ in range(20):
                await c.publish("pedstream/v1/hostile-junk/data", rng.bytes(int(rng.integers(1, 2000))), timeout=5.0)
            deep = b"[" * 400_000
            await c.publish("pedstream/v1/hostile-deep/meta", deep, timeout=5.0)
            await c.publish("pedstream/v1/hostile-deep/data", deep, timeout=5.0)
            await c.publish(f"pedstream/v1/hostile-retained-{k % 8}/meta", rng.bytes(300), qos=1, retain=True,
                            timeout=5.0)
            await c.publish(f"pedstream/v1/hostile-id-{k}/data", rng.bytes(64), timeout=5.0)
            now = time.time()
            for _ in range(400):  # 400 x 25 samples/s = 40 x the declared 250 Hz
                data = rng.standard_normal((chunk, n_ch)).astype(np.float32)
                await c.publish("pedstream/v1/hostile-flood/data",
                                encode_binary(data, seq=seq % (1 << 32), first_sample=seq * chunk, t=now,
                                              dtype="float32"), timeout=5.0)
                seq += 1
            stats["cycles"] = stats.get("cycles", 0) + 1
            stats["messages"] = stats.get("messages", 0) + 20 + 2 + 1 + 1 + 400
            k += 1
            try:
                async with asyncio.timeout(max(0.0, t_next - time.monotonic())):
                    await stop.wait()
            except TimeoutError:
                pass
        for i in range(8):
            await c.publish(f"pedstream/v1/hostile-retained-{i}/meta", b"", qos=1, retain=True, timeout=5.0)
        await c.publish("pedstream/v1/hostile-flood/meta", b"", qos=1, retain=True, timeout=5.0)


async def publish_all(args, port: int, stop: asyncio.Event, hostile_stats: dict[str, int]) -> dict:
    from pedstream.config import load_config
    from pedstream.transports.mqtt.publisher import replay_to_mqtt
    from pedstream.transports.replay import plan_replay

    cfg = load_config()
    base = plan_replay([RECORD], cfg.signal)[0]
    plans = [dataclasses.replace(base, stream_id=f"soak{i:03d}") for i in range(args.streams)]
    replay = asyncio.create_task(replay_to_mqtt(plans, host="127.0.0.1", port=port, speed=1.0, loop=True,
                                                chunk_ms=args.chunk_ms), name="soak-replay")
    bad = asyncio.create_task(hostile("127.0.0.1", port, stop, hostile_stats), name="soak-hostile")
    await stop.wait()
    replay.cancel()
    bad_result = None
    try:
        async with asyncio.timeout(20):
            await bad
    except (TimeoutError, Exception) as exc:  # report, do not hide
        bad_result = repr(exc)
    try:
        async with asyncio.timeout(20):
            await replay
    except (asyncio.CancelledError, TimeoutError):
        pass
    return {"hostile_error": bad_result}


def pct(v: list[float], q: float) -> float | None:
    return round(float(np.percentile(v, q)), 4) if v else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=50)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--chunk-ms", type=float, default=100.0)
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    duration = args.minutes * 60.0
    tmp = Path(tempfile.mkdtemp(prefix="pedstream-soak-"))
    port = free_port()
    broker = start_broker(tmp, port)
    cmd = [sys.executable, "-m", "pedstream.cli", "run", "--source", "mqtt", "--headless",
           "--duration", str(duration + 15), "--set", "mqtt.host=127.0.0.1", "--set", f"mqtt.port={port}",
           "--set", "alarms.strips=false"]
    if args.model is not None:
        cmd += ["--model", str(args.model)]
    monitor = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    stderr_lines: list[str] = []
    threading.Thread(target=lambda: stderr_lines.extend(monitor.stderr), daemon=True).start()
    reader = EventReader(monitor, window_s=2.5)
    reader.start()
    rss: list[tuple[float, float | None]] = []
    hostile_stats: dict[str, int] = {}
    t0 = time.monotonic()

    async def run() -> dict:
        stop = asyncio.Event()

        async def sampler() -> None:
            while True:
                rss.append((round(time.monotonic() - t0, 1), rss_mib(monitor.pid)))
                el = time.monotonic() - t0
                with reader.lock:
                    calls = sum(c.get("call", 0) for s, c in reader.counts.items() if s.startswith("soak"))
                print(f"[soak] {el / 60:5.1f} min  rss {rss[-1][1] or 0:7.1f} MiB  normal-stream calls {calls}",
                      flush=True)
                if el >= duration or monitor.poll() is not None:
                    stop.set()
                    return
                await asyncio.sleep(min(args.sample_s, max(0.1, duration - el)))

        s = asyncio.create_task(sampler())
        out = await publish_all(args, port, stop, hostile_stats)
        await s
        return out

    try:
        extra = asyncio.run(run())
    finally:
        if monitor.poll() is None:
            monitor.send_signal(signal.SIGINT)
        try:
            monitor.wait(timeout=60)
        except subprocess.TimeoutExpired:
            monitor.kill()
            monitor.wait()
        broker.terminate()
        broker.wait(timeout=10)
    reader.join(timeout=10)
    wall = time.monotonic() - t0

    late_all = [x for v in reader.lateness.values() for _, x in v]
    per_stream = {sid: {"calls": len(v), "lateness_s_p50": pct([x for _, x in v], 50),
                        "lateness_s_p99": pct([x for _, x in v], 99),
                        "lateness_s_max": round(max(x for _, x in v), 4)}
                  for sid, v in sorted(reader.lateness.items())}
    # lateness over time: p99 per minute (drift would show here)
    by_min: dict[int, list[float]] = {}
    for v in reader.lateness.values():
        for el, x in v:
            by_min.setdefault(int(el // 60), []).append(x)
    mem = [m for _, m in rss if m is not None]
    warm = [m for t, m in rss if m is not None and t >= 60.0] or mem
    summary_lines = [ln.strip() for ln in stderr_lines if ln.startswith(("summary", "  ", "latency"))][-4:]
    normal = [f"soak{i:03d}" for i in range(args.streams)]
    result = {
        "command": f"python -m bench.soak --streams {args.streams} --minutes {args.minutes:g}",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "load_average_at_end": os.getloadavg(),
        "streams": args.streams, "minutes": args.minutes, "wall_s": round(wall, 1), "chunk_ms": args.chunk_ms,
        "monitor_exit": monitor.returncode,
        "monitor_summary": summary_lines,
        "rss_mib": {"samples": rss, "first": mem[0] if mem else None, "last": mem[-1] if mem else None,
                    "max": max(mem) if mem else None,
                    "growth_after_first_minute": round(warm[-1] - warm[0], 1) if warm else None},
        "lateness_s": {"calls": len(late_all), "p50": pct(late_all, 50), "p99": pct(late_all, 99),
                       "max": round(max(late_all), 4) if late_all else None,
                       "p99_by_minute": {str(k): pct(v, 99) for k, v in sorted(by_min.items())}},
        "normal_streams_without_calls": [s for s in normal if s not in reader.lateness],
        "normal_stream_errors": sum(reader.counts.get(s, {}).get("error", 0) for s in normal),
        "hostile": {**hostile_stats, **extra,
                    "error_events": sum(c.get("error", 0) for s, c in reader.counts.items() if s.startswith("hostile")),
                    "hostile_ids_seen": sum(1 for s in reader.counts if s.startswith("hostile"))},
        "error_samples": reader.errors[:20],
        "per_stream": per_stream,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    r, lt = result["rss_mib"], result["lateness_s"]
    print(f"soak: {args.streams} streams + hostile publisher, {wall / 60:.1f} min, monitor exit {monitor.returncode}")
    print(f"  RSS MiB first {r['first']}, last {r['last']}, max {r['max']}, growth after 1st min "
          f"{r['growth_after_first_minute']}")
    print(f"  lateness s: calls {lt['calls']}, p50 {lt['p50']}, p99 {lt['p99']}, max {lt['max']}; "
          f"p99 by minute {lt['p99_by_minute']}")
    print(f"  normal streams without calls: {len(result['normal_streams_without_calls'])}, normal-stream errors "
          f"{result['normal_stream_errors']}; hostile: {result['hostile']}")
    for ln in summary_lines:
        print("  monitor " + ln)
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
