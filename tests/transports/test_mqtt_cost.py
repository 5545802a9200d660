"""The cheap MQTT path: one pacing task for every replayed stream, the source's bounded inbox with
counted drops, many streams over one data connection into a real mosquitto."""

from __future__ import annotations

import asyncio
import math
import time

import aiomqtt
import numpy as np
import pytest

from pedstream.config import SignalConfig
from pedstream.transports.mqtt import MQTTSource
from pedstream.transports.mqtt.pacing import paced_many
from pedstream.transports.mqtt.publisher import replay_to_mqtt
from pedstream.transports.mqtt.source import _Inbox
from pedstream.transports.mqtt.wire import encode_binary, encode_meta
from pedstream.transports.replay import plan_replay
from pedstream.events import ChunkReceived, StreamAdded
from tests.transports.test_sources_replay import FS, NAMES, write_record

pytestmark = pytest.mark.timeout(60)


async def test_one_pacing_task_keeps_every_streams_rate(tmp_path):
    """Streams of different rates (250 and 125 Hz) from one task: after ~1.2 s each stream has sent
    its rate's samples (within one chunk), chunks are contiguous, and the data is the record's."""
    p250, truth = write_record(tmp_path, "pace_a", seconds=4.0)
    import wfdb

    rec = wfdb.rdrecord(str(p250))
    wfdb.wrsamp("pace_b", fs=125, units=["mV"] * len(NAMES), sig_name=NAMES, p_signal=rec.p_signal[::2],
                fmt=["16"] * len(NAMES), adc_gain=[1000.0] * len(NAMES), baseline=[0] * len(NAMES),
                write_dir=str(tmp_path))
    plans = [plan_replay([p250], SignalConfig(), stream_id=f"a{i}")[0] for i in range(12)]
    plans += [plan_replay([tmp_path / "pace_b"], SignalConfig(), stream_id=f"b{i}")[0] for i in range(12)]
    got: dict[int, list] = {i: [] for i in range(len(plans))}
    ticks = 0
    t0 = None
    tasks_before = len(asyncio.all_tasks())
    max_tasks = 0
    async for due in paced_many(plans, chunk_ms=40, speed=1.0, loop=False):
        t0 = time.monotonic() if t0 is None else t0  # the schedule starts at the first chunk (after the first reads)
        ticks += 1
        max_tasks = max(max_tasks, len(asyncio.all_tasks()))
        for d in due:
            got[d.index].append((d.seq, d.first, np.array(d.data)))
        if time.monotonic() - t0 >= 1.2:
            break
    elapsed = time.monotonic() - t0
    # one task for all streams: at most the prefetch reads run beside it, never one task per stream
    assert max_tasks - tasks_before <= len(plans)  # prefetch tasks only (finished reads are no tasks)
    for i, plan in enumerate(plans):
        chunks = got[i]
        chunk = int(round(0.040 * plan.fs))
        n = sum(c[2].shape[0] for c in chunks)
        assert abs(n - plan.fs * elapsed) <= 2 * chunk, (plan.stream_id, n, plan.fs * elapsed)
        assert [c[0] for c in chunks] == list(range(len(chunks)))  # seq +1 per chunk
        assert [c[1] for c in chunks] == list(np.cumsum([0] + [c[2].shape[0] for c in chunks[:-1]]))
        data = np.concatenate([c[2] for c in chunks])
        if plan.stream_id.startswith("a"):
            np.testing.assert_array_equal(data, truth[:n])
    # streams that are due together go out in the same tick: far fewer ticks than chunks
    assert ticks < sum(len(c) for c in got.values()) / 5


async def test_pacing_at_infinite_speed_is_round_robin_and_complete(tmp_path):
    path, truth = write_record(tmp_path, "pace_inf", seconds=1.0)
    plans = [plan_replay([path], SignalConfig(), stream_id=f"s{i}")[0] for i in range(3)]
    order, got = [], {i: [] for i in range(3)}
    async for due in paced_many(plans, chunk_ms=100, speed=math.inf, loop=False):
        for d in due:
            order.append(d.index)
            got[d.index].append(np.array(d.data))
    for i in range(3):
        np.testing.assert_array_equal(np.concatenate(got[i]), truth)
    assert order[:6] == [0, 1, 2, 0, 1, 2]


def _msg(topic: str, payload: bytes) -> aiomqtt.Message:
    return aiomqtt.Message(topic=topic, payload=payload, qos=0, retain=False, mid=0, properties=None)


