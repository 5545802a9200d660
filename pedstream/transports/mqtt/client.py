"""The one MQTT connection path (aiomqtt, MQTT v5, TCP_NODELAY) of the source, the publisher and the
``--publish-mqtt`` sink: :class:`MQTTAuth` (``[mqtt] username``, ``password`` / ``password_file`` /
``password_env``, ``tls``, ``ca_file``, ``cert_file``, ``key_file``; the password is never logged),
:func:`make_client`, and the broker probe behind the reconnect policy (:func:`wait_backoff`).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from pedstream.errors import ConfigError
from pedstream.config import MQTTSection

__all__ = ["MQTTAuth", "NODELAY", "make_client", "paho_client", "retrieve_disconnect_error", "wait_backoff"]

NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
_MAX_PENDING = 256


def retrieve_disconnect_error(client: aiomqtt.Client | None) -> None:
    """aiomqtt keeps a broken connection's error in a future nobody awaits when the client is left
    after the break; read it so asyncio does not log 'exception was never retrieved'."""
    fut = getattr(client, "_disconnected", None)
    if isinstance(fut, asyncio.Future) and fut.done() and not fut.cancelled():
        fut.exception()


@dataclass(frozen=True, slots=True)
class MQTTAuth:
    """Credentials and TLS for the broker connection. ``repr`` never shows the password."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @classmethod
    def from_section(cls, section: MQTTSection) -> "MQTTAuth":
        """From ``[mqtt]``: the password from ``password``, ``password_file`` (first line) or the
        environment variable named by ``password_env``. Problems are :class:`ConfigError`."""
        password: str | None = None
        pw = getattr(section, "password", None)
        if pw is not None:
            password = pw.get_secret_value() if hasattr(pw, "get_secret_value") else str(pw)
        elif getattr(section, "password_file", ""):
            path = Path(section.password_file).expanduser()
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError([("mqtt.password_file", f"cannot read {path} ({type(exc).__name__})")]) from exc
            password = lines[0] if lines else ""
        elif getattr(section, "password_env", ""):
            name = section.password_env
            if name not in os.environ:
                raise ConfigError([("mqtt.password_env", f"environment variable {name} is not set")])
            password = os.environ[name]
        auth = cls(username=getattr(section, "username", None), password=password,
                   tls=bool(getattr(section, "tls", False)), ca_file=getattr(section, "ca_file", "") or "",
                   cert_file=getattr(section, "cert_file", "") or "", key_file=getattr(section, "key_file", "") or "")
        if auth.tls:
            auth.ssl_context()  # refuse unreadable files now, as a configuration error
        return auth

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file or None)
            if self.cert_file:
                ctx.load_cert_chain(self.cert_file, self.key_file or None)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError([("mqtt.tls", f"cannot load the TLS files ({exc.__class__.__name__}: "
                                             f"{getattr(exc, 'strerror', None) or exc})")]) from exc
        return ctx

    def client_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.username is not None:
            kw["username"] = self.username
            kw["password"] = self.password
        ctx = self.ssl_context()
        if ctx is not None:
            kw["tls_context"] = ctx
        return kw


def make_client(host: str, port: int, *, identifier: str | None, auth: MQTTAuth | None, timeout_s: float,
                keepalive_s: int = 30, will: aiomqtt.Will | None = None, **kw: Any) -> aiomqtt.Client:
    """The one way pedstream builds an MQTT client (source, publisher, ``--publish-mqtt`` sink, demo feeders):
    MQTT v5, TCP_NODELAY, the ``[mqtt]`` credentials and TLS of ``auth``, ``timeout_s`` on every network await."""
    return aiomqtt.Client(host, int(port), identifier=identifier, protocol=aiomqtt.ProtocolVersion.V5,
                          timeout=timeout_s, keepalive=int(keepalive_s), socket_options=NODELAY, will=will,
                          **(auth or MQTTAuth()).client_kwargs(), **kw)


def paho_client(client: aiomqtt.Client | None) -> Any:
    """The paho client inside an aiomqtt client (aiomqtt 2.x keeps it as ``_client``), or None.

    The publisher queues QoS-0 data through it without awaiting each message: aiomqtt's ``publish``
    waits for the write of every message (one event-loop turn, an add/remove of the socket writer and a
    self-pipe wake-up each), which made publishing the costliest part of the MQTT path; paho itself
    writes every queued packet in one writer callback."""
    inner = getattr(client, "_client", None)
    return inner if inner is not None and hasattr(inner, "publish") and hasattr(inner, "is_connected") else None


async def _probe(host: str, port: int, timeout: float) -> bool:
    """True when ``host:port`` accepts a TCP connection within ``timeout``."""
    # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation (the task then
    # outlives its cancel and the source's exit waits on it)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    try:
        async with asyncio.timeout(timeout):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        pass
    return True


async def wait_backoff(host: str, port: int, delay: float, *, probe_interval_s: float = 0.25) -> bool:
    """Wait up to ``delay`` seconds before a reconnect; return early (True) as soon as the broker
    accepts TCP connections again after having refused them during this wait."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    was_down = False
    while (left := deadline - loop.time()) > 0:
        up = await _probe(host, port, min(max(probe_interval_s, 0.05), left))
        if up and was_down:
            return True
        was_down |= not up
        left = deadline - loop.time()
        if left > 0:
            await asyncio.sleep(min(probe_interval_s, left))
    return False
