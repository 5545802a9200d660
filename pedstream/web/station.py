"""The web station's view of the monitor: bed rings, tile states, alarm handling, open screens.

:class:`WebStation` hooks into a monitor the way the EDF+ recorder does: :meth:`WebStation.queue`
is the sources' event queue (it shows every source event to the station, then queues it for the
engine unchanged) and the station is one of the engine's sinks (``emit``). Neither does more than
an append: decimation, JSON and frames are made by the station's own task, and only for what some
screen looks at. Every screen (:class:`Screen`) has a bounded outbox; a slow one loses old messages
(the next state message is complete) and gets fewer, larger waveform frames, never a growing queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pedstream.events import MonitorEvent
from pedstream.events import ChunkReceived, StreamAdded, StreamLost
from pedstream.web.alarmstate import PRIORITY_RANK, AlarmBoard
from pedstream.web.auth import Session
from pedstream.web.display import KIND_ALL, KIND_TILE, DisplayRing, encode_frame
from pedstream.config import Config

__all__ = ["WebStation", "Screen"]

log = logging.getLogger("pedstream.web")

_BROADCAST = {"alarm_on", "alarm_off", "alarm_ack", "alarm_silence", "alarm_resound", "signal_loss", "signal_ok", "error",
              "technical_alarm"}
_OUTBOX = 256  # messages held per screen
_MAX_FRAME_S = 2.0  # seconds of signal one frame carries at most (a lagging screen skips ahead)


class _TapQueue(asyncio.Queue):
    """The sources' event queue, showing each event to the station (and others) as it is queued."""

    def __init__(self, observers: list[Callable[[Any], None]]) -> None:
        super().__init__()
        self._observers = observers

    def put_nowait(self, item: Any) -> None:
        for fn in self._observers:
            fn(item)
        super().put_nowait(item)


@dataclass(eq=False)
class Screen:
    """One open browser page."""

    session: Session
    outbox: deque = field(default_factory=lambda: deque(maxlen=_OUTBOX))
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    visible: set[str] = field(default_factory=set)  # streams whose tiles are on screen
    bed: str | None = None  # the stream of the bed view, all channels
    cursors: dict[tuple[str, int], int] = field(default_factory=dict)
    bytes_sent: int = 0
    lost_messages: int = 0

    def put(self, text: str) -> None:
        if len(self.outbox) == self.outbox.maxlen:
            self.lost_messages += 1
        self.outbox.append(text)
        self.wake.set()


@dataclass
class _Bed:
    ring: DisplayRing
    number: int
    source: str
    calls: deque = field(default_factory=lambda: deque(maxlen=900))  # (t_iso, label, p, hr)
    events: deque = field(default_factory=lambda: deque(maxlen=200))
    strips: deque = field(default_factory=lambda: deque(maxlen=50))
    lost: str | None = None


