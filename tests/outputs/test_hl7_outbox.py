"""HL7 alarm delivery through the durable outbox (pedstream.outputs.hl7sink / outbox) against a real MLLP
listener (python-hl7's server, tests/support/mllp_listener.py) that is down, slow, refuses, ACKs the
wrong id, or is killed mid-run: every alarm is delivered exactly once (by message id) after the
receiver recovers, or is reported undelivered and kept for the next start."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import pytest

pytest.importorskip("hl7")

from pedstream.config import load_config  # noqa: E402
from pedstream.outputs.hl7sink import HL7Sink  # noqa: E402
from pedstream.events import MonitorEvent  # noqa: E402
from tests.support.mllp_listener import Listener, free_port  # noqa: E402


def _cfg(port: int, tmp_path, *extra: str):
    return load_config(overrides=[f"hl7.port={port}", f"hl7.outbox={tmp_path / 'outbox.sqlite'}", "hl7.timeout_s=0.5",
                                  "hl7.retry_max_s=0.2", "hl7.observation_interval_s=0", "hl7.drain_s=2",
                                  *extra]).hl7


def _alarms(sink: HL7Sink, n: int, stream: str = "bed7") -> None:
    for i in range(n):
        kind = "alarm_on" if i % 2 == 0 else "alarm_off"
        sink.emit(MonitorEvent(stream=stream, kind=kind, label="vt", p=0.9, hr=210.0 + i, extra={"priority": "high"}))


def _rows(tmp_path) -> list[tuple]:
    with sqlite3.connect(tmp_path / "outbox.sqlite") as db:
        return db.execute("select msg_id, state, answer from outbox order by seq").fetchall()


async def _until(sink: HL7Sink, pred, timeout: float = 20.0) -> None:
    """Wait for a condition on the sink's counters (woken whenever one moves)."""
    await sink.wait_for(lambda _s: pred(), timeout)


async def test_receiver_down_for_the_whole_run_then_every_alarm_is_resent_once_with_its_id(tmp_path):
    port = free_port()
    tech: list[MonitorEvent] = []
    raised = asyncio.Event()

    def on_tech(ev: MonitorEvent) -> None:
        tech.append(ev)
        raised.set()

    cfg = _cfg(port, tmp_path, "hl7.undeliverable_s=0.3")
    async with HL7Sink(cfg=cfg, on_technical=on_tech) as sink:
        _alarms(sink, 6)
        async with asyncio.timeout(20):
            await raised.wait()  # the technical alarm: undeliverable within 0.3 s
    assert tech[0].kind == "technical_alarm" and tech[0].label == "hl7_undeliverable" and tech[0].extra["state"] == "on"
    assert sink.acked == 0 and sink.undelivered == 6 and sink.summary()["pending"] == 6
    stored = [r[0] for r in _rows(tmp_path)]
    assert len(stored) == 6 and all(r[1] == "pending" for r in _rows(tmp_path))
    # the next start: the receiver is up; the same 6 messages (same MSH-10) go first, exactly once (an ACK
    # later than the sink's timeout is a resend by design; a slow machine must not make one here)
    async with Listener(port=port) as lis:
        async with HL7Sink(cfg=_cfg(port, tmp_path, "hl7.undeliverable_s=0.3", "hl7.timeout_s=10")) as sink2:
            assert sink2.restored == 6
            await lis.wait_ids(set(stored), timeout=20)
            await _until(sink2, lambda: sink2.acked == 6)
    assert lis.ids == stored  # in order, no duplicate, no new id
    assert sink2.undelivered == 0 and _rows(tmp_path) == []


async def test_nak_is_logged_with_its_text_and_kept_for_inspection(tmp_path, caplog):
    async with Listener(answer="AE", text="unknown patient bed7") as lis:
        async with HL7Sink(cfg=_cfg(lis.port, tmp_path)) as sink:
            with caplog.at_level(logging.ERROR, logger="pedstream.outputs.hl7sink"):
                _alarms(sink, 2)
                await _until(sink, lambda: sink.rejected == 2)
    assert sink.acked == 0 and sink.undelivered == 2 and len(lis.messages) == 2  # not resent
    assert "unknown patient bed7" in caplog.text and "AE" in caplog.text
    rows = _rows(tmp_path)
    assert [r[1] for r in rows] == ["rejected", "rejected"] and "unknown patient bed7" in rows[0][2]


async def test_an_ack_for_another_message_id_is_not_an_acknowledgement(tmp_path):
    async with Listener(answer="WRONG") as lis:
        async with HL7Sink(cfg=_cfg(lis.port, tmp_path)) as sink:
            _alarms(sink, 1)
            await lis.wait_count(2, timeout=20)  # no valid ACK within timeout_s: sent again, same id
            await _until(sink, lambda: sink.wrong_acks >= 2)
    assert sink.acked == 0 and sink.undelivered == 1
    assert len(set(lis.ids)) == 1 and len(lis.ids) >= 2
    assert [r[1] for r in _rows(tmp_path)] == ["pending"]


