"""Issue 10 ("Hardened ingest"): one test per defect, against a real mosquitto on 127.0.0.1.

Each test here failed on the code before the fix (noted per test) and must keep passing."""

from __future__ import annotations

import asyncio
import json
import time
from functools import partial

import numpy as np
import pytest

from pedstream.errors import PayloadError
from pedstream.transports.mqtt.wire import (
    PayloadLimits,
    SequenceTracker,
    decode_data,
    decode_json,
    decode_meta,
    encode_binary,
    encode_json,
    encode_meta,
    json_depth,
)
from pedstream.events import ChunkReceived, StreamAdded, StreamFailed, StreamLost
from pedstream.transports.base import ErrorThrottle
from pedstream.transports.mqtt import MQTTPublisher, MQTTSource, topic_for
from tests.support import helpers
from tests.support.helpers import chunks_of

pytestmark = pytest.mark.timeout(40)
PREFIX = "pedstream/test"
wait_for = partial(helpers.wait_for, timeout=5.0)
DEEP = b"[" * 400_000  # about 400 kB of nesting, as in the issue
META = encode_meta(fs=250.0, channels=["II", "V1"], units="mV")


def source(broker, events, **kw) -> MQTTSource:
    kw.setdefault("reconnect_min_s", 0.05)
    kw.setdefault("reconnect_max_s", 0.2)
    return MQTTSource(events=events, host=broker.host, port=broker.port, topic_prefix=PREFIX, timeout_s=2.0, **kw)


def publisher(broker, **kw) -> MQTTPublisher:
    return MQTTPublisher(host=broker.host, port=broker.port, prefix=PREFIX, timeout_s=2.0, **kw)


def chunk(seq: int, n: int = 5, n_ch: int = 2, dtype: str = "float32") -> bytes:
    return encode_binary(np.full((n, n_ch), seq, np.float32), seq=seq, first_sample=seq * n, t=seq * n / 250.0,
                         dtype=dtype)


async def wait_seen(events: asyncio.Queue, pred, *, log: list, timeout: float = 5.0):
    """Like wait_for, but an event already in ``log`` counts."""
    for ev in log:
        if pred(ev):
            return ev
    return await wait_for(events, pred, log=log, timeout=timeout)


def errors_of(log: list, sid: str) -> list[StreamFailed]:
    return [e for e in log if isinstance(e, StreamFailed) and e.stream_id == sid]


# ------------------------------------------------------------------------------- decoders
def test_deep_json_is_rejected_before_parsing():
    """Defect: RecursionError escaped the decoders (they caught only ValueError/UnicodeDecodeError)."""
    for fn, kw in ((decode_meta, {}), (decode_json, {}), (decode_data, {})):
        raw = b"{" + b'"a":' + DEEP if fn is decode_data else DEEP
        with pytest.raises(PayloadError) as ei:
            fn(raw, stream="s", limits=PayloadLimits(max_message_bytes=1 << 20), **kw)
        assert ei.value.field == "depth" and len(str(ei.value)) < 200
    # strings with brackets do not count; escaped quotes are handled
    assert json_depth(b'{"a": "[[[[[\\"[[[[", "b": [[1]]}') == 3


def test_size_is_checked_unread_and_fast():
    """Defect: a 10 MB JSON data message blocked every stream for about 12 s."""
    big = encode_json(np.zeros((500_000, 2)), seq=0, first_sample=0, t=0.0)
    assert len(big) > 2_000_000
    t0 = time.perf_counter()
    with pytest.raises(PayloadError) as ei:
        decode_data(big, stream="s")
    assert ei.value.field == "size" and time.perf_counter() - t0 < 0.05


@pytest.mark.parametrize("fs", [0.001, 0.05, 49.0, 20_000.0])
def test_absurd_sampling_rates_are_refused(fs):
    """Defect: fs = 0.001 built a resampler of millions of taps (4 GB, 20 s stall)."""
    with pytest.raises(PayloadError) as ei:
        decode_meta(json.dumps({"fs": fs, "channels": ["II"]}).encode(), stream="s")
    assert ei.value.field == "fs"


