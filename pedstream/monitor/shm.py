"""Windows from a DSP worker process to the inference process through shared memory.

A :class:`WindowRing` is a single-producer, single-consumer ring of ``slots`` window slots in one
:class:`multiprocessing.shared_memory.SharedMemory` block: each slot holds one normalised window
``(channels, samples)`` float32 and its channel mask ``(channels,)`` float32. The producer (a DSP
worker) writes a window into the next free slot with :meth:`put` and sends a small control message
``(seq, stream id, start, times)`` over a pipe; the consumer (the engine's inference side) takes
the window out with :meth:`take` in the order of the messages, which frees the slot. Window data
never goes through pickle: a 2.5 s 19-channel window at 977 Hz is 186 kB, its message under 100 B.

Layout of the block: a header of two int64 counters, ``written`` (advanced only by the producer,
after the slot's data is in place) and ``taken`` (advanced only by the consumer, after it copied
the slot out); then the ``slots`` x channels x samples windows; then the ``slots`` x channels masks.
The ring is full when ``written - taken == slots``: :meth:`put` then returns ``None`` and the
caller counts a dropped window (as the batcher drops a stream's oldest window when inference falls
behind). Each counter has one writer, so no lock is needed; the message pipe orders the two sides.

The consumer creates the block (it outlives workers that come and go: a restarted worker attaches
to the same ring by name) and unlinks it on :meth:`close`.
"""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

__all__ = ["RingSpec", "WindowRing"]

_HEADER = 16  # two int64 counters


@dataclass(frozen=True, slots=True)
class RingSpec:
    """What a process needs to attach to a ring (picklable: sent to a worker at start)."""

    name: str
    slots: int
    channels: int
    samples: int

    @property
    def nbytes(self) -> int:
        return _HEADER + 4 * self.slots * self.channels * (self.samples + 1)


class WindowRing:
    """See the module docstring. Create with :meth:`create` (consumer), attach with :meth:`attach`
    (producer)."""

    def __init__(self, spec: RingSpec, shm: shared_memory.SharedMemory, *, owner: bool) -> None:
        self.spec = spec
        self._shm = shm
        self._owner = owner
        buf = shm.buf
        self._count = np.ndarray((2,), dtype=np.int64, buffer=buf, offset=0)  # [written, taken]
        win_bytes = 4 * spec.slots * spec.channels * spec.samples
        self._x = np.ndarray((spec.slots, spec.channels, spec.samples), dtype=np.float32, buffer=buf, offset=_HEADER)
        self._mask = np.ndarray((spec.slots, spec.channels), dtype=np.float32, buffer=buf, offset=_HEADER + win_bytes)
        self.dropped = 0  # producer side: windows refused because the ring was full

    @classmethod
    def create(cls, *, slots: int, channels: int, samples: int, name: str | None = None) -> "WindowRing":
        if slots < 1 or channels < 1 or samples < 1:
            raise ValueError(f"WindowRing needs slots, channels, samples >= 1 (got {slots}, {channels}, {samples})")
        nbytes = RingSpec("", slots, channels, samples).nbytes
        shm = shared_memory.SharedMemory(name=name, create=True, size=nbytes)
        ring = cls(RingSpec(shm.name, slots, channels, samples), shm, owner=True)
        ring._count[:] = 0
        return ring

    @classmethod
    def attach(cls, spec: RingSpec) -> "WindowRing":
        shm = shared_memory.SharedMemory(name=spec.name, create=False)
        if shm.size < spec.nbytes:
            shm.close()
            raise ValueError(f"shared memory {spec.name!r} holds {shm.size} bytes, the ring needs {spec.nbytes}")
        return cls(spec, shm, owner=False)

    @property
    def written(self) -> int:
        return int(self._count[0])

    @property
    def taken(self) -> int:
        return int(self._count[1])

    @property
    def free(self) -> int:
        return self.spec.slots - (self.written - self.taken)

    def put(self, x: np.ndarray, mask: np.ndarray) -> int | None:
        """Producer: copy a ``(channels, samples)`` window and its ``(channels,)`` mask into the next
        slot; its sequence number (to send in the control message), or None when the ring is full."""
        w = int(self._count[0])
        if w - int(self._count[1]) >= self.spec.slots:
            self.dropped += 1
            return None
        k = w % self.spec.slots
        self._x[k] = x  # raises ValueError for a wrong shape, before anything is published
        self._mask[k] = mask
        self._count[0] = w + 1  # publish after the data is in place
        return w

    def take(self, seq: int, *, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Consumer: the window with sequence number ``seq`` (the next one not taken yet) copied out
        (into ``out`` if given), and its mask; frees the slot."""
        t = int(self._count[1])
        if seq != t or seq >= int(self._count[0]):
            raise ValueError(f"WindowRing.take({seq}): the next window to take is {t}, "
                             f"{int(self._count[0])} were written")
        k = seq % self.spec.slots
        x = np.array(self._x[k], copy=True) if out is None else np.copyto(out, self._x[k]) or out
        mask = self._mask[k].copy()
        self._count[1] = t + 1
        return x, mask

    def close(self) -> None:
        """Detach; the creator also removes the block."""
        del self._x, self._mask, self._count
        self._shm.close()
        if self._owner:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "WindowRing":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
