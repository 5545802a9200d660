"""Cross-stream inference batching: one task, bounded per-stream queues, ONNX Runtime off the loop.

Streams ``submit`` ready windows (never blocking, never awaiting). The single inference task
(:meth:`InferenceBatcher.run`) waits for the first pending window, then collects more until
``max_batch`` windows are pending or ``max_wait_ms`` have passed since the oldest one arrived, takes
them round-robin across streams (so a busy stream cannot starve a quiet one), stacks them and runs
the model in a worker thread, so the event loop keeps ingesting while ONNX Runtime works.

Pipelined: up to ``inflight`` (``[stream] inference_inflight``) batches run at once in the worker
threads: the next batch is taken (and stacked, normalised in its thread) while the previous one
runs. Results are delivered in the order the batches were taken, so every stream's windows come
back in its own order; a stream's windows are only ever dropped by its bounded queue (counted).

When inference falls behind, a stream's queue fills up (``queue_windows``) and its OLDEST pending
window is dropped: the freshest data is what a monitor must show. Drops are counted per stream.

Beat windows carry RR features (``WindowItem.rr``), passed to the model as ``rr (B, K)``. With
``on_error`` given, a failed batch is retried stream by stream and each stream whose items still
fail is handed to ``on_error(stream_id, exc)`` instead of ending the task (the beat batcher); without
it a failure propagates (the rhythm batcher, as before).

Bounded waits: a model call that has not returned after ``infer_timeout_s`` is abandoned (its worker
thread cannot be stopped; a fresh executor takes the next batches) and reported through
``on_timeout(items, exc)`` (the engine makes it an ``error`` event of each stream in the batch);
``busy_since`` says since when the current call runs (the engine's watchdog reads it).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from pedstream.dsp.windowing import NormWork, normalize_split, normalize_window

__all__ = ["WindowItem", "BatchResult", "InferenceBatcher", "InferenceTimeout", "RunsModel"]

log = logging.getLogger(__name__)


class InferenceTimeout(Exception):
    """A model call did not return within ``infer_timeout_s``."""


class RunsModel(Protocol):
    def run(self, ecg: np.ndarray, iegm: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(slots=True)
class WindowItem:
    """One window waiting for inference.

    ``x``: ``(19, T)`` float32 normalised (canonical order, absent channels 0), or, with ``raw``, the
    filtered window not normalised yet: the batcher normalises it (``normalize_window`` with the mask's
    channels present) in its worker thread, off the event loop (:meth:`normalized`); ``mask``:
    ``(19,)`` float32; ``start``: window start sample index at the model rate; ``t_received``:
    monotonic time the window's last sample arrived; ``t_enqueued``: monotonic time it was submitted.
    """

    stream_id: str
    start: int
    x: np.ndarray  # (19, T) float32
    mask: np.ndarray  # (19,) float32
    t_received: float
    t_enqueued: float = field(default_factory=time.monotonic)
    meta: Any = None
    t_signal: float | None = None  # source-clock time (s) of the window's first sample
    rr: np.ndarray | None = None  # (K,) float32 RR features of a beat window (beat models)
    raw: bool = False  # x is the filtered window, normalised by the batcher (see above)

    def normalized(self) -> np.ndarray:
        """``x`` as the model takes it: (19, T) float32, normalised."""
        return normalize_window(self.x, self.mask > 0) if self.raw else self.x


@dataclass(slots=True)
class BatchResult:
    """A window's model output: ``logits (C,)``, ``embedding (D,)``; ``infer_ms`` of its batch."""

    item: WindowItem
    logits: np.ndarray
    embedding: np.ndarray
    batch_size: int
    infer_ms: float


