"""Freeing the engine's state of streams that ended (used by :class:`~pedstream.monitor.engine.Engine`).

A stream reported lost (its source saw no data for ``lost_timeout_s``, its meta was withdrawn, its
replay ended...) releases its pipeline ``RELEASE_AFTER_S`` later, once its last windows have been
classified (none waiting for the model): the filter bank, the resampler, the signal ring
(a window and two hops, or ``ring_seconds``, or with alarm strips a strip and two windows, of 19
channels: 0.4 to 1.2 MB at 977 Hz, most of a stream's memory), the QRS and
beat state and its windows waiting for the model. Pending alarm strips are written first. Its
dashboard row and alarm state stay, so the loss is shown; the stream coming back builds a new
pipeline (its DSP would restart after such a gap anyway). A loss followed at once by the same
stream's return (a changed meta) keeps the pipeline.

The rows of released streams, and the state of ids that only ever had error events (a publisher
named in a refusal), are kept for the ``KEEP_RELEASED`` most recent ones; older ones are dropped
whole. So the engine's memory under stream-id churn is bounded by the live streams plus that many
small rows, whatever the number of ids ever seen.

Freed memory is handed back to the operating system: glibc keeps freed heap pages of a process
(the rings of hundreds of released streams) for reuse, so after a batch of releases the sweep calls
glibc's ``malloc_trim`` (at most every ``TRIM_EVERY_S``; elsewhere a no-op).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from pedstream.events import StreamAdded

__all__ = ["KEEP_RELEASED", "RELEASE_AFTER_S", "release_lost", "sweep_released", "revive", "note_error_only",
           "released_count"]

log = logging.getLogger("pedstream.monitor.engine")
KEEP_RELEASED = 256
RELEASE_AFTER_S = 3.0  # a lost stream's windows still waiting for the model are classified first
TRIM_EVERY_S = 2.0


def _malloc_trim() -> Any:
    try:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        fn = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except (OSError, AttributeError):
        fn = None
    return fn


_TRIM = _malloc_trim()


def _released(engine: Any) -> OrderedDict:
    table = getattr(engine, "_released_streams", None)
    if table is None:
        table = engine._released_streams = OrderedDict()
    return table


def released_count(engine: Any) -> int:
    """Stream pipelines released so far (the summary's ``streams_released``)."""
    return int(getattr(engine, "_released_total", 0))


def _due(engine: Any) -> OrderedDict:
    table = getattr(engine, "_streams_release_due", None)
    if table is None:
        table = engine._streams_release_due = OrderedDict()
    return table


def release_lost(engine: Any, sid: str) -> None:
    """Stream ``sid`` was reported lost: its pipeline is freed ``RELEASE_AFTER_S`` from now (by
    :func:`sweep_released`) unless the stream comes back before."""
    s = engine.streams.get(sid)
    if s is None or s.pipe is None or engine.workers is not None:  # a DSP worker's pipeline stays there
        return
    if any(isinstance(ev, StreamAdded) for ev, _ in s.pending):  # lost and back at once (a new meta)
        return
    due = _due(engine)
    due[sid] = time.monotonic() + RELEASE_AFTER_S
    due.move_to_end(sid)


def sweep_released(engine: Any, now: float) -> float | None:
    """Free the pipelines whose time has come; the seconds until the next one is due (None: none)."""
    due = getattr(engine, "_streams_release_due", None)
    nxt = _sweep(engine, due, now) if due else None
    trim = _trim(engine, now)
    return trim if nxt is None else (nxt if trim is None else min(nxt, trim))


def _trim(engine: Any, now: float) -> float | None:
    """Hand freed memory back (rate-limited); the seconds until a trim still owed may run (None: none)."""
    if not getattr(engine, "_released_untrimmed", 0) or _TRIM is None:
        return None
    wait = getattr(engine, "_trimmed_at", -1e9) + TRIM_EVERY_S - now
    if wait > 0:
        return wait
    engine._released_untrimmed, engine._trimmed_at = 0, now
    _TRIM(0)
    return None


def _sweep(engine: Any, due: OrderedDict, now: float) -> float | None:
    while due:
        sid, t = next(iter(due.items()))
        if t > now:
            return t - now
        del due[sid]
        s = engine.streams.get(sid)
        if s is None or s.pipe is None:
            continue
        if engine.batcher.queue_depth(sid) or (engine.beat_batcher is not None and engine.beat_batcher.queue_depth(sid)):
            due[sid] = now + 1.0  # windows still waiting for the model: later
            continue
        _release(engine, sid, s)
    return None


def _release(engine: Any, sid: str, s: Any) -> None:
    pipe, s.pipe = s.pipe, None
    try:
        for strip in pipe.flush_strips():  # strips still waiting for post-onset samples
            engine.strip_writer.write(pipe, strip)
    except Exception as exc:  # a strip must not keep the stream's memory alive
        log.warning("stream %s: alarm strip not written on release (%s)", sid, exc)
    engine.batcher.remove_stream(sid)
    if engine.beat_batcher is not None:
        engine.beat_batcher.remove_stream(sid)
    s.need = 0
    engine._released_total = released_count(engine) + 1
    engine._released_untrimmed = getattr(engine, "_released_untrimmed", 0) + 1
    _keep(engine, sid)


def note_error_only(engine: Any, sid: str) -> None:
    """An error event for an id the engine never monitored (e.g. a refused publisher): its state is
    kept among the released ones, so such ids cannot grow the engine's tables."""
    s = engine.streams.get(sid)
    if s is not None and s.pipe is None and s.status is None:
        _keep(engine, sid)


def revive(engine: Any, sid: str) -> None:
    """Stream ``sid`` is announced again: it is no longer among the released ones."""
    _released(engine).pop(sid, None)
    _due(engine).pop(sid, None)


def _keep(engine: Any, sid: str) -> None:
    table = _released(engine)
    table[sid] = None
    table.move_to_end(sid)
    while len(table) > KEEP_RELEASED:
        old, _ = table.popitem(last=False)
        s = engine.streams.get(old)
        if s is None:
            continue
        if s.pipe is not None or s.pending or s.in_turn:  # in use again: not dropped
            continue
        del engine.streams[old]
        engine.error_throttle.forget(old)
