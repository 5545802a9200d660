"""``pedstream run --hl7``: alarms and observations delivered over MLLP through a durable outbox.

Delivery contract (``[hl7]``):

- every message is appended to the outbox (:mod:`pedstream.outputs.outbox`, SQLite WAL, ``[hl7]
  outbox``) *before* it is sent; messages go one at a time, in order, each waiting for its ACK;
- a message leaves the outbox only on ``AA`` (or ``CA``) whose MSA-2 equals its own MSH-10; an ACK
  naming another message id is logged and ignored (the message is sent again after ``timeout_s``);
- ``AE`` / ``AR`` (``CE``/``CR``) are logged once with the receiver's text (MSA-3, ERR-8) and the
  message stays in the outbox marked ``rejected`` (for inspection; it is not sent again);
- no connection, no answer in ``timeout_s``, a garbled answer: the connection is dropped and the
  message is sent again (same MSH-10: a receiver that has it already treats it as a duplicate)
  after a backoff doubling from 0.2 s up to ``retry_max_s``;
- a message still undelivered ``undeliverable_s`` after it was queued raises a technical alarm
  (``technical_alarm`` event, ``label`` ``hl7_undeliverable``, state ``on``; ``off`` once the backlog
  is delivered) and the sink keeps trying;
- at exit the sink keeps sending for at most ``drain_s`` while connected; what is left stays in the
  outbox, is counted as undelivered in the summary (exit code 4) and is sent first at the next start.

Observations (``ORU^R01``) travel the same way; when more than ``max_pending`` messages wait,
the oldest *observations* are dropped (counted), never alarms.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pedstream.outputs.hl7msg import message_id, oru_r01_text, oru_r40_text
from pedstream.outputs.outbox import Outbox, OutboxError
from pedstream.events import MonitorEvent
from pedstream.config import HL7Section

__all__ = ["HL7Sink", "default_outbox_path"]

log = logging.getLogger(__name__)
CHANNEL = "hl7"
_ACCEPT = ("AA", "CA")
_REFUSE = ("AE", "AR", "CE", "CR")


def default_outbox_path() -> Path:
    """``$XDG_STATE_HOME/pedstream/hl7-outbox.sqlite`` (by default ``~/.local/state/...``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser() / "pedstream" / "hl7-outbox.sqlite"


@dataclass
class _Item:
    msg_id: str
    kind: str  # "alarm" | "observation"
    payload: str
    queued: float  # monotonic time it was queued (restored messages: their start-up time minus their age)
    stored: asyncio.Future | None = None  # the outbox append (None: nothing to wait for)


class _Refused(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code, self.text = code, text


class HL7Sink:
    """Alarms (ORU^R40) and periodic observations (ORU^R01) to ``[hl7] host:port`` (module docstring).
    ``on_technical(event)`` receives the sink's technical alarms (``technical_alarm`` events)."""

    def __init__(self, *, cfg: HL7Section, outbox: str | Path | None = None,
                 on_technical: Callable[[MonitorEvent], None] | None = None) -> None:
        self.cfg = cfg
        path = outbox if outbox is not None else (cfg.outbox or None)
        self.outbox_path = Path(path).expanduser() if path else default_outbox_path()
        self.on_technical = on_technical
        self._box: Outbox | None = None
        self._queue: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._last_obs: dict[str, float] = {}
        self._alarm_ids: dict[tuple[str, str], str] = {}
        self._store_fault: str | None = None
        self._tech_on = False
        self._down = False  # the last attempt failed (the failure was logged once)
        self.sent = self.acked = self.rejected = self.dropped = self.resent = self.restored = 0
        self.wrong_acks = 0
        self.connected = asyncio.Event()
        self.delivered_ids: list[str] = []
        self._changed = asyncio.Event()  # set whenever a counter moves (wait_for)

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def __aenter__(self) -> "HL7Sink":
        import hl7.mllp  # noqa: F401  (fail at start when the integrations extra is missing)

        box = Outbox(self.outbox_path)
        try:
            await box.__aenter__()
            self._box = box
            now = time.monotonic()
            for row in await box.pending(CHANNEL):
                self._queue.append(_Item(row.msg_id, row.kind, row.payload, now - max(0.0, time.time() - row.created)))
            self.restored = len(self._queue)
            if self.restored:
                log.warning("HL7: %d message(s) from the outbox %s are sent first", self.restored, self.outbox_path)
        except OutboxError as exc:
            self._storage_fault(str(exc))
        self._task = asyncio.create_task(self._run(), name="sink-hl7")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            deadline = time.monotonic() + self.cfg.drain_s
            while self._queue and self.connected.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # the sender finishes what is queued (bounded by drain_s)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._queue:
            log.warning("HL7: %d message(s) not delivered at exit%s", len(self._queue),
                        "" if self._store_fault else f"; kept in {self.outbox_path}, sent at the next start")
        if self._box is not None:
            await self._box.__aexit__()
            self._box = None

    async def wait_for(self, predicate: Callable[["HL7Sink"], bool], timeout: float) -> None:
        """Wait until ``predicate(self)`` holds (checked whenever a counter moves); TimeoutError after ``timeout``."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    # -- figures -------------------------------------------------------------------------------------------
    @property
    def undelivered(self) -> int:
        """Messages not acknowledged: still queued plus refused (AE/AR)."""
        return len(self._queue) + self.rejected

    def summary(self) -> dict[str, Any]:
        return {"sent": self.sent, "acked": self.acked, "rejected": self.rejected, "pending": len(self._queue),
                "dropped": self.dropped, "resent": self.resent, "restored": self.restored,
                "wrong_acks": self.wrong_acks, "undelivered": self.undelivered, "outbox": str(self.outbox_path),
                "outbox_fault": self._store_fault}

    def report(self) -> dict[str, Any]:
        """The outputs layer's row: messages not delivered (queued or refused)."""
        return {"output": "hl7", "path": str(self.outbox_path), "undelivered": self.undelivered,
                "not_written": 0, "fault": self._store_fault}

    # -- the engine side --------------------------------------------------------------------------------------
    def emit(self, event: MonitorEvent) -> None:
        try:
            built = self._build(event)
        except Exception as exc:  # a message we cannot build must not stop monitoring
            log.warning("HL7: cannot build a message for %s %s: %s", event.stream, event.kind, exc)
            return
        if built is None:
            return
        kind, msg_id, text = built
        item = _Item(msg_id, kind, text, time.monotonic())
        if self._box is not None:
            item.stored = asyncio.ensure_future(self._box.append(CHANNEL, msg_id, kind, item.payload))
        self._make_room()
        self._queue.append(item)
        self._wake.set()

    def _build(self, event: MonitorEvent) -> tuple[str, str, str] | None:
        """(kind, MSH-10, ER7 text) of the message for ``event``, or None."""
        if event.kind in ("alarm_on", "alarm_off"):
            key = (event.stream, event.label or "")
            alarm_id = event.extra.get("alarm_id")
            if alarm_id is None:  # without the lifecycle layer: pair onset and end here
                if event.kind == "alarm_on":
                    self._alarm_ids[key] = uuid.uuid4().hex[:16]
                alarm_id = (self._alarm_ids.pop(key, None) if event.kind == "alarm_off"
                            else self._alarm_ids[key]) or uuid.uuid4().hex[:16]
            msg_id = message_id()
            return "alarm", msg_id, oru_r40_text(event, self.cfg, alarm_id=str(alarm_id), control_id=msg_id)
        if event.kind == "call" and self.cfg.observation_interval_s > 0:
            now = time.monotonic()
            last = self._last_obs.get(event.stream)
            if last is None or now - last >= self.cfg.observation_interval_s:
                self._last_obs[event.stream] = now
                msg_id = message_id()
                return "observation", msg_id, oru_r01_text(event, self.cfg, control_id=msg_id)
        return None

    def _make_room(self) -> None:
        while len(self._queue) >= self.cfg.max_pending:
            victim = next((i for i in self._queue if i.kind == "observation"), None)
            if victim is None:
                return  # only alarms: never dropped
            self._queue.remove(victim)
            self.dropped += 1
            if self._box is not None:
                asyncio.ensure_future(self._forget(victim))

    async def _forget(self, item: _Item) -> None:
        try:
            if item.stored is not None:
                await item.stored
            await self._box.delivered(CHANNEL, item.msg_id)  # type: ignore[union-attr]
        except OutboxError as exc:
            self._storage_fault(str(exc))

    # -- reports -----------------------------------------------------------------------------------------------
    def _storage_fault(self, message: str) -> None:
        if self._store_fault is None:
            self._store_fault = message
            log.error("HL7: %s; messages are kept in memory only until it is writable", message)
            self._technical("hl7_outbox", "on", message)

    def _technical(self, label: str, state: str, message: str) -> None:
        if self.on_technical is not None:
            self.on_technical(MonitorEvent(stream="pedstream", kind="technical_alarm", label=label,
                                           extra={"state": state, "output": "hl7", "message": message,
                                                  "undelivered": len(self._queue)}))

    def _check_overdue(self) -> None:
        limit = self.cfg.undeliverable_s
        overdue = bool(self._queue) and time.monotonic() - self._queue[0].queued > limit
        if overdue and not self._tech_on:
            self._tech_on = True
            msg = (f"{len(self._queue)} HL7 message(s) not delivered to {self.cfg.host}:{self.cfg.port} "
                   f"within {limit:g} s")
            log.error("HL7: %s (still trying)", msg)
            self._technical("hl7_undeliverable", "on", msg)
        elif self._tech_on and not self._queue:
            self._tech_on = False
            log.warning("HL7: every queued message is delivered again")
            self._technical("hl7_undeliverable", "off", "HL7 delivery recovered")

    # -- the delivery task ---------------------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.2
        while True:
            self._check_overdue()
            if not self._queue:
                self._wake.clear()
                try:
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            try:
                await self._session()
                backoff = 0.2
            except (OSError, TimeoutError, EOFError, ValueError, asyncio.IncompleteReadError) as exc:
                self.connected.clear()
                log.log(logging.DEBUG if self._down else logging.WARNING,
                        "HL7 %s:%d: %s (retrying with backoff up to %g s; said once until it works again)",
                        self.cfg.host, self.cfg.port, type(exc).__name__ if not str(exc) else exc, self.cfg.retry_max_s)
                self._down = True
                self._check_overdue()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.cfg.retry_max_s)

    async def _session(self) -> None:
        """One connection: send the queue head by head until it is empty or the link fails."""
        import hl7.mllp

        # asyncio.timeout, not wait_for: Python 3.11's wait_for can lose a cancellation
        async with asyncio.timeout(self.cfg.timeout_s):
            reader, writer = await hl7.mllp.open_hl7_connection(self.cfg.host, self.cfg.port, limit=self.cfg.max_ack_bytes)
        self.connected.set()
        if self._down:
            self._down = False
            log.warning("HL7 %s:%d: connected again", self.cfg.host, self.cfg.port)
        try:
            while self._queue:
                item = self._queue[0]
                if item.stored is not None:
                    try:
                        await item.stored  # append before send
                    except OutboxError as exc:
                        self._storage_fault(str(exc))
                    item.stored = None
                await self._deliver(item, reader, writer)
                self._check_overdue()
        finally:
            self.connected.clear()
            writer.close()

    async def _deliver(self, item: _Item, reader: Any, writer: Any) -> None:
        writer.writeblock(item.payload.encode("utf-8"))
        await writer.drain()
        self.sent += 1
        try:
            code, text = await self._await_ack(item, reader)
        except BaseException:
            self.resent += 1  # it goes again on the next connection
            self._changed.set()
            raise
        if self._queue and self._queue[0] is item:
            self._queue.popleft()
        if code in _ACCEPT:
            self.acked += 1
            self.delivered_ids.append(item.msg_id)
            await self._box_call("delivered", item.msg_id)
        else:
            self.rejected += 1
            log.error("HL7: message %s (%s) refused %s: %s; kept in the outbox as rejected", item.msg_id,
                      item.kind, code, text or "(no text)")
            await self._box_call("rejected", item.msg_id, f"{code}: {text}")
        self._changed.set()

    async def _await_ack(self, item: _Item, reader: Any) -> tuple[str, str]:
        """The (code, text) of the ACK whose MSA-2 is ``item``'s id; ACKs for other ids are skipped."""
        async with asyncio.timeout(self.cfg.timeout_s):
            while True:
                ack = await _read_ack(reader)
                try:
                    msa = ack.segment("MSA")
                    code, ref = str(msa[1]), str(msa[2])
                except (KeyError, IndexError) as exc:
                    raise ValueError(f"answer without MSA to message {item.msg_id}") from exc
                if ref == item.msg_id:
                    return code, _ack_text(ack)
                self.wrong_acks += 1
                self._changed.set()
                log.warning("HL7: ACK %s names message %r while %s waits; ignored", code, ref[:40], item.msg_id)

    async def _box_call(self, what: str, *args: str) -> None:
        if self._box is None:
            return
        try:
            await getattr(self._box, what)(CHANNEL, *args)
        except OutboxError as exc:
            self._storage_fault(str(exc))


async def _read_ack(reader: Any) -> Any:
    """One answer (at most ``max_ack_bytes``, the reader's limit), parsed; garbage is a ValueError."""
    import hl7
    import hl7.mllp

    try:
        return await reader.readmessage()
    except (hl7.mllp.InvalidBlockError, hl7.ParseException, UnicodeDecodeError, asyncio.LimitOverrunError) as exc:
        raise ValueError(f"unreadable answer: {type(exc).__name__}") from exc


def _ack_text(ack: Any) -> str:
    """The receiver's text in an ACK: MSA-3 and ERR-8 (user message) / ERR-3 (code)."""
    parts = []
    try:
        if len(ack.segment("MSA")) > 3 and str(ack.segment("MSA")[3]):
            parts.append(str(ack.segment("MSA")[3]))
    except (KeyError, IndexError):
        pass
    try:
        for err in ack.segments("ERR"):
            for idx in (8, 3):
                if len(err) > idx and str(err[idx]):
                    parts.append(str(err[idx]))
    except KeyError:
        pass
    return "; ".join(parts)[:500]
