"""A durable outbox for outgoing alarm messages: SQLite in WAL mode, one row per message.

Every message a delivery sink (:class:`pedstream.outputs.hl7sink.HL7Sink`) must deliver is
appended here *before* it is sent (``synchronous=FULL``: the row survives a crash or a power cut
once :meth:`Outbox.append` returned), and leaves only when the receiver acknowledged *that* message
(:meth:`Outbox.delivered`). A message the receiver refused stays, marked ``rejected`` with the
receiver's text (:meth:`Outbox.rejected`), for inspection (``sqlite3 FILE 'select * from outbox'``).
On the next start :meth:`Outbox.pending` returns what is still to send, oldest first, with its
original payload (so with its original message id: the receiver sees the same message again, never
a new one).

All SQLite calls run in one dedicated daemon thread (:class:`Outbox` is used from the event loop
through ``await``; a call that gets no answer within ``timeout_s`` is an :class:`OutboxError`): a slow or
hung disk delays the delivery task, never the monitor, and never holds the end of the run. A storage fault (disk
full, read-only, file gone) is raised as :class:`OutboxError`; the sink then goes on from memory
and reports it (the message is then not durable).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["Outbox", "OutboxError", "OutboxRow"]

_SCHEMA = """
create table if not exists outbox (
    seq integer primary key autoincrement,
    channel text not null,
    msg_id text not null,
    kind text not null,
    payload text not null,
    created real not null,           -- wall clock (unix seconds) when appended
    attempts integer not null default 0,
    state text not null default 'pending',   -- pending | rejected
    answer text,                     -- the receiver's code and text of a refusal, or the last error
    unique (channel, msg_id)
)
"""


class OutboxError(Exception):
    """The outbox file could not be written or read (storage fault)."""


@dataclass
class OutboxRow:
    seq: int
    channel: str
    msg_id: str
    kind: str
    payload: str
    created: float
    attempts: int = 0
    state: str = "pending"
    answer: str | None = None


class Outbox:
    """The SQLite outbox at ``path`` (module docstring). ``async with Outbox(path) as box:``."""

    def __init__(self, path: str | Path, *, timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout_s = float(timeout_s)
        self._jobs: queue.SimpleQueue | None = None
        self._db: sqlite3.Connection | None = None

    async def __aenter__(self) -> "Outbox":
        self._jobs = queue.SimpleQueue()
        threading.Thread(target=self._worker, args=(self._jobs,), name="outbox", daemon=True).start()
        try:
            await self._call(self._open)
        except BaseException:
            self._stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._jobs is None:
            return
        try:  # bounded: a hung disk must not hold the exit
            await self._call(self._close)
        except OutboxError:
            pass
        self._stop()

    def _stop(self) -> None:
        jobs, self._jobs = self._jobs, None
        if jobs is not None:
            jobs.put(None)

    @staticmethod
    def _worker(jobs: queue.SimpleQueue) -> None:
        """The outbox thread (a daemon: one stuck on a hung disk never holds the process)."""
        while True:
            job = jobs.get()
            if job is None:
                return
            fn, args, fut = job
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(*args))
                except BaseException as exc:
                    fut.set_exception(exc)

    # -- the thread side -------------------------------------------------------------------------
    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=5.0, isolation_level=None)
        db.execute("pragma journal_mode=wal")
        db.execute("pragma synchronous=full")
        db.execute(_SCHEMA)
        self._db = db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._jobs is None:
            raise OutboxError(f"outbox {self.path} is not open")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((self._guard, (fn, *args), fut))
        try:
            async with asyncio.timeout(self.timeout_s):
                return await asyncio.wrap_future(fut)
        except TimeoutError as exc:
            raise OutboxError(f"outbox {self.path}: no answer from the disk within {self.timeout_s:g} s") from exc

    def _guard(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"outbox {self.path}: {exc}") from exc

    def _exec(self, sql: str, args: tuple = ()) -> list[tuple]:
        if self._db is None:
            raise OutboxError(f"outbox {self.path} is closed")
        return self._db.execute(sql, args).fetchall()

    # -- the API (coroutines) ------------------------------------------------------------------------
    async def append(self, channel: str, msg_id: str, kind: str, payload: str) -> None:
        """Store one message durably (a message id already there is left as it is)."""
        await self._call(self._exec, "insert or ignore into outbox (channel, msg_id, kind, payload, created) "
                                     "values (?, ?, ?, ?, ?)", (channel, msg_id, kind, payload, time.time()))

    async def delivered(self, channel: str, msg_id: str) -> None:
        await self._call(self._exec, "delete from outbox where channel = ? and msg_id = ?", (channel, msg_id))

    async def rejected(self, channel: str, msg_id: str, answer: str) -> None:
        await self._call(self._exec, "update outbox set state = 'rejected', answer = ?, attempts = attempts + 1 "
                                     "where channel = ? and msg_id = ?", (answer[:2000], channel, msg_id))

    async def attempted(self, channel: str, msg_id: str, error: str) -> None:
        await self._call(self._exec, "update outbox set attempts = attempts + 1, answer = ? "
                                     "where channel = ? and msg_id = ?", (error[:2000], channel, msg_id))

    async def pending(self, channel: str) -> list[OutboxRow]:
        """The messages of ``channel`` still to deliver, oldest first."""
        rows = await self._call(self._exec, "select seq, channel, msg_id, kind, payload, created, attempts, state, "
                                            "answer from outbox where channel = ? and state = 'pending' "
                                            "order by seq", (channel,))
        return [OutboxRow(*r) for r in rows]

    async def counts(self, channel: str) -> dict[str, int]:
        """``{"pending": n, "rejected": m}`` for ``channel``."""
        rows = await self._call(self._exec, "select state, count(*) from outbox where channel = ? group by state",
                                (channel,))
        out = {"pending": 0, "rejected": 0}
        out.update({str(s): int(n) for s, n in rows})
        return out