def test_channel_and_sample_limits():
    with pytest.raises(PayloadError) as ei:
        decode_meta(json.dumps({"fs": 500, "channels": [f"c{i}" for i in range(65)]}).encode())
    assert ei.value.field == "channels"
    lim = PayloadLimits(max_samples=100)
    with pytest.raises(PayloadError) as ei:
        decode_data(encode_binary(np.zeros((101, 1), np.float32), seq=0, first_sample=0, t=0), limits=lim)
    assert ei.value.field == "n_samples"
    with pytest.raises(PayloadError) as ei:
        decode_data(encode_json(np.zeros((101, 1)), seq=0, first_sample=0, t=0), limits=lim)
    assert ei.value.field == "data"


# ------------------------------------------------------------------------------- sequence
def test_publisher_restart_is_recognised_at_its_first_message():
    """Defect: a restarted publisher (seq from 0) was dropped as duplicates until seq caught up."""
    tr: SequenceTracker[int] = SequenceTracker(reorder_window=4)
    for s in range(300):
        tr.push(s, s)
    assert tr.push(0, 1000) == [1000]  # seq 0 again: a restart, delivered at once
    assert tr.push(1, 1001) == [1001]
    assert tr.stats.resets == 1 and tr.stats.duplicates == 0
    # a real duplicate within the reorder window is still a duplicate
    assert tr.push(1, 1) == [] and tr.stats.duplicates == 1
    # a restart that does not begin at 0 but jumps back far is a restart too
    for s in range(2, 200):
        tr.push(s, s)
    assert tr.push(7, 7) == [7] and tr.stats.resets == 2


def test_error_throttle():
    t = [0.0]
    th = ErrorThrottle(burst=3, period_s=60.0, clock=lambda: t[0])
    out = [th.admit("a", f"e{i}") for i in range(10)]
    assert out[:3] == ["e0", "e1", "e2"] and out[3:] == [None] * 7
    assert th.admit("b", "x") == "x"  # per stream
    t[0] = 61.0
    assert th.admit("a", "later") == "later (+7 similar error(s) suppressed)"
    assert th.counts["a"] == 11


# ------------------------------------------------------------------------------- end to end
async def test_deep_json_on_meta_and_data_topics_does_not_stop_the_source(mosquitto):
    """Defect: a ~400 kB '[[[[' message on a meta or data topic ended the monitor (exit 1), and
    published retained on a meta topic it ended every restart."""
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    async with publisher(mosquitto, clear_meta_on_exit=False) as evil:
        await evil.publish_raw(topic_for(PREFIX, "evil", "meta"), DEEP, retain=True)  # retained junk
        async with source(mosquitto, events, limits=PayloadLimits(max_message_bytes=1 << 20)) as src:
            await asyncio.wait_for(src.connected.wait(), 5)
            async with publisher(mosquitto) as pub:
                await pub.publish_meta("good", META)
                await pub.publish_data("good", chunk(0))
                await evil.publish_raw(topic_for(PREFIX, "evil2", "meta"), DEEP)
                await pub.publish_meta("evil3", META)
                await evil.publish_raw(topic_for(PREFIX, "evil3", "data"), b"{" + DEEP)
                await pub.publish_data("good", chunk(1))
                await wait_for(events, lambda e: isinstance(e, ChunkReceived) and e.chunk.seq == 1, log=log)
                await wait_seen(events, lambda e: isinstance(e, StreamFailed) and e.stream_id == "evil3", log=log)
            assert all(not t.done() for t in src._tasks)  # nothing died
        await evil.clear_meta("evil")
    for sid in ("evil", "evil2", "evil3"):
        (err,) = errors_of(log, sid)
        assert "depth" in err.message
    assert [c.seq for c in chunks_of(log, "good")] == [0, 1]


