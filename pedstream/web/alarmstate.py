"""Alarm handling at the station: which alarms are active, acknowledged or silenced, by whom.

Built from the engine's ``alarm_on`` / ``alarm_off`` events. An action of a clinician becomes an
event of its own, recorded with the others (events file, MQTT, ...) and pushed to every screen:

- ``alarm_ack``: the alarm was seen. A medium or advisory alarm stays acknowledged until it ends; a
  high-priority (life-threatening) one only for ``[web] max_silence_high_s``, then it sounds again
  if still active;
- ``alarm_silence``: quiet for ``seconds`` (at most ``max_silence_s``, ``max_silence_high_s`` for a
  high-priority alarm), then it sounds again if still active;
- ``alarm_resound``: a silence or acknowledgement ran out while the alarm is still active.

Each carries ``user``, ``role``, ``priority``, ``alarm_t`` (when that alarm started, UTC) and, when
bounded, ``until`` (UTC) and ``seconds``; ``t`` is when it happened.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from pedstream.events import MonitorEvent

__all__ = ["ActiveAlarm", "AlarmBoard", "ActionRefused", "PRIORITY_RANK"]

PRIORITY_RANK = {"high": 3, "medium": 2, "advisory": 1, "none": 0}


class ActionRefused(Exception):
    """An acknowledge/silence that cannot be done (no such active alarm, bad duration)."""


@dataclass
class ActiveAlarm:
    stream: str
    label: str
    priority: str
    t_on: str  # UTC ISO of the alarm_on event
    acked_by: str | None = None
    silenced_by: str | None = None
    quiet_until: float | None = None  # monotonic; None = until the alarm ends (an acknowledged medium alarm)
    quiet_until_iso: str | None = None

    @property
    def state(self) -> str:
        """``sounding``, ``acknowledged`` or ``silenced``."""
        if self.silenced_by is not None:
            return "silenced"
        return "acknowledged" if self.acked_by is not None else "sounding"

    def view(self, now: float) -> dict[str, Any]:
        left = None if self.quiet_until is None or self.state == "sounding" else max(0.0, self.quiet_until - now)
        return {"label": self.label, "priority": self.priority, "t_on": self.t_on, "state": self.state,
                "by": self.silenced_by or self.acked_by, "until": self.quiet_until_iso,
                "left_s": None if left is None else round(left)}


class AlarmBoard:
    """Active alarms of every stream and what was done about them (module docstring)."""

    def __init__(self, *, max_silence_s: float, max_silence_high_s: float, default_silence_s: float) -> None:
        self.max_silence_s = float(max_silence_s)
        self.max_silence_high_s = float(max_silence_high_s)
        self.default_silence_s = float(default_silence_s)
        self.active: dict[tuple[str, str], ActiveAlarm] = {}

    def observe(self, ev: MonitorEvent) -> bool:
        """Follow an engine event; True when the board changed."""
        key = (ev.stream, ev.label or "")
        if ev.kind == "alarm_on":
            self.active[key] = ActiveAlarm(stream=ev.stream, label=ev.label or "", priority=str(ev.extra.get("priority", "none")),
                                           t_on=ev.t)
            return True
        if ev.kind == "alarm_off":
            return self.active.pop(key, None) is not None
        return False

    def sync(self, stream: str, alarms: list[tuple[str, str]]) -> None:
        """Make ``stream``'s active alarms those of an authoritative list of (label, priority) (the
        central station's retained alarm states: alarms that began before it started are held too)."""
        want = dict(alarms)
        for key in [k for k in self.active if k[0] == stream and k[1] not in want]:
            del self.active[key]
        for label, prio in want.items():
            if (stream, label) not in self.active:
                self.active[(stream, label)] = ActiveAlarm(stream=stream, label=label, priority=prio,
                                                           t_on=datetime.now(timezone.utc).isoformat())

    def of(self, stream: str) -> list[ActiveAlarm]:
        """The stream's active alarms, highest priority first."""
        out = [a for (s, _), a in self.active.items() if s == stream]
        return sorted(out, key=lambda a: -PRIORITY_RANK.get(a.priority, 0))

    def limit_for(self, priority: str) -> float:
        return self.max_silence_high_s if priority == "high" else self.max_silence_s

    def act(self, *, stream: str, label: str, action: str, user: str, role: str,
            seconds: float | None = None) -> MonitorEvent:
        """Acknowledge or silence an active alarm; returns the event that records it."""
        alarm = self.active.get((stream, label))
        if alarm is None:
            raise ActionRefused(f"no active alarm {label!r} on {stream!r}")
        now = time.monotonic()
        limit = self.limit_for(alarm.priority)
        extra: dict[str, Any] = {"user": user, "role": role, "priority": alarm.priority, "alarm_t": alarm.t_on}
        if action == "ack":
            alarm.acked_by = user
            quiet = limit if alarm.priority == "high" else None
        elif action == "silence":
            want = self.default_silence_s if seconds is None else float(seconds)
            if not 0 < want:
                raise ActionRefused("a silence needs a positive number of seconds")
            quiet = min(want, limit)
            alarm.silenced_by = user
            extra["requested_s"] = round(want, 1)
        else:
            raise ActionRefused(f"unknown action {action!r} (ack or silence)")
        alarm.quiet_until = None if quiet is None else now + quiet
        alarm.quiet_until_iso = None if quiet is None else (datetime.now(timezone.utc) + timedelta(seconds=quiet)).isoformat()
        if quiet is not None:
            extra.update(seconds=round(quiet, 1), until=alarm.quiet_until_iso)
        return MonitorEvent(stream=stream, kind="alarm_ack" if action == "ack" else "alarm_silence",
                            label=label, extra=extra)

    def expired(self) -> list[MonitorEvent]:
        """``alarm_resound`` events of silences/acknowledgements that ran out on still-active alarms."""
        now = time.monotonic()
        out = []
        for alarm in self.active.values():
            if alarm.quiet_until is not None and alarm.state != "sounding" and alarm.quiet_until <= now:
                by = alarm.silenced_by or alarm.acked_by
                alarm.acked_by = alarm.silenced_by = alarm.quiet_until = alarm.quiet_until_iso = None
                out.append(MonitorEvent(stream=alarm.stream, kind="alarm_resound", label=alarm.label,
                                        extra={"priority": alarm.priority, "alarm_t": alarm.t_on, "quieted_by": by}))
        return out
