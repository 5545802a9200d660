"""Bundle messages (several streams' data in one MQTT message): layout, hostile input, and end to
end through a real mosquitto."""

from __future__ import annotations

import asyncio
import struct
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pedstream.config import SignalConfig
from pedstream.errors import PayloadError
from pedstream.transports.mqtt import MQTTSource
from pedstream.transports.mqtt.bundle import BUNDLE_HEADER, encode_bundle, pack_bundles, split_bundle
from pedstream.transports.mqtt.publisher import replay_to_mqtt
from pedstream.transports.mqtt.wire import encode_binary, encode_meta
from pedstream.transports.replay import plan_replay
from pedstream.events import ChunkReceived, StreamAdded, StreamFailed
from tests.transports.test_sources_replay import FS, NAMES, write_record

pytestmark = pytest.mark.timeout(60)

LIM = dict(max_message_bytes=262_144, max_frames=256)


def _data(k: int, n: int = 25) -> bytes:
    return encode_binary(np.full((n, len(NAMES)), k, dtype=np.int16), seq=k, first_sample=n * k, t=1.0 + k)


def test_bundle_round_trip_and_packing():
    frames = [(f"bed{i}", _data(i)) for i in range(10)]
    assert split_bundle(encode_bundle(frames), **LIM) == frames
    size = len(encode_bundle(frames[:3]))
    packed = pack_bundles(frames, size)  # three frames fit per bundle
    assert [len(split_bundle(b, **LIM)) for b in packed] == [3, 3, 3, 1]
    assert [f for b in packed for f in split_bundle(b, **LIM)] == frames
    assert all(len(b) <= size for b in packed)
    big = pack_bundles(frames[:2], 10)  # a frame larger than the limit goes alone
    assert [len(split_bundle(b, **LIM)) for b in big] == [1, 1]


def _corrupt(raw: bytes, at: int, value: bytes) -> bytes:
    return raw[:at] + value + raw[at + len(value):]


@pytest.mark.parametrize("make,field", [
    (lambda b: b[:5], "header"),
    (lambda b: b"XXXX" + b[4:], "magic"),
    (lambda b: _corrupt(b, 4, b"\x02"), "version"),
    (lambda b: _corrupt(b, 6, struct.pack("<H", 0)), "n_frames"),
    (lambda b: _corrupt(b, 6, struct.pack("<H", 257)), "n_frames"),  # over max_frames
    (lambda b: _corrupt(b, 6, struct.pack("<H", 3)), "frame"),  # announces more frames than there are
    (lambda b: _corrupt(b, 8, b"\x00"), "frame"),  # empty stream id
    (lambda b: _corrupt(b, 9, b"/"), "stream_id"),  # not a stream id (a topic separator)
    (lambda b: _corrupt(b, 8 + 1 + 4, struct.pack("<I", 1 << 31)), "frame"),  # frame length past the end
    (lambda b: b + b"\x00", "body"),  # trailing bytes
    (lambda b: b + b"\x00" * 262_144, "size"),  # over max_message_bytes, rejected unread
])
def test_hostile_bundles_are_rejected_whole_naming_the_field(make, field):
    good = encode_bundle([("bed1", _data(0)), ("bed2", _data(1))])
    with pytest.raises(PayloadError) as ei:
        split_bundle(make(good), bundle="gw1", **LIM)
    assert ei.value.field == field
    assert "gw1" in str(ei.value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=300))
def test_random_bytes_only_ever_raise_payload_error(blob, cut):
    good = encode_bundle([("a", _data(0, 2)), ("b", _data(1, 2))])
    for raw in (blob, BUNDLE_HEADER.pack(b"PSB1", 1, 0, 2) + blob, good[:cut] + blob):
        try:
            frames = split_bundle(raw, **LIM)
        except PayloadError:
            continue
        assert all(isinstance(s, str) and isinstance(f, bytes) and f for s, f in frames)


async def test_source_rejects_a_broken_bundle_as_one_error_and_a_bad_frame_as_its_streams_error():
    events: asyncio.Queue = asyncio.Queue()
    src = MQTTSource(events=events)
    meta = encode_meta(fs=FS, channels=NAMES, dtype="int16", scale=0.001, t0=1.0, publisher="gw1")
    for sid in ("ok1", "bad1"):
        src._on_message_safe(f"pedstream/v1/{sid}/meta", meta)
    broken = encode_bundle([("ok1", _data(0))])[:-3]
    src._on_message_safe("pedstream/v1/gw1/bundle", broken)
    wrong_width = encode_binary(np.zeros((25, 2), dtype=np.int16), seq=0, first_sample=0, t=1.0)
    src._on_message_safe("pedstream/v1/gw1/bundle", encode_bundle([("bad1", wrong_width), ("ok1", _data(0))]))
    evs = []
    while not events.empty():
        evs.append(events.get_nowait())
    errors = [e for e in evs if isinstance(e, StreamFailed)]
    assert [e.stream_id for e in errors] == ["gw1", "bad1"]
    assert "bundle rejected" in errors[0].message and "bytes announced" in errors[0].message
    chunks = [e.chunk for e in evs if isinstance(e, ChunkReceived)]
    assert [c.stream_id for c in chunks] == ["ok1"] and chunks[0].data.shape == (25, len(NAMES))
    assert src.rejected_bundles == 1
    assert src.totals()["rejected_messages"] == 2  # the bundle, and bad1's frame
    assert "gw1" not in src.stream_ids  # a bundle id is not a stream


async def test_bundled_replay_through_mosquitto_equals_the_record(tmp_path, mosquitto):
    path, truth = write_record(tmp_path, "bund", seconds=1.0)
    plans = [plan_replay([path], SignalConfig(), stream_id=f"b{i:02d}")[0] for i in range(16)]
    events: asyncio.Queue = asyncio.Queue()
    async with MQTTSource(events=events, host=mosquitto.host, port=mosquitto.port, max_streams=64) as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        sent = await asyncio.wait_for(replay_to_mqtt(plans, host=mosquitto.host, port=mosquitto.port, speed=4.0,
                                                     chunk_ms=50, bundle_bytes=8192), 20)
        assert sent == {p.stream_id: truth.shape[0] for p in plans}
        got: dict[str, list] = {}
        added = set()
        deadline = time.monotonic() + 10
        while sum(sum(c.shape[0] for c in v) for v in got.values()) < 16 * truth.shape[0]:
            ev = await asyncio.wait_for(events.get(), max(0.01, deadline - time.monotonic()))
            if isinstance(ev, ChunkReceived):
                got.setdefault(ev.chunk.stream_id, []).append(ev.chunk.data)
            elif isinstance(ev, StreamAdded):
                added.add(ev.info.stream_id)
        assert added == set(sent)
        assert src.totals()["rejected_messages"] == 0
        for sid in sent:
            np.testing.assert_allclose(np.concatenate(got[sid]), truth, atol=0.0005 + 1e-6)