async def test_any_exception_while_handling_a_message_is_a_stream_error(mosquitto):
    """Defect: only PayloadError was caught; any other exception killed the MQTT task."""

    class Fragile(MQTTSource):
        def _deliver(self, sid, st, p):
            if sid == "fragile":
                raise ZeroDivisionError("boom")
            super()._deliver(sid, st, p)

    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    async with Fragile(events=events, host=mosquitto.host, port=mosquitto.port, topic_prefix=PREFIX) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        async with publisher(mosquitto) as pub:
            await pub.publish_meta("fragile", META)
            await pub.publish_meta("good", META)
            for k in range(10):
                await pub.publish_data("fragile", chunk(k))
            await pub.publish_data("good", chunk(0))
            await wait_for(events, lambda e: isinstance(e, ChunkReceived) and e.stream_id == "good", log=log)
        assert src.handler_errors == 10
    errs = errors_of(log, "fragile")
    assert 1 <= len(errs) <= 3 and "ZeroDivisionError" in errs[0].message  # throttled


async def test_huge_message_is_one_error_and_others_keep_flowing(mosquitto):
    """Defect: a 10 MB data message blocked every stream for about 12 s."""
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    big = encode_json(np.zeros((400_000, 2)), seq=1, first_sample=5, t=0.0)  # ~4 MB
    async with source(mosquitto, events) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        async with publisher(mosquitto) as pub:
            await pub.publish_meta("big", META)
            await pub.publish_meta("good", META)
            await pub.publish_data("good", chunk(0))
            await wait_for(events, lambda e: isinstance(e, ChunkReceived) and e.stream_id == "good", log=log)
            await pub.publish_data("big", big)
            t0 = time.monotonic()
            await pub.publish_data("good", chunk(1))
            await wait_for(events, lambda e: isinstance(e, ChunkReceived) and e.chunk.seq == 1
                           and e.stream_id == "good", log=log)
            assert time.monotonic() - t0 < 1.0
            await wait_seen(events, lambda e: isinstance(e, StreamFailed) and e.stream_id == "big", log=log)
    (err,) = errors_of(log, "big")
    assert "size" in err.message


async def test_absurd_fs_meta_is_refused_end_to_end(mosquitto):
    """Defect: fs = 0.05 produced 4 calls from one sample; fs = 0.001 stalled everything."""
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    async with source(mosquitto, events) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        async with publisher(mosquitto) as pub:
            await pub.publish_meta("slow", b'{"fs": 0.001, "channels": ["II"]}')
            await wait_for(events, lambda e: isinstance(e, StreamFailed) and e.stream_id == "slow", log=log)
    assert not [e for e in log if isinstance(e, StreamAdded)]
    assert "fs" in errors_of(log, "slow")[0].message


async def test_publisher_restart_end_to_end_within_one_message(mosquitto):
    """Defect: a restarted publisher (seq from 0, same meta) was silently dropped for up to ~50 s."""
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    async with source(mosquitto, events) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        async with publisher(mosquitto) as pub:
            await pub.publish_meta("bed", META)
            for k in range(100):
                await pub.publish_data("bed", chunk(k))
            await wait_for(events, lambda e: isinstance(e, ChunkReceived) and e.chunk.seq == 99, log=log)
        async with publisher(mosquitto) as pub:  # the same publisher restarted: same meta, seq from 0
            await pub.publish_meta("bed", META)
            await pub.publish_data("bed", chunk(0))
            c = await wait_for(events, lambda e: isinstance(e, ChunkReceived) and e.chunk.seq == 0, log=log)
            assert c.chunk.first_index == 0


async def test_new_session_in_meta_resets_the_sequence(mosquitto):
    """A new ``session`` (or ``t0``) in the meta: the publisher's seq restarted, whatever its value."""
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    async with source(mosquitto, events) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        async with publisher(mosquitto) as pub:
            await pub.publish_meta("bed", encode_meta(fs=250.0, channels=["II", "V1"], session="a"))
            for k in range(10):
                await pub.publish_data("bed", chunk(k))
            await wait_for(events, lambda e: isinstance(e, ChunkReceived) and e.chunk.seq == 9, log=log)
            await pub.publish_meta("bed", encode_meta(fs=250.0, channels=["II", "V1"], session="b"))
            await pub.publish_data("bed", chunk(3))  # seq 3 would be a duplicate in the old session
            c = await wait_for(events, lambda e: isinstance(e, ChunkReceived) and e.chunk.seq == 3
                               and e.chunk.first_index == 15, log=log)
            assert c is not None
    assert not errors_of(log, "bed")