async def test_inbox_full_drops_are_counted_not_silent(caplog):
    """Messages that find the source's inbox full are dropped and counted in totals(), with a
    throttled warning; the ones that fit are handled on the next loop turn."""
    events: asyncio.Queue = asyncio.Queue()
    src = MQTTSource(events=events, max_queued_messages=4)
    inbox = _Inbox(src, maxsize=4)
    meta = encode_meta(fs=FS, channels=NAMES, dtype="int16", scale=0.001, t0=1.0)
    inbox.put_nowait(_msg("pedstream/v1/q1/meta", meta))
    data = [encode_binary(np.full((25, len(NAMES)), k, dtype=np.int16), seq=k, first_sample=25 * k, t=1.0)
            for k in range(40)]
    with caplog.at_level("WARNING"):
        for k in range(40):  # nothing is handled before the loop turns: 3 fit beside the meta, 37 dropped
            inbox.put_nowait(_msg("pedstream/v1/q1/data", data[k]))
    assert src.queue_full_drops == 37
    assert src.totals()["queue_full_drops"] == 37
    # the engine's summary (and so the benchmarks) sums rejected_messages and dropped_samples
    assert src.totals()["rejected_messages"] == 37 and src.totals()["dropped_samples"] == 37 * 25
    warnings = [r for r in caplog.records if "inbox full" in r.getMessage()]
    assert 1 <= len(warnings) <= 7  # 1, 2, 4, 8, 16, 32: one line per doubling, not 37
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    evs = []
    while not events.empty():
        evs.append(events.get_nowait())
    assert any(isinstance(e, StreamAdded) for e in evs)
    assert sum(e.chunk.data.shape[0] for e in evs if isinstance(e, ChunkReceived)) == 3 * 25


async def test_many_streams_over_one_connection_into_mosquitto(tmp_path, mosquitto):
    """24 streams replayed in real time over one data connection: each arrives whole and in order,
    nothing rejected or dropped, and each stream has its own Last Will connection."""
    path, truth = write_record(tmp_path, "many", seconds=1.0)
    plans = [plan_replay([path], SignalConfig(), stream_id=f"m{i:02d}")[0] for i in range(24)]
    events: asyncio.Queue = asyncio.Queue()
    async with MQTTSource(events=events, host=mosquitto.host, port=mosquitto.port, max_streams=64) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        sent = await asyncio.wait_for(replay_to_mqtt(plans, host=mosquitto.host, port=mosquitto.port, speed=2.0,
                                                     chunk_ms=50), 20)
        want = {p.stream_id: truth.shape[0] for p in plans}
        assert sent == want
        got: dict[str, list] = {}
        deadline = time.monotonic() + 10
        while sum(sum(c.shape[0] for c in v) for v in got.values()) < sum(want.values()):
            ev = await asyncio.wait_for(events.get(), max(0.01, deadline - time.monotonic()))
            if isinstance(ev, ChunkReceived):
                got.setdefault(ev.chunk.stream_id, []).append(ev.chunk.data)
        assert src.totals()["rejected_messages"] == 0 and src.totals()["queue_full_drops"] == 0
        for sid in want:
            np.testing.assert_allclose(np.concatenate(got[sid]), truth, atol=0.0005 + 1e-6)


async def test_delivered_millivolts_equal_payload_to_mv_bit_for_bit_across_meta_changes():
    """The source's cached factors/offsets give exactly payload_to_mv's values and t + k/fs, also
    after a meta that changes the scale (int16), and for float32 and JSON data."""
    from pedstream.transports.mqtt.wire import decode_data, decode_meta, encode_json, payload_to_mv

    events: asyncio.Queue = asyncio.Queue()
    src = MQTTSource(events=events)
    rng = np.random.default_rng(3)
    cases = []
    for k, (dtype, scale, enc) in enumerate([("int16", 0.001, "binary"), ("int16", 0.0025, "binary"),
                                              ("float32", 1.0, "binary"), ("float32", 1.0, "json")]):
        meta_raw = encode_meta(fs=FS, channels=NAMES, units=["mV", "uV", "V", "mV"], dtype=dtype, scale=scale,
                               t0=float(k), session=f"s{k}")
        src._on_message_safe("pedstream/v1/bits/meta", meta_raw)
        meta = decode_meta(meta_raw)
        for seq, n in enumerate((25, 25, 17)):
            if dtype == "int16":
                vals = rng.integers(-30000, 30000, size=(n, len(NAMES))).astype(np.int16)
            else:
                vals = rng.normal(size=(n, len(NAMES))).astype(np.float32)
            raw = (encode_json(vals, seq=seq, first_sample=25 * seq, t=10.0 * k + 0.1 * seq) if enc == "json" else
                   encode_binary(vals, seq=seq, first_sample=25 * seq, t=10.0 * k + 0.1 * seq))
            src._on_message_safe("pedstream/v1/bits/data", raw)
            p = decode_data(raw, meta=meta)
            cases.append((payload_to_mv(p, meta), p.t + np.arange(n, dtype=np.float64) / FS))
    chunks = []
    while not events.empty():
        ev = events.get_nowait()
        if isinstance(ev, ChunkReceived):
            chunks.append(ev.chunk)
    assert len(chunks) == len(cases)
    for c, (mv, ts) in zip(chunks, cases):
        assert c.data.dtype == np.float32
        np.testing.assert_array_equal(c.data, mv)
        np.testing.assert_array_equal(c.timestamps, ts)


