"""Fixtures of the stream tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def private_state_home(tmp_path, monkeypatch):
    """``$XDG_STATE_HOME`` (the HL7 outbox's default place) private to the test and its subprocesses."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state-home"))
    return tmp_path / "state-home"
