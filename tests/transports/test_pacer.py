"""pedstream.transports.pacer: one task paces every replayed stream with the chunks, sequence numbers
and schedule of a task per stream (paced_chunks), each stream from its own start."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from pedstream.config import SignalConfig
from pedstream.transports.replay import ReplaySource, paced_chunks, plan_replay
from pedstream.events import ChunkReceived, StreamAdded
from tests.transports.test_sources_replay import write_record


async def _collect(q: asyncio.Queue, n_per_stream: int, sids: set[str]) -> dict[str, list]:
    got: dict[str, list] = {s: [] for s in sids}
    while any(len(v) < n_per_stream for v in got.values()):
        ev = await asyncio.wait_for(q.get(), 10)
        if isinstance(ev, ChunkReceived):
            got[ev.chunk.stream_id].append((time.monotonic(), ev.chunk))
    return got


async def test_one_pacer_sends_what_paced_chunks_sends(tmp_path):
    """Same (seq, first_index, samples) as paced_chunks, across loop passes of a record that is not a
    multiple of the chunk, for several streams at once; timestamps continue by sample index."""
    path, _ = write_record(tmp_path, "rec_odd", seconds=0.5)  # 125 samples at 250 Hz: 10-sample chunks
    plans = [plan_replay([path], SignalConfig(), stream_id=f"s{k}")[0] for k in range(3)]
    want = []
    async for seq, first, part in paced_chunks(plans[0], chunk_ms=40, speed=float("inf"), loop=True):
        want.append((seq, first, part.tobytes()))
        if len(want) == 40:
            break
    q: asyncio.Queue = asyncio.Queue()
    async with ReplaySource(events=q, plans=plans, speed=20.0, chunk_ms=40, loop=True):
        got = await _collect(q, 40, {p.stream_id for p in plans})
    for sid, chunks in got.items():
        assert [(c.seq, c.first_index, c.data.tobytes()) for _, c in chunks[:40]] == want, sid
        ts = np.concatenate([c.timestamps for _, c in chunks[:40]])
        assert np.allclose(np.diff(ts), 1 / 250.0)


async def test_offsets_start_each_stream_later_on_its_own_schedule(tmp_path):
    path, _ = write_record(tmp_path, "rec_off", seconds=4.0)
    plans = [plan_replay([path], SignalConfig(), stream_id=f"o{k}")[0] for k in range(2)]
    q: asyncio.Queue = asyncio.Queue()
    t0 = time.monotonic()
    async with ReplaySource(events=q, plans=plans, speed=4.0, chunk_ms=40, offsets=[0.0, 0.3]):
        got = await _collect(q, 12, {"o0", "o1"})
    (a0, _), (b0, first_b) = got["o0"][0], got["o1"][0]
    assert b0 >= t0 + 0.3 and a0 < b0  # the second stream starts 0.3 s later, never sooner
    assert first_b.timestamps[0] >= t0 + 0.3  # and its clock starts then
    # each on its own schedule: chunk k is due k x 10 samples / 250 Hz / 4 after its own start
    for sid, start in (("o0", t0), ("o1", t0 + 0.3)):
        last_t, last = got[sid][-1]
        assert last_t >= start + last.first_index / 250.0 / 4.0 - 0.01


def test_offsets_must_match_the_streams(tmp_path):
    import pytest

    from pedstream.errors import RecordError

    path, _ = write_record(tmp_path, "rec_bad", seconds=1.0)
    plans = [plan_replay([path], SignalConfig(), stream_id=f"b{k}")[0] for k in range(2)]
    with pytest.raises(RecordError, match="one start offset"):
        ReplaySource(events=asyncio.Queue(), plans=plans, offsets=[0.0])


async def test_a_record_that_cannot_be_read_ends_its_stream_alone(tmp_path):
    import dataclasses

    from pedstream.events import StreamFailed, StreamLost

    class Broken:
        def __init__(self, rec):
            self._rec = rec

        def __getattr__(self, name):
            return getattr(self._rec, name)

        def read(self, start=0, stop=None):
            raise OSError("disk gone")

    path, _ = write_record(tmp_path, "rec_ok", seconds=2.0)
    good = plan_replay([path], SignalConfig(), stream_id="good")[0]
    bad = dataclasses.replace(good, stream_id="bad", record=Broken(good.record))
    q: asyncio.Queue = asyncio.Queue()
    seen: list = []
    async with ReplaySource(events=q, plans=[bad, good], speed=50.0, chunk_ms=40):
        while not any(isinstance(e, StreamLost) and e.stream_id == "good" for e in seen):
            seen.append(await asyncio.wait_for(q.get(), 10))
    errs = [e for e in seen if isinstance(e, StreamFailed)]
    assert len(errs) == 1 and errs[0].stream_id == "bad" and "disk gone" in errs[0].message
    assert any(isinstance(e, StreamLost) and e.stream_id == "bad" and e.reason == "record unreadable" for e in seen)
    assert sum(e.chunk.data.shape[0] for e in seen if isinstance(e, ChunkReceived)) == 500  # all of the good one



class _StampedQueue(asyncio.Queue):
    """Records when each chunk was put (the pacer's send time), not when the test took it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: dict[tuple[str, int], float] = {}

    def put_nowait(self, item):  # noqa: ANN001
        if isinstance(item, ChunkReceived):
            self.sent[(item.chunk.stream_id, item.chunk.first_index)] = time.monotonic()
        super().put_nowait(item)


async def test_wake_ms_sends_every_streams_chunks_in_bursts_never_early(tmp_path):
    """``wake_ms``: streams started at different instants are sent together, at most one wake-up per
    ``wake_ms``; every stream's chunks all come, none before it is due, none much later than ``wake_ms``."""
    path, _ = write_record(tmp_path, "rec_wake", seconds=4.0)
    plans = [plan_replay([path], SignalConfig(), stream_id=f"w{k}")[0] for k in range(4)]
    q = _StampedQueue()
    offsets = [0.0, 0.007, 0.013, 0.029]
    t0 = time.monotonic()
    async with ReplaySource(events=q, plans=plans, speed=1.0, chunk_ms=40, offsets=offsets, wake_ms=30.0):
        got = await _collect(q, 15, {p.stream_id for p in plans})
    sends = []
    for k, p in enumerate(plans):
        for _, c in got[p.stream_id][:15]:
            sent = q.sent[(p.stream_id, c.first_index)]
            due = t0 + offsets[k] + c.first_index / 250.0
            assert sent >= due - 0.002, "a chunk left before it was due"
            assert sent <= due + 0.030 + 0.1, "a chunk left far later than wake_ms"
            sends.append(sent)
    ts = sorted(sends)
    bursts = 1 + sum(b - a > 0.003 for a, b in zip(ts, ts[1:]))
    assert bursts < len(sends) // 2  # the four streams' chunks left together, not one wake-up each
