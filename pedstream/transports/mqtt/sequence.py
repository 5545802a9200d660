"""Sequence tracking of MQTT data messages: put ``seq`` back in order, count loss, duplicates,
reordering and publisher restarts (the rules are in :mod:`pedstream.transports.mqtt.wire`'s docstring,
section "Sequence numbers"). Split out of ``wire.py``, which re-exports both names."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["SequenceTracker", "SeqStats"]

_U32 = 1 << 32

T = TypeVar("T")


@dataclass(slots=True)
class SeqStats:
    received: int = 0
    delivered: int = 0
    lost: int = 0  # seq values skipped
    duplicates: int = 0
    reordered: int = 0  # delivered after a later seq had arrived
    late: int = 0  # arrived after being declared lost (dropped)
    resets: int = 0


class SequenceTracker(Generic[T]):
    """Put messages back into ``seq`` order; count loss, duplicates, reordering (see module doc).

    ``push(seq, item)`` returns the items now deliverable, in order. ``flush_stale(max_hold_s)``
    releases held items older than that (counting the skipped seqs as lost). A restarted publisher
    (``seq`` 0 more than ``reorder_window`` behind, or any jump back of more than
    ``restart_distance``) or a jump forward of more than ``RESET_DISTANCE`` (a long outage)
    restarts the sequence at that message without counting loss (``stats.resets``); so does
    :meth:`reset` (a new publisher session announced in its meta).
    """

    RESET_DISTANCE = 1024

    def __init__(self, *, reorder_window: int = 4, clock: Any = time.monotonic,
                 restart_distance: int | None = None) -> None:
        self.window = max(0, int(reorder_window))
        self.restart_distance = (max(64, 4 * self.window) if restart_distance is None
                                 else max(1, int(restart_distance)))
        self.stats = SeqStats()
        self._clock = clock
        self._next: int | None = None
        self._held: dict[int, tuple[float, T]] = {}  # seq -> (arrival time, item)
        self._recent_lost: deque[int] = deque(maxlen=256)

    @property
    def held(self) -> int:
        return len(self._held)

    def _delta(self, seq: int) -> int:
        """Signed distance of ``seq`` from the next expected seq (serial-number arithmetic)."""
        d = (seq - (self._next or 0)) % _U32
        return d - _U32 if d >= _U32 // 2 else d

    def push(self, seq: int, item: T) -> list[T]:
        self.stats.received += 1
        out: list[T] = []
        if self._next is None:
            self._next = seq
        d = self._delta(seq)
        if d > self.RESET_DISTANCE or -d > self.restart_distance or (seq == 0 and -d > self.window):
            self.stats.resets += 1
            out += self._drain_all()
            self._recent_lost.clear()
            self._next, d = seq, 0
        if d < 0:
            if seq in self._recent_lost:
                self.stats.late += 1
            else:
                self.stats.duplicates += 1
            return out
        if seq in self._held:
            self.stats.duplicates += 1
            return out
        if d == 0 and self._held:
            self.stats.reordered += 1
        self._held[seq] = (self._clock(), item)
        out += self._release()
        while len(self._held) > self.window:
            out += self._skip_to_lowest()
        return out

    def reset(self) -> list[T]:
        """Forget the sequence (a new publisher session): returns the held items, in order."""
        out = self._drain_all()
        self._recent_lost.clear()
        self._next = None
        self.stats.resets += 1
        return out

    def flush_stale(self, max_hold_s: float) -> list[T]:
        """Release held items that waited ``max_hold_s`` or more for a missing predecessor."""
        out: list[T] = []
        now = self._clock()
        while self._held and now - min(a for a, _ in self._held.values()) >= max_hold_s:
            out += self._skip_to_lowest()
        return out

    def _drain_all(self) -> list[T]:
        out: list[T] = []
        while self._held:
            out += self._skip_to_lowest()
        return out

    def _skip_to_lowest(self) -> list[T]:
        """Declare the seqs before the lowest held one lost and release from there."""
        lowest = min(self._held, key=self._delta)
        d = self._delta(lowest)
        for k in range(min(d, self._recent_lost.maxlen or 0)):
            self._recent_lost.append((lowest - 1 - k) % _U32)
        self.stats.lost += d
        self._next = lowest
        return self._release()

    def _release(self) -> list[T]:
        out: list[T] = []
        while self._next in self._held:
            out.append(self._held.pop(self._next)[1])
            self._next = (self._next + 1) % _U32  # type: ignore[operator]
        self.stats.delivered += len(out)
        return out
