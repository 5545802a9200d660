"""The web station's HTTP and WebSocket endpoints (Starlette).

Every page and every datum needs a login; the login form and static files (no patient data) do not.
Session cookie ``HttpOnly``, ``SameSite=Strict`` and, under TLS, ``Secure`` with the ``__Host-``
prefix. Actions (acknowledge, silence, log out) need the session's CSRF token (header
``X-CSRF-Token`` or form field); the login form is protected by a double-submit token. Every
response carries a strict Content-Security-Policy (scripts, styles, images and connections from
this origin only; no inline script). Request bodies and WebSocket messages are bounded before
they are parsed.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import secrets
import time
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from pedstream.web.alarmstate import ActionRefused
from pedstream.web.auth import LoginLimiter, Session, Sessions, Users
from pedstream.web.station import WebStation
from pedstream.config import WebSection

__all__ = ["build_app", "CSP", "static_dir"]

log = logging.getLogger("pedstream.web")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"), (b"referrer-policy", b"same-origin"),
            (b"cross-origin-opener-policy", b"same-origin"), (b"cache-control", b"no-store")]
_MAX_BODY = 4096
_STRIP_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,200}\.png$")
_SEND_TIMEOUT_S = 10.0


def static_dir() -> Path:
    return Path(str(resources.files("pedstream.web") / "static"))


class _SecurityHeaders:
    """ASGI middleware: the security headers on every HTTP response (HSTS under TLS); on a loopback
    address, requests naming another host (DNS rebinding) are refused."""

    def __init__(self, app: Any, *, tls: bool, hosts: set[str] | None) -> None:
        self.app = app
        self.extra = _HEADERS + ([(b"strict-transport-security", b"max-age=31536000")] if tls else [])
        self.hosts = hosts

    def _host_ok(self, scope: dict) -> bool:
        if self.hosts is None:
            return True
        host = dict(scope.get("headers", ())).get(b"host", b"").decode("latin-1")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in self.hosts

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and not self._host_ok(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            else:
                await Response("unknown host", status_code=400, headers=dict((k.decode(), v.decode()) for k, v in self.extra))(
                    scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *[(k, v) for k, v in self.extra if k not in names]]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _Body(Exception):
    pass


async def _bounded_body(request: Request) -> bytes:
    if int(request.headers.get("content-length") or 0) > _MAX_BODY:
        raise _Body
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            raise _Body
    return body


class WebApp:
    """Routes over one :class:`WebStation`, one :class:`Users` and the session store."""

    def __init__(self, *, station: WebStation, users: Users, tls: bool, cfg: WebSection) -> None:
        self.station = station
        self.users = users
        self.tls = tls
        self.sessions = Sessions(lifetime_s=cfg.session_s)
        self.limiter = LoginLimiter(max_failures=cfg.login_max_failures, window_s=cfg.login_window_s)
        self.cookie = "__Host-pedstream" if tls else "pedstream_session"
        self.login_cookie = "__Host-pedstream-login" if tls else "pedstream_login"
        self.max_screens = cfg.max_clients
        self._verify = asyncio.Semaphore(2)  # argon2 verifications at once (CPU and memory bound)
        self.static = static_dir()

    # -- helpers ------------------------------------------------------------------------------------
    def _session(self, conn: Request | WebSocket) -> Session | None:
        return self.sessions.get(conn.cookies.get(self.cookie))

    def _cookie(self, resp: Response, key: str, value: str, max_age: int | None) -> None:
        resp.set_cookie(key, value, max_age=max_age, path="/", secure=self.tls, httponly=True, samesite="strict")

    @staticmethod
    def _same_origin(conn: Request | WebSocket) -> bool:
        origin = conn.headers.get("origin")
        if origin is None:
            return True  # not sent by every browser on same-origin GET/POST; SameSite=Strict covers those
        return origin.split("://", 1)[-1] == conn.headers.get("host", "")

    def _login_page(self, *, message: str = "", status: int = 200) -> Response:
        token = secrets.token_urlsafe(24)
        text = (self.static / "login.html").read_text(encoding="utf-8")
        text = text.replace("{{csrf}}", html.escape(token)).replace("{{message}}", html.escape(message))
        resp = HTMLResponse(text, status_code=status)
        self._cookie(resp, self.login_cookie, token, 600)
        return resp

    # -- pages ----------------------------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        if self._session(request) is None:
            return RedirectResponse("/login", status_code=303)
        return FileResponse(self.static / "ward.html", media_type="text/html")

    async def login_form(self, request: Request) -> Response:
        return self._login_page()

    async def login(self, request: Request) -> Response:
        try:
            form = parse_qs((await _bounded_body(request)).decode("utf-8", "replace"), max_num_fields=4)
        except (_Body, ValueError):
            return self._login_page(message="request too large", status=413)
        name, password, token = (form.get(k, [""])[0] for k in ("user", "password", "csrf"))
        cookie = request.cookies.get(self.login_cookie, "")
        if not self._same_origin(request) or not token or not secrets.compare_digest(token.encode(), cookie.encode()):
            return self._login_page(message="the form expired, please try again", status=403)
        client = request.client.host if request.client else "?"
        wait = self.limiter.retry_after(name, client)
        if wait > 0:
            log.warning("web: login for %r from %s refused: too many failures", name[:64], client)
            return self._login_page(message=f"too many failed logins: try again in {wait:.0f} s", status=429)
        async with self._verify:
            user = await asyncio.to_thread(self.users.verify, name, password)
        if user is None:
            self.limiter.failed(name, client)
            return self._login_page(message="wrong user name or password", status=401)
        token, _ = self.sessions.create(user)
        log.info("web: %s (%s) logged in from %s", user.name, user.role, client)
        resp = RedirectResponse("/", status_code=303)
        self._cookie(resp, self.cookie, token, int(self.sessions.lifetime_s))
        resp.delete_cookie(self.login_cookie, path="/", secure=self.tls, httponly=True, samesite="strict")
        return resp

    async def logout(self, request: Request) -> Response:
        sess = self._session(request)
        if sess is not None and self._csrf_ok(request, sess, await self._form_token(request)):
            self.sessions.drop(request.cookies.get(self.cookie))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(self.cookie, path="/", secure=self.tls, httponly=True, samesite="strict")
        return resp

    async def _form_token(self, request: Request) -> str:
        try:
            return parse_qs((await _bounded_body(request)).decode("utf-8", "replace"), max_num_fields=4).get("csrf", [""])[0]
        except (_Body, ValueError):
            return ""

    def _csrf_ok(self, request: Request, sess: Session, token: str | None) -> bool:
        token = token or request.headers.get("x-csrf-token", "")
        return self._same_origin(request) and secrets.compare_digest(token.encode(), sess.csrf.encode())

    # -- data ---------------------------------------------------------------------------------------------
    async def session_info(self, request: Request) -> Response:
        sess = self._session(request)
        if sess is None:
            return JSONResponse({"error": "login required"}, status_code=401)
        return JSONResponse({"user": sess.user.name, "role": sess.user.role, "csrf": sess.csrf})

    async def alarm_action(self, request: Request) -> Response:
        sess = self._session(request)
        if sess is None:
            return JSONResponse({"error": "login required"}, status_code=401)
        if not self._csrf_ok(request, sess, None):
            return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
        if not sess.user.may_act:
            log.warning("web: %s (%s) tried to act on an alarm", sess.user.name, sess.user.role)
            return JSONResponse({"error": "viewers cannot acknowledge or silence alarms"}, status_code=403)
        try:
            body = json.loads(await _bounded_body(request))
            stream, label, action = (str(body[k])[:200] for k in ("stream", "label", "action"))
            seconds = body.get("seconds")
            seconds = None if seconds is None else float(seconds)
            ev = self.station.act(sess, stream=stream, label=label, action=action, seconds=seconds)
        except _Body:
            return JSONResponse({"error": "request too large"}, status_code=413)
        except (ValueError, KeyError, TypeError, AttributeError):
            return JSONResponse({"error": "expected JSON {stream, label, action, seconds?}"}, status_code=400)
        except ActionRefused as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse(ev.to_dict())

    async def strip(self, request: Request) -> Response:
        if self._session(request) is None:
            return JSONResponse({"error": "login required"}, status_code=401)
        name = request.path_params["name"]
        path = self.station.strip_path(name) if _STRIP_RE.match(name) else None
        if path is None:
            return JSONResponse({"error": "no such strip"}, status_code=404)
        return FileResponse(path, media_type="image/png")

    # -- live -----------------------------------------------------------------------------------------------
    async def live(self, ws: WebSocket) -> None:
        sess = self._session(ws)
        if sess is None or not self._same_origin(ws):
            await ws.close(code=1008)  # before accept: the handshake is refused (HTTP 403)
            return
        if len(self.station.screens) >= self.max_screens:
            await ws.close(code=1013)
            return
        await ws.accept()
        screen = self.station.open_screen(sess)
        reader = asyncio.create_task(self._read(ws, screen), name="web-screen-read")
        try:
            await self._write(ws, screen, reader)
        except (WebSocketDisconnect, TimeoutError, RuntimeError, OSError):
            pass
        finally:
            reader.cancel()
            self.station.close_screen(screen)
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, ws: WebSocket, screen: Any) -> None:
        """What the screen looks at: ``{"t": "look", "visible": [stream ids], "bed": id | null}``."""
        while True:
            text = await ws.receive_text()  # bounded by the server's ws_max_size
            try:
                msg = json.loads(text)
                if not isinstance(msg, dict) or msg.get("t") != "look":
                    continue
                visible = [str(v)[:200] for v in msg.get("visible", [])[:1024] if isinstance(v, str)]
                bed = msg.get("bed")
                self.station.look(screen, visible=visible, bed=bed if isinstance(bed, str) else None)
            except (ValueError, TypeError, AttributeError):
                continue

    async def _write(self, ws: WebSocket, screen: Any, reader: asyncio.Task) -> None:
        st = self.station
        while not reader.done():
            wake = asyncio.create_task(screen.wake.wait())
            await asyncio.wait([wake, reader], return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
            screen.wake.clear()
            if screen.session.expires < time.monotonic():
                await ws.close(code=4401)
                return
            async with asyncio.timeout(_SEND_TIMEOUT_S):  # a screen that takes nothing is dropped
                while screen.outbox and not reader.done():  # reader done: the browser has gone
                    text = screen.outbox.popleft()
                    await ws.send_text(text)
                    screen.bytes_sent += len(text)
                    st.bytes_sent += len(text)
                t0 = time.thread_time()
                frames = st.frames_for(screen)
                st.busy_s += time.thread_time() - t0
                for frame in frames:
                    if reader.done():
                        break
                    await ws.send_bytes(frame)
                    screen.bytes_sent += len(frame)
                    st.bytes_sent += len(frame)
                    st.frames_sent += 1
        reader.result()  # re-raise the disconnect


def build_app(*, station: WebStation, users: Users, tls: bool, cfg: Any,
              hosts: set[str] | None = None) -> tuple[Any, WebApp]:
    """The ASGI application (security headers around the Starlette routes) and its :class:`WebApp`;
    ``hosts``: the only Host header names accepted (None: any)."""
    web = WebApp(station=station, users=users, tls=tls, cfg=cfg)
    routes = [
        Route("/", web.page), Route("/bed/{stream:path}", web.page),
        Route("/login", web.login_form, methods=["GET"]), Route("/login", web.login, methods=["POST"]),
        Route("/logout", web.logout, methods=["POST"]),
        Route("/api/session", web.session_info), Route("/api/alarm", web.alarm_action, methods=["POST"]),
        Route("/strips/{name}", web.strip), WebSocketRoute("/ws", web.live),
        Mount("/static", app=StaticFiles(directory=str(web.static)), name="static"),
    ]
    app = Starlette(routes=routes)
    return _SecurityHeaders(app, tls=tls, hosts=hosts), web
