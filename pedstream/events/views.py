"""What the engine shows: :class:`EventSubscription` (an async iterator over its events),
:class:`StreamStatus` (one dashboard row), :class:`EngineSnapshot` (the dashboard's whole frame)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

import numpy as np

from pedstream.events.monitor import MonitorEvent

__all__ = ["EngineSnapshot", "EventSubscription", "SnapshotSource", "StreamStatus", "percentile"]


def percentile(values: Iterable[float], q: float) -> float | None:
    v = list(values)
    return float(np.percentile(v, q)) if v else None


class EventSubscription:
    """An async iterator over the engine's :class:`MonitorEvent` objects from the moment it was made."""

    def __init__(self, on_close: Callable[["EventSubscription"], None]) -> None:
        self._on_close = on_close
        self._queue: asyncio.Queue[MonitorEvent] = asyncio.Queue()
        self.seen: list[MonitorEvent] = []

    def _put(self, ev: MonitorEvent) -> None:
        self._queue.put_nowait(ev)

    def __aiter__(self) -> "EventSubscription":
        return self

    async def __anext__(self) -> MonitorEvent:
        ev = await self._queue.get()
        self.seen.append(ev)
        return ev

    async def wait_for(self, predicate: Callable[[MonitorEvent], bool], *, timeout: float) -> MonitorEvent:
        """The next event satisfying ``predicate``; raises :class:`TimeoutError` after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            async for ev in self:
                if predicate(ev):
                    return ev
        raise TimeoutError  # pragma: no cover - the loop only ends by returning or timing out

    def drain(self) -> list[MonitorEvent]:
        """The events already delivered but not yet iterated (no waiting); they join ``seen``."""
        out = []
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        self.seen.extend(out)
        return out

    def close(self) -> None:
        self._on_close(self)


@dataclass
class StreamStatus:
    """What the dashboard shows for one stream."""

    stream_id: str
    source: str
    fs: float
    n_present: int = 0
    has_ecg: bool = False
    has_iegm: bool = False
    units_assumed: bool = False
    age_years: float | None = None
    hr_band: str = ""
    call: str | None = None
    p: float | None = None  # the held call's smoothed probability
    lead: str | None = None  # the class with the highest smoothed probability now (may differ from call while held)
    lead_p: float | None = None
    hr: float | None = None
    rhythm_since: float | None = None  # monotonic time the current call started
    alarm: tuple[str, str] | None = None  # (label, priority) of the highest-priority active alarm
    alarms_active: int = 0  # alarms active on this stream now
    alarms: int = 0  # alarm onsets on this stream since it was added
    last_alarm: tuple[str, str] | None = None  # (label, priority) of the alarm that ended last
    last_alarm_ended: float | None = None  # monotonic time it ended
    quality: str = "warm-up"
    dropped: int = 0
    windows: int = 0
    queue: int = 0
    error: str | None = None
    ectopy: str | None = None  # None: no beat model; "on"; "error": this stream's beat path failed
    pvc_per_min: int | None = None  # V beats in the last 60 s of stream time
    pac_per_min: int | None = None  # S beats in the last 60 s of stream time
    beats: int = 0  # beats classified
    beat_labels: int = 0  # clinician labels adapting this stream's beat calls
    ectopy_patterns: dict | None = None  # couplets / runs in the last 60 s, pattern (bigeminy, trigeminy)
    rejected: int = 0  # messages its source rejected (over budget, over a limit, undecodable)
    dropped_samples: int = 0  # samples dropped before processing (by its source or the engine's queue)
    stalled: str | None = None  # why the watchdog flags it (no progress for [stream] watchdog_s), else None


@dataclass
class EngineSnapshot:
    streams: list[StreamStatus]
    windows_per_s: float
    batch_mean: float | None
    infer_p50: float | None
    infer_p99: float | None
    e2e_p50: float | None
    e2e_p99: float | None
    queue_depth: int
    banner: str
    windows_total: int
    dropped_total: int
    alarms_total: int  # alarm onsets since the start (all streams)
    uptime_s: float
    alarms_active: int = 0  # alarms active now (all streams)
    extra: dict[str, Any] = field(default_factory=dict)


class SnapshotSource(Protocol):
    """What a view of the monitor (the dashboard, the web station) reads: its current frame."""

    def snapshot(self) -> "EngineSnapshot": ...
