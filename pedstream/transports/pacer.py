"""One task paces every replayed stream (:class:`~pedstream.transports.replay.ReplaySource` at a finite
speed, no throttle).

A task per stream wakes once a chunk: a thousand streams in 50 ms chunks are 20,000 task wake-ups
a second, most of the replay's cost. Here one task keeps every stream's next due time in a heap,
sleeps until the earliest, and sends every chunk that is due, each stream on its own schedule::

    chunk k of a stream is due at  t_start + first_index / fs / speed   (by sample index)

exactly as :func:`~pedstream.transports.replay.paced_chunks` (same chunks, ``seq`` and ``first_index``;
the record read ``_BLOCK_S`` at a time in a worker thread, the next block read ahead). It wakes at
most once every ``wake_s`` (``[replay] wake_ms``) and then sends every chunk due by then: a chunk
may leave up to ``wake_s`` late, never early. Streams that started at different instants would
otherwise wake the task once per chunk (20,000 wake-ups a second for 1,000 streams in 50 ms
chunks), each a timer, a pass of the event loop and a pass of the engine's ingest; a network
delivers in bursts too.
``t_starts`` give each stream its own start (a ward whose monitors did not all connect in the same
millisecond).
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["pace_all"]

_BLOCK_S = 10.0


def _columns(data: np.ndarray, columns: Any) -> np.ndarray:
    """``data[:, columns]`` as contiguous float32: a view when that is all of ``data``'s columns in
    order and ``data`` is already so (a record held in memory: no copy per stream), else a copy."""
    cols = np.asarray(columns)
    if cols.ndim == 1 and data.ndim == 2 and cols.size == data.shape[1] and np.array_equal(cols, np.arange(cols.size)):
        out = np.ascontiguousarray(data, dtype=np.float32)
        if np.shares_memory(out, data):  # the record's own memory, shared by every stream: read-only
            out = out.view()
            out.flags.writeable = False
        return out
    return np.ascontiguousarray(data[:, columns], dtype=np.float32)


class _Cursor:
    """One stream's position in its record and its next due time."""

    def __init__(self, plan: Any, *, chunk_ms: float, t_start: float) -> None:
        self.plan = plan
        self.fs = plan.fs
        self.chunk = max(1, int(round(chunk_ms * self.fs / 1000.0)))
        self.block = self.chunk * max(1, int(_BLOCK_S * self.fs) // self.chunk)
        self.t_start = t_start
        self.seq = 0
        self.index = 0  # stream sample index of the next chunk
        self.pos = plan.start  # record sample where the next block starts
        self.data: np.ndarray | None = None  # the current block (n, k) float32 mV
        self.off = 0  # next chunk's row in the block
        self.ahead: asyncio.Task | None = None  # the next block, being read
        self._ahead_pos = plan.start  # the record sample where that block starts

    def _read(self, b0: int) -> np.ndarray:
        b1 = min(self.plan.stop, b0 + self.block)
        sig = self.plan.record.read(b0, b1)
        return _columns(sig.data, self.plan.columns)

    def read_ahead(self, loop: bool) -> None:
        """Start reading the block after the current one (None at the end without ``loop``)."""
        nxt = self.pos
        if nxt >= self.plan.stop:
            if not loop:
                self.ahead = None
                return
            nxt = self.plan.start
        self.ahead = asyncio.ensure_future(asyncio.to_thread(self._read, nxt))
        self.ahead.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved if abandoned
        self._ahead_pos = nxt

    async def next_block(self, loop: bool) -> bool:
        """Move to the block read ahead; False at the end of the record (no ``loop``). A failed read
        raises here (for this stream alone)."""
        if self.ahead is None:
            return False
        self.data, self.ahead = await self.ahead, None
        self.pos = self._ahead_pos + self.block
        self.off = 0
        self.read_ahead(loop)
        return True


async def pace_all(plans: Sequence[Any], *, chunk_ms: float, speed: float, loop: bool,
                   send: Callable[[Any, int, int, np.ndarray], None], done: Callable[[Any, str | None], None],
                   t_starts: Sequence[float], wake_s: float = 0.0) -> None:
    """Send every plan's chunks on schedule: ``send(plan, seq, first_index, data)``, then
    ``done(plan, None)`` at the end of its record (never with ``loop``), or ``done(plan, message)``
    when reading its record failed (that stream ends; the others go on). ``speed`` is finite; plan
    ``k`` starts at monotonic time ``t_starts[k]``; the task wakes at most once every ``wake_s``."""
    if not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"pace_all: speed must be finite and > 0 (got {speed})")
    cursors = []
    for k, plan in enumerate(plans):
        c = _Cursor(plan, chunk_ms=chunk_ms, t_start=float(t_starts[k]))
        c.read_ahead(True)  # the first block always exists
        cursors.append(c)
    async def advance(c: _Cursor) -> bool:
        try:
            if await c.next_block(loop):
                return True
            done(c.plan, None)
        except Exception as exc:  # noqa: BLE001 - this stream's record, this stream's end
            done(c.plan, f"reading the record failed ({type(exc).__name__}: {str(exc)[:160]})")
            c.data = None
        return False

    for c in cursors:
        await advance(c)
    heap = [(c.t_start, k) for k, c in enumerate(cursors) if c.data is not None]
    heapq.heapify(heap)
    inv = 1.0 / speed
    woke = -math.inf
    try:
        while heap:
            due, k = heap[0]
            now = time.monotonic()
            if due > now:  # nothing due: sleep until the next chunk is, but at least until wake_s after the last wake
                await asyncio.sleep(max(due, woke + wake_s) - now)
                woke = time.monotonic()
                continue
            heapq.heappop(heap)
            c = cursors[k]
            part = c.data[c.off:c.off + c.chunk]
            send(c.plan, c.seq, c.index, part)
            c.seq += 1
            c.index += part.shape[0]
            c.off += part.shape[0]
            if c.off >= c.data.shape[0] and not await advance(c):
                continue
            heapq.heappush(heap, (c.t_start + c.index / c.fs * inv, k))  # by sample index, as paced_chunks
    finally:
        for c in cursors:
            if c.ahead is not None:
                c.ahead.cancel()
