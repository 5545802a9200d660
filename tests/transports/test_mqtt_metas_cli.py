"""``pedstream mqtt metas``: stale retained metas listed and cleared, a live stream's kept. Real mosquitto
with the documented ACL (the ``admin`` user may write every meta topic)."""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np
import pytest

from pedstream.transports.mqtt import MQTTPublisher
from pedstream.transports.mqtt.admin import scan_metas
from pedstream.transports.mqtt.wire import encode_binary, encode_meta
from tests.support.acl_broker import PREFIX, USERS, acl_broker, needs_mosquitto
from tests.transports.test_stream_lifecycle import sending

pytestmark = [pytest.mark.timeout(60), needs_mosquitto]
META = encode_meta(fs=250.0, channels=["II", "V1"], units="mV")


async def cli(b, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from pedstream.cli import main; main()", "mqtt", "metas",
        "--set", f"mqtt.port={b.port}", "--set", f"mqtt.topic_prefix='{PREFIX}'", "--set", "mqtt.username='admin'",
        "--set", "mqtt.password_env='PEDSTREAM_TEST_ADMIN_PW'", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**__import__("os").environ, "PEDSTREAM_TEST_ADMIN_PW": USERS["admin"]})
    out, err = await asyncio.wait_for(proc.communicate(), 40)
    return proc.returncode, out.decode(), err.decode()


async def test_stale_metas_are_listed_and_cleared_live_ones_kept(tmp_path):
    with acl_broker(tmp_path) as b:
        async with MQTTPublisher(host=b.host, port=b.port, prefix=PREFIX, auth=b.auth("admin"),
                                 clear_meta_on_exit=False) as admin:
            for i in range(20):
                await admin.publish_meta(f"gone{i:02d}", META)
        async with MQTTPublisher(host=b.host, port=b.port, prefix=PREFIX, auth=b.auth("x001")) as p1:
            await p1.publish_meta("x001", META)
            await p1.publish_data("x001", encode_binary(np.zeros((5, 2), np.float32), seq=0, first_sample=0, t=0))
            async with sending(p1, "x001", 1.0, start=1):
                rc, out, err = await cli(b, "--listen", "1.5", "--json", "--clear-stale")
                assert rc == 0, err
                rows = {r["stream"]: r for r in map(json.loads, out.splitlines())}
                assert len(rows) == 21 and not rows["x001"]["stale"] and rows["x001"]["data_messages"] > 0
                assert all(rows[f"gone{i:02d}"]["stale"] for i in range(20))
                assert "21 retained meta(s)" in err and "20 stale" in err and "cleared 20" in err
                left = await scan_metas(host=b.host, port=b.port, prefix=PREFIX, auth=b.auth("monitor"), listen_s=0.5)
                assert [r.stream_id for r in left] == ["x001"]
        rc, out, err = await cli(b, "--listen", "0.5", "--clear", "bad/id")
        assert rc == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
