"""WorkerEvents, the worker's engine sink: what reaches the broker for a stream that moved here, an
alarm still shown from the dead worker, and a stream that moved away."""

from __future__ import annotations

import json

from pedstream.cluster.worker import WorkerEvents
from pedstream.events import MonitorEvent


async def test_a_moved_stream_its_gap_its_alarm_state_and_a_stream_moved_away():
    sent: list[tuple[str, dict | None, bool]] = []

    async def publish(topic: str, payload: bytes, retain: bool) -> None:
        sent.append((topic, json.loads(payload) if payload else None, retain))

    ev = WorkerEvents(worker="w1", prefix="pedstream/v1/", publish=publish, catch_up_calls=3)
    async with ev:
        ev.assign({"bed01", "bed02"}, {"bed01": "worker_failover"})
        ev.emit(MonitorEvent(stream="bed01", kind="signal_ok", extra={"reason": "clean window from sample 0"}))
        for k in range(3):
            ev.emit(MonitorEvent(stream="bed01", kind="call", label="vt", p=0.9, extra={"window_start": k}))
        ev.emit(MonitorEvent(stream="bed02", kind="alarm_on", label="avrt", extra={"priority": "medium"}))
        ev.emit(MonitorEvent(stream="bed02", kind="alarm_on", label="vt", extra={"priority": "high"}))
        ev.assign({"bed02"}, {})  # bed01 moved away: its late events are not ours to report
        ev.emit(MonitorEvent(stream="bed01", kind="call", label="vt", p=0.9, extra={"window_start": 3}))
    rhythm = [(t.split("/")[2], d["kind"], d.get("reason"), d["worker"]) for t, d, _ in sent if t.endswith("/rhythm")]
    assert rhythm == [("bed01", "signal_loss", "worker_failover", "w1"),  # at once, on assignment
                      ("bed01", "signal_ok", "worker_failover", "w1"),  # just before the first call here
                      ("bed01", "call", None, "w1"), ("bed01", "call", None, "w1"), ("bed01", "call", None, "w1"),
                      ("bed02", "alarm_on", None, "w1"), ("bed02", "alarm_on", None, "w1")]
    assert all(not retain for t, _, retain in sent if t.endswith("/rhythm"))
    alarms = [(t, d, retain) for t, d, retain in sent if t.endswith("/alarm")]
    # bed01's state only after catch_up_calls calls (the dead worker's retained alarm stays shown until then)
    assert [(t, d["alarms"], r) for t, d, r in alarms] == [
        ("pedstream/v1/bed01/alarm", [], True),
        ("pedstream/v1/bed02/alarm", [{"label": "avrt", "priority": "medium"}], True),
        ("pedstream/v1/bed02/alarm", [{"label": "vt", "priority": "high"}, {"label": "avrt", "priority": "medium"}], True)]
    i_state = next(i for i, (t, _, _) in enumerate(sent) if t == "pedstream/v1/bed01/alarm")
    assert sum(t.endswith("bed01/rhythm") and d["kind"] == "call" for t, d, _ in sent[:i_state]) == 3
    assert ev.calls == 3 and ev.dropped == 0
