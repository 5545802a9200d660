"""One pump for all LSL inlets of a source: every ``pull_interval_s`` one pass over the inlets.

Why not one task (or thread) per inlet: at 977 Hz in 50 ms chunks an inlet has data in one poll of
five at a 10 ms cadence, and every empty poll of a per-inlet task costs an event-loop wake-up and a
``pull_chunk`` call (about 6 us for the call alone, an allocation of ``max_chunk_samples`` timestamps
included). The pump asks ``samples_available()`` first (about 0.4 us, no allocation) and pulls only
inlets that have samples, on the event loop itself: a pull with ``timeout=0.0`` never blocks, liblsl's
own receiver threads fill the inlets' buffers meanwhile, and threads would only contend for the GIL.
Blocking liblsl calls (the periodic ``time_correction`` refresh, ``info`` when a stream comes back)
run in the source's small fixed thread pool, never one thread per inlet.

Bounds (network input is hostile): at most ``max_chunk_samples`` samples per pull into the inlet's
preallocated buffer and at most ``max_pulls_per_pass`` pulls per inlet per pass, so a stream with a
backlog (the samples LSL delivers on connect, or a stream sending faster than announced) cannot take
the pump from the others; the next pass then comes at once instead of after ``pull_interval_s``.
liblsl bounds what waits in an inlet (``max_buflen`` seconds of the nominal rate). A stream that
keeps sending faster than ``max_rate_factor`` times its nominal rate (beyond a burst allowance of
``max_buflen`` seconds, which covers any backlog an honest stream can have) ends with
:class:`StreamTooFast`. A stream whose pull raises ends its own feed only (its :class:`Feed.done`
carries the exception to the task that serves it). A stream without data for ``close_lost_after_s``
ends normally: its inlet is closed, which stops liblsl's recovery attempts (each one scans the port
range for a free port: with hundreds of dead streams that is real CPU); if the outlet comes back the
resolver finds it again and it gets a new inlet.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from pedstream.events import Chunk, ChunkReceived, SourceEvent, StreamAdded, StreamInfo, StreamLost

__all__ = ["Feed", "InletPump", "StreamTooFast", "close_feed"]

log = logging.getLogger(__name__)


class StreamTooFast(Exception):
    """A stream delivered more samples than ``max_rate_factor`` x its nominal rate allows."""

    def __init__(self, stream_id: str, *, received: int, seconds: float, fs: float, factor: float) -> None:
        self.stream_id, self.received, self.seconds, self.fs, self.factor = stream_id, received, seconds, fs, factor
        super().__init__(f"LSL stream sends faster than {factor:g} x its nominal rate of {fs:g} Hz "
                         f"({received} samples in {seconds:.1f} s): stopped")


@dataclass(slots=True, eq=False)
class Feed:
    """One open inlet as the pump sees it (built by the source once the stream is open)."""

    sid: str
    inlet: Any  # pylsl.StreamInlet, opened
    info: StreamInfo
    factors: np.ndarray  # (n_ch,) float32: to millivolts
    buf: np.ndarray  # (max_chunk_samples, n_ch) in the stream's dtype: pull_chunk's dest_obj
    grid: Any  # SampleGrid or None (dejitter off)
    offset: float  # inlet.time_correction(), added to every timestamp
    done: asyncio.Future = field(default=None)  # type: ignore[assignment]
    received: int = 0
    live: bool = True
    busy: bool = False  # a blocking call for this inlet is running in the pool: skip it
    lock: threading.Lock = field(default_factory=threading.Lock)  # held by a pool call using the inlet
    closing: bool = False  # set before the inlet is closed: the offset refresh skips it
    last_data: float = field(default_factory=time.monotonic)
    credit: float = float("inf")  # samples it may still deliver now (refilled at factor x fs, capped)
    credit_t: float = 0.0
    since: float = 0.0  # when it was attached (for the message)


class InletPump:
    """Pulls every attached :class:`Feed` without blocking and emits its events (module docstring)."""

    def __init__(self, *, emit: Callable[[SourceEvent], None], executor: Executor, pull_interval_s: float,
                 max_chunk_samples: int, lost_timeout_s: float, time_correction_interval_s: float,
                 open_timeout_s: float, parse: Callable[[Any], StreamInfo],
                 max_pulls_per_pass: int = 8, max_rate_factor: float = 2.0, burst_s: float = 60.0,
                 close_lost_after_s: float = 60.0) -> None:
        self.emit = emit
        self.executor = executor
        self.pull_interval_s = float(pull_interval_s)
        self.max_chunk_samples = int(max_chunk_samples)
        self.lost_timeout_s = float(lost_timeout_s)
        self.time_correction_interval_s = float(time_correction_interval_s)
        self.open_timeout_s = float(open_timeout_s)
        self.max_pulls_per_pass = int(max_pulls_per_pass)
        self.max_rate_factor = float(max_rate_factor)
        self.burst_s = float(burst_s)  # the burst allowance, in seconds of the nominal rate
        self.close_lost_after_s = float(close_lost_after_s)
        self.parse = parse  # full pylsl info -> StreamInfo (when a lost stream comes back)
        self.feeds: dict[str, Feed] = {}
        self.passes = 0
        self._tc_task: asyncio.Future | None = None  # the offset refresh running in the pool
        self._side: set[asyncio.Future] = set()  # revivals in flight

    # -- attach / detach (called by the task serving the stream) ----------------------------------
    def attach(self, feed: Feed) -> asyncio.Future:
        """Start pulling ``feed``; announces it (``StreamAdded``). The returned future ends with the
        feed: an exception (``LostError``, any pull failure) for the serving task to report."""
        feed.done = asyncio.get_running_loop().create_future()
        feed.last_data = feed.credit_t = feed.since = time.monotonic()
        feed.credit = self.burst_s * feed.info.fs
        self.feeds[feed.sid] = feed
        self.emit(StreamAdded(feed.info))
        return feed.done

    def detach(self, feed: Feed) -> None:
        if self.feeds.get(feed.sid) is feed:
            del self.feeds[feed.sid]

    # -- the pump ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Forever: a pass over every feed, then ``pull_interval_s`` (less the pass) or, when an inlet
        still had a backlog, the next pass at once (after yielding to the loop)."""
        try:
            await self._run()
        finally:
            for task in (self._tc_task, *self._side):
                if task is not None:
                    task.cancel()

    async def _run(self) -> None:
        next_tc = time.monotonic() + self.time_correction_interval_s
        while True:
            start = time.monotonic()
            backlog = False
            for feed in list(self.feeds.values()):
                if feed.busy or feed.done.done():
                    continue
                try:
                    backlog |= self._poll(feed, start)
                except Exception as exc:  # this stream's failure ends this stream only
                    self.detach(feed)
                    feed.done.set_exception(exc)
            self.passes += 1
            if start >= next_tc and (self._tc_task is None or self._tc_task.done()):
                next_tc = start + self.time_correction_interval_s
                self._tc_task = asyncio.ensure_future(self._refresh_offsets())
            pause = 0.0 if backlog else max(0.0, self.pull_interval_s - (time.monotonic() - start))
            await asyncio.sleep(pause)

    def _poll(self, feed: Feed, now: float) -> bool:
        """Pull what ``feed`` has (bounded); True when it still has a backlog."""
        inlet = feed.inlet
        if not feed.live and now - feed.last_data > self.close_lost_after_s:
            log.info("LSL stream %s: no data for %.0f s, closing its inlet", feed.sid, now - feed.last_data)
            self.detach(feed)
            feed.done.set_result(None)
            return False
        if feed.live and inlet.samples_available() == 0:  # cheap: no allocation, no pull
            if now - feed.last_data > self.lost_timeout_s:
                feed.live = False
                self.emit(StreamLost(feed.sid, f"no LSL data for {self.lost_timeout_s:g} s"))
            return False
        for _ in range(self.max_pulls_per_pass):
            # while not live this pull is what raises LostError for a stream liblsl cannot recover
            samples, stamps = inlet.pull_chunk(timeout=0.0, max_samples=self.max_chunk_samples,
                                               dest_obj=feed.buf, as_numpy=True)
            n = len(stamps)
            if not n:
                return False
            if not feed.live:  # data again: liblsl recovered the stream (re-read its info first)
                feed.busy = True
                task = asyncio.ensure_future(self._revive(feed, samples[:n].copy(), np.array(stamps)))
                self._side.add(task)
                task.add_done_callback(self._side.discard)
                return False
            self._deliver(feed, samples[:n], stamps, now)
            if n < self.max_chunk_samples:
                return False
        return True

    def _deliver(self, feed: Feed, samples: np.ndarray, stamps: np.ndarray, now: float) -> None:
        n = len(stamps)
        fs = feed.info.fs
        feed.credit = min(self.burst_s * fs, feed.credit + (now - feed.credit_t) * fs * self.max_rate_factor) - n
        feed.credit_t = now
        if feed.credit < 0:
            raise StreamTooFast(feed.sid, received=feed.received + n, seconds=now - feed.since, fs=fs,
                                factor=self.max_rate_factor)
        data = np.multiply(samples, feed.factors, dtype=np.float32)  # (n, n_ch) mV, a new array
        ts = np.asarray(stamps, dtype=np.float64) + feed.offset  # (n,)
        if feed.grid is not None:
            ts = feed.grid.place(ts, feed.received)
        self.emit(ChunkReceived(Chunk(stream_id=feed.sid, data=data, timestamps=ts, first_index=feed.received)))
        feed.received += n
        feed.last_data = now

    async def _revive(self, feed: Feed, samples: np.ndarray, stamps: np.ndarray) -> None:
        loop = asyncio.get_running_loop()
        try:
            full = await loop.run_in_executor(self.executor, _locked, feed, feed.inlet.info, self.open_timeout_s)
            feed.info = self.parse(full)
            feed.offset = await loop.run_in_executor(self.executor, _locked, feed, _offset, feed.inlet, feed.offset)
        except Exception as exc:
            self.detach(feed)
            if not feed.done.done():
                feed.done.set_exception(exc)
            return
        finally:
            feed.busy = False
        feed.live = True
        self.emit(StreamAdded(feed.info))
        try:
            self._deliver(feed, samples, stamps, time.monotonic())
        except StreamTooFast as exc:
            self.detach(feed)
            if not feed.done.done():
                feed.done.set_exception(exc)

    async def _refresh_offsets(self) -> None:
        """Every live feed's clock offset, measured in one pool thread while the pump goes on
        (liblsl answers from its background estimate; only a first measurement waits)."""
        feeds = [f for f in self.feeds.values() if f.live and not f.busy]
        offsets = await asyncio.get_running_loop().run_in_executor(self.executor, _offsets, feeds)
        for f, off in zip(feeds, offsets):
            f.offset = off


def _offset(inlet: Any, current: float, timeout: float = 1.0) -> float:
    """``inlet.time_correction()``, or ``current`` when it times out or the stream is gone."""
    from pylsl.util import LostError, TimeoutError as LSLTimeoutError

    try:
        return float(inlet.time_correction(timeout))
    except (LSLTimeoutError, LostError):
        return current


def _offsets(feeds: list[Feed]) -> list[float]:
    """The refreshed offsets; a short wait each (liblsl answers from its background estimate), none
    for a feed being closed (:func:`close_feed` waits only for the call on its own inlet)."""
    out = []
    for f in feeds:
        with f.lock:
            out.append(f.offset if f.closing else _offset(f.inlet, f.offset, timeout=0.2))
    return out


def _locked(feed: Feed, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with ``feed``'s lock held; refused once the feed is being closed."""
    with feed.lock:
        if feed.closing:
            raise RuntimeError(f"LSL stream {feed.sid}: inlet closed")
        return fn(*args)


def close_feed(feed: Feed) -> None:
    """Close ``feed``'s inlet (in a pool thread) once no other pool call uses it."""
    feed.closing = True
    with feed.lock:
        feed.inlet.close_stream()
