"""The engine's watchdog (a mixin of :class:`~pedstream.monitor.engine.Engine`).

The ``watchdog`` task reports a stream without progress for ``[stream] watchdog_s`` (data queued
but not processed, windows waiting for inference, or no data while its source has not reported it
lost) and a model call running that long as one ``error`` event each and a ``stalled`` flag on the
stream's row (cleared when it moves again); a task of the engine that ended is reported once; a
stall of the event loop itself, seen by :class:`~pedstream.monitor.loopwatch.LoopWatch` from its
thread, is reported when the loop runs again. Split out of ``engine.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time

__all__ = ["Watchdog"]

log = logging.getLogger("pedstream.monitor.engine")


class Watchdog:
    """Progress checks of the engine's streams and tasks (see the module docstring)."""

    async def _watchdog(self) -> None:
        budget = self.cfg.stream.watchdog_s
        period = min(1.0, max(0.02, budget / 5))
        while True:
            await asyncio.sleep(period)  # the watchdog's own cadence
            stall = self.loopwatch.beat() if self.loopwatch is not None else None
            if stall is not None:
                self.watchdog_reports += 1
                self._error("engine", f"watchdog: the event loop was blocked for {stall:.1f} s "
                                      f"(in {self.loopwatch.where}); every stream was late meanwhile")
            try:
                self.check_progress(time.monotonic())
            except Exception as exc:  # the watchdog must outlive any one stream's problem
                log.exception("engine watchdog: %s", exc)

    def check_progress(self, now: float) -> None:
        """Flag (one ``error`` event, ``StreamStatus.stalled``) every stream and task without progress for
        ``[stream] watchdog_s``; clear the flag when it moves again."""
        budget = self.cfg.stream.watchdog_s
        oldest_window: dict[str, float] = {}
        for b in (self.batcher, self.beat_batcher):
            for sid, q in (getattr(b, "_queues", {}) or {}).items():
                if q:
                    oldest_window[sid] = min(oldest_window.get(sid, now), q[0].t_enqueued)
        for sid, s in self.streams.items():
            st, pipe = s.status, s.pipe
            if st is None:
                continue
            why = None
            served = s.last_served if s.last_served is not None else now
            grace = self.cfg.stream.dsp_defer_s if s.deferred else 0.0  # deferred DSP: waiting by design, up to dsp_defer_s
            if s.pending and now - served > budget + grace:
                why = (f"no progress: {len(s.pending)} event(s) queued, none processed for "
                       f"{now - served:.1f} s")
            elif sid in oldest_window and now - oldest_window[sid] > budget:
                why = f"no progress: a window has waited {now - oldest_window[sid]:.1f} s for inference"
            elif (pipe is not None and not pipe.lost and s.last_data is not None
                  and now - s.last_data > budget):
                why = (f"no data for {now - s.last_data:.1f} s and its source has not reported it "
                       "lost (source stalled?)")
            if why is not None and st.stalled is None:
                st.stalled = why
                self.watchdog_reports += 1
                self._error(sid, f"watchdog: {why} ([stream] watchdog_s {budget:g})")
            elif why is None and st.stalled is not None:
                st.stalled = None
        for b in (self.batcher, self.beat_batcher):
            since = getattr(b, "busy_since", None)
            if b is not None and since is not None and now - since > budget:
                if self._stalled_engine is None:
                    self._stalled_engine = f"a model call has been running for {now - since:.1f} s"
                    self.watchdog_reports += 1
                    self._error("engine", f"watchdog: {self._stalled_engine} ([stream] watchdog_s {budget:g})")
                break
        else:
            self._stalled_engine = None
        for t in self._tasks:
            if t.done() and not t.cancelled() and not getattr(t, "_pedstream_reported", False):
                t._pedstream_reported = True  # type: ignore[attr-defined]
                exc = t.exception()
                self._error("engine", f"watchdog: task {t.get_name()} ended"
                                      + (f" ({type(exc).__name__}: {exc})" if exc else ""))
