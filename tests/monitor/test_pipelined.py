"""The engine's throughput paths keep behaviour: pipelined inference delivers every stream's windows
in its order and drops only what its bounded queue counts; the DSP thread gives the calls of the
DSP on the loop; the one-test merge of take_chunk is the chunk-by-chunk merge; the ring sized
from the window grows for a long chunk and loses no window; the shared QRS design detects as a
fresh detector does; the clipping count is unchanged."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

import numpy as np
import pytest

from pedstream.config import load_config
from pedstream.data.channels import CANONICAL_CHANNELS
from pedstream.monitor.bank import take_chunk
from pedstream.monitor.batcher import InferenceBatcher, WindowItem
from pedstream.monitor.pipeline import StreamPipeline, ring_capacity
from pedstream.events import Chunk, ChunkReceived, StreamInfo, StreamLost
from tests.monitor.test_batcher import cfg, session  # noqa: F401 (fixtures: the configuration, the tiny model)
from tests.support.helpers import make_signal

FS = 977.0
WIN, HOP = 2442, 1221


def _item(sid: str, k: int) -> WindowItem:
    rng = np.random.default_rng(k)
    return WindowItem(stream_id=sid, start=k, x=rng.standard_normal((19, 2442)).astype(np.float32),
                      mask=np.ones(19, np.float32), t_received=time.monotonic())


class _FirstWaits:
    """The real session; its first call returns only after a later call has returned (so the
    batches finish out of order in the worker threads)."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0
        self.later_done = threading.Event()
        self.lock = threading.Lock()

    def run(self, ecg, iegm, mask):
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            assert self.later_done.wait(10), "no second call ran while the first was in flight"
            return self.inner.run(ecg, iegm, mask)
        out = self.inner.run(ecg, iegm, mask)
        self.later_done.set()
        return out


async def test_pipelined_batches_finish_out_of_order_and_are_delivered_in_order(session):
    model = _FirstWaits(session)
    got: list = []
    done = asyncio.Event()
    n_per_stream, streams = 6, ["a", "b", "c"]

    def on_results(results) -> None:
        got.append([(r.item.stream_id, r.item.start) for r in results])
        if sum(len(b) for b in got) == n_per_stream * len(streams):
            done.set()

    b = InferenceBatcher(session=model, on_results=on_results, max_batch=4, max_wait_ms=0, queue_windows=100, inflight=2)
    for k in range(n_per_stream):
        for sid in streams:
            b.submit(_item(sid, k))
    task = asyncio.create_task(b.run())
    try:
        await asyncio.wait_for(done.wait(), 20)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert model.later_done.is_set() and model.calls >= 2  # the second batch returned before the first
    flat = [x for batch in got for x in batch]
    for sid in streams:
        assert [k for s, k in flat if s == sid] == list(range(n_per_stream)), sid  # each stream in its order
    assert sum(b.dropped.values()) == 0 and not b.busy and b.pending == 0


async def test_only_the_bounded_queue_drops_and_it_counts(session):
    got: list = []
    done = asyncio.Event()

    def on_results(results) -> None:
        got.extend((r.item.stream_id, r.item.start) for r in results)
        done.set()

    b = InferenceBatcher(session=session, on_results=on_results, max_batch=8, max_wait_ms=0, queue_windows=2, inflight=2)
    submitted = {"a": 7, "b": 1}
    for sid, n in submitted.items():
        for k in range(n):
            b.submit(_item(sid, k))
    task = asyncio.create_task(b.run())
    try:
        async with asyncio.timeout(20):
            while len(got) < 3:
                done.clear()
                await done.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sorted(got) == [("a", 5), ("a", 6), ("b", 0)]  # the newest of "a", in order
    assert b.dropped == {"a": 5, "b": 0}
    for sid, n in submitted.items():  # every window delivered or counted as dropped
        assert sum(1 for s, _ in got if s == sid) + b.dropped[sid] == n


def _chunk(x, i, n, fs=FS):
    return Chunk(stream_id="s", data=x[i:i + n], timestamps=10.0 + (i + np.arange(n)) / fs, first_index=i)


def _slow_take(q, limit):
    """take_chunk's merge, chunk by chunk (the reference for the one-test merge)."""
    from pedstream.monitor import bank

    saved = bank._take_fast
    bank._take_fast = lambda *a, **k: None
    try:
        return take_chunk(q, limit, fs=FS, gap_tolerance_s=0.1)
    finally:
        bank._take_fast = saved


