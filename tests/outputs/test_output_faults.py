"""Storage faults end nothing: `pedstream run` with its events on /dev/full or on a FIFO nobody reads,
its strips where a file stands in place of the folder, or a tmpfs that fills up: calls go on, each
fault is reported once (one log line, a technical_alarm event), no traceback, the summary and exit
code 4 say what was not written, and writing resumes when space returns. --duration, SIGTERM and
SIGINT end a run whose events file blocks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pedstream.outputs.linewriter import LineWriter
from tests.support.helpers import events_validator

ROOT = Path(__file__).resolve().parents[2]
X003 = ROOT / "pedstream" / "assets" / "demo_records" / "x003"


pytestmark = pytest.mark.usefixtures("private_state_home")  # the HL7 outbox's default place, per test


async def _run(tmp_path: Path, *args: str, duration: float = 20.0):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pedstream.cli", "run", "--source", "replay", "--records", str(X003), "--headless",
        "--duration", str(duration), "--set", "replay.speed=8", *args, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_events_on_a_full_device_and_strips_on_a_file_go_on_and_say_what_was_lost(tmp_path):
    (tmp_path / "notadir").write_text("a file where the strip folder should be")
    proc = await _run(tmp_path, "--events", "/dev/full", "--alarms-dir", "notadir/alarms", "--capture", "dash.txt")
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    err_text = err.decode()
    assert proc.returncode == 4, err_text[-2000:]
    assert "Traceback" not in err_text
    lines = err_text.splitlines()
    assert sum(ln.startswith("events file: /dev/full: No space left") for ln in lines) == 1  # reported once
    assert sum(ln.startswith("alarm strips cannot be written") for ln in lines) == 1
    assert "error: outputs incomplete: events:" in err_text and "strip(s) not written" in err_text
    events = [json.loads(ln) for ln in out.decode().splitlines()]
    v = events_validator()
    for ev in events:
        v.validate(ev)
    calls = [e for e in events if e["kind"] == "call"]
    tech = [e for e in events if e["kind"] == "technical_alarm"]
    assert len(calls) >= 10  # monitoring went on
    assert [t["label"] for t in tech] == ["events_unwritable", "strips_unwritable"]
    on = [e for e in events if e["kind"] == "alarm_on"]
    assert on and not list((tmp_path / "notadir").parent.glob("**/*.png"))  # no 0-byte strips left behind
    dash = (tmp_path / "dash.txt").read_text()  # the dashboard's last frame shows what is still at fault
    assert "TECHNICAL ALARM: events_unwritable" in dash  # (the strip is drawn after the last frame)
    summary = json.loads(next(ln for ln in lines if ln.startswith('{"summary"')))["summary"]
    rows = {r["output"]: r for r in summary["outputs"]["outputs"]}
    assert rows["events"]["not_written"] == len(events) and rows["strips"]["not_written"] == len(on)


async def test_duration_ends_a_run_whose_events_fifo_has_no_reader(tmp_path):
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    proc = await _run(tmp_path, "--events", str(fifo), "--set", "alarms.strips=false", duration=4)
    out, err = await asyncio.wait_for(proc.communicate(), 60)  # before: blocked in open() for ever
    assert proc.returncode == 4, err.decode()[-2000:]
    assert "FIFO without a reader" in err.decode() and "Traceback" not in err.decode()
    assert any(json.loads(ln)["kind"] == "call" for ln in out.decode().splitlines())


@pytest.mark.parametrize("sig,rc", [(signal.SIGTERM, 4), (signal.SIGINT, 130)])
async def test_signals_end_a_run_whose_events_fifo_has_no_reader(tmp_path, sig, rc):
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    proc = await _run(tmp_path, "--events", str(fifo), "--set", "alarms.strips=false", "--set", "replay.loop=true",
                      duration=600)
    async with asyncio.timeout(60):
        while True:  # the first call on stdout: the monitor runs although its events file is stuck
            line = await proc.stdout.readline()
            assert line, "the run ended before its first call"
            if json.loads(line)["kind"] == "call":
                break
    proc.send_signal(sig)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == rc, err.decode()[-2000:]
    assert "Traceback" not in err.decode() and "summary:" in err.decode()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs (needs CAP_SYS_ADMIN: skipped where mounting is not permitted)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()[:80]}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_a_full_disk_is_reported_once_and_writing_resumes_when_space_returns(small_tmpfs):
    filler = small_tmpfs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the file system
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    reports: list[str | None] = []
    changed = asyncio.Event()

    def on_fault(msg):
        reports.append(msg)
        changed.set()

    w = LineWriter(small_tmpfs / "ev" / "events.jsonl", on_fault=on_fault, retry_s=0.05)
    w.start()
    lines = [json.dumps({"n": i, "pad": "x" * 100}) for i in range(200)]
    for ln in lines[:100]:
        w.write(ln)
    async with asyncio.timeout(20):
        await changed.wait()
    assert len(reports) == 1 and "No space left" in reports[0]
    for ln in lines[100:]:
        w.write(ln)
    changed.clear()
    filler.unlink()  # space returns
    async with asyncio.timeout(20):
        await changed.wait()
    await w.wait_written(200, timeout=20)
    await w.close()
    assert reports == [reports[0], None] and w.faults == 1 and w.not_written == 0
    got = (small_tmpfs / "ev" / "events.jsonl").read_text().splitlines()
    assert [json.loads(g)["n"] for g in got] == list(range(200))  # nothing lost, nothing doubled or torn


async def test_a_folder_that_appears_later_is_written_to(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("not a folder yet")
    seen: list[str | None] = []
    changed = asyncio.Event()
    w = LineWriter(blocker / "events.jsonl", on_fault=lambda m: (seen.append(m), changed.set()), retry_s=0.05)
    w.start()
    w.write("one")
    async with asyncio.timeout(10):
        await changed.wait()
    assert seen[0] and ("File exists" in seen[0] or "Not a directory" in seen[0])
    blocker.unlink()
    await w.wait_written(1, timeout=10)
    w.write("two")
    await w.wait_written(2, timeout=10)
    await w.close()
    assert (blocker / "events.jsonl").read_text() == "one\ntwo\n" and seen[-1] is None


@pytest.fixture
def readonly_tmpfs(tmp_path):
    """A read-only tmpfs (needs CAP_SYS_ADMIN: skipped where mounting is not permitted)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()[:80]}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_every_file_output_on_a_read_only_disk_is_reported_once_and_calls_go_on(tmp_path, readonly_tmpfs):
    ro = readonly_tmpfs
    proc = await _run(tmp_path, "--events", str(ro / "events.jsonl"), "--fhir", str(ro / "fhir.ndjson"),
                      "--record", str(ro / "rec"), "--alarms-dir", str(ro / "alarms"))
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    text = err.decode()
    assert proc.returncode == 4, text[-2000:]
    assert "Traceback" not in text
    lines = text.splitlines()
    for prefix in ("events file: ", "FHIR file: ", "recording: ", "alarm strips cannot be written"):
        assert sum(ln.startswith(prefix) for ln in lines) == 1, (prefix, text[-3000:])  # once each
    events = [json.loads(ln) for ln in out.decode().splitlines()]
    assert sum(e["kind"] == "call" for e in events) >= 10
    labels = {e["label"] for e in events if e["kind"] == "technical_alarm"}
    assert {"events_unwritable", "fhir_unwritable", "recording_unwritable", "strips_unwritable"} <= labels
    summary = json.loads(next(ln for ln in lines if ln.startswith('{"summary"')))["summary"]
    assert {r["output"] for r in summary["outputs"]["outputs"] if r["not_written"]} >= {"events", "fhir", "strips"}


async def test_a_healthy_local_file_holds_each_line_when_write_returns(tmp_path):
    """As a flushed line did: what a reader of stdout saw is already in the events file (SIGKILL-safe)."""
    path = tmp_path / "events.jsonl"
    w = LineWriter(path)
    w.start()
    await w.wait_open(timeout=10)
    for i in range(50):
        w.write(json.dumps({"n": i}))
        assert path.read_text().count("\n") == i + 1  # no wait: written before write() returned
    await w.close()
    assert w.written == 50 and w.not_written == 0