async def test_slow_receiver_gets_the_same_message_id_again_and_it_counts_once(tmp_path):
    def answer(msg, lis):  # hold the first answer until the message comes again on a new connection
        if len(lis.messages) == 1:
            return None
        lis.release.set()
        return "AA"

    async with Listener(answer=answer) as lis:
        async with HL7Sink(cfg=_cfg(lis.port, tmp_path)) as sink:
            _alarms(sink, 3)
            await _until(sink, lambda: sink.acked == 3)
    assert sink.undelivered == 0 and sink.resent >= 1
    assert lis.ids[0] == lis.ids[1] and len(set(lis.ids)) == 3  # one duplicate of the same id, nothing new
    assert _rows(tmp_path) == []


async def test_receiver_killed_mid_run_and_restarted_gets_every_alarm(tmp_path):
    port = free_port()

    def answer(msg, lis):
        return "DROP" if len(lis.messages) == 3 else "AA"  # dies while handling the third message

    async with Listener(port=port, answer=answer) as lis:
        async with HL7Sink(cfg=_cfg(port, tmp_path)) as sink:
            _alarms(sink, 6)
            await lis.wait_count(3, timeout=20)
            await lis.stop()  # killed: connection and listening socket gone
            assert sink.acked == 2
            async with Listener(port=port) as lis2:  # back on the same port
                await _until(sink, lambda: sink.acked == 6)
    first = lis.ids
    assert len(first) == 3 and lis2.ids[0] == first[2]  # the one without an ACK goes again, same id
    # every alarm arrives; a repeat (an ACK later than hl7.timeout_s on a loaded machine) carries the same
    # MSH-10, so the receiver sees each message once by its id
    assert len(set(first[:2] + lis2.ids)) == 6
    assert sink.undelivered == 0 and _rows(tmp_path) == []


async def test_garbage_and_oversized_answers_drop_the_connection_not_the_monitor(tmp_path):
    got = asyncio.Event()
    seen: list[bytes] = []

    async def serve(reader, writer):
        seen.append(await reader.readuntil(b"\x1c\r"))
        got.set()
        writer.write(b"\x0b" + b"X" * 200_000 + b"\x1c\r")  # far beyond max_ack_bytes
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with HL7Sink(cfg=_cfg(port, tmp_path, "hl7.max_ack_bytes=4096")) as sink:
            _alarms(sink, 1)
            async with asyncio.timeout(20):
                await got.wait()
            await _until(sink, lambda: sink.resent >= 1)
    finally:
        server.close()
    assert sink.acked == 0 and sink.undelivered == 1


async def test_observations_give_way_to_alarms_when_the_queue_is_full(tmp_path):
    cfg = _cfg(free_port(), tmp_path, "hl7.max_pending=3", "hl7.observation_interval_s=0.000001")
    async with HL7Sink(cfg=cfg) as sink:
        for i in range(3):
            sink.emit(MonitorEvent(stream=f"s{i}", kind="call", label="sinus", p=0.9, hr=100.0))
        _alarms(sink, 4)
        kinds = [i.kind for i in sink._queue]
    assert sink.dropped == 3 and kinds == ["alarm"] * 4  # alarms are never dropped


async def test_an_unwritable_outbox_is_reported_and_messages_still_go_out(tmp_path):
    (tmp_path / "blocker").write_text("a file where the outbox folder should be")
    tech: list[MonitorEvent] = []
    async with Listener() as lis:
        cfg = _cfg(lis.port, tmp_path, f"hl7.outbox={tmp_path / 'blocker' / 'outbox.sqlite'}")
        async with HL7Sink(cfg=cfg, on_technical=tech.append) as sink:
            _alarms(sink, 2)
            await _until(sink, lambda: sink.acked == 2)
    assert [t.label for t in tech] == ["hl7_outbox"] and sink.summary()["outbox_fault"]
    assert len(lis.ids) == 2


async def test_a_monitor_restarted_resends_its_undelivered_alarms_with_their_ids(tmp_path):
    """`pedstream run --hl7` with the receiver down: exit 4, the alarms stay in the outbox; the next run,
    receiver up, delivers exactly those message ids (once each) before its own."""
    import sys
    from pathlib import Path

    x003 = Path(__file__).resolve().parents[2] / "pedstream" / "assets" / "demo_records" / "x003"
    port = free_port()
    box = tmp_path / "outbox.sqlite"

    async def run() -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pedstream.cli", "run", "--source", "replay", "--records", str(x003), "--headless",
            "--duration", "7", "--set", "replay.speed=8", "--set", "replay.loop=true", "--set", "alarms.strips=false",
            "--hl7", "--set", f"hl7.port={port}", "--set", f"hl7.outbox={box}", "--set", "hl7.observation_interval_s=0",
            "--set", "hl7.timeout_s=1", "--set", "hl7.undeliverable_s=1", cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert "Traceback" not in err.decode()
        return proc.returncode, out.decode()

    rc, out = await run()
    kept = [r[0] for r in _rows(tmp_path)]
    assert rc == 4 and kept, "x003 raises alarms; none could be delivered"
    assert '"label":"hl7_undeliverable"' in out  # the technical alarm in the events
    async with Listener(port=port) as lis:
        rc2, _ = await run()
    assert rc2 == 0
    assert lis.ids[:len(kept)] == kept and len(set(lis.ids)) == len(lis.ids)  # the old ones first, once each
    assert _rows(tmp_path) == []
