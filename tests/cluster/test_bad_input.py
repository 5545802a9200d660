"""Bad input to the cluster: one clear line each (exit 2 through the CLI), no stream handled twice.

- a worker that cannot reach the broker (the supervisor can): ClusterError naming the worker and the
  broker, raised before any stream is assigned;
- two supervisors on the same broker prefix, one after the other and both at once: exactly one runs;
- a Ray address that does not answer, and a broker that does not answer: one line, exit 2 (CLI);
- the central station drops hostile messages (size, depth, wrong stream, unknown kind) and counts them.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from tests.cluster.conftest import cluster_cfg
from tests.conftest import free_port


async def test_a_worker_that_cannot_reach_the_broker_is_one_clear_error(ray_local, mosquitto):
    from pedstream.cluster.supervisor import Supervisor
    from pedstream.cluster.topics import ClusterError

    cfg = cluster_cfg(mosquitto.port)
    dead = free_port()
    worker_cfg = cluster_cfg(dead, "mqtt.timeout_s=1.0")
    sup = Supervisor(cfg=cfg, workers=2, worker_cfg=worker_cfg)
    with pytest.raises(ClusterError) as info:
        async with asyncio.timeout(60):
            async with sup:
                pass
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("worker w") and f"cannot reach the MQTT broker at 127.0.0.1:{dead}" in msg
    assert sup.assignment == {}  # nothing was handed out


async def test_two_supervisors_on_one_prefix_only_one_runs(ray_local, mosquitto):
    from pedstream.cluster.supervisor import Supervisor
    from pedstream.cluster.topics import ClusterError

    cfg = cluster_cfg(mosquitto.port)
    async with asyncio.timeout(90):
        async with Supervisor(cfg=cfg, workers=1) as first:
            second = Supervisor(cfg=cfg, workers=1)
            with pytest.raises(ClusterError) as info:
                async with second:
                    pass
            assert "another supervisor" in str(info.value) and "\n" not in str(info.value)
            assert second.workers == {} and first.live() == ["w0"]  # the second started no worker
        # both at once: exactly one takes the lock (the earlier one), the other starts no worker
        a, b = Supervisor(cfg=cfg, workers=1, name_prefix="a"), Supervisor(cfg=cfg, workers=1, name_prefix="b")

        async def enter(sup: Supervisor):
            await sup.__aenter__()
            return sup

        results = await asyncio.gather(enter(a), enter(b), return_exceptions=True)
        winners = [r for r in results if isinstance(r, Supervisor)]
        losers = [r for r in results if isinstance(r, ClusterError)]
        try:
            assert len(winners) == 1 and len(losers) == 1, results
        finally:
            for w in winners:
                await w.__aexit__(None, None, None)
        loser = b if winners[0] is a else a
        assert loser.workers == {}


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from pedstream.cli import main; main()", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_a_ray_address_that_does_not_answer_is_one_line_exit_2(mosquitto):
    dead = free_port()
    r = _cli("run", "--source", "mqtt", "--workers", "2", "--ray-address", f"127.0.0.1:{dead}",
             "--set", f"mqtt.port={mosquitto.port}", "--set", "cluster.ray_connect_timeout_s=2")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: ray: nothing answers at --ray-address 127.0.0.1:{dead}"), lines


def test_no_broker_is_one_line_exit_2_for_run_workers_and_central():
    dead = free_port()
    for args in (["run", "--source", "mqtt", "--workers", "2"], ["central", "--headless", "--duration", "1"]):
        r = _cli(*args, "--set", f"mqtt.port={dead}", "--set", "mqtt.timeout_s=1")
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert lines == [f"error: broker: cannot reach the MQTT broker at 127.0.0.1:{dead} (start one, or point "
                         "--set mqtt.host=... --set mqtt.port=... at yours)"], lines


def test_central_drops_hostile_messages_and_counts_them():
    from pedstream.cluster.central import Central
    from pedstream.config import load_config

    central = Central(cfg=load_config(None, ["mqtt.max_message_bytes=4096"]))
    p = central.prefix
    good = b'{"stream":"bed01","kind":"call","label":"sinus","p":0.9,"hr":120,"worker":"w0","window_start":0}'
    central.on_message(f"{p}/bed01/rhythm", good)
    for topic, payload in [(f"{p}/bed01/rhythm", b"{" * 100 + b"}" * 100),  # too deep
                           (f"{p}/bed01/rhythm", b'{"x":"' + b"a" * 5000 + b'"}'),  # too big
                           (f"{p}/bed01/rhythm", good.replace(b"bed01", b"bed02")),  # another stream
                           (f"{p}/bed01/rhythm", good.replace(b'"call"', b'"boom"')),  # unknown kind
                           (f"{p}/bed01/rhythm", b"\xff\xfe"), (f"{p}/bed01/alarm", b"[1]"),
                           (f"{p}/_workers/bad name", b"{}"), (f"{p}/bed01/whatever", b"{}")]:
        central.on_message(topic, payload)
    assert central.rejected == 8 and central.events == 1
    row = central.rows["bed01"]
    assert (row.call, row.worker, row.calls) == ("sinus", "w0", 1)


async def test_the_supervisor_survives_a_broker_restart_and_takes_its_lock_again(ray_local, mosquitto):
    import aiomqtt

    from pedstream.cluster.supervisor import Supervisor
    from pedstream.cluster.topics import lock_topic
    from pedstream.transports.mqtt.wire import encode_meta, topic_for

    cfg = cluster_cfg(mosquitto.port, "mqtt.reconnect_max_s=1.0")
    lines: list[str] = []
    meta = encode_meta(fs=500.0, channels=["II"], units="mV")
    async with asyncio.timeout(90):
        async with Supervisor(cfg=cfg, workers=1, on_line=lines.append) as sup:
            stop = asyncio.Event()
            runner = asyncio.create_task(sup.run(stop))
            try:
                mosquitto.stop()  # persistence off: the retained lock and metas are gone with it
                mosquitto.start()
                while "supervisor: broker connection back" not in lines:
                    await asyncio.sleep(0.05)  # polling the supervisor's lines (bounded by the timeout above)
                async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
                    await client.publish(topic_for(cfg.mqtt.topic_prefix, "late1", "meta"), meta, qos=1, retain=True)
                    await client.subscribe(lock_topic(cfg.mqtt.topic_prefix), qos=1)
                    async for msg in client.messages:  # the retained lock is ours again
                        assert sup.id.encode() in bytes(msg.payload)
                        break
                while sup.assignment.get("late1") != "w0":
                    await asyncio.sleep(0.05)  # polling the assignment (bounded by the timeout above)
            finally:
                stop.set()
                await runner
    assert any(line.startswith("supervisor: broker connection lost") for line in lines), lines


async def test_a_worker_without_the_model_file_is_one_clear_error(ray_local, mosquitto, tmp_path):
    from pedstream.cluster.supervisor import Supervisor
    from pedstream.cluster.topics import ClusterError

    cfg = cluster_cfg(mosquitto.port)
    missing = tmp_path / "not-on-this-node.onnx"
    with pytest.raises(ClusterError) as info:
        async with asyncio.timeout(60):
            async with Supervisor(cfg=cfg, workers=1, model_path=str(missing)):
                pass
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("worker w0 on ") and f"model {missing}: no such model file" in msg


def test_a_ray_address_where_something_else_answers_is_one_line_exit_2_within_bounds(mosquitto):
    # the broker's port answers TCP but is no Ray cluster: Ray's own connection retries are bounded by
    # [cluster] ray_connect_timeout_s and its C++ warnings do not reach the user
    t0 = time.monotonic()
    r = _cli("run", "--source", "mqtt", "--workers", "2", "--ray-address", f"127.0.0.1:{mosquitto.port}",
             "--set", f"mqtt.port={mosquitto.port}", "--set", "cluster.ray_connect_timeout_s=2", timeout=90)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == [f"error: ray: cannot join the Ray cluster at 127.0.0.1:{mosquitto.port} (ConnectionError: "
                     f"Failed to connect to Ray cluster at 127.0.0.1:{mosquitto.port})"], lines
    assert time.monotonic() - t0 < 60
