"""MQTT security: a real mosquitto with a TLS listener, a password file and an ACL in which a
publisher may write only its own ``pedstream/v1/<id>/#`` (issue 10, part 3).

The CA, server and client certificates are made here with the ``openssl`` CLI (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from pedstream.config import load_config
from pedstream.errors import ConfigError, StreamError as StreamFailure
from pedstream.transports.mqtt.wire import encode_binary, encode_meta
from pedstream.events import ChunkReceived, StreamAdded
from pedstream.transports.mqtt import MQTTAuth, MQTTPublisher, MQTTSource
from tests.conftest import MOSQUITTO, Broker, free_port
from tests.support import helpers

pytestmark = [pytest.mark.timeout(60), pytest.mark.service("mosquitto"), pytest.mark.service("mosquitto_passwd"),
              pytest.mark.service("openssl")]
PREFIX = "pedstream/v1"
wait_for = partial(helpers.wait_for, timeout=5.0)
META = encode_meta(fs=250.0, channels=["II"], units="mV")
USERS = {"monitor": "mon-secret-1", "bed1": "bed1-secret-2", "bed2": "bed2-secret-3"}


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> None:
    """CA, a server certificate for 127.0.0.1/localhost, a client certificate."""
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=pedstream test CA",
         "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", cwd=d)
        _run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-out", f"{name}.crt", "-extfile", "san.ext", cwd=d)


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("mqtt-tls")
    make_pki(d)
    pw = d / "passwords"
    pw.write_text("")
    for user, password in USERS.items():
        _run("mosquitto_passwd", "-b", str(pw), user, password, cwd=d)
    (d / "acl").write_text(
        "user monitor\n"
        f"topic read {PREFIX}/#\n"
        "\n"
        "# every other user: its own stream only\n"
        f"pattern readwrite {PREFIX}/%u/#\n",
        encoding="utf-8")
    port = free_port()
    conf = d / "mosquitto.conf"
    # running as root, mosquitto drops to user "mosquitto", which cannot read the pytest tmp folder
    run_as = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(
        run_as + f"per_listener_settings false\nallow_anonymous false\npassword_file {pw}\nacl_file {d / 'acl'}\n"
        f"persistence false\nlog_dest stderr\n"
        f"listener {port} 127.0.0.1\ncafile {d / 'ca.crt'}\ncertfile {d / 'server.crt'}\nkeyfile {d / 'server.key'}\n"
        "require_certificate false\n", encoding="utf-8")
    broker = Broker(conf=conf, log=d / "mosquitto.log", port=port)
    broker.start()
    broker.dir = d  # type: ignore[attr-defined]
    try:
        yield broker
    finally:
        broker.stop()


def auth(broker, user: str | None, password: str | None = None, *, tls: bool = True, client_cert: bool = False):
    d = broker.dir
    return MQTTAuth(username=user, password=password if password is not None else USERS.get(user or "", None),
                    tls=tls, ca_file=str(d / "ca.crt"),
                    cert_file=str(d / "client.crt") if client_cert else "",
                    key_file=str(d / "client.key") if client_cert else "")


def pub(broker, a: MQTTAuth) -> MQTTPublisher:
    return MQTTPublisher(host=broker.host, port=broker.port, prefix=PREFIX, timeout_s=3.0, auth=a)


async def test_tls_password_and_acl(secure_broker):
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    x = np.ones((5, 1), np.float32)
    async with MQTTSource(events=events, host=secure_broker.host, port=secure_broker.port, topic_prefix=PREFIX,
                          timeout_s=3.0, auth=auth(secure_broker, "monitor")) as src:
        await asyncio.wait_for(src.connected.wait(), 10)
        async with pub(secure_broker, auth(secure_broker, "bed1", client_cert=True)) as p1:
            await p1.publish_meta("bed2", META)  # not its own stream: the broker drops it (ACL)
            await p1.publish_data("bed2", encode_binary(x, seq=0, first_sample=0, t=0))
            await p1.publish_meta("bed1", META)
            await p1.publish_data("bed1", encode_binary(x, seq=0, first_sample=0, t=0))
            c = await wait_for(events, lambda e: isinstance(e, ChunkReceived), log=log)
            assert c.stream_id == "bed1"
    added = [e.info.stream_id for e in log if isinstance(e, StreamAdded)]
    assert added == ["bed1"]


@pytest.mark.parametrize("who", ["anonymous", "wrong password", "plain tcp"])
async def test_refused_connections(secure_broker, who):
    a = {"anonymous": auth(secure_broker, None), "wrong password": auth(secure_broker, "bed1", "nope"),
         "plain tcp": auth(secure_broker, "bed1", tls=False)}[who]
    with pytest.raises(StreamFailure):
        async with pub(secure_broker, a):
            pass


def test_password_sources_and_never_printed(tmp_path, monkeypatch, secure_broker):
    d = secure_broker.dir
    pw_file = tmp_path / "pw"
    pw_file.write_text("from-file-secret\n")
    base = ["mqtt.username='bed1'", "mqtt.tls=true", f"mqtt.ca_file='{d / 'ca.crt'}'"]
    a = MQTTAuth.from_section(load_config(overrides=base + [f"mqtt.password_file='{pw_file}'"]).mqtt)
    assert a.password == "from-file-secret" and "from-file-secret" not in repr(a)
    monkeypatch.setenv("PEDSTREAM_TEST_MQTT_PW", "from-env-secret")
    a = MQTTAuth.from_section(load_config(overrides=base + ["mqtt.password_env='PEDSTREAM_TEST_MQTT_PW'"]).mqtt)
    assert a.password == "from-env-secret"
    cfg = load_config(overrides=base + ["mqtt.password='inline-secret'"])
    assert "inline-secret" not in repr(cfg.mqtt) and "inline-secret" not in cfg.model_dump_json()
    assert MQTTAuth.from_section(cfg.mqtt).password == "inline-secret"
    with pytest.raises(ConfigError) as ei:
        load_config(overrides=base + ["mqtt.password='x'", f"mqtt.password_file='{pw_file}'"])
    assert "at most one" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        MQTTAuth.from_section(load_config(overrides=base + ["mqtt.password_env='PEDSTREAM_NOT_SET_XYZ'"]).mqtt)
    assert "PEDSTREAM_NOT_SET_XYZ" in str(ei.value)
    with pytest.raises(ConfigError):
        MQTTAuth.from_section(load_config(overrides=["mqtt.tls=true", f"mqtt.ca_file='{tmp_path / 'missing.crt'}'"]).mqtt)


async def test_publish_mqtt_sink_uses_the_same_credentials_and_tls(secure_broker):
    """``--publish-mqtt`` (MQTTSink) connects with the ``[mqtt]`` username/password/TLS like the source
    (one client construction path, ``make_client``); without them the broker refuses it."""
    from pedstream.transports.mqtt.publisher import MQTTSink
    from pedstream.events import MonitorEvent
    from pedstream.transports.mqtt import make_client

    async with make_client(secure_broker.host, secure_broker.port, identifier=None, auth=auth(secure_broker, "monitor"),
                           timeout_s=3.0) as sub:
        await sub.subscribe(f"{PREFIX}/+/rhythm", timeout=3.0)
        async with MQTTSink(host=secure_broker.host, port=secure_broker.port, prefix=PREFIX,
                            auth=auth(secure_broker, "bed1"), timeout_s=3.0) as sink:
            await asyncio.wait_for(sink.connected.wait(), 10)
            sink.emit(MonitorEvent(stream="bed1", kind="call", label="sinus", p=0.9))

            async def first():
                async for m in sub.messages:
                    return m
            msg = await asyncio.wait_for(first(), 10)
        assert str(msg.topic) == f"{PREFIX}/bed1/rhythm" and b'"label":"sinus"' in msg.payload
        refused = MQTTSink(host=secure_broker.host, port=secure_broker.port, prefix=PREFIX, timeout_s=3.0)
        async with refused:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(refused.connected.wait(), 1.5)
