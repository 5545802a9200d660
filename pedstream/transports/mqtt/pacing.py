"""One pacing task for many replayed streams (the MQTT publisher's schedule).

:func:`paced_many` yields, at each tick, every stream's chunks that are due, on the same schedule as
:func:`pedstream.transports.replay.paced_chunks` (per stream: ``chunk = round(chunk_ms * fs / 1000)``
samples, chunk ``k`` due at ``start + first_sample / fs / speed``, ``seq`` +1 per chunk, the sample
index going on across loops), but from one task: N streams cost one timer wake-up per tick instead
of N tasks each with its own. Records are read ``_BLOCK_S`` seconds at a time in a worker thread, the
next block prefetched while the current one is sent; each block is converted once (``convert``, e.g.
to int16 counts for the whole block in one numpy call), chunks are views of it.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Sequence

import numpy as np

__all__ = ["Due", "paced_many", "BLOCK_S"]

BLOCK_S = 10.0


@dataclass(slots=True)
class Due:
    """One chunk that is due: stream ``index`` (into the plans), its ``seq``, ``first`` sample index,
    and ``data`` (n, k): a view of the converted block."""

    index: int
    seq: int
    first: int
    data: np.ndarray


@dataclass(slots=True)
class _State:
    plan: Any
    chunk: int
    block: int
    seq: int = 0
    index: int = 0  # samples sent so far (across loops)
    b0: int = 0  # record sample of the current block's start
    data: np.ndarray | None = None  # converted current block
    pos: int = 0  # position within data
    pending: asyncio.Future | None = None  # the next block being read
    next_b0: int = 0


def _read(plan: Any, b0: int, b1: int, convert: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    sig = plan.record.read(b0, b1)
    return convert(np.ascontiguousarray(sig.data[:, plan.columns], dtype=np.float32))


class _Blocks:
    """Block reads, shared by streams that replay the same record's same block (one read and one
    conversion instead of N at the same moment: N streams of one record all reach a block boundary
    together). The last ``keep`` blocks are kept; chunks are read-only views, so sharing is safe."""

    def __init__(self, convert: Callable[[np.ndarray], np.ndarray], keep: int = 8) -> None:
        self.convert, self.keep = convert, keep
        self._cache: dict[tuple, asyncio.Future] = {}

    def get(self, plan: Any, b0: int, b1: int) -> asyncio.Future:
        key = (id(plan.record), b0, b1, np.asarray(plan.columns).tobytes())
        fut = self._cache.pop(key, None)
        if fut is None:
            fut = asyncio.ensure_future(asyncio.to_thread(self._read_ro, plan, b0, b1))
        self._cache[key] = fut  # most recent last
        while len(self._cache) > self.keep:
            self._cache.pop(next(iter(self._cache)))
        return fut

    def _read_ro(self, plan: Any, b0: int, b1: int) -> np.ndarray:
        out = _read(plan, b0, b1, self.convert)
        out.flags.writeable = False
        return out


def _next_b0(st: _State, loop: bool) -> int | None:
    nb = st.b0 + st.block
    if nb < st.plan.stop:
        return nb
    return st.plan.start if loop else None


async def paced_many(plans: Sequence[Any], *, chunk_ms: float, speed: float, loop: bool,
                     convert: Callable[[np.ndarray], np.ndarray] = lambda a: a,
                     clock: Callable[[], float] = time.monotonic,
                     started: Callable[[], None] | None = None,
                     offsets: Sequence[float] | None = None) -> AsyncIterator[list[Due]]:
    """Yield the list of chunks due now (at least one), until every stream ended (never with ``loop``).

    ``convert``: applied once per block read ((n, k) float32 mV -> what the chunks are views of).
    ``started``: called when the schedule's clock starts (after the first blocks are read), i.e. the
    moment sample 0 of every stream is due. ``offsets``: each stream's start after that clock start,
    in seconds (a ward whose monitors did not all start together; real time only)."""
    realtime = math.isfinite(speed)
    states: list[_State] = []
    for p in plans:
        chunk = max(1, int(round(chunk_ms * p.fs / 1000.0)))
        block = chunk * max(1, int(BLOCK_S * p.fs) // chunk)
        states.append(_State(plan=p, chunk=chunk, block=block, b0=p.start))
    try:
        blocks = _Blocks(convert, keep=max(8, 2 * len({id(p.record) for p in plans})))
        first = await asyncio.gather(*(blocks.get(s.plan, s.b0, min(s.plan.stop, s.b0 + s.block)) for s in states))
        for s, d in zip(states, first):
            s.data = d
            s.pending = _prefetch(s, loop, blocks)
        t_start = clock()
        if started is not None:
            started()
        # heap of (due time, stream): one timer for all streams
        offs = [0.0] * len(states) if offsets is None else [max(0.0, float(o)) for o in offsets]
        if len(offs) != len(states):
            raise ValueError(f"offsets: {len(offs)} given for {len(states)} streams")
        heap = [(t_start + offs[i] if realtime else 0.0, i) for i in range(len(states))]
        heapq.heapify(heap)
        while heap:
            due_t, _ = heap[0]
            if realtime:
                delay = due_t - clock()
                await asyncio.sleep(delay if delay > 0 else 0)
                now = clock()
            else:  # speed inf: a round of one chunk per stream, then yield to the loop
                await asyncio.sleep(0)
                now = due_t
            out: list[Due] = []
            while heap and heap[0][0] <= now:
                _, i = heapq.heappop(heap)
                st = states[i]
                d = await _take(st, loop, blocks)
                if d is None:
                    continue
                out.append(Due(i, st.seq, st.index, d))
                st.seq += 1
                st.index += d.shape[0]
                nxt = t_start + offs[i] + st.index / st.plan.fs / speed if realtime else float(st.seq)
                heapq.heappush(heap, (nxt, i))
            if out:
                yield out
    finally:
        for s in states:
            if s.pending is not None:
                s.pending.cancel()


def _prefetch(st: _State, loop: bool, blocks: _Blocks) -> asyncio.Future | None:
    nb = _next_b0(st, loop)
    if nb is None:
        return None
    st.next_b0 = nb
    return blocks.get(st.plan, nb, min(st.plan.stop, nb + st.block))


async def _take(st: _State, loop: bool, blocks: _Blocks) -> np.ndarray | None:
    """The stream's next chunk (a view), moving to the next block when this one is used up."""
    assert st.data is not None
    if st.pos >= st.data.shape[0]:
        if st.pending is None:
            return None
        st.data, st.b0, st.pos = await st.pending, st.next_b0, 0
        st.pending = _prefetch(st, loop, blocks)
    d = st.data[st.pos:st.pos + st.chunk]
    st.pos += d.shape[0]
    return d
