"""What a source delivers: the events of a stream and the interface every live source implements (LSL, MQTT,
replay). The transports' shared plumbing is in :mod:`pedstream.transports.base`.

A source is an *async context manager* that pushes :data:`SourceEvent` objects into an
:class:`asyncio.Queue` handed to its (keyword-only) constructor::

    events: asyncio.Queue[SourceEvent] = asyncio.Queue()
    async with LSLSource(events=events, predicate="type='ECG'"):
        while True:
            ev = await events.get()
            match ev:
                case StreamAdded(info): ...
                case ChunkReceived(chunk): ...
                case StreamLost(stream_id, reason): ...
                case StreamFailed(stream_id, message): ...

Contract (the engine codes against it):

- ``async with source:`` starts the source's named tasks inside an :class:`asyncio.TaskGroup` and
  returns once they are running; leaving the block cancels and awaits them. A source never raises
  out of its tasks for bad input from a stream: it emits :class:`StreamFailed` and carries on.
- Events are put with ``put_nowait`` (the queue should be unbounded or large): a source never
  blocks on the consumer; the engine bounds downstream. If the queue is bounded and full, the event
  is dropped and counted in :attr:`Source.dropped_events`.
- For one ``stream_id`` the order is: ``StreamAdded`` -> any number of ``ChunkReceived`` /
  ``StreamFailed`` -> ``StreamLost`` -> (``StreamAdded`` again when the stream comes back, with
  ``first_index`` continuing from where it was or restarting; the engine checks
  ``first_index`` against what it expects to detect gaps).
- :class:`Chunk` data are ``(n, n_ch)`` float32 **millivolts**, in the stream's own channel order
  (``StreamInfo.channel_names``) at the stream's own rate (``StreamInfo.fs``). Mapping onto the
  canonical channels and resampling are the engine's job.

The event :class:`StreamFailed` (one stream failed; the stream's ``error`` event) is not the exception
:class:`pedstream.errors.StreamError` (a command's own failure).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

__all__ = ["Chunk", "StreamInfo", "StreamAdded", "ChunkReceived", "StreamLost", "StreamFailed", "SourceEvent", "Source",
           "SourceKind"]

SourceKind = Literal["lsl", "mqtt", "replay"]


@dataclass(slots=True)
class Chunk:
    """A block of consecutive samples of one stream.

    - ``data``: ``(n, n_ch)`` float32, millivolts, channel order = ``StreamInfo.channel_names``.
    - ``timestamps``: ``(n,)`` float64 seconds on the source's clock, already corrected to the
      local clock where the transport allows it (LSL ``time_correction``); for MQTT/replay the
      publisher's clock (``t`` of the first sample + k / fs).
    - ``first_index``: absolute index of ``data[0]`` in the stream (samples since the stream
      started; MQTT ``first_sample``; LSL counts samples received). A jump against the previous
      chunk's ``first_index + n`` is a gap.
    - ``seq``: transport sequence number (MQTT/replay), ``None`` for LSL.
    """

    stream_id: str
    data: np.ndarray  # (n, n_ch) float32 mV
    timestamps: np.ndarray  # (n,) float64 s
    first_index: int
    seq: int | None = None

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[0])


@dataclass(slots=True)
class StreamInfo:
    """What a source knows about a stream when it appears.

    ``units`` holds the unit each channel was delivered in *before* conversion to mV (e.g.
    ``"uV"``); ``units_assumed`` is True when the stream declared no units and millivolts were
    assumed (the dashboard shows this). ``age_years`` comes from the stream's metadata (LSL
    ``desc/subject/age``, MQTT meta ``age_years``) or is ``None``.
    """

    stream_id: str
    source: SourceKind
    fs: float  # Hz, nominal
    channel_names: list[str]
    units: list[str]
    units_assumed: bool = False
    age_years: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    def same_layout(self, other: "StreamInfo | None") -> bool:
        """Whether ``other`` describes the same signal layout (rate and channels): a stream that came back
        with it keeps its pipeline (the next chunk's index and timestamps decide about a gap)."""
        return other is not None and other.fs == self.fs and list(other.channel_names) == list(self.channel_names)


@dataclass(slots=True)
class StreamAdded:
    info: StreamInfo

    @property
    def stream_id(self) -> str:
        return self.info.stream_id


@dataclass(slots=True)
class ChunkReceived:
    chunk: Chunk

    @property
    def stream_id(self) -> str:
        return self.chunk.stream_id


@dataclass(slots=True)
class StreamLost:
    stream_id: str
    reason: str


@dataclass(slots=True)
class StreamFailed:
    """A recoverable problem with one stream (bad payload, unknown channels, ...)."""

    stream_id: str
    message: str


SourceEvent = StreamAdded | ChunkReceived | StreamLost | StreamFailed


@runtime_checkable
class Source(Protocol):
    """What the engine needs from a source."""

    events: asyncio.Queue

    async def __aenter__(self) -> "Source": ...

    async def __aexit__(self, *exc: object) -> bool | None: ...
