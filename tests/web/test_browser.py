"""The web station in a real headless Chromium, over a real ``pedstream run --web`` replaying a
simulated AVRT record (x003), a real VT excerpt (vfdb 421: the rhythm-context layer's high
priority vt alarm turns the tile red) and a real MIT-BIH excerpt (208: PVCs). Also: no login, no data (HTTP and the
WebSocket, with a plain client)."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
from urllib.parse import urlencode, urlsplit

import pytest
import websockets

from tests.web.conftest import PASSWORDS

RED = "rgba(224, 36, 36, 1)"  # .prio-high border (IEC 60601-1-8 high priority: red)


def _conn(url: str) -> http.client.HTTPConnection:
    u = urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=10)


def _get(url: str, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    c = _conn(url)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    c.close()
    return out


def _login_cookie(url: str, user: str) -> str:
    status, hdrs, page = _get(url, "/login")
    token = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
    c = _conn(url)
    c.request("POST", "/login", body=urlencode({"user": user, "password": PASSWORDS[user], "csrf": token}),
              headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"pedstream_login={token}"})
    r = c.getresponse()
    r.read()
    assert r.status == 303
    return r.getheader("set-cookie").split(";", 1)[0]


def test_no_login_no_data_over_http_or_websocket(station):
    status, hdrs, _ = _get(station.url, "/")
    assert status == 303 and hdrs["location"] == "/login"
    assert _get(station.url, "/bed/x003")[0] == 303
    assert _get(station.url, "/api/session")[0] == 401
    assert _get(station.url, "/strips/x003_vt.png")[0] == 401
    assert _get(station.url, "/api/session", {"Cookie": "pedstream_session=forged"})[0] == 401
    ws_url = station.url.replace("http://", "ws://") + "ws"
    cookie = _login_cookie(station.url, "vic")

    async def attempts() -> list:
        out = []
        for headers in ({}, {"Cookie": "pedstream_session=forged"}, {"Cookie": cookie, "Origin": "http://evil.example"}):
            try:
                async with websockets.connect(ws_url, additional_headers=headers, open_timeout=10):
                    out.append("open")
            except websockets.InvalidStatus as exc:
                out.append(exc.response.status_code)
        async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}, open_timeout=10) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
            out.append((hello["t"], hello["user"], hello["role"]))
        return out

    assert asyncio.run(attempts()) == [403, 403, 403, ("hello", "vic", "viewer")]
    port = urlsplit(station.url).port
    assert _get(station.url, "/login", {"Host": f"rebound.example:{port}"})[0] == 400  # DNS rebinding


def test_logging_out_closes_the_open_screen(station):
    cookie = _login_cookie(station.url, "vic")
    ws_url = station.url.replace("http://", "ws://") + "ws"

    async def run() -> int:
        async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}, open_timeout=10) as ws:
            await asyncio.wait_for(ws.recv(), 10)
            csrf = json.loads(_get(station.url, "/api/session", {"Cookie": cookie})[2])["csrf"]
            c = _conn(station.url)
            c.request("POST", "/logout", body=urlencode({"csrf": csrf}),
                      headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
            assert c.getresponse().status == 303
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(10):
                    while True:
                        await ws.recv()
            return closed.value.rcvd.code

    assert asyncio.run(run()) == 4401
    assert _get(station.url, "/api/session", {"Cookie": cookie})[0] == 401


def _login(driver, url: str, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "login")
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()


def _wait(driver, cond, timeout: float = 30.0, what: str = ""):
    """Wait for ``cond`` (bounded). An element that the page replaced between finding and reading it (a
    navigation or re-render in progress, StaleElementReferenceException) is looked up again at the next poll."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: cond(d), message=what)


def _tile(driver, sid: str):
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, f'.tile[data-stream="{sid}"]')
    return found[0] if found else None


@pytest.mark.service("chromium")
def test_wrong_password_is_refused(station, browsers):
    from selenium.webdriver.common.by import By

    d = browsers()
    _login(d, station.url, "ana", "not her password")
    _wait(d, lambda d: "wrong user name or password" in d.find_element(By.ID, "login-error").text, 15, "refusal shown")
    assert urlsplit(d.current_url).path == "/login"
    assert d.execute_script("return document.cookie") == ""  # HttpOnly: the page's script never sees a cookie


@pytest.mark.service("chromium")
def test_ward_waveforms_red_alarm_acknowledged_on_every_screen(station, browsers):
    from selenium.webdriver.common.by import By

    a, b = browsers(), browsers()
    _login(a, station.url, "ana", PASSWORDS["ana"])  # clinician
    _login(b, station.url, "vic", PASSWORDS["vic"])  # viewer
    for d in (a, b):
        _wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".tile")) == 3, 30, "one tile per stream")
    canvas = 'return document.querySelector(\'.tile[data-stream="208"] canvas\').toDataURL()'
    first = a.execute_script(canvas)
    _wait(a, lambda d: d.execute_script(canvas) != first, 15, "the waveform canvas changes")
    vt = "vfdb421_vt"
    _wait(a, lambda d: "prio-high" in (_tile(d, vt).get_attribute("class") or ""), 45, "the VT tile turns red")
    assert _tile(a, vt).value_of_css_property("border-top-color") == RED
    assert "HIGH vt" in _tile(a, vt).text
    first = a.find_elements(By.CSS_SELECTOR, ".tile")[0]
    assert "prio-high" in first.get_attribute("class")  # alarms first
    assert b.find_elements(By.CSS_SELECTOR, ".tile .ack") == []  # a viewer has no acknowledge button

    def acknowledged(d) -> bool:  # click while the alarm is active (it ends and comes back as the record loops)
        tile = _tile(d, vt)
        if "acknowledged by ana" in tile.text:
            return True
        button = tile.find_element(By.CSS_SELECTOR, ".ack")
        if "prio-high" in (tile.get_attribute("class") or "") and button.is_displayed():
            button.click()
        return False

    _wait(a, acknowledged, 45, "acknowledged on the clinician's screen")
    acks = [json.loads(ln) for ln in station.events.read_text().splitlines() if '"alarm_ack"' in ln]
    assert acks and acks[0]["user"] == "ana" and acks[0]["stream"] == vt and acks[0]["label"] == "vt"
    assert acks[0]["priority"] == "high" and acks[0]["alarm_t"] and acks[0]["t"]
    _wait(b, lambda d: "acknowledged by ana" in _tile(d, vt).text, 10, "seen on the second screen")
    refused = b.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/api/session').then(r => r.json()).then(me => fetch('/api/alarm', {method: 'POST',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf},
            body: JSON.stringify({stream: 'vfdb421_vt', label: 'vt', action: 'silence', seconds: 60})}))
          .then(r => done(r.status));""")
    assert refused == 403
    b.get(station.url + "bed/" + vt)
    _wait(b, lambda d: d.execute_script("return window.__pedstream.frames") > 10, 15, "bed view frames")
    _wait(b, lambda d: "alarm_ack vt high by ana" in d.find_element(By.ID, "events").text, 10, "bed events")
    strip = "const i = document.querySelector('#strips img'); return !!i && i.complete && i.naturalWidth > 0"
    _wait(b, lambda d: d.execute_script(strip), 20, "the alarm strip PNG in the bed view")
