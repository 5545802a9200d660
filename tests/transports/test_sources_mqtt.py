"""MQTTSource end to end through a real mosquitto broker (fixture in tests/conftest.py)."""

from __future__ import annotations

import asyncio
from functools import partial

import numpy as np
import pytest

from pedstream.transports.mqtt.wire import encode_binary, encode_json, encode_meta
from pedstream.events import ChunkReceived, StreamAdded, StreamFailed, StreamLost
from pedstream.transports.mqtt import MQTTPublisher, MQTTSource, topic_for
from tests.support import helpers
from tests.support.helpers import chunks_of

pytestmark = pytest.mark.timeout(30)
PREFIX = "pedstream/test"


wait_for = partial(helpers.wait_for, timeout=5.0)  # this file's waits: 5 s unless a test says otherwise


async def wait_all(events: asyncio.Queue, *preds, log: list, timeout: float = 5.0) -> None:
    """Take events until every predicate matched one of the events taken (in any order)."""
    todo = list(preds)

    def check(ev) -> bool:
        todo[:] = [p for p in todo if not p(ev)]
        return not todo

    for ev in log:
        check(ev)
    if todo:
        await wait_for(events, check, timeout=timeout, log=log)


def source(broker, events, **kw) -> MQTTSource:
    return MQTTSource(events=events, host=broker.host, port=broker.port, topic_prefix=PREFIX,
                      reconnect_min_s=0.05, reconnect_max_s=0.2, timeout_s=2.0, **kw)


def publisher(broker, **kw) -> MQTTPublisher:
    return MQTTPublisher(host=broker.host, port=broker.port, prefix=PREFIX, timeout_s=2.0, **kw)


async def test_binary_and_json_streams_arrive_exactly(mosquitto):
    rng = np.random.default_rng(1)
    fs, n = 500.0, 25
    ints = rng.integers(-3000, 3000, size=(8, n, 3)).astype(np.int16)  # 8 chunks, microvolt LSBs
    floats = rng.normal(size=(4, 10, 2)).astype(np.float32)
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    async with source(mosquitto, events) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        async with publisher(mosquitto) as pub:
            await pub.publish_meta("bed1", encode_meta(fs=fs, channels=["I", "II", "V1"], units="uV",
                                                       dtype="int16", scale=2.0, age_years=3.0))
            await pub.publish_meta("bed2", encode_meta(fs=50.0, channels=["II", "ABL12"], units=None,
                                                       encoding="json"))
            for k in range(8):
                await pub.publish_data("bed1", encode_binary(ints[k], seq=k, first_sample=k * n, t=100 + k * n / fs))
            for k in range(4):
                await pub.publish_data("bed2", encode_json(floats[k], seq=10 + k, first_sample=k * 10, t=5.0 + k * 0.2))
            await wait_all(events, lambda e: isinstance(e, ChunkReceived) and e.chunk.seq == 7,
                           lambda e: isinstance(e, ChunkReceived) and e.chunk.seq == 13, log=log)
    added = {e.info.stream_id: e.info for e in log if isinstance(e, StreamAdded)}
    assert added["bed1"].fs == fs and added["bed1"].channel_names == ["I", "II", "V1"]
    assert added["bed1"].units_assumed is False and added["bed1"].age_years == 3.0
    assert added["bed1"].source == "mqtt" and added["bed1"].units == ["uV"] * 3
    assert added["bed2"].units_assumed is True
    c1 = chunks_of(log, "bed1")
    assert [c.seq for c in c1] == list(range(8))
    assert [c.first_index for c in c1] == [k * n for k in range(8)]
    got = np.concatenate([c.data for c in c1])
    assert got.dtype == np.float32 and got.shape == (8 * n, 3)
    np.testing.assert_allclose(got, ints.reshape(-1, 3).astype(np.float64) * 2.0 * 1e-3, rtol=1e-6)
    np.testing.assert_allclose(c1[1].timestamps, 100 + (n + np.arange(n)) / fs)
    c2 = chunks_of(log, "bed2")
    np.testing.assert_array_equal(np.concatenate([c.data for c in c2]), floats.reshape(-1, 2))
    assert not [e for e in log if isinstance(e, StreamFailed)]


async def test_loss_duplicates_and_reordering(mosquitto):
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    block = np.arange(10, dtype=np.float32).reshape(5, 2)
    async with source(mosquitto, events, reorder_window=2) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        async with publisher(mosquitto) as pub:
            await pub.publish_meta("s", encode_meta(fs=100, channels=["I", "II"], units="mV"))
            for seq in [0, 1, 3, 2, 2, 4, 7, 8, 9, 5, 10]:
                await pub.publish_data("s", encode_binary(block + seq, seq=seq, first_sample=5 * seq, t=seq * 0.05))
            await wait_for(events, lambda e: isinstance(e, ChunkReceived) and e.chunk.seq == 10, log=log)
            stats = src.stream_stats("s")
    delivered = chunks_of(log, "s")
    assert [c.seq for c in delivered] == [0, 1, 2, 3, 4, 7, 8, 9, 10]
    for c in delivered:
        np.testing.assert_array_equal(c.data, block + c.seq)
    assert (stats.reordered, stats.duplicates, stats.lost, stats.late) == (1, 1, 2, 1)
    # the engine sees the gap from first_index
    assert delivered[5].first_index - (delivered[4].first_index + delivered[4].n_samples) == 10


