"""Issue 10 fault tests: real processes killed, real files (bounded: each well under 60 s)."""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pedstream.config import load_config
from tests.support.tiny_model import build_tiny_model

pytestmark = pytest.mark.timeout(90)
DEMO = Path(__file__).resolve().parents[2] / "pedstream" / "assets" / "demo_records"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx", load_config())


def start_monitor(model: Path, events: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pedstream.cli", "run", "--source", "replay", "--records",
                             str(DEMO / "x002"), "--model", str(model), "--headless", "--duration", "60",
                             "--events", str(events), "--set", "replay.speed=4"],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_calls(proc: subprocess.Popen, n: int, timeout: float = 60.0) -> None:
    """Read the monitor's stdout until ``n`` call events came out (bounded)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline, seen = time.monotonic() + timeout, 0
    while seen < n:
        assert sel.select(timeout=max(0.0, deadline - time.monotonic())), f"{seen} calls within {timeout} s"
        line = proc.stdout.readline()
        assert line, "the monitor ended early"
        seen += json.loads(line)["kind"] == "call"


def test_sigkill_leaves_the_events_file_intact_and_a_restart_appends(model, tmp_path):
    events = tmp_path / "events.jsonl"
    proc = start_monitor(model, events, tmp_path)
    try:
        wait_calls(proc, 3)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = events.read_text(encoding="utf-8")
    assert first.endswith("\n")  # every event is one flushed line: nothing torn
    lines = [json.loads(ln) for ln in first.splitlines()]
    assert sum(e["kind"] == "call" for e in lines) >= 3
    proc = start_monitor(model, events, tmp_path)  # a restarted monitor appends to the same file
    try:
        wait_calls(proc, 2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    text = events.read_text(encoding="utf-8")
    assert text.startswith(first) and len(text) > len(first)
    after = [json.loads(ln) for ln in text.splitlines()]  # still valid line by line
    assert sum(e["kind"] == "call" for e in after) >= len([e for e in lines if e["kind"] == "call"]) + 2


# -- MQTT through the real CLI: `pedstream run --source mqtt` and `pedstream replay --to mqtt` -------------------
def mqtt_sets(broker) -> list[str]:
    return ["--set", f"mqtt.host={broker.host}", "--set", f"mqtt.port={broker.port}"]


def start_mqtt_monitor(model: Path, broker, cwd: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pedstream.cli", "run", "--source", "mqtt", "--model", str(model),
                             "--headless", "--duration", "80", *mqtt_sets(broker), "--set", "alarms.strips=false",
                             *extra], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_replay(broker, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pedstream.cli", "replay", str(DEMO / "x002"), "--to", "mqtt",
                             "--loop", "--speed", "4", *mqtt_sets(broker)],
                            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def read_until(proc: subprocess.Popen, done, seen: list[dict], timeout: float = 60.0) -> None:
    """Read the monitor's JSON event lines into ``seen`` until ``done(seen)`` (bounded)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while not done(seen):
        assert sel.select(timeout=max(0.0, deadline - time.monotonic())), (
            f"not reached within {timeout} s; events: {[(e['stream'], e['kind']) for e in seen[-20:]]}")
        line = proc.stdout.readline()
        assert line, "the monitor ended early"
        if line.startswith("{"):
            seen.append(json.loads(line))


def n_kind(seen: list[dict], kind: str, stream: str) -> int:
    return sum(e["kind"] == kind and e["stream"] == stream for e in seen)


def stop(*procs: subprocess.Popen) -> list[tuple[int | None, str, str]]:
    out = []
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        try:
            o, e = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            o, e = p.communicate(timeout=10)
        out.append((p.returncode, o or "", e or ""))
    return out


def test_retained_junk_meta_at_startup_through_pedstream_run(model, mosquitto, tmp_path):
    """A retained junk meta waiting on the broker when `pedstream run --source mqtt` starts: one `error`
    event for that stream id, the monitor keeps running and still classifies a genuine stream."""
    import asyncio

    from pedstream.transports.mqtt.client import make_client

    async def put_junk() -> None:
        async with make_client(mosquitto.host, mosquitto.port, identifier=None, auth=None, timeout_s=5.0) as c:
            await c.publish("pedstream/v1/junk/meta", b"[" * 400_000, qos=1, retain=True, timeout=5.0)

    asyncio.run(put_junk())
    monitor = start_mqtt_monitor(model, mosquitto, tmp_path)
    replay = None
    seen: list[dict] = []
    try:
        read_until(monitor, lambda s: n_kind(s, "error", "junk") >= 1, seen, timeout=40)
        replay = start_replay(mosquitto, tmp_path)
        read_until(monitor, lambda s: n_kind(s, "call", "x002") >= 3, seen, timeout=60)
    finally:
        results = stop(*(p for p in (monitor, replay) if p is not None))
    rc, out, err = results[0]
    seen += [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    assert rc == 130, err[-2000:]
    assert n_kind(seen, "error", "junk") == 1  # reported once, not once per retained delivery
    assert n_kind(seen, "call", "x002") >= 3 and n_kind(seen, "error", "x002") == 0


def test_broker_restart_during_pedstream_replay_to_mqtt(model, mosquitto, tmp_path):
    """The broker is restarted while `pedstream replay --to mqtt` publishes: the replay reconnects (it does
    not end) and the monitor gets calls again from data sent after the restart."""
    monitor = start_mqtt_monitor(model, mosquitto, tmp_path, "--set", "mqtt.reconnect_max_s=1")
    replay = start_replay(mosquitto, tmp_path)
    seen: list[dict] = []
    try:
        read_until(monitor, lambda s: n_kind(s, "call", "x002") >= 2, seen, timeout=60)
        mosquitto.stop()
        read_until(monitor, lambda s: n_kind(s, "signal_loss", "x002") >= 1, seen, timeout=30)
        mosquitto.start()
        mark = len(seen)

        def calls_after_comeback(s: list[dict]) -> bool:
            """New data after the outage: the stream comes back (signal_ok), then 2 calls."""
            back = next((i for i in range(mark, len(s)) if s[i]["kind"] == "signal_ok" and s[i]["stream"] == "x002"),
                        None)
            return back is not None and n_kind(s[back:], "call", "x002") >= 2

        read_until(monitor, calls_after_comeback, seen, timeout=60)
        assert replay.poll() is None, "the replay ended when the broker went away"
    finally:
        results = stop(monitor, replay)
    assert results[0][0] == 130, results[0][2][-2000:]
    assert results[1][0] == 130, results[1][2][-2000:]


def test_a_replay_that_ignores_ctrl_c_still_ends_within_its_grace(tmp_path):
    """The exit of `pedstream replay` is bounded: a run whose tasks do not stop after Ctrl-C is left
    after the grace period with one line and exit code 130."""
    code = (
        "import asyncio, sys\n"
        "from pedstream.monitor.command import _bounded_exit\n"
        "async def stubborn():\n"
        "    print('ready', flush=True)\n"
        "    while True:\n"
        "        try:\n"
        "            await asyncio.sleep(3600)\n"
        "        except asyncio.CancelledError:\n"
        "            pass  # the defect: a cancellation swallowed\n"
        "asyncio.run(_bounded_exit(stubborn(), grace_s=1.0))\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 130
    assert err.strip().splitlines() == ["error: the replay did not stop within 1 s of Ctrl-C; leaving now"]
