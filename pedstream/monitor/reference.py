"""Reference labels of replayed annotated records: the "truth" beside each rhythm call.

A record replayed (``--source replay``, ``--demo`` over any transport, ``pedstream run --records``)
carries its annotations. :class:`ReferenceLabels` knows, per stream, the replay's clock (``t0``:
the signal time of the first sample sent) and the record's reference, of one of two kinds
(``truth_source``):

- ``rhythm``: the record has rhythm annotations (``+`` with an aux such as ``(AFIB``). They are
  mapped exactly as ``pedstream score episodes`` maps them
  (:func:`pedstream.data.rhythm.scheme_reference`: the ``[labels.rhythm.<name>]`` map that
  knows most of the record's rhythms, when it names the classes of the configured label scheme), and the reference label of a call's window is the rhythm at
  the window's centre (``None`` in a rhythm the map leaves out, or before the first rhythm annotation);
- ``beats``: no rhythm annotation: the record's labelled beats (beat labels through the
  ``[labels]`` grouping, :meth:`LabelGrouping.labels`, as training labels its segments); the
  reference label of a window is the class with the most labelled beats in it (``None`` when it holds none).

The window (``t_signal`` .. ``t_signal_end``) is mapped back to record samples, looping replays
included. A record without annotations has no reference.

It is a sink placed *first* among the engine's sinks: the engine hands each event to its sinks in
order, so every later sink (events file, MQTT, LSL markers...) sees ``call`` events with ``truth``
and ``truth_source`` added (only when known). It also keeps, per stream, the last reference label,
the kind of reference (``ReferenceTrack.source``; :attr:`ReferenceLabels.truth_source` over all
streams) and a running agreement (calls whose label equals the reference, among calls with a
reference) for the dashboard.

Replays over a transport (``--demo`` on LSL) reach the engine without the record's place in their
stream info, so this sink also adds ``record``, ``record_s`` and ``record_sample``
(:func:`pedstream.transports.replay.record_position`) to the call and alarm events of every stream it
was told about, where the engine did not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pedstream.data.rhythm import labels_at, scheme_reference
from pedstream.transports.replay import record_position
from pedstream.events import MonitorEvent
from pedstream.config import Config

__all__ = ["ReferenceLabels", "ReferenceTrack"]


@dataclass
class ReferenceTrack:
    """One replayed record: record samples ``[start, stop)`` sent from signal time ``t0`` at ``fs``;
    ``source`` ``"rhythm"`` (``episodes``, ``rhythm_map``) or ``"beats"`` (``samples``, ``labels``)."""

    t0: float
    fs: float
    start: int
    stop: int
    samples: np.ndarray  # (m,) int64 labelled beat positions (record samples, sorted)
    labels: np.ndarray  # (m,) int64 class index of each
    source: str = "beats"  # "rhythm" | "beats": what the reference labels come from
    episodes: list[Any] | None = None  # rhythm: pedstream.data.rhythm.Episode list (record samples)
    rhythm_map: str | None = None  # rhythm: the [labels.rhythm.<name>] map used
    truth: str | None = None  # the reference label of the last call
    compared: int = 0  # calls with a reference label
    agreed: int = 0  # ... whose call equals it

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None


class ReferenceLabels:
    """Reference labels per replayed stream (see the module docstring); ``grouping`` is a
    :class:`~pedstream.data.labels.LabelGrouping`."""

    def __init__(self, grouping: Any, *, cfg: Any = None) -> None:
        self._grouping = grouping
        self._cfg = cfg  # with a configuration, rhythm annotations are the reference where a record has them
        self.classes: list[str] = list(grouping.classes)
        self.tracks: dict[str, ReferenceTrack] = {}
        self.positions: dict[str, dict[str, Any]] = {}  # stream id -> its record_position() meta

    @classmethod
    def from_config(cls, cfg: Config) -> "ReferenceLabels":
        from pedstream.data.labels import LabelGrouping

        return cls(LabelGrouping(cfg.labels.active), cfg=cfg)

    @property
    def truth_source(self) -> str | None:
        """``"rhythm"``, ``"beats"``, ``"rhythm+beats"`` (streams of both kinds) or None (no reference)."""
        kinds = {t.source for t in self.tracks.values()}
        return "+".join(k for k in ("rhythm", "beats") if k in kinds) or None

    def summary(self) -> dict[str, Any]:
        """``truth_source`` overall and per stream, and the agreement (the dashboard's data)."""
        agreed, compared = self.agreement()
        return {"truth_source": self.truth_source, "streams": {sid: t.source for sid, t in self.tracks.items()},
                "agreed": agreed, "compared": compared}

    def add(self, plan: Any, *, t0: float) -> bool:
        """Register ``plan`` (a :class:`~pedstream.transports.replay.ReplayPlan`) whose first sample is at
        signal time ``t0``; False when its record has no annotations (no reference for that stream;
        its events still get their place in the record)."""
        self.positions[plan.stream_id] = {"record": str(plan.record.path), "record_t0": float(t0),
                                          "record_fs": float(plan.fs), "start_sample": int(plan.start),
                                          "stop_sample": int(plan.stop)}
        ann = plan.record.annotations()
        if ann is None:
            return False
        tr = ReferenceTrack(t0=float(t0), fs=float(plan.fs), start=int(plan.start), stop=int(plan.stop),
                            samples=np.zeros(0, np.int64), labels=np.zeros(0, np.int64))
        rhythm = None if self._cfg is None else scheme_reference(
            self._cfg, ann, n_samples=int(plan.record.n_samples), fs=float(plan.fs), record=plan.record.name)
        if rhythm is not None:
            tr.source, (tr.rhythm_map, tr.episodes) = "rhythm", rhythm
        else:
            from pedstream.data.segments import _labelled_beats  # the beats training labels, labelled alike

            samples, labels = _labelled_beats(ann, self._grouping)
            order = np.argsort(samples, kind="stable")
            tr.samples = np.asarray(samples, dtype=np.int64)[order]
            tr.labels = np.asarray(labels, dtype=np.int64)[order]
        self.tracks[plan.stream_id] = tr
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
        if tr.source == "rhythm":  # the rhythm at the window's centre, as score episodes compares calls
            centre = (s0 + s1) // 2
            centre = centre if centre < tr.stop else tr.start + (centre - tr.stop) % span
            return labels_at(tr.episodes or [], np.asarray([centre]))[0]
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
        if event.kind in ("call", "alarm_on", "alarm_off") and "record_s" not in event.extra:
            event.extra.update(record_position(self.positions.get(event.stream), event.t_signal))
        if event.kind != "call" or event.t_signal is None or event.stream not in self.tracks:
            return
        end = event.extra.get("t_signal_end")
        truth = None if end is None else self.label(event.stream, event.t_signal, float(end))
        tr = self.tracks[event.stream]
        tr.truth = truth
        if truth is None:
            return
        event.extra["truth"] = truth
        event.extra["truth_source"] = tr.source
        tr.compared += 1
        tr.agreed += event.label == truth

    def agreement(self) -> tuple[int, int]:
        """(agreed, compared) over all streams."""
        return (sum(t.agreed for t in self.tracks.values()), sum(t.compared for t in self.tracks.values()))