async def test_bad_payload_is_an_error_event_and_other_streams_continue(mosquitto):
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    good = np.ones((4, 1), dtype=np.float32)
    async with source(mosquitto, events) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        async with publisher(mosquitto) as pub:
            await pub.publish_meta("good", encode_meta(fs=100, channels=["II"], units="mV"))
            await pub.publish_meta("bad", encode_meta(fs=100, channels=["II", "V1"], units="mV"))
            await pub.publish_meta("badmeta", b'{"fs": -1, "channels": ["II"]}')
            await pub.publish_data("good", encode_binary(good, seq=0, first_sample=0, t=0))
            await pub.publish_data("bad", encode_binary(good, seq=0, first_sample=0, t=0))  # 1 ch, meta says 2
            await pub.publish_data("bad", b"\x00garbage")
            await pub.publish_data("good", encode_binary(good * 2, seq=1, first_sample=4, t=0.04))
            await wait_all(events, lambda e: isinstance(e, ChunkReceived) and e.chunk.seq == 1,
                           lambda e: isinstance(e, StreamFailed) and "encoding" in e.message,
                           lambda e: isinstance(e, StreamFailed) and e.stream_id == "badmeta", log=log)
    errors = [e for e in log if isinstance(e, StreamFailed)]
    by_stream = {(e.stream_id, e.message.split(":")[1].strip()) for e in errors}
    assert ("bad", "n_channels") in by_stream and ("bad", "encoding") in by_stream
    assert ("badmeta", "fs") in by_stream
    assert [c.seq for c in chunks_of(log, "good")] == [0, 1]
    assert chunks_of(log, "bad") == []


async def test_data_before_meta_is_held_then_dropped_with_one_error(mosquitto):
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    x = np.zeros((2, 1), dtype=np.float32)
    async with source(mosquitto, events, meta_wait_s=0.3) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        async with publisher(mosquitto) as pub:
            await pub.publish_data("late", encode_binary(x, seq=0, first_sample=0, t=0))
            await pub.publish_data("orphan", encode_binary(x, seq=0, first_sample=0, t=0))
            await pub.publish_data("orphan", encode_binary(x, seq=1, first_sample=2, t=0))
            await pub.publish_meta("late", encode_meta(fs=50, channels=["II"]))
            await wait_all(events, lambda e: isinstance(e, ChunkReceived) and e.stream_id == "late",
                           lambda e: isinstance(e, StreamFailed), log=log)
    (err,) = [e for e in log if isinstance(e, StreamFailed)]
    assert err.stream_id == "orphan" and err.message.startswith("2 data message(s) dropped")
    assert chunks_of(log, "orphan") == []


async def test_broker_restart_lost_then_added_again(mosquitto):
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    x = np.zeros((2, 1), dtype=np.float32)
    meta = encode_meta(fs=50, channels=["II"])
    async with source(mosquitto, events) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        async with publisher(mosquitto, clear_meta_on_exit=False) as pub:
            await pub.publish_meta("p", meta)
            await pub.publish_data("p", encode_binary(x, seq=0, first_sample=0, t=0))
            await wait_for(events, lambda e: isinstance(e, ChunkReceived), log=log)
            mosquitto.stop()
            lost = await wait_for(events, lambda e: isinstance(e, StreamLost), log=log)
            assert lost.stream_id == "p" and "broker" in lost.reason
        mosquitto.start()  # no persistence: the publisher must announce again
        await asyncio.wait_for(src.connected.wait(), 5)
        assert src.connects == 2
        async with publisher(mosquitto) as pub:
            await pub.publish_meta("p", meta)
            again = await wait_for(events, lambda e: isinstance(e, StreamAdded), log=log)
            assert again.info.stream_id == "p"
            await pub.publish_data("p", encode_binary(x, seq=1, first_sample=2, t=0.2))
            c = await wait_for(events, lambda e: isinstance(e, ChunkReceived), log=log)
            assert c.chunk.first_index == 2
        # leaving the publisher clears the retained meta: the source reports the stream gone
        gone = await wait_for(events, lambda e: isinstance(e, StreamLost), log=log)
        assert "withdrawn" in gone.reason


async def test_source_sets_tcp_nodelay_and_silence_means_lost(mosquitto):
    import socket

    events: asyncio.Queue = asyncio.Queue()
    async with source(mosquitto, events, lost_timeout_s=0.3) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        async with publisher(mosquitto) as pub:
            for client in (pub._client, src._client):  # the aiomqtt clients' paho sockets
                sock = client._client.socket()
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            await pub.publish_meta("quiet", encode_meta(fs=50, channels=["II"]))
            await wait_for(events, lambda e: isinstance(e, StreamAdded))
            lost = await wait_for(events, lambda e: isinstance(e, StreamLost))
            assert "no data" in lost.reason
            await pub.publish_data("quiet", encode_binary(np.zeros((1, 1), np.float32), seq=0, first_sample=0, t=0))
            back = await wait_for(events, lambda e: isinstance(e, StreamAdded))
            assert back.info.stream_id == "quiet"
    assert topic_for("a/b/", "s", "data") == "a/b/s/data"