async def test_meta_with_another_dtype_is_one_session_error_not_an_error_stream(mosquitto):
    """Defect: an anonymous retained meta with another dtype muted a genuine stream with 472 error
    events in 24 s (unthrottled)."""
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    async with source(mosquitto, events) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        async with publisher(mosquitto) as pub, publisher(mosquitto) as evil:
            await pub.publish_meta("bed", META)
            await pub.publish_data("bed", chunk(0))
            await wait_for(events, lambda e: isinstance(e, ChunkReceived), log=log)
            await evil.publish_meta("bed", encode_meta(fs=250.0, channels=["II", "V1"], dtype="int16"))
            for k in range(1, 60):
                await pub.publish_data("bed", chunk(k))
            await pub.publish_data("bed", encode_binary(np.zeros((5, 2), np.int16), seq=60, first_sample=300, t=1.2))
            await wait_for(events, lambda e: isinstance(e, ChunkReceived) and e.chunk.seq == 60, log=log)
        counters = src.stream_counters("bed")
    errs = errors_of(log, "bed")
    assert len(errs) == 2, [e.message for e in errs]
    assert "new stream session" in errs[0].message and "dtype" in errs[0].message
    assert "does not match the meta" in errs[1].message
    assert counters is None or counters["rejected_messages"] >= 59


