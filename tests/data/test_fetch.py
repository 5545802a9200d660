"""`pedstream data fetch` failure paths against loopback only (never the internet)."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest
from click.testing import CliRunner

from pedstream.cli import cli
from pedstream.config import load_config
from pedstream.data.fetch import fetch_command, manual_download_hint
from pedstream.errors import FetchError


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_server_gives_one_line_with_manual_instructions(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{_closed_port()}/"
    monkeypatch.setenv("PEDSTREAM_PHYSIONET_URL", url)
    res = CliRunner().invoke(cli, ["data", "fetch", "--dest", str(tmp_path / "leipzig")])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    line = lines[0]
    assert line.startswith("error: cannot download leipzig-heart-center-ecg from PhysioNet")
    assert "is unreachable" in line and "127.0.0.1" in line
    assert "wget -r -N -c -np https://physionet.org/files/leipzig-heart-center-ecg/1.0.0/" in line
    assert str(tmp_path / "leipzig") in line
    assert not (tmp_path / "leipzig").exists()


def test_http_error_from_a_loopback_server(tmp_path):
    """A real HTTP server on loopback that does not have the database answers 404."""
    (tmp_path / "www").mkdir()
    www = str(tmp_path / "www")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=www, **k)

        def log_message(self, *a):  # keep the test output clean
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        with pytest.raises(FetchError, match=r"answered HTTP 404.*download it by hand") as info:
            fetch_command(load_config(), dest=tmp_path / "d", base_url=f"http://127.0.0.1:{srv.server_port}",
                          timeout_s=5)
        assert "\n" not in str(info.value)
    finally:
        srv.shutdown()
        srv.server_close()
        th.join(timeout=5)


def test_hint_names_project_and_destination(tmp_path):
    text = manual_download_hint(tmp_path / "x", "offline")
    assert "leipzig-heart-center-ecg" in text and str(tmp_path / "x") in text and "\n" not in text
