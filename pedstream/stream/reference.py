"""Reference labels of replayed annotated records: the "truth" beside each rhythm call.

A record replayed (``--source replay``, ``--demo`` over any transport, ``pedstream run --records``)
carries its annotations. :class:`ReferenceLabels` knows, per stream, the replay's clock (``t0``:
the signal time of the first sample sent) and the record's labelled beats (rhythm ``+`` aux and beat
labels through the ``[labels]`` grouping, :meth:`LabelGrouping.labels`, as training labels its
segments). The reference label of a call's window (``t_signal`` .. ``t_signal_end``, mapped back to
record samples, looping replays included) is the class with the most labelled beats in that span
(``None`` when the span holds none, or the record has no annotations).

It is a sink placed *first* among the engine's sinks: the engine hands each event to its sinks in
order, so every later sink (events file, MQTT, LSL markers...) sees ``call`` events with ``truth``
added (only when known). It also keeps, per stream, the last reference label and a running
agreement (calls whose label equals the reference, among calls with a reference) for the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pedstream.stream.sinks import MonitorEvent

__all__ = ["ReferenceLabels", "ReferenceTrack"]


@dataclass
class ReferenceTrack:
    """One replayed record: record samples ``[start, stop)`` sent from signal time ``t0`` at ``fs``."""

    t0: float
    fs: float
    start: int
    stop: int
    samples: np.ndarray  # (m,) int64 labelled beat positions (record samples, sorted)
    labels: np.ndarray  # (m,) int64 class index of each
    truth: str | None = None  # the reference label of the last call
    compared: int = 0  # calls with a reference label
    agreed: int = 0  # ... whose call equals it

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None


class ReferenceLabels:
    """Reference labels per replayed stream (see the module docstring); ``grouping`` is a
    :class:`~pedstream.data.labels.LabelGrouping`."""

    def __init__(self, grouping: Any) -> None:
        self._grouping = grouping
        self.classes: list[str] = list(grouping.classes)
        self.tracks: dict[str, ReferenceTrack] = {}

    @classmethod
    def from_config(cls, cfg: Any) -> "ReferenceLabels":
        from pedstream.data.labels import LabelGrouping

        return cls(LabelGrouping(cfg.labels.active))

    def add(self, plan: Any, *, t0: float) -> bool:
        """Register ``plan`` (a :class:`~pedstream.stream.replay.ReplayPlan`) whose first sample is at
        signal time ``t0``; False when its record has no annotations (no reference for that stream)."""
        ann = plan.record.annotations()
        if ann is None:
            return False
        from pedstream.data.segments import _labelled_beats  # the beats training labels, labelled alike

        samples, labels = _labelled_beats(ann, self._grouping)
        order = np.argsort(samples, kind="stable")
        self.tracks[plan.stream_id] = ReferenceTrack(
            t0=float(t0), fs=float(plan.fs), start=int(plan.start), stop=int(plan.stop),
            samples=np.asarray(samples, dtype=np.int64)[order], labels=np.asarray(labels, dtype=np.int64)[order])
        return True

    def label(self, stream_id: str, t_start: float, t_end: float) -> str | None:
        """The reference label of signal times ``[t_start, t_end)`` of ``stream_id`` (None if unknown)."""
        tr = self.tracks.get(stream_id)
        if tr is None or not t_end > t_start:
            return None
        span = tr.stop - tr.start
        k0 = int(round((t_start - tr.t0) * tr.fs))
        if k0 < 0 or span <= 0:
            return None
        s0 = tr.start + k0 % span  # a looping replay starts over at tr.start
        s1 = s0 + int(round((t_end - t_start) * tr.fs))
        i0, i1 = np.searchsorted(tr.samples, [s0, min(s1, tr.stop)], side="left")
        if s1 > tr.stop:  # the window wraps around the loop's end
            j1 = np.searchsorted(tr.samples, tr.start + (s1 - tr.stop), side="left")
            j0 = np.searchsorted(tr.samples, tr.start, side="left")
            inside = np.concatenate([tr.labels[i0:i1], tr.labels[j0:j1]])
        else:
            inside = tr.labels[i0:i1]
        if inside.size == 0:
            return None
        counts = np.bincount(inside, minlength=len(self.classes))
        return self.classes[int(np.argmax(counts))]

    # -- sink protocol ------------------------------------------------------------------------------
    async def __aenter__(self) -> "ReferenceLabels":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def emit(self, event: MonitorEvent) -> None:
        if event.kind != "call" or event.t_signal is None or event.stream not in self.tracks:
            return
        end = event.extra.get("t_signal_end")
        truth = None if end is None else self.label(event.stream, event.t_signal, float(end))
        tr = self.tracks[event.stream]
        tr.truth = truth
        if truth is None:
            return
        event.extra["truth"] = truth
        tr.compared += 1
        tr.agreed += event.label == truth

    def agreement(self) -> tuple[int, int]:
        """(agreed, compared) over all streams."""
        return (sum(t.agreed for t in self.tracks.values()), sum(t.compared for t in self.tracks.values()))
