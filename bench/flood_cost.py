"""The monitor's CPU under a JSON flood, with and without the per-publisher CPU budget.

    .venv/bin/python -m bench.flood_cost [--seconds 5] [--out bench/results/flood_cost.json]

A real mosquitto set up as docs/security.md prescribes (tests/support/acl_broker.py), the MQTT source
as the monitor, and one flooding publisher in its own process (tests/support/flood.py: 64-channel
JSON at 10 kHz, three times real time, about 1,500 messages/s) whose meta declares that rate, so the
per-stream sample budget lets it in. Measured: the monitor process's CPU time (``time.process_time``)
while the flood runs, with ``[mqtt] cpu_share`` at its default (0.1) and at 1.0 (in effect no CPU
budget for this flood) and 0.001 (every message dropped unread: the cost of receiving alone)."""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pedstream.transports.mqtt import MQTTPublisher, MQTTSource  # noqa: E402
from pedstream.transports.mqtt.wire import encode_meta  # noqa: E402
from tests.support.acl_broker import PREFIX, USERS, acl_broker  # noqa: E402


async def one(share: float, seconds: float) -> dict:
    with acl_broker(Path(tempfile.mkdtemp())) as b:
        async with MQTTSource(events=asyncio.Queue(), host=b.host, port=b.port, topic_prefix=PREFIX, auth=b.auth("monitor"),
                              cpu_share=share) as src:
            await asyncio.wait_for(src.connected.wait(), 10)
            async with MQTTPublisher(host=b.host, port=b.port, prefix=PREFIX, auth=b.auth("evil"),
                                     clear_meta_on_exit=False) as pe:
                await pe.publish_meta("evil", encode_meta(fs=10_000.0, channels=[f"c{i}" for i in range(64)]))
            p = subprocess.Popen([sys.executable, "-m", "tests.support.flood", "--port", str(b.port), "--user", "evil",
                                  "--password", USERS["evil"], "--topic", f"{PREFIX}/evil/data", "--kind", "json",
                                  "--speed", "3", "--seconds", str(seconds)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
            c0, t0 = time.process_time(), time.monotonic()
            await asyncio.to_thread(p.wait)
            cpu, wall = time.process_time() - c0, time.monotonic() - t0
            sent = int((p.stdout.read() or "0").strip() or 0)
            pub = src.book.find("evil")
            return {"cpu_share": share, "messages_sent": sent, "throttled": pub.throttled if pub else 0,
                    "monitor_cpu_s": round(cpu, 3), "wall_s": round(wall, 2),
                    "monitor_cpu_share_of_a_core": round(cpu / wall, 3),
                    "us_per_message": round(1e6 * cpu / max(1, sent), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=Path("bench/results/flood_cost.json"))
    a = ap.parse_args()
    runs = [asyncio.run(one(share, a.seconds)) for share in (0.1, 1.0, 0.001)]  # 0.001: all dropped unread
    out = {"command": f"python -m bench.flood_cost --seconds {a.seconds:g}", "machine": platform.platform(),
           "runs": runs}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