class InferenceBatcher:
    """Collects windows from all streams and runs them through ``session`` in batches.

    ``on_results(results)`` is called on the event loop with each batch's :class:`BatchResult`
    list (in the batch's order). ``n_ecg`` leads come first in ``x``; the rest are IEGM.
    """

    @classmethod
    def from_config(cls, section: Any, *, session: RunsModel, on_results: Callable[[list[BatchResult]], None],
                    **kw: Any) -> "InferenceBatcher":
        """From the ``[stream]`` section (``max_batch``, ``max_wait_ms``, ``queue_windows``,
        ``inference_threads``, ``infer_timeout_s``, ``inference_inflight``); ``kw`` sets the rest or overrides."""
        args: dict[str, Any] = dict(max_batch=section.max_batch, max_wait_ms=section.max_wait_ms,
                                    queue_windows=section.queue_windows, threads=section.inference_threads,
                                    infer_timeout_s=section.infer_timeout_s,
                                    inflight=getattr(section, "inference_inflight", 1))
        args.update(kw)
        return cls(session=session, on_results=on_results, **args)

    def __init__(
        self,
        *,
        session: RunsModel,
        on_results: Callable[[list[BatchResult]], None],
        max_batch: int = 32,
        max_wait_ms: float = 20.0,
        queue_windows: int = 4,
        n_ecg: int = 12,
        threads: int = 1,
        on_error: Callable[[str, Exception], None] | None = None,
        name: str = "ort",
        infer_timeout_s: float | None = None,
        on_timeout: Callable[[list[WindowItem], Exception], None] | None = None,
        inflight: int = 1,
    ) -> None:
        if max_batch < 1 or queue_windows < 1:
            raise ValueError("max_batch and queue_windows must be >= 1")
        self.session = session
        self.on_results = on_results
        self.on_error = on_error
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue_windows = queue_windows
        self.n_ecg = n_ecg
        self._queues: OrderedDict[str, deque[WindowItem]] = OrderedDict()
        self._rr: deque[str] = deque()  # round-robin order of stream ids
        self._wake = asyncio.Event()
        if inflight < 1:
            raise ValueError("inflight must be >= 1")
        self.inflight = int(inflight)  # batches running at once (pipelined; results in order)
        self._threads, self._name = threads, name
        self._workers = max(int(threads), self.inflight)
        self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=name)
        self._norm_work = threading.local()  # each model thread's NormWork (pedstream.dsp.windowing)
        self._inflight: deque[tuple[list[WindowItem], asyncio.Future, float, float]] = deque()  # (batch, future, t0, monotonic start)
        self._isolating, self._isolate_since = False, None
        self.infer_timeout_s = infer_timeout_s if infer_timeout_s and infer_timeout_s > 0 else None
        self.on_timeout = on_timeout
        self.timeouts = 0  # model calls abandoned after infer_timeout_s
        self.dropped: dict[str, int] = {}
        self.batches = 0
        self.windows = 0
        self.batch_sizes: deque[int] = deque(maxlen=1000)
        self.infer_ms: deque[float] = deque(maxlen=1000)

    # -- producer side (event loop, never blocks) ------------------------------------------------
    def submit(self, item: WindowItem) -> None:
        q = self._queues.get(item.stream_id)
        if q is None:
            q = self._queues[item.stream_id] = deque()
            self._rr.append(item.stream_id)
            self.dropped.setdefault(item.stream_id, 0)
        if len(q) >= self.queue_windows:
            q.popleft()  # drop the OLDEST pending window of this stream
            self.dropped[item.stream_id] += 1
        q.append(item)
        self._wake.set()

    def remove_stream(self, stream_id: str) -> None:
        """Forget a stream's pending windows (its drop count is kept)."""
        self._queues.pop(stream_id, None)
        try:
            self._rr.remove(stream_id)
        except ValueError:
            pass

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def queue_depth(self, stream_id: str) -> int:
        q = self._queues.get(stream_id)
        return 0 if q is None else len(q)

    # -- consumer side ------------------------------------------------------------------------------
    def _oldest_enqueued(self) -> float | None:
        heads = [q[0].t_enqueued for q in self._queues.values() if q]
        return min(heads) if heads else None

    def take_batch(self) -> list[WindowItem]:
        """Take up to ``max_batch`` windows, one per stream per round (round-robin, oldest first)."""
        batch: list[WindowItem] = []
        while len(batch) < self.max_batch and self.pending:
            for _ in range(len(self._rr)):
                sid = self._rr[0]
                self._rr.rotate(-1)
                q = self._queues.get(sid)
                if q:
                    batch.append(q.popleft())
                    if len(batch) >= self.max_batch:
                        break
        return batch

    def _batch_due(self) -> float | None:
        """Seconds until a batch should be taken (0: now): a full batch at once, else when the
        oldest pending window has waited ``max_wait``; None when nothing is pending."""
        if not self._queues or not self.pending:
            return None
        if self.pending >= self.max_batch:
            return 0.0
        oldest = self._oldest_enqueued()
        return 0.0 if oldest is None else max(0.0, oldest + self.max_wait_s - time.monotonic())

    async def run(self) -> None:
        """The inference task: runs until cancelled.

        Pipelined: up to ``inflight`` batches run in the worker threads at once (the next one is
        taken and stacked while the current one runs); their results are delivered in the order the
        batches were taken, so each stream's windows come back in its order."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                while self._inflight and self._inflight[0][1].done():  # finished heads, in order
                    await self._finish(self._inflight.popleft())
                due = self._batch_due() if len(self._inflight) < self.inflight else None
                if due == 0.0:
                    batch = self.take_batch()
                    if batch:
                        self._launch(loop, batch)
                    continue
                waits: set[asyncio.Future] = set()
                timeout = due
                if self._inflight:
                    head = self._inflight[0]
                    waits.add(head[1])
                    if self.infer_timeout_s is not None:
                        left = head[3] + self.infer_timeout_s - time.monotonic()
                        if left <= 0:
                            self._abandon_head()
                            continue
                        timeout = left if timeout is None else min(timeout, left)
                woken: asyncio.Future | None = None
                if len(self._inflight) < self.inflight:  # new windows may make a batch due
                    self._wake.clear()
                    woken = asyncio.ensure_future(self._wake.wait())
                    waits.add(woken)
                try:
                    # asyncio.wait, not wait_for: Python 3.11's wait_for returns the result and swallows
                    # a cancellation that arrives as the wait completes; the task then lived on and the
                    # engine's exit waited for it forever (the bench hang of issue 10)
                    await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if woken is not None:
                        woken.cancel()
        finally:
            for rec in self._inflight:
                rec[1].cancel()
            self._inflight.clear()
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _launch(self, loop: asyncio.AbstractEventLoop, batch: list[WindowItem]) -> None:
        t0, now = time.perf_counter(), time.monotonic()
        fut = loop.run_in_executor(self._executor, self._run_batch, list(batch))
        self._inflight.append((batch, fut, t0, now))

    def _abandon_head(self) -> None:
        """The oldest call has run ``infer_timeout_s``: abandoned (its worker thread cannot be
        stopped; later batches get a fresh executor), reported through ``on_timeout``."""
        batch, fut, _, _ = self._inflight.popleft()
        fut.cancel()
        self._executor.shutdown(wait=False, cancel_futures=False)  # the other calls in flight finish there
        self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=self._name)
        self.timeouts += 1
        self._timed_out(batch, InferenceTimeout(f"the model call ({len(batch)} window(s)) did not return within "
                                                f"{self.infer_timeout_s:g} s ([stream] infer_timeout_s); abandoned"))

    async def _finish(self, rec: tuple) -> None:
        batch, fut, t0, _ = rec
        try:
            logits, emb = fut.result()
        except Exception as exc:
            if self.on_error is None:
                raise
            await self._isolate(asyncio.get_running_loop(), batch, exc)
            return
        self._deliver(batch, logits, emb, (time.perf_counter() - t0) * 1000.0)

    @property
    def busy(self) -> bool:
        """A model call is running (or its results are not delivered yet)."""
        return bool(self._inflight) or self._isolating

    @property
    def busy_since(self) -> float | None:
        """Monotonic start of the oldest model call still running (the watchdog reads it)."""
        if self._inflight:
            return self._inflight[0][3]
        return self._isolate_since

    async def _infer(self, loop: asyncio.AbstractEventLoop, batch: list[WindowItem]) -> tuple[np.ndarray, np.ndarray]:
        """One call awaited alone (a failed batch's streams one by one)."""
        self._isolating, self._isolate_since = True, time.monotonic()
        try:
            fut = loop.run_in_executor(self._executor, self._run_batch, list(batch))
            if self.infer_timeout_s is None:
                return await fut
            try:
                async with asyncio.timeout(self.infer_timeout_s):
                    return await fut
            except TimeoutError as exc:
                # the stuck worker thread cannot be stopped: leave it, later batches get a fresh one
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=self._name)
                self.timeouts += 1
                raise InferenceTimeout(f"the model call ({len(batch)} window(s)) did not return within "
                                       f"{self.infer_timeout_s:g} s ([stream] infer_timeout_s); abandoned") from exc
        finally:
            self._isolating, self._isolate_since = False, None

    def _run_batch(self, batch: list[WindowItem]) -> tuple[np.ndarray, np.ndarray]:
        """In the worker thread: normalise the raw windows (all of the batch in one call: every numpy
        call of this thread waits for the GIL while the event loop is busy, so their number per batch
        matters, not per window), make the two contiguous model inputs, run the model."""
        mask = np.stack([b.mask for b in batch]).astype(np.float32, copy=False)  # (B, 19)
        if all(b.raw for b in batch):
            work = getattr(self._norm_work, "work", None)
            if work is None:
                work = self._norm_work.work = NormWork()  # this thread's, kept: fresh megabytes per batch cost more
            ecg, iegm = normalize_split([b.x for b in batch], mask > 0, self.n_ecg, work)  # (B, 12|7, T), one call
        else:
            xs = [b.normalized() for b in batch]
            ecg = np.stack([x[: self.n_ecg] for x in xs])  # (B, 12, T)
            iegm = np.stack([x[self.n_ecg:] for x in xs])  # (B, 7, T)
        if batch[0].rr is not None:
            rr = np.stack([b.rr for b in batch]).astype(np.float32, copy=False)  # (B, K)
            return self.session.run(ecg, iegm, mask, rr=rr)
        return self.session.run(ecg, iegm, mask)

    def _timed_out(self, batch: list[WindowItem], exc: Exception) -> None:
        if self.on_timeout is not None:
            self.on_timeout(batch, exc)
        else:
            log.error("%s", exc)

    def _deliver(self, batch: list[WindowItem], logits: np.ndarray, emb: np.ndarray, ms: float) -> None:
        self.batches += 1
        self.windows += len(batch)
        self.batch_sizes.append(len(batch))
        self.infer_ms.append(ms)
        self.on_results([
            BatchResult(item=b, logits=np.asarray(logits[i]), embedding=np.asarray(emb[i]),
                        batch_size=len(batch), infer_ms=ms)
            for i, b in enumerate(batch)
        ])

    async def _isolate(self, loop: asyncio.AbstractEventLoop, batch: list[WindowItem], exc: Exception) -> None:
        """A batch failed: run each stream's items alone; hand the streams that still fail to on_error."""
        on_error = self.on_error or (lambda sid, e: (_ for _ in ()).throw(e))
        groups: OrderedDict[str, list[WindowItem]] = OrderedDict()
        for b in batch:
            groups.setdefault(b.stream_id, []).append(b)
        if len(groups) == 1:
            on_error(batch[0].stream_id, exc)
            return
        for sid, items in groups.items():
            t0 = time.perf_counter()
            try:
                logits, emb = await self._infer(loop, items)
            except Exception as exc_one:
                on_error(sid, exc_one)
                continue
            self._deliver(items, logits, emb, (time.perf_counter() - t0) * 1000.0)
