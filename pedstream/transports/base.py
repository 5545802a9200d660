"""The transports' shared plumbing: :class:`SourceBase` (a source's queue, counters and lifetime),
:class:`TaskScope`, :class:`ErrorThrottle` and the start-up summaries. What a source delivers (the
stream events and the :class:`~pedstream.events.Source` interface) is in :mod:`pedstream.events`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Iterable

from pedstream.events import SourceEvent, SourceKind, StreamFailed

__all__ = ["SourceBase", "close_task_group", "TaskScope", "STOP_TIMEOUT_S", "ErrorThrottle", "source_notices",
           "ingest_summary"]

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0


async def close_task_group(tg: asyncio.TaskGroup | None, tasks: Iterable[asyncio.Task], *,
                           timeout_s: float = STOP_TIMEOUT_S, rounds: int = 3) -> None:
    """Cancel ``tasks`` and leave ``tg`` (``None``: nothing to leave).

    A group that ended only in cancellations is quiet; if a task died with a real error the
    group's :class:`BaseExceptionGroup` is raised. Bounded: a task still running ``timeout_s`` after
    its cancellation is logged by name and cancelled again (a cancellation can be lost, e.g. by
    Python 3.11's ``asyncio.wait_for``); after ``rounds`` such rounds the stuck tasks are abandoned
    (an error line names them) and the group is not awaited, so leaving never hangs.
    """
    tasks = list(tasks)
    for t in tasks:
        t.cancel()
    if tg is None:
        return
    pending = {t for t in tasks if not t.done()}
    for i in range(rounds):
        if not pending:
            break
        _, pending = await asyncio.wait(pending, timeout=timeout_s)
        if pending:
            names = ", ".join(sorted(t.get_name() for t in pending))
            log.error("task(s) %s still running %g s after being cancelled%s", names, timeout_s * (i + 1),
                      "; cancelling again" if i + 1 < rounds else "; abandoned")
            for t in pending:
                t.cancel()
    if pending:
        return
    try:
        await tg.__aexit__(None, None, None)
    except BaseExceptionGroup as eg:
        if not all(isinstance(e, asyncio.CancelledError) for e in eg.exceptions):
            raise


class TaskScope:
    """The lifetime of a component's named tasks, as an ``async with`` block: an
    :class:`asyncio.TaskGroup` (a task that dies with a real error cancels the others and surfaces)
    whose exit is bounded (:func:`close_task_group`: cancelled, re-cancelled, abandoned with an error
    line after ``rounds`` x ``timeout_s``; leaving never hangs). ``tasks`` lists what it started."""

    def __init__(self, *, timeout_s: float = STOP_TIMEOUT_S, rounds: int = 3) -> None:
        self.timeout_s, self.rounds = float(timeout_s), int(rounds)
        self.tasks: list[asyncio.Task] = []
        self._tg: asyncio.TaskGroup | None = None

    async def __aenter__(self) -> "TaskScope":
        tg = asyncio.TaskGroup()
        await tg.__aenter__()  # the one place a task group is entered by hand: its exit is close_task_group's
        self._tg = tg
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        tg, self._tg = self._tg, None
        try:
            await close_task_group(tg, self.tasks, timeout_s=self.timeout_s, rounds=self.rounds)
        except BaseExceptionGroup as eg:  # a task died with a real error: surface it, unless one is on its way
            if exc_type is None:
                raise
            log.error("task(s) failed while leaving on %s: %r", exc_type.__name__, eg)
        finally:
            self.tasks.clear()

    def create_task(self, coro: Any, *, name: str) -> asyncio.Task:
        if self._tg is None:
            coro.close()
            raise RuntimeError("not running: use 'async with' first")
        task = self._tg.create_task(coro, name=name)
        self.tasks.append(task)
        return task


def source_notices(sources: Iterable[Any]) -> list[str]:
    """The status lines of the sources that have one to show now (a source may define
    ``status_line() -> str | None``, e.g. the MQTT source while its broker does not answer)."""
    out: list[str] = []
    for src in sources:
        fn = getattr(src, "status_line", None)
        if callable(fn):
            try:
                line = fn()
            except Exception as exc:  # a status line must never break a dashboard frame
                line = f"{type(src).__name__}: status unavailable ({type(exc).__name__})"
            if line:
                out.append(str(line))
    return out


_REFUSALS = ("unauthorised", "throttled", "throttled_metas", "duplicate_publisher", "refused_metas", "queue_full_drops")


def ingest_summary(sources: Iterable[Any]) -> dict[str, Any]:
    """What the sources refused, by cause (``ingest_refused``: bundle frames ``unauthorised``, messages
    ``throttled`` over a publisher's CPU budget, ``throttled_metas``, ``duplicate_publisher``,
    ``refused_metas``, ``queue_full_drops``) and the publishers charged (``publishers_flagged``); empty
    when nothing was refused. Every refused message is in ``rejected_messages`` too."""
    refused: dict[str, int] = {}
    flagged: set[str] = set()
    for src in sources:
        totals = getattr(src, "totals", None)
        t = totals() if callable(totals) else {}
        for k in _REFUSALS:
            if t.get(k):
                refused[k] = refused.get(k, 0) + int(t[k])
        pubs = getattr(src, "publisher_counters", None)
        if callable(pubs):
            flagged |= set(pubs())
    out: dict[str, Any] = {}
    if refused:
        out["ingest_refused"] = refused
    if flagged:
        out["publishers_flagged"] = sorted(flagged)[:50]
    return out


class ErrorThrottle:
    """At most ``burst`` error events per stream per ``period_s``; the rest are counted, and the next
    event that gets through says how many were suppressed. ``counts`` holds every error per stream."""

    def __init__(self, *, burst: int = 3, period_s: float = 60.0, clock: Any = time.monotonic,
                 max_streams: int = 4096) -> None:
        self.burst, self.period_s, self._clock = max(1, int(burst)), float(period_s), clock
        self.max_streams = int(max_streams)
        self.counts: dict[str, int] = {}
        self._recent: dict[str, list[float]] = {}
        self._suppressed: dict[str, int] = {}

    def admit(self, stream_id: str, message: str) -> str | None:
        """The message to emit now (with the suppressed count), or ``None`` (suppressed)."""
        now = self._clock()
        if stream_id not in self.counts and len(self.counts) >= self.max_streams:
            self.forget(next(iter(self.counts)))  # bounded: the oldest stream id goes
        self.counts[stream_id] = self.counts.get(stream_id, 0) + 1
        recent = [t for t in self._recent.get(stream_id, ()) if now - t < self.period_s]
        if len(recent) >= self.burst:
            self._recent[stream_id] = recent
            self._suppressed[stream_id] = self._suppressed.get(stream_id, 0) + 1
            return None
        recent.append(now)
        self._recent[stream_id] = recent
        n = self._suppressed.pop(stream_id, 0)
        if n:
            message = f"{message} (+{n} similar error(s) suppressed)"
        return message

    def forget(self, stream_id: str) -> None:
        for d in (self.counts, self._recent, self._suppressed):
            d.pop(stream_id, None)


class SourceBase:
    """Shared plumbing: the TaskGroup lifecycle and non-blocking event emission.

    Subclasses implement :meth:`_start` (create tasks with ``self._spawn(coro, name=...)``).
    """

    kind: SourceKind = "replay"

    def __init__(self, *, events: asyncio.Queue) -> None:
        self.events = events
        self.dropped_events = 0
        self.errors = ErrorThrottle()
        self._scope: TaskScope | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._tasks: list[asyncio.Task] = []

    # -- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> "SourceBase":
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self._close)  # after its tasks are gone
            self._scope = await stack.enter_async_context(TaskScope())
            self._tasks = self._scope.tasks
            await self._start()
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        stack, self._stack, self._scope = self._stack, None, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)
        return None

    async def _start(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def _close(self) -> None:
        """Release resources after the tasks are gone (override if needed)."""

    def _spawn(self, coro: Any, *, name: str) -> asyncio.Task:
        if self._scope is None:
            coro.close()
            raise RuntimeError("source is not running: use 'async with source:'")
        return self._scope.create_task(coro, name=name)

    # -- events --------------------------------------------------------------------------------
    def emit_error(self, stream_id: str, message: str) -> None:
        """A :class:`~pedstream.events.StreamFailed` event, throttled per stream (:class:`ErrorThrottle`)."""
        out = self.errors.admit(stream_id, message)
        if out is not None:
            self.emit(StreamFailed(stream_id, out))
        else:
            log.debug("stream %s: error suppressed: %s", stream_id, message)

    def emit(self, event: SourceEvent) -> None:
        """Put an event without ever blocking ingestion."""
        try:
            self.events.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped_events += 1
            if self.dropped_events in (1, 10, 100) or self.dropped_events % 1000 == 0:
                log.warning("event queue full: %d events dropped so far", self.dropped_events)