class WebStation:
    """See the module docstring. ``cfg``: the whole :class:`~pedstream.config.Config`."""

    def __init__(self, *, cfg: Config, alarms_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.web = cfg.web
        self.alarms_dir = None if alarms_dir is None else Path(alarms_dir)
        self.beds: dict[str, _Bed] = {}
        self.board = AlarmBoard(max_silence_s=self.web.max_silence_s, max_silence_high_s=self.web.max_silence_high_s,
                                default_silence_s=self.web.silence_s)
        self.screens: set[Screen] = set()
        self.snapshot: Callable[[], Any] | None = None
        self.record: Callable[[MonitorEvent], None] = self.emit  # engine._emit once attached (events file too)
        self.banner = ""
        self._layout_msg = json.dumps({"t": "layout", "beds": []})
        self.busy_s = 0.0  # CPU time (event loop thread) of the tap, the sink, the station task and frames (bench)
        self.bytes_sent = 0
        self.frames_sent = 0

    # -- hooks into the monitor ---------------------------------------------------------------------
    def queue(self, *also: Any) -> asyncio.Queue:
        """The sources' event queue; ``also``: other observers (e.g. the EDF+ recorder)."""
        return _TapQueue([self.observe, *(a.observe for a in also if a is not None)])

    def attach(self, engine: Any) -> None:
        """Read tile states from ``engine.snapshot()`` and record actions as engine events."""
        self.snapshot = engine.snapshot
        self.record = engine._emit  # the engine's one fan-out: events file, MQTT, HL7 ... and this station
        self.banner = engine.banner
        if self.alarms_dir is None and getattr(engine, "alarms_dir", None) is not None:
            self.alarms_dir = Path(engine.alarms_dir)

    def observe(self, ev: Any) -> None:
        t0 = time.thread_time()
        if isinstance(ev, ChunkReceived):
            bed = self.beds.get(ev.chunk.stream_id)
            if bed is not None:
                bed.ring.push(ev.chunk.data, time.time())
                bed.lost = None
        elif isinstance(ev, StreamAdded):
            self._add(ev.info)
        elif isinstance(ev, StreamLost) and ev.stream_id in self.beds:
            self.beds[ev.stream_id].lost = ev.reason
        self.busy_s += time.thread_time() - t0

    def _add(self, info: Any) -> None:
        if not info.fs > 0 or not info.channel_names:  # nothing to draw (the engine reports such a stream)
            return
        old = self.beds.get(info.stream_id)
        if old is not None and old.ring.channel_names == list(info.channel_names) and old.ring.k * old.ring.fs == info.fs:
            return
        ring = DisplayRing(stream_id=info.stream_id, fs=info.fs, channel_names=info.channel_names,
                           display_hz=self.web.display_hz, ring_s=self.web.ring_s, aliases=self.cfg.signal.aliases)
        number = old.number if old is not None else len(self.beds)
        self.beds[info.stream_id] = _Bed(ring=ring, number=number, source=str(info.source))
        for s in self.screens:
            s.cursors = {k: v for k, v in s.cursors.items() if k[0] != info.stream_id}
        self._layout_msg = json.dumps({"t": "layout", "beds": [b.ring.layout(b.number) for b in self.beds.values()]})
        self._broadcast(self._layout_msg)

    # -- the sink side --------------------------------------------------------------------------------
    async def __aenter__(self) -> "WebStation":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def emit(self, ev: MonitorEvent) -> None:
        t0 = time.thread_time()
        changed = self.board.observe(ev)
        bed = self.beds.get(ev.stream)
        if bed is not None:
            if ev.kind == "call":
                bed.calls.append((ev.t, ev.label, ev.p, ev.hr))
            elif ev.kind != "beat":
                bed.events.append(ev.to_dict())
            if ev.kind == "alarm_on" and ev.extra.get("strip"):
                bed.strips.append(Path(str(ev.extra["strip"])).name)
        if ev.kind in _BROADCAST or changed:
            self._broadcast(json.dumps({"t": "event", "ev": ev.to_dict()}, default=str))
        elif ev.kind == "call":
            msg = None
            for s in self.screens:
                if s.bed == ev.stream:
                    msg = msg or json.dumps({"t": "call", "stream": ev.stream, "call": [ev.t, ev.label, ev.p, ev.hr]})
                    s.put(msg)
        self.busy_s += time.thread_time() - t0

    # -- screens ------------------------------------------------------------------------------------
    def _broadcast(self, text: str) -> None:
        for s in self.screens:
            s.put(text)

    def open_screen(self, session: Session) -> Screen:
        s = Screen(session=session)
        self.screens.add(s)
        s.put(json.dumps({"t": "hello", "user": session.user.name, "role": session.user.role, "banner": self.banner,
                          "limits": {"silence_s": self.web.silence_s, "max_silence_s": self.web.max_silence_s,
                                     "max_silence_high_s": self.web.max_silence_high_s}}))
        s.put(self._layout_msg)
        s.put(self.state_message())
        return s

    def close_screen(self, s: Screen) -> None:
        self.screens.discard(s)

    def look(self, s: Screen, *, visible: list[str], bed: str | None) -> None:
        """What a screen shows: the tiles of ``visible``, and the bed view of ``bed`` (all channels)."""
        s.visible = {v for v in visible if v in self.beds}
        new_bed = bed if bed in self.beds else None
        if new_bed is not None and new_bed != s.bed:
            b = self.beds[new_bed]
            s.put(json.dumps({"t": "bed", "stream": new_bed, "calls": list(b.calls), "events": list(b.events)[-100:],
                              "strips": [n for n in b.strips if self._strip_ready(n)]}, default=str))
        s.bed = new_bed

    def _strip_ready(self, name: str) -> bool:
        return self.alarms_dir is not None and (self.alarms_dir / name).is_file()

    def strip_path(self, name: str) -> Path | None:
        """The alarm strip PNG ``name`` if this run wrote it (names come from the alarm events only)."""
        if self.alarms_dir is None or not any(name in b.strips for b in self.beds.values()):
            return None
        path = self.alarms_dir / name
        return path if path.is_file() else None

    # -- state and frames -----------------------------------------------------------------------------
    def tiles(self) -> list[dict[str, Any]]:
        """Every bed's tile, alarms first (high, medium, advisory), then by stream id."""
        now = time.monotonic()
        status = {st.stream_id: st for st in self.snapshot().streams} if self.snapshot is not None else {}
        out = []
        for sid in [*self.beds, *(s for s in status if s not in self.beds)]:  # a stream not seen yet: no waveform
            bed, st = self.beds.get(sid), status.get(sid)
            alarms = [a.view(now) for a in self.board.of(sid)]
            quality = None if st is None else ("stalled" if st.stalled else ("error" if st.error else st.quality))
            out.append({
                "stream": sid, "bed": -1 if bed is None else bed.number, "source": "" if bed is None else bed.source,
                "lost": None if bed is None else bed.lost,
                "call": None if st is None else st.call, "p": None if st is None or st.p is None else round(st.p, 2),
                "hr": None if st is None or st.hr is None else round(st.hr),
                "held_s": None if st is None or st.rhythm_since is None else round(now - st.rhythm_since),
                "pvc": None if st is None else st.pvc_per_min, "pac": None if st is None else st.pac_per_min,
                "quality": quality, "check_leads": quality in ("loss", "clipped") or (bed is not None and bed.lost is not None),
                "alarms": alarms, "top": alarms[0]["priority"] if alarms else None,
            })
        out.sort(key=lambda t: (-PRIORITY_RANK.get(t["top"] or "none", 0), t["stream"]))
        return out

    def state_message(self) -> str:
        return json.dumps({"t": "state", "beds": self.tiles()}, default=str)

    def frames_for(self, s: Screen) -> list[bytes]:
        """The waveform frames ``s`` has not had yet: tile channels of its visible beds, all
        channels of its bed view."""
        out = []
        wants = [(sid, KIND_TILE) for sid in s.visible] + ([(s.bed, KIND_ALL)] if s.bed is not None else [])
        for sid, kind in wants:
            bed = self.beds.get(sid)
            if bed is None:
                continue
            got = bed.ring.since(s.cursors.get((sid, kind)), max_s=_MAX_FRAME_S)
            if got is None:
                continue
            first, data, wall = got
            s.cursors[(sid, kind)] = first + len(data)
            if kind == KIND_TILE:
                data = data[:, bed.ring.tile]
            out.append(encode_frame(kind=kind, bed=bed.number, first=first, fs=bed.ring.fs, wall=wall, data=data))
        return out

    async def run(self) -> None:
        """Decimate what screens look at, wake the screens (frames), send tile states, resound."""
        frame_period = 1.0 / self.web.frame_hz
        state_every = max(1, round(self.web.frame_hz / self.web.state_hz))
        n = 0
        while True:
            await asyncio.sleep(frame_period)  # display pacing, not waiting for a condition
            t0 = time.thread_time()
            watched = {sid for s in self.screens for sid in (*s.visible, s.bed) if sid is not None}
            for sid in watched:
                bed = self.beds.get(sid)
                if bed is not None:
                    bed.ring.update()
            for ev in self.board.expired():
                self.record(ev)
            n += 1
            if n % state_every == 0 and self.screens:
                self._broadcast(self.state_message())
            for s in self.screens:
                s.wake.set()
            self.busy_s += time.thread_time() - t0

    def act(self, session: Session, *, stream: str, label: str, action: str, seconds: float | None) -> MonitorEvent:
        """A clinician's acknowledge/silence: recorded as an event (events file, every screen)."""
        ev = self.board.act(stream=stream, label=label, action=action, user=session.user.name,
                            role=session.user.role, seconds=seconds)
        self.record(ev)
        return ev