@pytest.mark.parametrize("qos", [0, 1])
async def test_queued_publishes_are_bounded_by_drain_and_all_arrive(mosquitto, qos):
    """publish_data_nowait queues without awaiting each write; drain(k) waits until at most k wait
    (QoS 1: until acknowledged); every message arrives, in order."""
    from pedstream.transports.mqtt.publisher import MQTTPublisher

    events: asyncio.Queue = asyncio.Queue()
    n = 600
    async with MQTTSource(events=events, host=mosquitto.host, port=mosquitto.port, qos=qos,
                          max_messages_per_s=10_000, budget_factor=100) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        async with MQTTPublisher(host=mosquitto.host, port=mosquitto.port, qos=qos) as pub:
            await pub.publish_meta("dq1", encode_meta(fs=FS, channels=NAMES, dtype="int16", scale=0.001, t0=1.0))
            peak = 0
            for k in range(n):
                assert pub.publish_data_nowait("dq1", encode_binary(np.full((5, len(NAMES)), k % 300, dtype=np.int16),
                                                                    seq=k, first_sample=5 * k, t=1.0 + k))
                peak = max(peak, pub.queued())
                if k % 100 == 99:
                    await pub.drain(50)
                    assert pub.queued() <= 50
            await pub.drain(0)
            assert pub.queued() == 0 and pub.published == n + 1 and pub.dropped == 0
            assert peak > 50  # they were queued, not written one await at a time
            got = []
            while len(got) < n:
                ev = await asyncio.wait_for(events.get(), 10)
                if isinstance(ev, ChunkReceived):
                    got.append(ev.chunk)
    assert [c.seq for c in got] == list(range(n))
    assert [int(c.data[0, 0] * 1000 + 0.5) for c in got] == [k % 300 for k in range(n)]


async def test_start_offsets_delay_each_stream_and_keep_its_rate(tmp_path):
    """paced_many(offsets=...): stream k's first chunk is due offset_k after the clock start, then on
    its own schedule; the bench publisher's grid offsets fall on whole chunks."""
    from pedstream.bench.publish import grid_offsets

    path, _ = write_record(tmp_path, "offs", seconds=2.0)
    plans = [plan_replay([path], SignalConfig(), stream_id=f"o{i}")[0] for i in range(3)]
    offsets = [0.0, 0.3, 0.6]
    first_at: dict[int, float] = {}
    counts = {i: 0 for i in range(3)}
    t0 = []
    async for due in paced_many(plans, chunk_ms=50, speed=1.0, loop=False, offsets=offsets,
                                started=lambda: t0.append(time.monotonic())):
        now = time.monotonic()
        for d in due:
            first_at.setdefault(d.index, now - t0[0])
            counts[d.index] += d.data.shape[0]
        if now - t0[0] > 1.0:
            break
    elapsed = time.monotonic() - t0[0]
    for i, off in enumerate(offsets):
        assert off - 0.005 <= first_at[i] <= off + 0.15, (i, first_at[i])
        assert abs(counts[i] - FS * (elapsed - off)) <= 2 * int(0.05 * FS) + 1, (i, counts[i])
    g = grid_offsets(300, 1.25, 50.0)
    assert g[0] == 0.0 and max(g) < 1.25 and len(set(g)) == 25
    assert all(abs(o / 0.05 - round(o / 0.05)) < 1e-9 for o in g)
    assert grid_offsets(300, 0.0, 50.0) is None
