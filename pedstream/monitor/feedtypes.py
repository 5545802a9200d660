"""What one chunk through a :class:`~pedstream.monitor.pipeline.StreamPipeline` produces, and what
travels with it: the result of a feed (:class:`FeedResult`), a chunk half way through
(:class:`Staged`) and the arrival times
of a merged chunk's parts (:class:`Arrivals`). Split out of ``pipeline.py``; the DSP worker
processes pickle these."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pedstream.events import ReadyStrip
from pedstream.monitor.batcher import WindowItem

__all__ = ["Quality", "Arrivals", "FeedResult", "Staged"]

Quality = Literal["warm-up", "ok", "loss", "clipped"]


@dataclass(slots=True, frozen=True)
class Arrivals:
    """When the parts of a merged chunk arrived: part ``k`` holds the stream's samples up to (not
    including) index ``ends[k]`` and arrived at monotonic time ``times[k]`` (ascending ``ends``).

    A window's end-to-end latency starts when the chunk holding its LAST sample arrived
    (:meth:`at`), whether or not the engine merged that chunk with earlier ones before its DSP ran."""

    ends: tuple[int, ...]
    times: tuple[float, ...]

    @property
    def first(self) -> float:
        return self.times[0]

    def at(self, index: int) -> float:
        """Arrival of the part holding sample ``index`` (the last part's for an index beyond them)."""
        k = bisect.bisect_right(self.ends, int(index))
        return self.times[min(k, len(self.times) - 1)]


@dataclass(slots=True)
class FeedResult:
    windows: list[WindowItem] = field(default_factory=list)
    transitions: list[tuple[Literal["signal_loss", "signal_ok"], str]] = field(default_factory=list)
    strips: list[ReadyStrip] = field(default_factory=list)
    beats: list[WindowItem] = field(default_factory=list)  # beat windows ready for the beat model
    ectopy_error: str | None = None  # the beat path failed for this stream (it is then switched off)


@dataclass(slots=True)
class Staged:
    """A chunk half through :meth:`StreamPipeline.prepare`: ``y`` (k, 19) resampled samples waiting
    for the filter bank (None: nothing to do), ``ts`` (k,) their source-clock seconds; ``end_index``
    the stream index one past the chunk's last sample; ``arrivals`` its parts' arrival times when
    it is a merge of several chunks."""

    res: FeedResult
    t_received: float
    mapped: np.ndarray | None = None
    y: np.ndarray | None = None
    ts: np.ndarray | None = None
    end_index: int = 0
    arrivals: Arrivals | None = None
