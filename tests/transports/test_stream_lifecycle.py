"""Stream lifecycles that heal, against a real mosquitto with the documented ACL
(tests/support/acl_broker.py):

- 300 stale retained metas before the genuine ones: the genuine streams are monitored within seconds;
- an empty meta message: the stream is monitored again within seconds while its data keeps coming;
- a duplicate publisher of one id is reported as such, and its exit does not end the original's
  monitoring;
- a meta refused while every slot was taken is used as soon as its stream sends data.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from pedstream.transports.mqtt import MQTTPublisher, topic_for
from pedstream.transports.mqtt.wire import encode_meta
from pedstream.events import ChunkReceived, StreamAdded, StreamFailed, StreamLost
from tests.support.acl_broker import PREFIX, acl_broker, chunk, monitor, needs_mosquitto, publisher

pytestmark = [pytest.mark.timeout(60), needs_mosquitto]


def meta(session: str = "a") -> bytes:
    return encode_meta(fs=250.0, channels=["II", "V1"], units="mV", session=session)


async def keep_sending(pub: MQTTPublisher, sid: str, value: float, *, start: int = 0, period: float = 0.1,
                       stop: asyncio.Event | None = None) -> None:
    """A live publisher: one chunk of ``value`` every ``period`` until ``stop`` is set (or cancelled)."""
    k = start
    t0 = time.monotonic()
    while stop is None or not stop.is_set():
        await pub.publish_data(sid, chunk(k, value))
        k += 1
        await asyncio.sleep(max(0.0, t0 + period * (k - start) - time.monotonic()))  # pacing


@contextlib.asynccontextmanager
async def sending(pub: MQTTPublisher, sid: str, value: float, **kw):
    """``keep_sending`` for the block. It ends on a flag as well as by cancellation: a cancellation can be
    lost inside the MQTT client's waits on Python 3.11, and a helper must never hang a test."""
    stop = asyncio.Event()
    task = asyncio.ensure_future(keep_sending(pub, sid, value, stop=stop, **kw))
    try:
        yield task
    finally:
        stop.set()
        for _ in range(3):
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=2.0)
            if done:
                break
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a publish failing as the block ends is not the test's subject


async def until(events: asyncio.Queue, log: list, pred, timeout: float) -> float:
    """Take events into ``log`` until ``pred(event)``; returns the seconds it took."""
    t0 = time.monotonic()
    async def loop() -> None:
        while True:
            ev = await events.get()
            log.append(ev)
            if pred(ev):
                return
    await asyncio.wait_for(loop(), timeout)
    return time.monotonic() - t0


def data_of(sid: str, value: float | None = None):
    return lambda e: (isinstance(e, ChunkReceived) and e.stream_id == sid
                      and (value is None or float(e.chunk.data[0, 0]) == value))


async def test_stale_retained_metas_do_not_blind_a_fresh_monitor(tmp_path):
    with acl_broker(tmp_path) as b:
        async with publisher(b, "admin", clear_meta_on_exit=False) as admin:
            for i in range(300):  # publishers long gone, no Last Will: their metas sit retained
                await admin.publish_meta(f"a{i:03d}", meta())
        async with publisher(b, "x001") as p1, publisher(b, "x002") as p2:
            await p1.publish_meta("x001", meta())
            await p2.publish_meta("x002", meta())
            async with sending(p1, "x001", 1.0), sending(p2, "x002", 2.0):
                events: asyncio.Queue = asyncio.Queue()
                log: list = []
                async with monitor(b, events) as src:  # a fresh monitor: 302 retained metas, 256 slots
                    seen: set = set()
                    took = await until(events, log, lambda e: data_of("x001")(e) and not seen.add("x001") and "x002" in seen
                                       or data_of("x002")(e) and not seen.add("x002") and "x001" in seen, 10.0)
                    assert took < 5.0
                    assert src.totals()["refused_metas"] > 0  # some stale metas found no room: parked, not dropped
                    n_err = sum(isinstance(e, StreamFailed) for e in log)
                    assert n_err <= 5  # not one error per stale meta


async def test_an_empty_meta_message_does_not_end_monitoring(tmp_path):
    with acl_broker(tmp_path) as b:
        events: asyncio.Queue = asyncio.Queue()
        log: list = []
        async with monitor(b, events, meta_wait_s=1.0) as src:
            await asyncio.wait_for(src.connected.wait(), 10)
            async with publisher(b, "x002") as p2:
                await p2.publish_meta("x002", meta())
                async with sending(p2, "x002", 2.0):
                    await until(events, log, data_of("x002"), 5.0)
                    await p2.publish_raw(topic_for(PREFIX, "x002", "meta"), b"", retain=False)  # not retained
                    await until(events, log, lambda e: isinstance(e, StreamLost) and e.stream_id == "x002", 5.0)
                    # the broker still holds the retained meta: re-read because the data keeps coming
                    took = await until(events, log, data_of("x002"), 5.0)
                    assert took < 4.0
                    assert any(isinstance(e, StreamAdded) and e.stream_id == "x002" for e in log[-20:])
                    # now the retained meta itself is cleared while the publisher goes on: the last meta is used
                    await p2.publish_raw(topic_for(PREFIX, "x002", "meta"), b"", retain=True)
                    await until(events, log, lambda e: isinstance(e, StreamLost) and e.stream_id == "x002", 5.0)
                    took = await until(events, log, data_of("x002"), 6.0)
                    assert took < 4.0
                    assert any(isinstance(e, StreamFailed) and "resumed on its last meta" in e.message for e in log)
            assert src.meta_refetches >= 1


