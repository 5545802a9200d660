"""A hung worker (SIGSTOP: alive for Ray, answering nothing) is noticed by the heartbeat: after
``[cluster] heartbeat_misses`` unanswered pings it is killed and its streams move; it never reports them
again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import defaultdict

from tests.cluster.conftest import cluster_cfg, ward_plans

N_STREAMS = 6


async def test_a_hung_worker_is_killed_after_missed_heartbeats_and_its_streams_move(ray_local, mosquitto):
    from pedstream.cluster.central import Central
    from pedstream.cluster.supervisor import Supervisor
    from pedstream.transports.mqtt.publisher import replay_to_mqtt

    cfg = cluster_cfg(mosquitto.port, "cluster.heartbeat_timeout_s=0.5", "cluster.heartbeat_misses=2")
    plans = ward_plans(cfg, N_STREAMS)
    seen: list[tuple[float, dict]] = []
    calls: dict[str, set[str]] = defaultdict(set)
    all_calling, moved = asyncio.Event(), asyncio.Event()
    state: dict = {}

    def listen(ev) -> None:
        d, now = ev.to_dict(), time.monotonic()
        seen.append((now, d))
        if d["kind"] != "call":
            return
        calls[d["stream"]].add(d["worker"])
        if len(calls) == N_STREAMS:
            all_calling.set()
        if state and d["worker"] == "w0" and d["stream"] in state["streams"] and now > state["t"]:
            state.setdefault("back", set()).add(d["stream"])
            if state["back"] == state["streams"]:
                moved.set()

    lines: list[str] = []
    pid = None
    async with Central(cfg=cfg) as central:
        central.add_listener(listen)
        feeder = asyncio.create_task(replay_to_mqtt(plans, host=mosquitto.host, port=mosquitto.port, chunk_ms=100,
                                                    loop=True))
        try:
            async with Supervisor(cfg=cfg, workers=2, on_line=lines.append) as sup:
                stop = asyncio.Event()
                runner = asyncio.create_task(sup.run(stop))
                try:
                    async with asyncio.timeout(60):
                        await all_calling.wait()
                    h = sup.workers["w1"]
                    pid = h.pid
                    state.update(streams=set(h.streams), t=time.monotonic())
                    assert state["streams"]
                    os.kill(pid, signal.SIGSTOP)
                    async with asyncio.timeout(30):
                        await moved.wait()
                finally:
                    stop.set()
                    await runner
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)  # if it is still there, let it go (Ray has killed it)
    dead = [line for line in lines if line.startswith("worker w1") and "is dead" in line]
    assert len(dead) == 1 and "2 heartbeats missed" in dead[0] and "killed" in dead[0], lines
    assert {sid for _, sid, old, new, why in sup.moves} == state["streams"]
    assert all(old == "w1" and new == "w0" and why == "worker_failover" for _, _, old, new, why in sup.moves)
    # the hung worker never reported its streams again
    assert not [d for t, d in seen if t > state["t"] + 1.0 and d.get("worker") == "w1"]
    assert all(calls[s] == {"w0"} for s in {p.stream_id for p in plans} - state["streams"])
