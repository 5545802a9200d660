"""The engine's fair ingest (a mixin of :class:`~pedstream.monitor.engine.Engine`).

Every source event goes at once into a bounded queue per stream (``[stream] ingest_queue_s`` of
signal; beyond it the stream's OLDEST chunks are dropped and counted) and the streams are served
round-robin, at most one hop of one stream's samples per turn; a round's chunks then go through
the DSP of all their streams together (:func:`pedstream.monitor.bank.feed_round`), or to the DSP
worker processes (``[stream] workers``). Split out of ``engine.py``; it uses the engine's state
(``streams``, ``_rr``, ``_deferred``, ``cfg``, ``workers``, ``handle``, ``_apply``, ``_error``).

Deferred DSP (``[stream] dsp_defer_s``): most of the DSP's cost is per call, not per sample, and a
call only waits on the chunk that completes a window. So a stream's chunks may wait in its queue
until they complete its next window (the pipeline says how many samples that takes:
:meth:`StreamPipeline.samples_to_window`), hold a hop of signal, carry an event other than data,
or the oldest has waited ``dsp_defer_s``; then they go through the DSP at once, merged. A window
is cut as soon as its last chunk arrives, exactly as without deferral, and each window's latency
starts at the arrival of its last sample (:class:`~pedstream.monitor.feedtypes.Arrivals`); what
waits is the heart rate, quality and signal-loss of the dashboard (at most ``dsp_defer_s``). The
waiting streams sit in a heap by due time, so a round costs nothing for them. A stream whose DSP runs in a
worker process is deferred on the worker's last figure less the samples sent to it since.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from typing import Any

from pedstream.errors import PedstreamError
from pedstream.monitor.bank import feed_round, take_chunk
from pedstream.monitor.release import sweep_released
from pedstream.events import ChunkReceived, StreamAdded

__all__ = ["FairIngest"]

log = logging.getLogger("pedstream.monitor.engine")
_ROUND_STREAMS = 64  # streams whose chunks go through the DSP together (one filter call per band)
_DSP_THREAD_MIN = 8  # streams in a group for its DSP to go to the DSP thread ([stream] dsp_thread)
_ROUND_BUDGET_S = 0.02  # the ingest yields the event loop after this long, with streams still waiting


def _n_samples(ev: Any) -> int:
    try:
        return int(ev.chunk.data.shape[0])
    except Exception:  # a malformed chunk: the pipeline reports it
        return 0


def _timed_feed_round(items: list) -> tuple[list, float]:
    """:func:`feed_round` in the DSP thread, with the seconds it took."""
    t0 = time.perf_counter()
    out = feed_round(items)
    return out, time.perf_counter() - t0


class FairIngest:
    """Per-stream ingest queues served round-robin (see the module docstring)."""

    async def _ingest(self, queue: asyncio.Queue) -> None:
        """Take the source events into the per-stream queues and serve them round-robin (see the
        module docstring). Waiting for a source with nothing queued is not bounded (a quiet ward is
        no fault); the watchdog watches the streams instead. With only deferred streams left, the
        wait ends when the first of them is due."""
        getter: asyncio.Future | None = None
        try:
            while True:
                if not self._rr and (getter is None or not getter.done()):
                    if getter is None:
                        getter = asyncio.ensure_future(queue.get())
                    wait = max(0.0, self._deferred[0][0] - time.monotonic()) if self._deferred else None
                    freeing = sweep_released(self, time.monotonic())  # lost streams' pipelines (pedstream.monitor.release)
                    wait = freeing if wait is None else (wait if freeing is None else min(wait, freeing))
                    await asyncio.wait({getter}, timeout=wait)
                if getter is not None and getter.done():  # first: it is older than what the queue holds now
                    ev, getter = getter.result(), None
                    self._enqueue(ev, time.monotonic())
                now = time.monotonic()
                while True:  # whatever the sources delivered meanwhile (bounded per stream by _enqueue)
                    try:
                        ev = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    self._enqueue(ev, now)
                self._release_due(now)
                sweep_released(self, now)
                await self._serve_round_async()
                await asyncio.sleep(0)  # let the sources and the inference task run between rounds
        finally:
            if getter is not None:
                getter.cancel()
            self._dsp_settle()

    def _enqueue(self, ev: Any, now: float) -> None:
        s = self._state(str(getattr(ev, "stream_id", "?")))
        if isinstance(ev, StreamAdded):
            s.fs = float(ev.info.fs)
        q = s.pending
        if not q:  # its queue was empty: it waits from now
            s.last_served = now
        q.append((ev, now))
        if isinstance(ev, ChunkReceived):
            s.last_data = now
            n = s.pending_samples + _n_samples(ev)
            cap = max(1, int(self.cfg.stream.ingest_queue_s * (s.fs or 1000.0)))
            while n > cap:  # drop the stream's OLDEST queued chunk (never a StreamAdded/Lost/Error)
                i = next((k for k, (e, _) in enumerate(q) if isinstance(e, ChunkReceived)), None)
                if i is None or i == len(q) - 1:
                    break
                old = q[i][0]
                del q[i]
                k = _n_samples(old)
                n -= k
                s.ingest_dropped += k
            s.pending_samples = n
        if not s.in_turn:
            self._schedule(s, now)

    def _schedule(self, s: Any, now: float) -> None:
        """A stream with queued events and not in the round-robin: into it now, or into the heap of
        deferred streams (see the module docstring)."""
        q = s.pending
        defer = self.cfg.stream.dsp_defer_s
        due = q[0][1] + defer
        if (defer <= 0 or due <= now or not isinstance(q[0][0], ChunkReceived) or not isinstance(q[-1][0], ChunkReceived)
                or s.need <= 0 or s.pending_samples >= s.need or s.pending_samples >= self._slice(s.stream_id)):
            s.deferred = False
            s.in_turn = True
            self._rr.append(s.stream_id)
        elif not s.deferred or s.due != due:
            s.deferred, s.due = True, due
            heapq.heappush(self._deferred, (due, s.stream_id))

    def _release_due(self, now: float) -> None:
        """Deferred streams whose time has come into the round-robin."""
        heap = self._deferred
        while heap and heap[0][0] <= now:
            due, sid = heapq.heappop(heap)
            s = self.streams.get(sid)
            if s is not None and s.deferred and s.due == due and not s.in_turn and s.pending:
                s.deferred = False
                s.in_turn = True
                self._rr.append(sid)

    def _slice(self, sid: str) -> int:
        """Samples of one stream handled per turn: one hop at the stream's rate."""
        s = self.streams.get(sid)
        fs = s.fs if s is not None and s.fs else self.fs
        return max(1, int(round(self.hop / self.fs * fs)))

    def _serve_round(self) -> None:
        """Turns of the streams in the round-robin, ``_ROUND_STREAMS`` at a time, until all had one or
        ``_ROUND_BUDGET_S`` has passed (the rest go first next time: the event loop, and with it the
        inference task, must come round often, however many streams there are)."""
        deadline = time.perf_counter() + _ROUND_BUDGET_S
        for _ in range(-(-len(self._rr) // _ROUND_STREAMS)):
            self._serve_some(_ROUND_STREAMS)
            if time.perf_counter() > deadline:
                break

    async def _serve_round_async(self) -> None:
        """:meth:`_serve_round` with the DSP in the engine's DSP thread (``[stream] dsp_thread``): while
        a group's chunks go through the DSP there (numpy and scipy release the interpreter lock), the
        loop runs the sources, the inference batches and the results."""
        if getattr(self, "_dsp_pool", None) is None:
            self._serve_round()
            return
        deadline = time.perf_counter() + _ROUND_BUDGET_S
        for _ in range(-(-len(self._rr) // _ROUND_STREAMS)):
            chunks, again = self._take_turns(_ROUND_STREAMS)
            if len(chunks) >= _DSP_THREAD_MIN:
                await self._feed_round_thread(chunks)
            elif chunks:  # a small group: on the loop (the thread's hand-over costs more than it frees)
                self._feed_round(chunks)
            self._reschedule(again)
            if time.perf_counter() > deadline:
                break

    async def _feed_round_thread(self, chunks: list[tuple[ChunkReceived, Any]]) -> None:
        """One group's DSP in the DSP thread, one group at a time (the pipelines it feeds are not fed
        again before its results are applied here, in order)."""
        items = self._round_items(chunks)
        if not items:
            return
        async with self._dsp_lock:
            fut = self._dsp_pool.submit(_timed_feed_round, items)
            self._dsp_future = fut
            try:
                results, took = await asyncio.wrap_future(fut)
            finally:
                self._dsp_future = None
            self.dsp_s = getattr(self, "dsp_s", 0.0) + took
            self.dsp_thread_groups = getattr(self, "dsp_thread_groups", 0) + 1
            for pipe, res in results:
                self._apply_result(pipe, res)

    def _dsp_settle(self, timeout_s: float = 10.0) -> None:
        """Wait (bounded) for a DSP group still running in the DSP thread (a cancelled ingest task):
        nothing else may touch its pipelines meanwhile (the strips flushed on exit)."""
        fut = getattr(self, "_dsp_future", None)
        if fut is not None:
            try:
                fut.result(timeout=timeout_s)
            except Exception:  # noqa: BLE001 - its streams' results are lost with the run that ends
                log.warning("a DSP group did not finish within %g s of the ingest's end", timeout_s)

    def _serve_some(self, n: int) -> None:
        """One turn for each of the next ``n`` streams of the round-robin: one event, or up to one hop
        of its queued samples (contiguous chunks merged, a longer chunk cut:
        :func:`pedstream.monitor.bank.take_chunk`). Their chunks then go through the DSP of all their
        streams together (:func:`feed_round`); a stream with events left is scheduled again (at once,
        or deferred)."""
        chunks, again = self._take_turns(n)
        if chunks:
            self._feed_round(chunks)
        self._reschedule(again)

    def _take_turns(self, n: int) -> tuple[list[tuple[ChunkReceived, Any]], list[Any]]:
        """The turns of :meth:`_serve_some`: the chunks taken, the streams with events left."""
        chunks: list[tuple[ChunkReceived, Any]] = []
        again: list[Any] = []
        for _ in range(min(n, len(self._rr))):
            s = self.streams[self._rr.popleft()]
            s.in_turn = False
            q = s.pending
            if not q:
                continue
            ev, t_arr = q[0]
            if isinstance(ev, ChunkReceived) and self.workers is not None and self.workers.saturated(s.stream_id):
                s.in_turn = True
                self._rr.append(s.stream_id)  # its DSP worker is behind: the chunks wait in this stream's queue
                continue
            if isinstance(ev, ChunkReceived):
                ev, t_arr, _ = take_chunk(q, self._slice(s.stream_id), fs=s.fs,
                                          gap_tolerance_s=self.cfg.stream.gap_tolerance_s)
                taken = _n_samples(ev)
                s.pending_samples = max(0, s.pending_samples - taken)
                if s.need > 0:  # until the pipeline says again (at once in-process; a DSP worker answers later)
                    s.need = max(1, s.need - taken)
                chunks.append((ev, t_arr))
            else:
                q.popleft()
                self._handle_safe(ev, t_arr)
            s.last_served = time.monotonic()
            if q:
                again.append(s)
        return chunks, again

    def _reschedule(self, again: list[Any]) -> None:
        now = time.monotonic()
        for s in again:
            if s.pending and not s.in_turn:
                self._schedule(s, now)

    def _round_items(self, chunks: list[tuple[ChunkReceived, Any]]) -> list[tuple[Any, Any, Any]]:
        items = []
        for ev, t_arr in chunks:
            pipe = self._pipe(ev.chunk.stream_id)
            if pipe is None:
                self.ignored_chunks += 1
            else:
                items.append((pipe, ev.chunk, t_arr))
        return items

    def _feed_round(self, chunks: list[tuple[ChunkReceived, Any]]) -> None:
        items = self._round_items(chunks)
        if self.workers is not None:
            self.workers.submit(items)  # the answers come back through _apply_result
            return
        t0 = time.perf_counter()
        results = feed_round(items)
        self.dsp_s = getattr(self, "dsp_s", 0.0) + (time.perf_counter() - t0)  # the DSP's time on the loop (bench engine)
        for pipe, res in results:
            self._apply_result(pipe, res)

    def _apply_result(self, pipe: Any, res: Any) -> None:
        """A chunk's result (or the exception it raised) for its stream."""
        s = self.streams.get(pipe.stream_id)
        if s is not None and self.workers is not None:
            s.last_served = time.monotonic()  # its DSP worker answered: progress (the watchdog's measure)
        if s is not None:  # how many samples its next window still needs (0: unknown, never deferred)
            s.need = pipe.samples_to_window()
        try:
            if isinstance(res, Exception):
                raise res
            self._apply(pipe, res)
        except PedstreamError as exc:
            self._error(pipe.stream_id, str(exc))
        except Exception as exc:  # one stream's failure is its error event, never the end of the run
            log.debug("stream %s: chunk failed", pipe.stream_id, exc_info=exc)
            self._error(pipe.stream_id, f"processing failed ({type(exc).__name__}: {str(exc)[:120]})")

    def _handle_safe(self, ev: Any, t_received: float) -> None:
        try:
            self.handle(ev, t_received)
        except Exception as exc:  # one stream's failure is its error event, never the end of the run
            sid = str(getattr(ev, "stream_id", "?"))
            log.debug("stream %s: event %s failed", sid, type(ev).__name__, exc_info=exc)
            self._error(sid, f"processing failed ({type(exc).__name__}: {str(exc)[:120]})")

    def ingest_depth(self, stream_id: str) -> int:
        """Events of a stream waiting in the engine's ingest queue."""
        s = self.streams.get(stream_id)
        return 0 if s is None else len(s.pending)
