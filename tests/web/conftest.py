"""A real monitor with the web station (a ``pedstream run --web`` subprocess replaying records) and
real headless Chromium sessions (Selenium + Debian's chromium/chromium-driver)."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECORDS = [REPO / "pedstream" / "assets" / "demo_records" / "x003",  # SIMULATED: an AVRT run at 238 bpm (hr_high)
           REPO / "tests" / "fixtures" / "real" / "rhythm" / "vfdb421_vt",  # real VT (vfdb 421), ~250 bpm from 0.7 s
           REPO / "tests" / "fixtures" / "real" / "aami" / "208"]  # real MIT-BIH 208 excerpt: PVCs
PASSWORDS = {"ana": "ana-clinician-pw", "vic": "vic-viewer-pw"}


@dataclass
class Station:
    url: str
    events: Path
    proc: subprocess.Popen
    users: Path


def _chromium() -> tuple[str, str] | None:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


def _read_lines(stream, out: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        out.put(line)
    out.put(None)


@pytest.fixture(scope="module")
def station(tmp_path_factory) -> Station:
    """``pedstream run --web`` replaying three records (looping, in real time; ended by the fixture, the
    duration only bounds a run the fixture could not end) with a users file
    (ana: clinician, vic: viewer), the rhythm-context layer on: it raises vfdb 421's VT as a high
    priority ``vt`` alarm, so its tile turns red. vfdb's lead is named ``ECG``: an alias makes it lead II."""
    from pedstream.web.auth import add_user

    tmp = tmp_path_factory.mktemp("web")
    users = tmp / "users"
    add_user(users, "ana", "clinician", PASSWORDS["ana"])
    add_user(users, "vic", "viewer", PASSWORDS["vic"])
    events = tmp / "events.jsonl"
    cmd = [sys.executable, "-m", "pedstream.cli", "run", "--source", "replay", "--headless", "--web",
           "--bind", "127.0.0.1:0", "--events", str(events), "--duration", "900",
           "--set", f"web.users_file={users}", "--set", "replay.loop=true", "--set", "replay.speed=1",
           "--set", "rhythm_context.enabled=true", "--set", "signal.aliases.ECG=II", "--alarms-dir", str(tmp / "alarms")]
    for r in RECORDS:
        cmd += ["--records", str(r)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stderr, lines), daemon=True).start()
    url, seen = None, []
    while url is None:
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        m = re.search(r"web station: (\S+)", line)
        url = m.group(1) if m else None
    if url is None:
        proc.kill()
        pytest.fail("the web station did not start:\n" + "".join(seen))
    from urllib.parse import urlsplit

    from tests.conftest import wait_port

    where = urlsplit(url)  # the URL is printed before the monitor starts: wait until it listens
    try:
        wait_port(where.hostname, where.port, timeout=60.0)
    except TimeoutError as exc:
        proc.kill()
        pytest.fail(f"the web station at {url} never listened ({exc}):\n" + "".join(seen))
    yield Station(url=url, events=events, proc=proc, users=users)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browsers():
    """A factory of headless Chromium sessions (closed at the end); skips without chromium."""
    found = _chromium()
    if found is None:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the web extra)")
    from selenium.webdriver.chrome.service import Service

    made = []

    def make():
        opts = webdriver.ChromeOptions()
        opts.binary_location = found[0]
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1300,900", "--disable-extensions"):
            opts.add_argument(arg)
        drv = webdriver.Chrome(service=Service(found[1]), options=opts)
        made.append(drv)
        return drv

    yield make
    for d in made:
        d.quit()