@pytest.mark.parametrize("bad_at", [None, 1, 3, 5])
@pytest.mark.parametrize("limit", [120, 245, 1000])
def test_take_chunk_one_finiteness_test_is_the_chunk_by_chunk_merge(bad_at, limit):
    x = make_signal(fs=FS, seconds=1, seed=5)
    sizes = [49, 49, 7, 49, 130, 49, 49]
    starts = np.cumsum([0] + sizes[:-1])
    chunks = [_chunk(x, int(i), n) for i, n in zip(starts, sizes)]
    if bad_at is not None:
        data = chunks[bad_at].data.copy()
        data[3, 4] = np.nan
        chunks[bad_at].data = data

    def queue():
        q = deque((ChunkReceived(c), 100.0 + k) for k, c in enumerate(chunks))
        q.append((StreamLost("s", "end"), 200.0))
        return q

    fast_q, slow_q = queue(), queue()
    while fast_q and isinstance(fast_q[0][0], ChunkReceived):
        (ev_f, t_f, w_f), (ev_s, t_s, w_s) = take_chunk(fast_q, limit, fs=FS, gap_tolerance_s=0.1), _slow_take(slow_q, limit)
        assert w_f == w_s and t_f == t_s
        a, b = ev_f.chunk, ev_s.chunk
        assert a.first_index == b.first_index and np.array_equal(a.data, b.data, equal_nan=True)
        assert np.array_equal(a.timestamps, b.timestamps)
        assert [(type(e), getattr(getattr(e, "chunk", None), "first_index", None)) for e, _ in fast_q] == \
               [(type(e), getattr(getattr(e, "chunk", None), "first_index", None)) for e, _ in slow_q]
    assert len(fast_q) == len(slow_q) == 1


def _pipe(cfg):
    names = list(CANONICAL_CHANNELS)
    info = StreamInfo(stream_id="s", source="replay", fs=FS, channel_names=names, units=["mV"] * len(names))
    return StreamPipeline(info=info, cfg=cfg, fs=FS, window=WIN, hop=HOP)


def test_ring_is_sized_from_the_window_and_grows_for_a_long_chunk(cfg):
    no_strips = load_config(overrides=["alarms.strips=false"])
    assert ring_capacity(no_strips, FS, WIN, HOP) == max(int(no_strips.stream.ring_seconds * FS), WIN + 2 * HOP)
    assert ring_capacity(cfg, FS, WIN, HOP) >= int(np.ceil(cfg.alarms.strip_seconds * FS)) + 2 * WIN  # strips on
    x = make_signal(fs=FS, seconds=30, seed=2)
    small, big = _pipe(no_strips), _pipe(no_strips)
    want = []
    for i in range(0, len(x), 49):
        want += [(w.start, w.x.tobytes()) for w in small.feed(_chunk(x, i, min(49, len(x) - i)), 0.0).windows]
    got = [(w.start, w.x.tobytes()) for w in big.feed(_chunk(x, 0, len(x)), 0.0).windows]  # 30 s at once
    assert got == want and len(got) >= 20
    assert small.ring.capacity == ring_capacity(no_strips, FS, WIN, HOP)  # chunks of 49 never grew it
    assert small.heart_rate == big.heart_rate is not None


def test_shared_qrs_design_detects_as_a_fresh_detector():
    from pedstream.dsp.qrs import OnlineQRSDetector
    from pedstream.monitor.pipeline_beats import _fresh_qrs

    x = make_signal(fs=FS, seconds=12, hr=120, seed=4)[:, 1].astype(np.float64)
    used = _fresh_qrs(FS)
    used.process(x)  # a detector of the shared design that has run ...
    a, b = _fresh_qrs(FS), OnlineQRSDetector(fs=FS)  # ... leaves nothing in the next one
    assert a.process(x) == b.process(x) and len(b.beats) > 10 and a.heart_rate() == b.heart_rate()


async def _calls(cfg, session, tmp_path, dsp_thread: bool, monkeypatch=None) -> dict:
    from pedstream.monitor.engine import Engine
    from pedstream.transports.replay import ReplaySource
    from tests.monitor.test_engine_e2e import DEMO

    c = cfg.model_copy(deep=True)
    c.stream.dsp_thread = dsp_thread
    c.stream.queue_windows = 10_000  # as fast as possible: the windows wait for the model, none is dropped
    q: asyncio.Queue = asyncio.Queue()
    eng: Engine | None = None

    async def throttle(sid: str, final: bool) -> None:  # lossless: never more than a few chunks ahead
        while eng is not None and (eng.ingest_depth(sid) > 40 or q.qsize() > 8):
            await asyncio.sleep(0)  # a yield to the engine, not a timed wait

    src = ReplaySource(events=q, records=[DEMO / "x002", DEMO / "x001"], signal_cfg=c.signal, speed=float("inf"),
                       chunk_ms=49 * 1000.0 / FS, throttle=throttle)
    eng = Engine(cfg=c, session=session, sources=[src], alarms_dir=tmp_path / f"alarms{dsp_thread}")
    sub = eng.subscribe()
    async with eng:
        async with asyncio.timeout(120):
            while sum(1 for st in eng.status.values() if st.quality == "loss") < 2:
                await sub.wait_for(lambda e: e.kind == "signal_loss", timeout=120)
            while eng.batcher.pending or eng.batcher.busy:
                await sub.wait_for(lambda e: e.kind == "call", timeout=30)
        assert (eng._dsp_pool is not None) == dsp_thread
        assert (getattr(eng, "dsp_thread_groups", 0) > 0) == dsp_thread  # the groups really went to the thread
    sub.drain()
    calls: dict = {}
    for e in sub.seen:
        if e.kind == "call":
            calls.setdefault(e.stream, []).append((e.extra["window_start"], e.label, e.extra["raw_label"], e.extra["raw_p"], e.hr))
    assert eng.summary()["dropped_windows"] == 0 and eng.summary()["dropped_samples"] == 0
    return calls


