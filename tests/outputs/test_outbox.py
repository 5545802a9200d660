"""The durable HL7 outbox (a real SQLite file): what is appended survives a restart until that message is
acknowledged, a refusal is kept for inspection, channels are separate, a storage fault is an
:class:`OutboxError`. (Through the HL7 sink and a real MLLP receiver: tests/outputs/test_hl7_outbox.py.)"""

from __future__ import annotations

import sqlite3
import time

import pytest

from pedstream.outputs.outbox import Outbox, OutboxError


async def test_pending_is_oldest_first_with_the_original_payload_and_a_repeat_is_ignored(tmp_path) -> None:
    t0 = time.time()
    async with Outbox(tmp_path / "o.sqlite") as box:
        await box.append("hl7", "m1", "alarm_on", "MSH|one")
        await box.append("hl7", "m2", "call", "MSH|two")
        await box.append("hl7", "m1", "alarm_on", "MSH|one again")  # same id: the stored one stays
        rows = await box.pending("hl7")
    assert [(r.msg_id, r.kind, r.payload) for r in rows] == [("m1", "alarm_on", "MSH|one"), ("m2", "call", "MSH|two")]
    assert rows[0].seq < rows[1].seq and all(r.attempts == 0 and r.state == "pending" for r in rows)
    assert t0 - 1 <= rows[0].created <= time.time() + 1


async def test_what_was_not_acknowledged_is_there_after_a_restart(tmp_path) -> None:
    path = tmp_path / "sub" / "o.sqlite"  # the folder is made
    async with Outbox(path) as box:
        for k in range(3):
            await box.append("hl7", f"m{k}", "alarm_on", f"payload {k}")
        await box.delivered("hl7", "m1")
        await box.attempted("hl7", "m2", "connection refused")
    async with Outbox(path) as box:  # the next run
        rows = await box.pending("hl7")
        assert [r.msg_id for r in rows] == ["m0", "m2"]
        assert rows[1].attempts == 1 and rows[1].answer == "connection refused"
        await box.delivered("hl7", "m0")
        await box.delivered("hl7", "m2")
        await box.delivered("hl7", "never-there")  # an acknowledgement of nothing changes nothing
        assert await box.pending("hl7") == [] and await box.counts("hl7") == {"pending": 0, "rejected": 0}


async def test_a_refused_message_is_kept_with_the_answer_but_not_sent_again(tmp_path) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as box:
        await box.append("hl7", "m1", "alarm_on", "x")
        await box.append("hl7", "m2", "alarm_on", "y")
        await box.rejected("hl7", "m1", "AE: unknown patient " + "z" * 5000)
        assert [r.msg_id for r in await box.pending("hl7")] == ["m2"]
        assert await box.counts("hl7") == {"pending": 1, "rejected": 1}
    with sqlite3.connect(path) as db:  # what an operator inspects
        state, answer, attempts = db.execute("select state, answer, attempts from outbox where msg_id='m1'").fetchone()
    assert state == "rejected" and answer.startswith("AE: unknown patient") and len(answer) == 2000 and attempts == 1


async def test_channels_do_not_see_each_others_messages(tmp_path) -> None:
    async with Outbox(tmp_path / "o.sqlite") as box:
        await box.append("a", "m1", "alarm_on", "for a")
        await box.append("b", "m1", "alarm_on", "for b")  # the same id on another channel is another message
        await box.delivered("a", "m1")
        assert await box.pending("a") == []
        assert [r.payload for r in await box.pending("b")] == ["for b"]


async def test_storage_faults_are_outbox_errors(tmp_path) -> None:
    (tmp_path / "blocker").write_text("a file where the folder should be", encoding="utf-8")
    with pytest.raises(OutboxError, match="blocker"):
        async with Outbox(tmp_path / "blocker" / "o.sqlite"):
            pass  # pragma: no cover
    box = Outbox(tmp_path / "o.sqlite")
    with pytest.raises(OutboxError, match="not open"):
        await box.append("hl7", "m1", "alarm_on", "x")
    async with box:
        await box.append("hl7", "m1", "alarm_on", "x")
    with pytest.raises(OutboxError, match="not open"):
        await box.pending("hl7")