async def test_flooding_stream_is_rejected_and_counted_and_the_other_keeps_flowing(mosquitto):
    """Defect: one flooding stream starved the others; nothing bounded or counted before the engine."""
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    async with source(mosquitto, events, max_messages_per_s=200.0) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        async with publisher(mosquitto) as pub, publisher(mosquitto) as flood:
            await pub.publish_meta("calm", META)
            await flood.publish_meta("flood", META)
            one = chunk(0, n=1)
            t0 = time.monotonic()
            for k in range(3000):
                await flood.publish_data("flood", encode_binary(np.zeros((1, 2), np.float32), seq=k,
                                                                first_sample=k, t=0.0))
                if k % 300 == 0:
                    await pub.publish_data("calm", chunk(k // 300))
            await pub.publish_data("calm", chunk(10))
            await wait_for(events, lambda e: isinstance(e, ChunkReceived) and e.stream_id == "calm"
                           and e.chunk.seq == 10, log=log, timeout=10)
            assert time.monotonic() - t0 < 10 and one
            c = src.stream_counters("flood")
            assert c is not None and c["rejected_messages"] > 1000 and c["flagged"] == "over its ingest budget"
            assert src.stream_counters("calm")["rejected_messages"] == 0
    flood_chunks = len(chunks_of(log, "flood"))
    assert flood_chunks < 1500
    assert [c.seq for c in chunks_of(log, "calm")] == list(range(11))
    assert len(errors_of(log, "flood")) <= 3


async def test_idle_stream_ids_are_forgotten(mosquitto):
    """Defect: new stream ids were never forgotten (memory kept rising)."""
    events: asyncio.Queue = asyncio.Queue()
    async with source(mosquitto, events, forget_after_s=0.3, lost_timeout_s=0.2, meta_wait_s=0.1,
                      max_streams=8) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        async with publisher(mosquitto) as pub:
            for k in range(20):  # more ids than max_streams: the idle ones make room
                await pub.publish_data(f"junk{k}", b"x")
            await pub.publish_meta("real", META)
            await pub.publish_data("real", chunk(0))
            await wait_for(events, lambda e: isinstance(e, ChunkReceived))
            assert len(src.stream_ids) <= 8
            deadline = time.monotonic() + 5
            while src.stream_ids and time.monotonic() < deadline:  # bounded wait on a condition
                await asyncio.sleep(0.05)
            assert src.stream_ids == []
            # the forgotten stream's meta was parked: its data is accepted again
            await pub.publish_data("real", chunk(1))
            back = await wait_for(events, lambda e: isinstance(e, ChunkReceived))
            assert back.chunk.seq == 1


async def test_reconnect_at_once_when_the_broker_answers_again(mosquitto):
    """Defect: after a 10 s outage the monitor reconnected only after its backoff (up to 10 s)."""
    events: asyncio.Queue = asyncio.Queue()
    async with source(mosquitto, events, reconnect_min_s=8.0, reconnect_max_s=10.0, probe_interval_s=0.1) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        mosquitto.stop()
        deadline = time.monotonic() + 5
        while src.connected.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert not src.connected.is_set()
        await asyncio.sleep(0.5)  # the outage itself (not a wait for a result)
        mosquitto.start()
        t0 = time.monotonic()
        await asyncio.wait_for(src.connected.wait(), 4.0)  # backoff is >= 4 s: only the probe can do this
        assert time.monotonic() - t0 < 2.0 and src.connects == 2


async def test_publisher_with_reconnect_survives_a_broker_restart(mosquitto):
    """Defect: ``pedstream replay --to mqtt`` died with an ExceptionGroup when the broker went away."""
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    async with source(mosquitto, events) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        async with publisher(mosquitto, reconnect=True, reconnect_max_s=0.5, probe_interval_s=0.1) as pub:
            await pub.publish_meta("bed", META)
            await pub.publish_data("bed", chunk(0))
            await wait_for(events, lambda e: isinstance(e, ChunkReceived), log=log)
            mosquitto.stop()
            k = 1
            while pub.connected_event.is_set() or pub.dropped == 0:  # publishing into the outage never raises
                await pub.publish_data("bed", chunk(k))
                k += 1
                await asyncio.sleep(0.05)
                assert k < 200
            mosquitto.start()  # no persistence: the retained meta is gone with the broker
            await asyncio.wait_for(pub.connected_event.wait(), 5)
            assert pub.reconnects == 1
            await wait_for(events, lambda e: isinstance(e, StreamAdded), log=log)  # meta republished
            await pub.publish_data("bed", chunk(k))
            c = await wait_for(events, lambda e: isinstance(e, ChunkReceived), log=log)
            assert c.chunk.seq == k
        gone = await wait_for(events, lambda e: isinstance(e, StreamLost) and "withdrawn" in e.reason, log=log)
        assert gone.stream_id == "bed"


async def test_engine_survives_any_exception_of_one_stream(tmp_path):
    """Defect: the engine's ingest caught only PedstreamError; anything else ended the run (the
    TaskGroup cancelled everything). A source that emits a malformed chunk for one stream costs that
    stream one error event; the other stream is classified on."""
    from pedstream.config import load_config
    from pedstream.data.channels import CANONICAL_CHANNELS
    from pedstream.monitor.engine import Engine
    from pedstream.events import Chunk, StreamInfo
    from tests.support.helpers import ArraySource, StreamSpec, make_signal
    from tests.support.tiny_model import build_tiny_model, open_session

    cfg = load_config(overrides=["alarms.smoothing_windows=1"])
    session = open_session(build_tiny_model(tmp_path / "tiny.onnx", cfg), cfg)
    q: asyncio.Queue = asyncio.Queue()
    info = StreamInfo(stream_id="broken", source="replay", fs=977.0, channel_names=list(CANONICAL_CHANNELS),
                      units=["mV"] * 19)
    q.put_nowait(StreamAdded(info))
    for k in range(20):  # timestamps missing: a TypeError inside the pipeline, not a PedstreamError
        q.put_nowait(ChunkReceived(Chunk(stream_id="broken", data=np.zeros((10, 19), np.float32),
                                         timestamps=None, first_index=10 * k)))  # type: ignore[arg-type]
    src = ArraySource(events=q, streams=[StreamSpec("good", make_signal(fs=977.0, seconds=6.0), 977.0)])
    eng = Engine(cfg=cfg, session=session, sources=[src], alarms_dir=tmp_path / "alarms")
    sub = eng.subscribe()
    async with eng:
        await sub.wait_for(lambda e: e.kind == "call" and e.stream == "good", timeout=30)
    seen = sub.drain()
    errors = [e for e in eng_events(sub, seen) if e.kind == "error" and e.stream == "broken"]
    assert 1 <= len(errors) <= 3 and "processing failed" in errors[0].extra["message"]
    assert "rejected_messages" in eng.summary()


def eng_events(sub, drained) -> list:
    return list(getattr(sub, "seen", [])) or list(drained or [])
