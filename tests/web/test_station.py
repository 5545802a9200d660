"""The station between the monitor and the screens (pedstream.web.station): what the tap costs,
what a screen gets, and that nothing grows without bound."""

from __future__ import annotations

import json
import time

import numpy as np

from pedstream.config import load_config
from pedstream.events import MonitorEvent
from pedstream.events import Chunk, ChunkReceived, StreamAdded, StreamInfo
from pedstream.web.auth import Session, User
from pedstream.web.display import FRAME_HEADER
from pedstream.web.station import WebStation

NAMES = ["I", "II", "III", "CS12"]


def _station() -> WebStation:
    st = WebStation(cfg=load_config())
    q = st.queue()
    for sid in ("bedA", "bedB"):
        q.put_nowait(StreamAdded(StreamInfo(stream_id=sid, source="replay", fs=977.0, channel_names=NAMES, units=["mV"] * 4)))
    return st


def _chunk(sid: str, k: int, n: int = 49) -> ChunkReceived:
    data = np.full((n, len(NAMES)), 0.5, np.float32)
    return ChunkReceived(Chunk(stream_id=sid, data=data, timestamps=np.arange(n) / 977.0, first_index=k * n))


def _screen(st: WebStation, role: str = "viewer"):
    return st.open_screen(Session(user=User("vic", role, "$argon2id$x"), csrf="t", expires=time.monotonic() + 60))


def test_the_tap_only_queues_and_unwatched_beds_hold_at_most_a_few_seconds():
    st = _station()
    q = st.queue()
    for k in range(2000):  # 100 s of one stream nobody looks at
        q.put_nowait(_chunk("bedA", k))
    ring = st.beds["bedA"].ring
    assert ring.ring.total_written == 0  # nothing decimated yet
    assert ring.pending_samples <= ring.max_pending and ring.dropped_chunks > 0


def test_a_screen_gets_tile_frames_of_what_it_looks_at_and_all_channels_of_its_bed_view():
    st = _station()
    q = st.queue()
    s = _screen(st)
    st.look(s, visible=["bedA"], bed="bedB")
    for k in range(20):
        q.put_nowait(_chunk("bedA", k))
        q.put_nowait(_chunk("bedB", k))
    for bed in st.beds.values():
        bed.ring.update()
    frames = st.frames_for(s)
    heads = sorted(FRAME_HEADER.unpack_from(f)[:3] for f in frames)
    assert heads == [(1, 2, 0), (2, 4, 1)]  # bedA: 2 tile channels; bedB: all 4 (kinds 1 and 2)
    assert st.frames_for(s) == []  # nothing new since
    msgs = [json.loads(m)["t"] for m in s.outbox]
    assert msgs[:3] == ["hello", "layout", "state"] and "bed" in msgs


def test_alarms_go_to_every_screen_and_order_the_tiles_and_a_slow_screen_stays_bounded():
    st = _station()
    a, b = _screen(st), _screen(st, "clinician")
    st.emit(MonitorEvent(stream="bedB", kind="alarm_on", label="vt", extra={"priority": "high"}))
    for s in (a, b):
        assert json.loads(s.outbox[-1])["ev"]["kind"] == "alarm_on"
    assert [t["stream"] for t in st.tiles()] == ["bedB", "bedA"]  # alarms first
    for k in range(5000):  # a screen that never reads
        st.emit(MonitorEvent(stream="bedA", kind="signal_loss", extra={"reason": f"r{k}"}))
    assert len(a.outbox) == a.outbox.maxlen and a.lost_messages > 0
    ev = st.act(b.session, stream="bedB", label="vt", action="ack", seconds=None)
    assert ev.kind == "alarm_ack" and json.loads(a.outbox[-1])["ev"]["user"] == "vic"
    st.close_screen(a)
    st.emit(MonitorEvent(stream="bedA", kind="signal_ok"))
    assert a not in st.screens
