"""``--web`` set-up checks and the station's security over real HTTPS (pedstream.web.server, .app).

A real engine (the packaged model, no sources) and the real server on a free loopback port with a
self-signed certificate made by ``openssl``; requests with the standard library's HTTP client."""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import ssl
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner

from pedstream.config import load_config
from pedstream.web.auth import Users, WebError, add_user
from pedstream.web.server import WebService, is_loopback, parse_bind

REPO = Path(__file__).resolve().parents[2]


def test_bind_addresses_parse_and_loopback_is_recognised():
    assert parse_bind("127.0.0.1:8765") == ("127.0.0.1", 8765) and parse_bind("[::1]:0") == ("::1", 0)
    for bad in ("8765", "host:", ":80", "h:99999"):
        with pytest.raises(WebError):
            parse_bind(bad)
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("ward.example")


def test_a_non_loopback_bind_without_tls_and_users_is_refused_in_one_line():
    record = REPO / "pedstream" / "assets" / "demo_records" / "x001"
    cmd = [sys.executable, "-m", "pedstream.cli", "run", "--source", "replay", "--records", str(record),
           "--headless", "--web", "--bind", "0.0.0.0:0"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert errors == ["error: web: --bind 0.0.0.0:0: a non-loopback address needs TLS ([web] cert_file, key_file) "
                      "and a users file ([web] users_file); or bind 127.0.0.1"]
    assert "Traceback" not in r.stderr


def test_adduser_writes_a_hash_from_stdin(tmp_path):
    from pedstream.cli import cli

    path = tmp_path / "users"
    r = CliRunner().invoke(cli, ["web", "adduser", str(path), "ana", "--role", "clinician", "--password-stdin"],
                           input="a long password\n")
    assert r.exit_code == 0, r.output
    assert Users.from_file(path).verify("ana", "a long password").role == "clinician"


@pytest.fixture
def tls_files(tmp_path):
    from tests.conftest import service_missing

    if service_missing("openssl"):
        pytest.skip(service_missing("openssl"))
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True, timeout=60)
    return cert, key


def _request(port: int, method: str, path: str, *, body: str | None = None, headers: dict | None = None):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # our self-signed test certificate
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


async def test_tls_station_cookies_csp_csrf_and_login_limit(tmp_path, tls_files):
    from pedstream.monitor.engine import Engine
    from pedstream.monitor.assembly import open_model

    users = tmp_path / "users"
    add_user(users, "vic", "viewer", "viewer password")
    cert, key = tls_files
    cfg = load_config(overrides=[f"web.users_file={users}", f"web.cert_file={cert}", f"web.key_file={key}",
                                 "web.login_max_failures=3"])
    svc = WebService(cfg, bind="127.0.0.1:0")
    assert svc.url.startswith("https://127.0.0.1:") and svc.password is None
    engine = Engine(cfg=cfg, session=open_model(cfg, None), alarms_dir=tmp_path / "alarms")
    async with engine:
        task = asyncio.create_task(svc.serve(engine))
        try:
            await asyncio.to_thread(_check_tls_station, svc.port)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _check_tls_station(port: int) -> None:
    resp, _ = _request(port, "GET", "/")
    assert resp.status == 303 and resp.getheader("location") == "/login"
    resp, page = _request(port, "GET", "/login")
    csp = resp.getheader("content-security-policy")
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert resp.getheader("strict-transport-security") and resp.getheader("x-frame-options") == "DENY"
    login_cookie = resp.getheader("set-cookie")
    assert login_cookie.startswith("__Host-pedstream-login=") and "Secure" in login_cookie
    token = login_cookie.split(";", 1)[0].split("=", 1)[1]
    hdrs = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"__Host-pedstream-login={token}"}
    form = {"user": "vic", "password": "viewer password", "csrf": "forged"}
    resp, _ = _request(port, "POST", "/login", body=urlencode(form), headers=hdrs)
    assert resp.status == 403  # the double-submit token does not match
    resp, _ = _request(port, "POST", "/login", body=urlencode({**form, "csrf": token}), headers=hdrs)
    cookie = resp.getheader("set-cookie")
    assert resp.status == 303 and cookie.startswith("__Host-pedstream=")
    low = cookie.lower()
    assert "httponly" in low and "secure" in low and "samesite=strict" in low and "path=/" in low
    session = {"Cookie": cookie.split(";", 1)[0]}
    resp, data = _request(port, "GET", "/api/session", headers=session)
    me = json.loads(data)
    assert me["role"] == "viewer"
    act = json.dumps({"stream": "x", "label": "vt", "action": "ack"})
    resp, _ = _request(port, "POST", "/api/alarm", body=act, headers=session)
    assert resp.status == 403  # no CSRF token
    resp, data = _request(port, "POST", "/api/alarm", body=act, headers={**session, "X-CSRF-Token": me["csrf"]})
    assert resp.status == 403 and b"viewers cannot" in data
    statuses = []
    for _ in range(4):
        resp, _ = _request(port, "POST", "/login", body=urlencode({**form, "csrf": token, "password": "guess"}), headers=hdrs)
        statuses.append(resp.status)
    assert statuses == [401, 401, 401, 429]
    resp, _ = _request(port, "POST", "/login", body=urlencode({**form, "csrf": token}), headers=hdrs)
    assert resp.status == 429  # even the right password, until the window has passed
    resp, _ = _request(port, "POST", "/login", body="x" * 10_000, headers=hdrs)
    assert resp.status == 413
