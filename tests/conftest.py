"""Shared fixtures: a real mosquitto broker and the test LSL configuration.

- ``mosquitto``: a real ``/usr/sbin/mosquitto`` on a free loopback port (per test). The value is a
  :class:`Broker` with ``host``, ``port``, ``stop()`` and ``start()`` (same port, for reconnect tests).
- ``lsl_config``: session-scoped; applies :func:`pedstream.transports.lsl.config.configure_lsl` with
  scope ``machine``, loopback only, and a session id unique to this pytest process (so concurrent
  test runs on the same machine do not see each other's streams). Subprocesses inherit
  ``LSLAPICFG``; a ``pedstream`` subprocess must also get ``lsl_config.overrides`` (``--set ...``)
  because the CLI configures LSL from its config.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

# System services some tests need: name -> (is it here?, how to install it). A test that needs one is marked
# ``@pytest.mark.service("name")`` (or uses its fixture) and skips with a one-line reason when it is absent;
# ``PEDSTREAM_TEST_WITHOUT=name[,name]`` hides a service that is installed (to check the skips themselves).
SERVICES: dict[str, tuple] = {
    "mosquitto": (lambda: Path(MOSQUITTO).exists(), "apt-get install mosquitto"),
    "mosquitto_passwd": (lambda: Path(MOSQUITTO).exists() and bool(shutil.which("mosquitto_passwd")
                                                                 or Path("/usr/bin/mosquitto_passwd").exists()),
                         "apt-get install mosquitto"),
    "openssl": (lambda: bool(shutil.which("openssl")), "apt-get install openssl"),
    "shellcheck": (lambda: bool(shutil.which("shellcheck")), "apt-get install shellcheck"),
    "chromium": (lambda: bool(shutil.which("chromium") and shutil.which("chromedriver")),
                 "apt-get install chromium chromium-driver"),
}
_SERVICE_FIXTURES = {"mosquitto": "mosquitto", "browsers": "chromium", "tls_files": "openssl"}


def service_missing(name: str) -> str | None:
    """The one-line skip reason when service ``name`` is absent (or hidden), else None."""
    here, how = SERVICES[name]
    hidden = {x.strip() for x in os.environ.get("PEDSTREAM_TEST_WITHOUT", "").split(",") if x.strip()}
    if name in hidden:
        return f"{name} hidden by PEDSTREAM_TEST_WITHOUT"
    if not here():
        return f"{name} is not installed ({how})"
    return None


def _needed_services(item: pytest.Item) -> set[str]:
    names = {m.args[0] for m in item.iter_markers("service")}
    fixtures = set(getattr(item, "fixturenames", ()))
    return names | {svc for fx, svc in _SERVICE_FIXTURES.items() if fx in fixtures}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "service(name): needs a system package (mosquitto, chromium, openssl, "
                                       "shellcheck); skips without it")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skipped: dict[str, int] = {}
    for item in items:
        for name in sorted(_needed_services(item)):
            reason = service_missing(name)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
                skipped[name] = skipped.get(name, 0) + 1
                break
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        for name, n in skipped.items():
            reporter.write_line(f"will skip {n} tests: {service_missing(name)}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float = 5.0) -> None:
    """Poll until ``host:port`` accepts a TCP connection."""
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError as exc:
            last = exc
            time.sleep(0.02)  # poll interval of a bounded wait, not a wait for the result
    raise TimeoutError(f"{host}:{port} did not accept connections within {timeout} s ({last})")


@dataclass
class Broker:
    conf: Path
    log: Path
    host: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=self._log, stderr=self._log)
        try:
            wait_port(self.host, self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start; log:\n{self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None


@pytest.fixture(scope="session", autouse=True)
def _data_home(tmp_path_factory: pytest.TempPathFactory):
    """Alarm strips without an explicit folder go to ``$XDG_DATA_HOME/pedstream/alarms``: a private one
    for the test session (inherited by ``pedstream`` subprocesses), never the user's."""
    old = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("data-home"))
    yield Path(os.environ["XDG_DATA_HOME"])
    if old is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = old


@pytest.fixture
def mosquitto(tmp_path: Path):
    reason = service_missing("mosquitto")
    if reason is not None:
        pytest.skip(reason)
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "set_tcp_nodelay true\n"
        "persistence false\n"
        "log_dest stderr\n"
        "log_type error\nlog_type warning\nlog_type notice\n",
        encoding="utf-8",
    )
    broker = Broker(conf=conf, log=tmp_path / "mosquitto.log", port=port)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@dataclass(frozen=True)
class LSLTestConfig:
    path: Path
    session_id: str

    @property
    def overrides(self) -> list[str]:
        """``--set`` arguments that give a ``pedstream`` subprocess the same LSL session."""
        return ["--set", f"lsl.session_id={self.session_id!r}".replace("'", '"')]


@pytest.fixture(scope="session")
def lsl_config(tmp_path_factory: pytest.TempPathFactory) -> LSLTestConfig:
    from pedstream.transports.lsl.config import configure_lsl

    session = f"pedstream-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    path = configure_lsl(scope="machine", known_peers=["127.0.0.1"], interfaces=["127.0.0.1"], ipv6=False,
                         session_id=session, log_level=-1, directory=tmp_path_factory.mktemp("lsl"))
    return LSLTestConfig(path=path, session_id=session)


@pytest.fixture
def private_state_home(tmp_path, monkeypatch):
    """``$XDG_STATE_HOME`` (the HL7 outbox's default place) private to the test and its subprocesses."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state-home"))
    return tmp_path / "state-home"
