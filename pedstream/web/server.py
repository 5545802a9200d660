"""``--web``: the checks made before the monitor starts, and the server (uvicorn) that runs beside it.

:class:`WebService` is built before anything starts, so a bad set-up is one ``error:`` line and exit
2: a non-loopback address without TLS (``[web] cert_file``/``key_file``) and a users file is
refused; so are an unreadable users file or certificate and an address already in use. On loopback
without a users file a one-time login (user ``demo``, a random password, role clinician) is made
and printed. :meth:`WebService.serve` then runs the server and the station's task on the monitor's
event loop until cancelled (uvicorn's own signal handling is left out: the monitor's stays).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from pathlib import Path
from typing import Any, Iterator

import uvicorn

from pedstream.web.app import build_app
from pedstream.web.auth import Users, WebError
from pedstream.web.station import WebStation
from pedstream.config import Config

__all__ = ["WebService", "parse_bind", "is_loopback"]

_WS_MAX_MESSAGE = 16 * 1024  # bytes a browser may send in one WebSocket message


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port)."""
    host, sep, port = str(text).strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise WebError(f"bind address {text!r}", "expected HOST:PORT, e.g. 127.0.0.1:8765 or [::1]:8765")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (the monitor's Ctrl-C/SIGTERM handling stays in charge)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebService:
    """The web station of one monitor run (module docstring)."""

    def __init__(self, cfg: Config, *, bind: str | None = None, alarms_dir: Path | None = None) -> None:
        w = cfg.web
        self.host, port = parse_bind(bind or w.bind)
        self.tls = bool(w.cert_file or w.key_file)
        loopback = is_loopback(self.host)
        if not loopback and not (self.tls and w.users_file):
            raise WebError(f"--bind {self.host}:{port}", "a non-loopback address needs TLS ([web] cert_file, key_file) "
                                                         "and a users file ([web] users_file); or bind 127.0.0.1")
        if bool(w.cert_file) != bool(w.key_file):
            raise WebError("[web] cert_file/key_file", "give both (PEM certificate and private key) or neither")
        if self.tls:
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(w.cert_file, w.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise WebError(f"TLS {w.cert_file}, {w.key_file}", f"cannot load them ({exc})") from exc
        self.password: str | None = None
        if w.users_file:
            self.users = Users.from_file(w.users_file)
        else:
            self.users, self.password = Users.one_time()
        self.sock = self._listen(self.host, port)
        self.port = int(self.sock.getsockname()[1])
        self.station = WebStation(cfg=cfg, alarms_dir=alarms_dir)
        self.cfg = cfg
        hosts = {"127.0.0.1", "localhost", "[::1]", self.host if ":" not in self.host else f"[{self.host}]"}
        self.app, self.webapp = build_app(station=self.station, users=self.users, tls=self.tls, cfg=w,
                                          hosts=hosts if loopback else None)
        self.server: _Server | None = None

    @staticmethod
    def _listen(host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            return socket.create_server((host, port), family=family, reuse_port=False)
        except OSError as exc:
            raise WebError(f"--bind {host}:{port}", f"cannot listen there ({exc.strerror or exc})") from exc

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    def intro(self) -> list[str]:
        """The lines a run prints: where the station is, and the one-time login when there is one."""
        lines = [f"web station: {self.url}"]
        if self.password is not None:
            lines.append(f"web login (one-time, this run only): user demo, password {self.password}")
        else:
            lines.append(f"web users: {self.users.source}")
        return lines

    async def serve(self, engine: Any) -> None:
        """Serve until cancelled; the station reads ``engine``'s snapshots and records actions as its events."""
        self.station.attach(engine)
        w = self.cfg.web
        config = uvicorn.Config(self.app, log_config=None, log_level="warning", access_log=False, lifespan="off",
                                ws="websockets-sansio", ws_max_size=_WS_MAX_MESSAGE, ws_per_message_deflate=False,
                                server_header=False, proxy_headers=False, timeout_graceful_shutdown=2,
                                limit_concurrency=4 * w.max_clients + 32,
                                ssl_certfile=w.cert_file or None, ssl_keyfile=w.key_file or None)
        self.server = _Server(config)
        tasks = [asyncio.create_task(self.server.serve(sockets=[self.sock]), name="web-server"),
                 asyncio.create_task(self.station.run(), name="web-station")]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.server.should_exit = True
            tasks[1].cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await asyncio.gather(*tasks, return_exceptions=True)
            for t in tasks:
                t.cancel()
            self.sock.close()