async def test_dsp_thread_gives_the_calls_of_the_dsp_on_the_loop(cfg, session, tmp_path, monkeypatch):
    from pedstream.monitor import ingest

    on_loop = await _calls(cfg, session, tmp_path, False)
    monkeypatch.setattr(ingest, "_DSP_THREAD_MIN", 1)  # two streams: every group to the thread
    threaded = await _calls(cfg, session, tmp_path, True)
    assert len(on_loop) == 2 and all(len(v) >= 10 for v in on_loop.values())
    for sid, calls in on_loop.items():
        assert [k[0] for k in threaded[sid]] == sorted(k[0] for k in threaded[sid])  # in order
        assert threaded[sid] == calls, sid


def _clip_state_reference(chunks, present):
    """The stuck-sample count per chunk and the running |max| afterwards, the full computation."""
    absmax, prev, total = np.zeros(19), np.full(19, np.nan), []
    idx = np.flatnonzero(present)
    for raw in chunks:
        x = raw[:, idx]
        absx = np.abs(x)
        m = np.maximum(absmax[idx], absx.max(axis=0))
        absmax[idx] = m
        eq = np.empty(x.shape, dtype=bool)
        np.equal(x[0], prev[idx], out=eq[0])
        np.equal(x[1:], x[:-1], out=eq[1:])
        thr = np.where(m > 0.5, 0.999 * m, np.inf)
        total.append(int(np.count_nonzero(eq & (absx >= thr))))
        prev[idx] = x[-1]
    return total, absmax


def _clip_feed(cfg, x, absent, sizes, rng):
    """A pipeline's clipping count fed ``x`` in chunks of random ``sizes``, the ``absent`` channels zero:
    (pipeline, present mask, the chunks, each chunk's stuck count)."""
    pipe = _pipe(cfg)
    present = np.ones(19, bool)
    if absent:
        present[absent] = False
        pipe._pidx = np.flatnonzero(present)
    chunks, got, i = [], [], 0
    while i < len(x):
        n = int(rng.choice(sizes))
        raw = np.zeros((min(n, len(x) - i), 19), np.float32)
        raw[:, present] = x[i:i + n][:, present]
        chunks.append(raw)
        pipe._update_clipping(raw)
        got.append(pipe._clip_hist[-1][1])
        i += n
    return pipe, present, chunks, got


@pytest.mark.parametrize("all_present", [True, False])
def test_clipping_count_is_unchanged(cfg, all_present):
    rng = np.random.default_rng(9)
    x = make_signal(fs=FS, seconds=6, seed=3)
    x[1000:1400, 1] = x[:, 1].max() * 1.5  # a lead stuck at its rail
    x[2000:2100, 13] = -3.0
    x[3000:3050, 4] = x[2999, 4]  # flat, not at an extreme
    pipe, present, chunks, _ = _clip_feed(cfg, x, [] if all_present else [2, 7, 15], [7, 49, 300], rng)
    want, _ = _clip_state_reference(chunks, present)
    stuck = [s for _, s in pipe._clip_hist]  # the history keeps about a window of chunks
    assert stuck == want[-len(stuck):] and sum(want) > 300


@pytest.mark.parametrize("all_present", [True, False])
def test_clipping_at_the_threshold_edges_is_unchanged(cfg, all_present):
    """Samples exactly at, one float32 step below and above each channel's threshold (0.999 of its
    running |max|) and its |max|, quantised small channels that grow slowly, negative rails,
    chunks of 1 to 500 samples: every chunk's stuck count and the running |max| are the full
    computation's."""
    rng = np.random.default_rng(11)
    n = 12000
    x = np.round(rng.standard_normal((n, 19)) * 200) / 400  # quantised, about 0.5 mV: some channels cross 0.5 late
    x[:, 5] *= 0.3  # a small channel (threshold infinite) that repeats its |max|
    x = x.astype(np.float32)
    for col in (0, 3, 9, 14, 18):
        m = float(np.abs(x[:4000, col]).max())
        thr = 0.999 * m
        t32 = np.float32(thr)
        edges = [t32, np.nextafter(t32, np.float32(-np.inf)), np.nextafter(t32, np.float32(np.inf)), np.float32(m)]
        for k, v in enumerate(edges):
            at = 4000 + 1500 * k + col * 7
            x[at:at + 3, col] = v * (1 if k % 2 else -1)  # stuck for 3 samples at an edge value
    x[9000:9400, 2] = np.abs(x[:, 2]).max() * 1.5  # a new rail
    sizes = [1, 2, 63, 64, 65, 128, 129, 500]
    pipe, present, chunks, got = _clip_feed(cfg, x, [] if all_present else [1, 8, 16], sizes, rng)
    want, absmax = _clip_state_reference(chunks, present)
    assert got == want and sum(want) > 400
    assert np.array_equal(pipe._absmax, absmax)
