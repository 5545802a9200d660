"""A real mosquitto set up as docs/security.md prescribes: a password file and an ACL in which every
user may write only ``pedstream/v1/<user>/#`` (``pattern readwrite pedstream/v1/%u/#``), the monitor
reads everything, and a gateway user may also write the topics of the streams it bundles.

``acl_broker(tmp_path)`` is a context manager yielding a :class:`tests.conftest.Broker` with
``users`` (name -> password) and ``auth(user)`` (an :class:`MQTTAuth`). Plain TCP on 127.0.0.1 (the
TLS side is covered by test_mqtt_security.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from pedstream.transports.mqtt import MQTTAuth, MQTTPublisher, MQTTSource
from pedstream.transports.mqtt.wire import encode_binary
from tests.conftest import Broker, free_port

__all__ = ["PREFIX", "USERS", "GATEWAY_STREAMS", "acl_broker", "needs_mosquitto", "ACL", "chunk", "monitor",
           "publisher"]

PREFIX = "pedstream/v1"
USERS = {"monitor": "mon-pw-1", "x001": "x001-pw-2", "x002": "x002-pw-3", "evil": "evil-pw-4", "gw": "gw-pw-5",
         "admin": "admin-pw-6",
         "evil2": "evil2-pw-7"}
GATEWAY_STREAMS = ("gw-bed1", "gw-bed2")
# the ACL of docs/security.md (the monitor; an administrator for `pedstream mqtt metas --clear`; a gateway)
ACL = (f"pattern readwrite {PREFIX}/%u/#\n"
       "\n"
       "user monitor\n"
       f"topic read {PREFIX}/#\n"
       "\n"
       "user admin\n"
       f"topic read {PREFIX}/#\n"
       f"topic readwrite {PREFIX}/+/meta\n"
       "\n"
       "user gw\n"
       + "".join(f"topic readwrite {PREFIX}/{s}/#\n" for s in GATEWAY_STREAMS))

needs_mosquitto = pytest.mark.service("mosquitto_passwd")  # tests/conftest.py: mosquitto and its password tool


def chunk(seq: int, value: float, n: int = 25) -> bytes:
    """A binary data message of a 2-channel 250 Hz stream: ``n`` samples of ``value``, sequence ``seq``."""
    return encode_binary(np.full((n, 2), value, np.float32), seq=seq, first_sample=seq * n, t=seq * n / 250.0)


def monitor(broker: Broker, events: Any, **kw: Any) -> MQTTSource:
    """The monitor's source on ``broker`` as user ``monitor``, with quick reconnects."""
    return MQTTSource(events=events, host=broker.host, port=broker.port, topic_prefix=PREFIX, timeout_s=3.0,
                      auth=broker.auth("monitor"), reconnect_min_s=0.05, reconnect_max_s=0.3, **kw)


def publisher(broker: Broker, user: str, **kw: Any) -> MQTTPublisher:
    """A publisher on ``broker`` as ``user``."""
    return MQTTPublisher(host=broker.host, port=broker.port, prefix=PREFIX, timeout_s=3.0, auth=broker.auth(user), **kw)


@contextlib.contextmanager
def acl_broker(d: Path, *, extra_conf: str = "") -> Iterator[Broker]:
    d.mkdir(parents=True, exist_ok=True)
    pw = d / "passwords"
    pw.write_text("")
    for user, password in USERS.items():
        subprocess.run([shutil.which("mosquitto_passwd") or "mosquitto_passwd", "-b", str(pw), user, password],
                       check=True, capture_output=True, timeout=30)
    (d / "acl").write_text(ACL, encoding="utf-8")
    port = free_port()
    run_as = "user root\n" if os.geteuid() == 0 else ""  # as root mosquitto would drop to a user that cannot read d
    conf = d / "mosquitto.conf"
    conf.write_text(run_as + f"per_listener_settings false\nallow_anonymous false\npassword_file {pw}\n"
                    f"acl_file {d / 'acl'}\npersistence false\nlog_dest stderr\nlistener {port} 127.0.0.1\n"
                    "set_tcp_nodelay true\n" + extra_conf, encoding="utf-8")
    broker = Broker(conf=conf, log=d / "mosquitto.log", port=port)
    broker.start()
    broker.users = USERS  # type: ignore[attr-defined]
    broker.auth = lambda user: MQTTAuth(username=user, password=USERS[user])  # type: ignore[attr-defined]
    try:
        yield broker
    finally:
        broker.stop()