async def test_duplicate_publisher_is_reported_and_its_exit_does_not_end_the_original(tmp_path):
    with acl_broker(tmp_path) as b:
        events: asyncio.Queue = asyncio.Queue()
        log: list = []
        async with monitor(b, events, meta_wait_s=1.0) as src:
            await asyncio.wait_for(src.connected.wait(), 10)
            async with publisher(b, "x001") as original:
                await original.publish_meta("x001", meta("original"))
                async with sending(original, "x001", 1.0, start=500):
                    await until(events, log, data_of("x001", 1.0), 5.0)
                    async with publisher(b, "x001") as second:  # a second replay of the same id, same user
                        await second.publish_meta("x001", meta("second"))
                        async with sending(second, "x001", 9.0):
                            await until(events, log, lambda e: isinstance(e, StreamFailed) and e.stream_id == "x001"
                                        and "duplicate publisher" in e.message, 6.0)
                    # the second one left normally (clearing the retained meta): the original goes on being
                    # monitored: ten of its chunks in a row within seconds
                    n = len(log)
                    took = await until(events, log, lambda e: len([x for x in log[n:] if data_of("x001", 1.0)(x)]) >= 10,
                                       8.0)
                    assert took < 7.0
            assert src.stream_counters("x001")["duplicate_messages"] > 0
            assert src.totals()["duplicate_publisher"] > 0


async def test_a_refused_meta_is_used_when_its_stream_sends_data(tmp_path):
    with acl_broker(tmp_path) as b:
        async with publisher(b, "admin", clear_meta_on_exit=False) as admin:
            for i in range(4):
                await admin.publish_meta(f"a{i:03d}", meta())
        events: asyncio.Queue = asyncio.Queue()
        log: list = []
        async with monitor(b, events, max_streams=4) as src:
            await until(events, log, lambda e: sum(isinstance(x, StreamAdded) for x in log) == 4, 5.0)
            async with publisher(b, "x001") as p1:
                await p1.publish_meta("x001", meta())  # every slot live: parked
                await until(events, log, lambda e: isinstance(e, StreamFailed) and "x001 waits" in e.message, 5.0)
                async with sending(p1, "x001", 1.0):
                    took = await until(events, log, data_of("x001"), 5.0)
                    assert took < 3.0
            released = [e for e in log if isinstance(e, StreamLost) and "released" in e.reason]
            assert len(released) == 1 and released[0].stream_id.startswith("a")
            assert len(src.stream_ids) <= 4


async def test_a_replay_republishes_its_meta_when_someone_clears_it(tmp_path):
    """A monitor started after the meta was cleared still gets the stream: the replay reads its retained
    meta back now and then and publishes it again when it is gone."""
    from pedstream.config import SignalConfig
    from pedstream.transports.mqtt.publisher import replay_to_mqtt
    from pedstream.transports.replay import plan_replay
    from tests.transports.test_sources_replay import write_record

    path, _ = write_record(tmp_path, "rep", seconds=12.0)
    with acl_broker(tmp_path / "broker") as b:
        plans = plan_replay([path], SignalConfig(), stream_id="x001")
        replay = asyncio.ensure_future(replay_to_mqtt(plans, host=b.host, port=b.port, prefix=PREFIX, speed=1.0,
                                                      auth=b.auth("x001"), wills=False, meta_check_s=0.3))
        try:
            first: asyncio.Queue = asyncio.Queue()
            async with monitor(b, first):
                await until(first, [], data_of("x001"), 8.0)  # the replay is on
            async with publisher(b, "x001", clear_meta_on_exit=False) as other:  # someone clears the meta
                await other.publish_raw(topic_for(PREFIX, "x001", "meta"), b"", retain=True)
            events: asyncio.Queue = asyncio.Queue()
            log: list = []
            async with monitor(b, events):  # a monitor started after the clear
                took = await until(events, log, data_of("x001"), 8.0)
                assert took < 5.0
                assert any(isinstance(e, StreamAdded) and e.stream_id == "x001" for e in log)
        finally:
            replay.cancel()
            await asyncio.gather(replay, return_exceptions=True)
