"""The monitor's events: the JSON form of :class:`MonitorEvent` (rounding, nulls, extra fields) checked
against the shipped JSON Schema."""

from __future__ import annotations

import json
from datetime import datetime

from pedstream.events import SCHEMA_VERSION, MonitorEvent, event_schema
from tests.support.helpers import events_validator


def test_a_call_rounds_its_figures_and_keeps_its_extra_fields() -> None:
    ev = MonitorEvent(stream="sim001", kind="call", label="sinus", p=0.934567, hr=112.449, latency_ms=18.2049,
                      t_signal=1735732800.1234567, clock="lsl", extra={"window_start": 2442})
    d = ev.to_dict()
    assert d["schema_version"] == SCHEMA_VERSION
    assert (d["p"], d["hr"], d["latency_ms"], d["t_signal"]) == (0.9346, 112.4, 18.2, 1735732800.123457)
    assert d["window_start"] == 2442 and d["clock"] == "lsl" and d["label"] == "sinus"
    assert datetime.fromisoformat(d["t"]).tzinfo is not None  # wall clock, UTC
    events_validator().validate(d)


def test_what_does_not_apply_is_null_and_the_line_is_compact_json() -> None:
    ev = MonitorEvent(stream="sim002", kind="signal_loss", t="2025-01-01T12:00:00+00:00")
    line = ev.to_json()
    assert "\n" not in line and ", " not in line
    d = json.loads(line)
    assert d == {"schema_version": SCHEMA_VERSION, "t": "2025-01-01T12:00:00+00:00", "t_signal": None, "clock": None,
                 "stream": "sim002", "kind": "signal_loss", "label": None, "p": None, "hr": None, "latency_ms": None}
    events_validator().validate(d)


def test_the_schema_knows_the_version_the_events_carry() -> None:
    schema = event_schema()
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert {"stream", "kind"} <= set(schema["required"])
