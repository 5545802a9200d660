"""A worker joins: with ``[cluster] replace_dead`` a SIGKILLed worker is replaced (same name, new process);
when it is up it takes back only the streams it wins (reason ``worker_rebalance``), the old worker stops
reporting them before the new one starts, and streams it does not win never move."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import defaultdict

from tests.cluster.conftest import cluster_cfg, ward_plans

N_STREAMS = 8


async def test_a_replaced_worker_joins_and_takes_back_only_its_streams(ray_local, mosquitto):
    from pedstream.cluster.central import Central
    from pedstream.cluster.supervisor import Supervisor
    from pedstream.transports.mqtt.publisher import replay_to_mqtt

    cfg = cluster_cfg(mosquitto.port, "cluster.replace_dead=true")
    plans = ward_plans(cfg, N_STREAMS)
    seen: list[tuple[float, dict]] = []
    calls: dict[str, set[str]] = defaultdict(set)  # stream -> workers that sent calls
    all_calling, back = asyncio.Event(), asyncio.Event()
    state: dict = {}

    def listen(ev) -> None:
        d, now = ev.to_dict(), time.monotonic()
        seen.append((now, d))
        if d["kind"] != "call":
            return
        calls[d["stream"]].add(d["worker"])
        if len(calls) == N_STREAMS:
            all_calling.set()
        if state.get("rejoined") and d["worker"] == state["name"] and now > state["rejoined"]:
            state.setdefault("back", set()).add(d["stream"])
            if state["back"] == state["streams"]:
                back.set()

    lines: list[str] = []
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
                    old_pid, streams = h.pid, set(h.streams)
                    assert streams and streams != {p.stream_id for p in plans}
                    state.update(name="w1", streams=streams)
                    os.kill(old_pid, signal.SIGKILL)
                    async with asyncio.timeout(60):
                        while not (sup.workers["w1"].alive and sup.workers["w1"].pid != old_pid):
                            await asyncio.sleep(0.1)  # polling the supervisor's view for the replacement
                        state["rejoined"] = time.monotonic()
                        await back.wait()
                finally:
                    stop.set()
                    await runner
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)

    failover = {sid for _, sid, old, new, why in sup.moves if why == "worker_failover"}
    rebalance = [(sid, old, new) for _, sid, old, new, why in sup.moves if why == "worker_rebalance"]
    assert failover == streams  # on death only its streams moved, to w0
    assert sorted(sid for sid, _, _ in rebalance) == sorted(streams)  # on join exactly those came back
    assert all(old == "w0" and new == "w1" for _, old, new in rebalance)
    # the other streams never moved and were always reported by w0 alone
    for sid in {p.stream_id for p in plans} - streams:
        assert calls[sid] == {"w0"}, sid
    # a stream taken back is never reported by two workers at once: w0's last call comes before w1's first
    for sid in streams:
        t_join = [t for t, d in seen if d["stream"] == sid and d["kind"] == "signal_loss"
                  and d.get("reason") == "worker_rebalance"][0]
        on_w0 = [t for t, d in seen if d["stream"] == sid and d["kind"] == "call" and d["worker"] == "w0"]
        first_w1 = min(t for t, d in seen if d["stream"] == sid and d["kind"] == "call" and d["worker"] == "w1"
                       and t > t_join)
        assert max(on_w0, default=0.0) < first_w1, sid  # (w0 may not have reached its first call before the join)
    assert any("w1 up" in line for line in lines[2:]), lines
