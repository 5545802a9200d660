"""A private ``mosquitto`` broker on a free 127.0.0.1 port for the MQTT benchmarks."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from pedstream.errors import PedstreamError

__all__ = ["Mosquitto", "free_port"]

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """``Mosquitto().start()`` ... ``stop()``: loopback only, anonymous, no persistence."""

    def __init__(self, *, host: str = "127.0.0.1", start_timeout_s: float = 10.0) -> None:
        self.host = host
        self.port = 0
        self.start_timeout_s = float(start_timeout_s)
        self.proc: subprocess.Popen | None = None
        self._dir: tempfile.TemporaryDirectory | None = None

    def start(self) -> "Mosquitto":
        if not Path(MOSQUITTO).is_file():
            raise PedstreamError(f"mosquitto not found at {MOSQUITTO} (apt-get install mosquitto)")
        self._dir = tempfile.TemporaryDirectory(prefix="pedstream-bench-mqtt-")
        folder = Path(self._dir.name)
        self.port = free_port()
        conf = folder / "mosquitto.conf"
        conf.write_text(f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
                        f"max_queued_messages 100000\nlog_dest file {folder / 'mosquitto.log'}\n")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:  # bounded wait for the listener
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        log = (folder / "mosquitto.log")
        self.stop()
        raise PedstreamError(f"mosquitto did not start on {self.host}:{self.port}"
                             + (f": {log.read_text(errors='replace')[-300:]}" if log.is_file() else ""))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
