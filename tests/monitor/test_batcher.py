"""Cross-stream batcher with a real ONNX Runtime session (a tiny model built by the test)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from pedstream.config import load_config
from pedstream.monitor.batcher import BatchResult, InferenceBatcher, WindowItem
from tests.support.tiny_model import build_tiny_model, open_session


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture(scope="module")
def session(tmp_path_factory, cfg):
    return open_session(build_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx", cfg), cfg, max_batch=8)


def item(sid: str, k: int, t: int = 2442) -> WindowItem:
    rng = np.random.default_rng(k + 1000 * hash(sid) % 7)
    return WindowItem(stream_id=sid, start=k, x=rng.standard_normal((19, t)).astype(np.float32),
                      mask=np.ones(19, np.float32), t_received=time.monotonic())


class Collector:
    def __init__(self) -> None:
        self.batches: list[list[BatchResult]] = []
        self.changed = asyncio.Event()

    def __call__(self, results: list[BatchResult]) -> None:
        self.batches.append(results)
        self.changed.set()

    async def wait_batches(self, n: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.batches) < n:
                self.changed.clear()
                await self.changed.wait()


async def run_with(batcher: InferenceBatcher, coro):
    task = asyncio.create_task(batcher.run(), name="inference")
    try:
        return await coro
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_flush_at_max_batch_without_waiting(session):
    col = Collector()
    b = InferenceBatcher(session=session, on_results=col, max_batch=4, max_wait_ms=60_000, queue_windows=10)
    items = [item("a", k) for k in range(4)]
    for it in items:
        b.submit(it)
    t0 = time.monotonic()
    await run_with(b, col.wait_batches(1, timeout=20))
    assert time.monotonic() - t0 < 20  # far below the 60 s max_wait: flushed because the batch was full
    assert [r.batch_size for r in col.batches[0]] == [4] * 4
    # results are the model's outputs for those very windows
    x = np.stack([it.x for it in items])
    logits, emb = session.run(x[:, :12], x[:, 12:], np.ones((4, 19), np.float32))
    got = np.stack([r.logits for r in col.batches[0]])
    assert np.allclose(got, logits, atol=1e-5) and [r.item.start for r in col.batches[0]] == [0, 1, 2, 3]


async def test_flush_after_max_wait(session):
    col = Collector()
    b = InferenceBatcher(session=session, on_results=col, max_batch=32, max_wait_ms=80, queue_windows=10)
    t0 = time.monotonic()
    b.submit(item("a", 0))
    b.submit(item("b", 0))
    await run_with(b, col.wait_batches(1))
    assert time.monotonic() - t0 >= 0.08
    assert len(col.batches[0]) == 2 and b.batches == 1


async def test_drop_oldest_when_behind_and_count(session):
    col = Collector()
    b = InferenceBatcher(session=session, on_results=col, max_batch=8, max_wait_ms=1, queue_windows=3)
    for k in range(5):
        b.submit(item("a", k))  # inference is not running: the queue overflows
    b.submit(item("b", 0))
    assert b.dropped == {"a": 2, "b": 0} and b.queue_depth("a") == 3
    await run_with(b, col.wait_batches(1))
    starts = sorted(r.item.start for r in col.batches[0] if r.item.stream_id == "a")
    assert starts == [2, 3, 4]  # the freshest windows survive


async def test_round_robin_no_starvation(session):
    col = Collector()
    b = InferenceBatcher(session=session, on_results=col, max_batch=4, max_wait_ms=1, queue_windows=100)
    for k in range(20):
        b.submit(item("busy", k))
    b.submit(item("quiet1", 0))
    b.submit(item("quiet2", 0))
    first = b.take_batch()
    assert {w.stream_id for w in first} == {"busy", "quiet1", "quiet2"} and len(first) == 4
    assert [w.start for w in first if w.stream_id == "busy"] == [0, 1]  # oldest first within a stream
    await run_with(b, col.wait_batches(5))
    assert sum(len(x) for x in col.batches) == 18 and b.pending == 0


async def test_loop_keeps_running_during_inference(session):
    """ORT runs in a worker thread: the loop keeps ticking while a batch is inferred."""
    col = Collector()
    b = InferenceBatcher(session=session, on_results=col, max_batch=8, max_wait_ms=0, queue_windows=100)
    ticks = 0
    seen_busy = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1
            if b.busy:
                seen_busy.set()

    tick = asyncio.create_task(ticker())
    for k in range(8):
        b.submit(item("a", k, t=2442))
    try:
        await run_with(b, col.wait_batches(1))
        assert seen_busy.is_set()  # the loop ran while inference was in flight
    finally:
        tick.cancel()


async def test_cancel_arriving_as_a_window_wakes_the_batcher_is_not_lost(session):
    """Issue 10 (the 64-stream bench hang): with ``asyncio.wait_for`` (Python 3.11) a cancellation that
    arrived in the same loop turn as a new window was swallowed; the task lived on, waited forever for
    windows nobody sent any more, and the engine's exit (cancel, then await) hung with no timer."""
    col = Collector()
    b = InferenceBatcher(session=session, on_results=col, max_batch=8, max_wait_ms=5000)
    task = asyncio.create_task(b.run())
    b.submit(item("a", 0))
    for _ in range(5):  # the task is now in the max_wait wait for more windows
        await asyncio.sleep(0)
    b.submit(item("b", 0))  # wakes it ...
    task.cancel()  # ... and the cancellation arrives in the same turn
    done, _ = await asyncio.wait({task}, timeout=2.0)
    assert task in done and task.cancelled()


class _Stuck:
    """A model whose call blocks until released (a hung inference thread)."""

    def __init__(self, inner) -> None:
        import threading

        self.inner, self.release = inner, threading.Event()
        self.calls = 0

    def run(self, ecg, iegm, mask):
        self.calls += 1
        if self.calls == 1:
            self.release.wait(10)
        return self.inner.run(ecg, iegm, mask)


async def test_a_model_call_that_does_not_return_is_abandoned_and_reported(session):
    col, stuck, timed_out = Collector(), _Stuck(session), []
    got = asyncio.Event()
    b = InferenceBatcher(session=stuck, on_results=col, max_batch=1, max_wait_ms=0, infer_timeout_s=0.3,
                         on_timeout=lambda items, exc: (timed_out.append((items, exc)), got.set()))
    try:
        async def body():
            b.submit(item("a", 0))
            await asyncio.wait_for(got.wait(), 3)
            assert [i.stream_id for i in timed_out[0][0]] == ["a"] and "did not return" in str(timed_out[0][1])
            b.submit(item("a", 1))  # the next call runs on a fresh worker and is delivered
            await asyncio.wait_for(col.changed.wait(), 5)
        await run_with(b, body())
    finally:
        stuck.release.set()
    assert b.timeouts == 1 and col.batches[0][0].item.start == 1
