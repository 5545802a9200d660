"""Per-stream Last Wills beside one data connection (:class:`WillKeepers`), against a real mosquitto: a
process that dies has every stream's retained meta withdrawn by the broker, a clean exit leaves them to
the publisher, and a broker that is down is counted, not raised, and joined later by ``refresh``."""

from __future__ import annotations

import asyncio
import sys

import aiomqtt
import pytest

from pedstream.transports.mqtt.wills import WillKeepers
from pedstream.transports.mqtt.wire import encode_meta

pytestmark = pytest.mark.timeout(30)
PREFIX = "pedstream/test"
IDS = ["bed1", "bed2", "bed3"]
META = encode_meta(fs=250.0, channels=["II"])


async def _publish_metas(broker) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as c:
        for sid in IDS:
            await c.publish(f"{PREFIX}/{sid}/meta", META, qos=1, retain=True)


async def _metas(client: aiomqtt.Client, want: int) -> dict[str, bytes]:
    """The next ``want`` meta messages (retained ones first), by stream id."""
    got: dict[str, bytes] = {}
    async for msg in client.messages:
        got[str(msg.topic).split("/")[-2]] = bytes(msg.payload)
        if len(got) == want:
            return got
    raise AssertionError("the subscription ended")  # pragma: no cover


async def test_a_killed_process_has_every_streams_meta_withdrawn(mosquitto) -> None:
    await _publish_metas(mosquitto)
    code = ("import asyncio, sys\n"
            "from pedstream.transports.mqtt.wills import WillKeepers\n"
            "async def main():\n"
            f"    async with WillKeepers(host={mosquitto.host!r}, port={mosquitto.port}, prefix={PREFIX!r},\n"
            f"                           stream_ids={IDS!r}, client_id='dying') as k:\n"
            "        print(k.connected(), k.failed, flush=True)\n"
            "        await asyncio.Event().wait()\n"
            "asyncio.run(main())\n")
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as sub:
        await sub.subscribe(f"{PREFIX}/+/meta", qos=1)
        assert set((await asyncio.wait_for(_metas(sub, len(IDS)), 5)).values()) == {META}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE)
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line.split() == [str(len(IDS)).encode(), b"0"]  # every Will connection up, none failed
        finally:
            proc.kill()
            await proc.wait()
        withdrawn = await asyncio.wait_for(_metas(sub, len(IDS)), 10)
    assert withdrawn == {sid: b"" for sid in IDS}  # an empty retained message: the meta is gone


async def test_a_clean_exit_leaves_the_metas_to_the_publisher(mosquitto) -> None:
    await _publish_metas(mosquitto)
    async with WillKeepers(host=mosquitto.host, port=mosquitto.port, prefix=PREFIX, stream_ids=IDS,
                           client_id="clean") as keepers:
        assert keepers.connected() == len(IDS) and keepers.failed == 0
    assert keepers.connected() == 0
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as sub:
        await sub.subscribe(f"{PREFIX}/+/meta", qos=1)
        assert await asyncio.wait_for(_metas(sub, len(IDS)), 5) == {sid: META for sid in IDS}


async def test_a_broker_that_is_down_is_counted_and_refresh_connects_later(mosquitto) -> None:
    mosquitto.stop()
    keepers = WillKeepers(host=mosquitto.host, port=mosquitto.port, prefix=PREFIX, stream_ids=IDS,
                          client_id="late", timeout_s=2.0)
    async with keepers:
        assert keepers.connected() == 0 and keepers.failed == len(IDS)
        mosquitto.start()
        await keepers.refresh()
        assert keepers.connected() == len(IDS) and keepers.failed == len(IDS)
        await keepers.refresh()  # all up: nothing to redo
        assert keepers.connected() == len(IDS)


def test_stream_ids_are_checked_before_any_connection() -> None:
    from pedstream.errors import PayloadError

    with pytest.raises(PayloadError):
        WillKeepers(host="127.0.0.1", port=1, prefix=PREFIX, stream_ids=["ok", "not/ok"], client_id="x")
