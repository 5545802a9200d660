"""A watchdog for the event loop itself.

The engine's ``watchdog`` task runs on the event loop, so a loop blocked by one synchronous call
(a slow sink, a stuck C extension, a bug) stops the very thing that would report it. This module
watches from outside: the loop beats a heartbeat (:meth:`LoopWatch.beat`, called by the engine's
watchdog task every period) and a daemon thread checks it. When the loop has not beaten for
``budget_s`` the thread logs ONE line naming where the loop thread is stuck (its innermost frames,
from ``sys._current_frames``); when the loop runs again, :meth:`LoopWatch.beat` returns the length
of the stall so the engine can report it as an ``error`` event.

asyncio's debug mode (``slow_callback_duration``) reports slow callbacks only after they return
and costs overhead on every callback; nothing in the standard library or our dependencies watches
a live loop from another thread, hence this small class.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback

__all__ = ["LoopWatch"]

log = logging.getLogger(__name__)


class LoopWatch:
    """Use as a context manager around the loop's life; call :meth:`beat` from the loop."""

    def __init__(self, budget_s: float, *, name: str = "engine") -> None:
        if budget_s <= 0:
            raise ValueError(f"budget_s must be > 0 (got {budget_s!r})")
        self.budget_s, self.name = float(budget_s), name
        self._last = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reported_at: float | None = None  # heartbeat time the current stall was logged for
        self.stalls = 0  # stalls logged by the thread
        self.where: str | None = None  # where the loop was stuck at the last stall

    def __enter__(self) -> "LoopWatch":
        self._loop_thread = threading.get_ident()
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-loopwatch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.budget_s + 1.0)

    def beat(self) -> float | None:
        """Record that the loop runs; the length of the stall just ended (seconds), if one was logged."""
        now = time.monotonic()
        last, self._last = self._last, now
        if self._reported_at is not None and self._reported_at == last:
            self._reported_at = None
            return now - last
        return None

    def _stack_of_loop(self) -> str:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return "unknown"
        inner = traceback.extract_stack(frame)[-3:]
        return " <- ".join(f"{fs.name} ({fs.filename.rsplit('/', 1)[-1]}:{fs.lineno})" for fs in reversed(inner))

    def _run(self) -> None:
        period = min(1.0, self.budget_s / 4)
        while not self._stop.wait(period):
            last = self._last
            blocked = time.monotonic() - last
            if blocked > self.budget_s and self._reported_at != last:
                self._reported_at = last
                self.stalls += 1
                self.where = self._stack_of_loop()
                log.error("%s watchdog: the event loop has not run for %.1f s; stuck in %s",
                          self.name, blocked, self.where)
