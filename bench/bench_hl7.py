"""HL7 delivery through the durable outbox: what it costs the event loop and how fast a local receiver
gets the messages.

    .venv/bin/python bench/bench_hl7.py [--messages 2000] [--out bench/results/hl7_outbox.json]

A python-hl7 MLLP server on 127.0.0.1 answers AA to every message; an HL7Sink (outbox in a temporary
folder, SQLite WAL, synchronous=FULL) gets ``--messages`` alarm events at once. Reported: the time
``emit`` holds the event loop per message (building the ORU^R40 and queueing the outbox append; the
append itself runs in the outbox thread), the end-to-end delivery rate (each message appended, sent,
acknowledged and removed before the next is sent), and the same with the receiver down for the
first half of the messages (outbox backlog, then drained)."""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pedstream.config import load_config  # noqa: E402
from pedstream.outputs.hl7sink import HL7Sink  # noqa: E402
from pedstream.events import MonitorEvent  # noqa: E402
from tests.support.mllp_listener import Listener, free_port  # noqa: E402


def _events(n: int) -> list[MonitorEvent]:
    return [MonitorEvent(stream=f"bed{i % 50}", kind="alarm_on" if i % 2 == 0 else "alarm_off", label="vt", p=0.9,
                         hr=210.0, extra={"priority": "high", "alarm_id": f"a{i // 2}"}) for i in range(n)]


async def _one(n: int, tmp: Path, *, down_first: bool) -> dict[str, float]:
    port = free_port()
    cfg = load_config(overrides=[f"hl7.port={port}", f"hl7.outbox={tmp / ('down.sqlite' if down_first else 'up.sqlite')}",
                                 "hl7.observation_interval_s=0", "hl7.retry_max_s=0.2", "hl7.timeout_s=2",
                                 "hl7.max_pending=1000000"]).hl7
    evs = _events(n)
    lis = Listener(port=port)
    if not down_first:
        await lis.__aenter__()
    async with HL7Sink(cfg=cfg) as sink:
        t0 = time.perf_counter()
        for ev in evs:
            sink.emit(ev)
        emit_s = time.perf_counter() - t0
        if down_first:
            await asyncio.gather(*[i.stored for i in sink._queue if i.stored is not None])  # all in the outbox
            await lis.__aenter__()
        t1 = time.perf_counter()
        await sink.wait_for(lambda s: s.acked == n, timeout=600)
        deliver_s = time.perf_counter() - t1
    await lis.__aexit__()
    assert len(set(lis.ids)) == n
    return {"messages": n, "emit_us_per_message": round(emit_s / n * 1e6, 1),
            "delivered_per_s": round(n / deliver_s, 1), "deliver_s": round(deliver_s, 3),
            "duplicates_at_receiver": len(lis.ids) - n}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hl7_outbox.json")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        up = await _one(a.messages, Path(d), down_first=False)
        backlog = await _one(a.messages, Path(d), down_first=True)
    res = {"command": f"python bench/bench_hl7.py --messages {a.messages}", "machine": platform.platform(),
           "cpus": __import__("os").cpu_count(), "receiver_up": up, "receiver_down_then_up": backlog}
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
