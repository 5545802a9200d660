"""Acknowledge, silence and resound (pedstream.web.alarmstate)."""

from __future__ import annotations

import pytest

from pedstream.events import MonitorEvent
from pedstream.web.alarmstate import ActionRefused, AlarmBoard


def _board(high=120.0) -> AlarmBoard:
    b = AlarmBoard(max_silence_s=600, max_silence_high_s=high, default_silence_s=120)
    b.observe(MonitorEvent(stream="bed1", kind="alarm_on", label="vt", extra={"priority": "high"}))
    b.observe(MonitorEvent(stream="bed1", kind="alarm_on", label="avrt", extra={"priority": "medium"}))
    return b


def test_life_threatening_alarms_are_silenced_at_most_the_configured_maximum():
    b = _board()
    ev = b.act(stream="bed1", label="vt", action="silence", user="ana", role="clinician", seconds=3600)
    assert ev.kind == "alarm_silence" and ev.extra["seconds"] == 120 and ev.extra["requested_s"] == 3600
    assert ev.extra["user"] == "ana" and ev.extra["alarm_t"] and ev.extra["until"]
    ev = b.act(stream="bed1", label="avrt", action="silence", user="ana", role="clinician", seconds=3600)
    assert ev.extra["seconds"] == 600
    assert [a.label for a in b.of("bed1")] == ["vt", "avrt"]  # highest priority first


def test_an_acknowledged_high_alarm_sounds_again_after_the_maximum_a_medium_one_not():
    b = _board(high=1e-6)
    ack_high = b.act(stream="bed1", label="vt", action="ack", user="ana", role="clinician")
    ack_med = b.act(stream="bed1", label="avrt", action="ack", user="ana", role="clinician")
    assert "until" in ack_high.extra and "until" not in ack_med.extra
    again = b.expired()
    assert [(e.kind, e.label, e.extra["quieted_by"]) for e in again] == [("alarm_resound", "vt", "ana")]
    assert b.active[("bed1", "vt")].state == "sounding" and b.active[("bed1", "avrt")].state == "acknowledged"
    assert b.expired() == []


def test_actions_on_alarms_that_are_not_active_are_refused():
    b = _board()
    b.observe(MonitorEvent(stream="bed1", kind="alarm_off", label="vt", extra={"priority": "high"}))
    with pytest.raises(ActionRefused):
        b.act(stream="bed1", label="vt", action="ack", user="ana", role="clinician")
    with pytest.raises(ActionRefused):
        b.act(stream="bed1", label="avrt", action="reboot", user="ana", role="clinician")
    with pytest.raises(ActionRefused):
        b.act(stream="bed1", label="avrt", action="silence", user="ana", role="clinician", seconds=-5)
