"""Test signals and an in-memory source for the engine tests.

``make_signal`` draws a simple beating 19-channel signal (Gaussian QRS-like pulses at ``hr`` bpm on
the ECG leads, sharp biphasic deflections on the IEGM channels, small noise) in mV. ``ArraySource``
is a real :class:`~pedstream.transports.base.SourceBase` that announces streams and pushes
their samples as chunks of a given size (no pacing: as fast as the engine takes them).
``wait_for`` and ``chunks_of`` read a source's event queue in the source tests.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from pedstream.data.channels import CANONICAL_CHANNELS
from pedstream.events import Chunk, ChunkReceived, StreamAdded, StreamInfo, StreamLost
from pedstream.transports.base import SourceBase


async def wait_for(events: asyncio.Queue, pred: Callable[[Any], bool], *, timeout: float = 8.0,
                   log: list | None = None) -> Any:
    """Take events until one satisfies ``pred`` (within ``timeout`` s); everything taken goes into ``log``."""
    async def loop() -> Any:
        while True:
            ev = await events.get()
            if log is not None:
                log.append(ev)
            if pred(ev):
                return ev
    return await asyncio.wait_for(loop(), timeout)


def events_validator() -> Any:
    """A strict validator of the shipped events JSON Schema (formats checked)."""
    import jsonschema

    from pedstream.events import event_schema

    return jsonschema.Draft202012Validator(event_schema(), format_checker=jsonschema.FormatChecker())


def chunks_of(log: list, sid: str) -> list[Chunk]:
    """The chunks of stream ``sid`` among the events in ``log``, in arrival order."""
    return [e.chunk for e in log if isinstance(e, ChunkReceived) and e.chunk.stream_id == sid]


def make_signal(*, fs: float, seconds: float, hr: float = 100.0, n_ch: int = 19, seed: int = 0) -> np.ndarray:
    """(n, n_ch) float32 mV: pulses at ``hr`` bpm plus noise and a slow baseline wander."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    beats = np.arange(0.3, seconds, 60.0 / hr)
    x = 0.02 * rng.standard_normal((n, n_ch)) + 0.2 * np.sin(2 * np.pi * 0.3 * t)[:, None]
    pulse = np.zeros(n)
    for b in beats:
        pulse += np.exp(-0.5 * ((t - b) / 0.012) ** 2)
    gains = rng.uniform(0.5, 1.5, n_ch) * rng.choice([-1, 1], n_ch)
    x += pulse[:, None] * gains[None, :]
    return x.astype(np.float32)


@dataclass
class StreamSpec:
    stream_id: str
    data: np.ndarray  # (n, n_ch) mV
    fs: float
    channel_names: list[str] = field(default_factory=lambda: list(CANONICAL_CHANNELS))
    chunk: int = 49
    age_years: float | None = None
    # (sample_index, samples_skipped): a gap inserted before that sample
    gaps: list[tuple[int, int]] = field(default_factory=list)
    t0: float = 1000.0


class ArraySource(SourceBase):
    kind = "replay"

    def __init__(self, *, events: asyncio.Queue, streams: list[StreamSpec], lose_at_end: bool = False) -> None:
        super().__init__(events=events)
        self.streams = streams
        self.lose_at_end = lose_at_end
        self.done = asyncio.Event()

    async def _start(self) -> None:
        self._spawn(self._run(), name="array-source")

    async def _run(self) -> None:
        for s in self.streams:
            self.emit(StreamAdded(StreamInfo(stream_id=s.stream_id, source="replay", fs=s.fs,
                                             channel_names=list(s.channel_names), units=["mV"] * len(s.channel_names),
                                             age_years=s.age_years)))
        # interleave the streams chunk by chunk
        pos = {s.stream_id: 0 for s in self.streams}
        skip = {s.stream_id: 0 for s in self.streams}
        gaps = {s.stream_id: dict(s.gaps) for s in self.streams}
        active = list(self.streams)
        while active:
            for s in list(active):
                i = pos[s.stream_id]
                if i >= len(s.data):
                    active.remove(s)
                    if self.lose_at_end:
                        self.emit(StreamLost(s.stream_id, "end of data"))
                    continue
                n = s.chunk
                for g, k in gaps[s.stream_id].items():  # cut the chunk at a gap
                    if i < g < i + n:
                        n = g - i
                    if i == g:
                        skip[s.stream_id] += k
                        pos[s.stream_id] = i = i + k
                        del gaps[s.stream_id][g]
                        break
                data = s.data[i:i + n]
                if len(data) == 0:
                    continue
                first = i
                ts = s.t0 + (first + np.arange(len(data))) / s.fs
                self.emit(ChunkReceived(Chunk(stream_id=s.stream_id, data=data, timestamps=ts, first_index=first)))
                pos[s.stream_id] = i + len(data)
            await asyncio.sleep(0)  # yield to the engine between rounds
        self.done.set()
