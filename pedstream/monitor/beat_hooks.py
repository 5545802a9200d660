"""The engine's beat path (a mixin of :class:`~pedstream.monitor.engine.Engine`): the beat model's results,
PVC/min and PAC/min, and a clinician's beat labels (:class:`pedstream.monitor.adapt.BeatLabels`).

Split out of ``engine.py``; it uses the engine's state (``streams``, ``beat_spec``, ``beat_labels``,
``beat_batcher``, ``beats_total``, ``_emit``, ``_emit_transitions``).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from pedstream.events import MonitorEvent, StreamStatus
from pedstream.model.runtime import softmax
from pedstream.monitor.batcher import BatchResult
from pedstream.monitor.ectopy import BeatInfo
from pedstream.monitor.pipeline import StreamPipeline, stream_clock

__all__ = ["BeatHooks"]


class BeatHooks:
    """Mixin: the beat model's results and the clinician's labels of each stream."""

    streams: dict[str, Any]
    beat_spec: Any
    beat_labels: Any
    beat_batcher: Any

    def _update_rates(self, sid: str, pipe: StreamPipeline | None, st: StreamStatus, t: float | None = None) -> None:
        s = self.streams.get(sid)
        counter = None if s is None else s.ectopy
        if counter is None or st.ectopy is None:
            return
        now = t if t is not None else (pipe.last_ts if pipe is not None else None)
        st.pvc_per_min, st.pac_per_min = counter.rates(now)

    def _on_beat_results(self, results: list[BatchResult]) -> None:
        now = time.monotonic()
        names = self.beat_spec.class_names if self.beat_spec is not None else ()
        for r in results:
            sid = r.item.stream_id
            s = self.streams.get(sid)
            pipe, tracker, st = (None, None, None) if s is None else (s.pipe, s.tracker, s.status)
            info: BeatInfo = r.item.meta
            if pipe is None or tracker is None or st is None or st.ectopy != "on":
                continue
            probs = softmax(r.logits, dtype=np.float64)  # (C,)
            n_labels = 0
            if self.beat_labels is not None and r.item.rr is not None:  # few-shot: only this stream's labels
                for entry in self.beat_labels.observe(sid, info.t, r.item.rr):  # labels queued from a file
                    self._emit_beat_label(sid, entry, pipe)
                probs, n_labels = self.beat_labels.adjust(sid, r.item.rr, probs), self.beat_labels.n_labels(sid)
            k = int(np.argmax(probs))
            label, p = names[k], float(probs[k])
            s.ectopy.add(info.t, label)
            self._update_rates(sid, pipe, st, t=info.t)
            st.beats += 1
            self.beats_total += 1
            latency = (now - r.item.t_received) * 1000.0
            hr = pipe.heart_rate
            st.beat_labels, st.ectopy_patterns = n_labels, s.ectopy.patterns(info.t)
            self._emit(MonitorEvent(stream=sid, kind="beat", label=label, p=p, hr=hr, latency_ms=latency,
                                    extra={"beat_t": round(info.t, 3), "pre_rr_s": round(info.pre_rr, 3),
                                           "post_rr_s": round(info.post_rr, 3), "pvc_per_min": st.pvc_per_min,
                                           "pac_per_min": st.pac_per_min, **st.ectopy_patterns,
                                           **({"labels": n_labels} if n_labels else {})},
                                    t_signal=info.t, clock=stream_clock(pipe)))
            self._emit_transitions(pipe, st, tracker, tracker.beat(label, p), onset=info.rhythm_index,
                                   latency=latency, now=now, t_signal=info.t)

    def label_beats(self, stream_id: str, labels: Sequence[tuple[float, str]], *, who: str = "clinician") -> list[dict]:
        """Clinician labels ``[(t_signal, "S"), ...]`` of beats of ``stream_id`` (their ``beat_t``): they
        adapt that stream's later beat calls only (:class:`pedstream.monitor.adapt.BeatLabels`; persisted
        per patient). A wrong label is one :class:`~pedstream.monitor.adapt.LabelError` and changes nothing."""
        from pedstream.monitor.adapt import LabelError

        if self.beat_labels is None:
            raise LabelError(stream_id, "beat labels need a feature beat model ([stream] beat_model)")
        new = self.beat_labels.label(stream_id, list(labels), who=who)
        s = self.streams.get(stream_id)
        for entry in new:
            self._emit_beat_label(stream_id, entry, None if s is None else s.pipe)
        return new

    def undo_beat_labels(self, stream_id: str, ids: Sequence[int] | None = None, *, who: str = "clinician") -> int:
        """Undo labels ``ids`` of ``stream_id`` (default: the newest): a ``beat_label`` event each (``label_state``
        ``undone``); the labels file keeps them, marked undone."""
        from pedstream.monitor.adapt import LabelError

        if self.beat_labels is None:
            raise LabelError(stream_id, "beat labels need a feature beat model ([stream] beat_model)")
        before = {e["id"] for e in self.beat_labels.entries(stream_id) if e.get("undone")}
        n = self.beat_labels.undo(stream_id, None if ids is None else list(ids), who=who)
        s = self.streams.get(stream_id)
        for entry in self.beat_labels.entries(stream_id):
            if entry.get("undone") and entry["id"] not in before:
                self._emit_beat_label(stream_id, entry, None if s is None else s.pipe)
        return n

    def _emit_beat_label(self, sid: str, entry: dict, pipe: StreamPipeline | None) -> None:
        """A ``beat_label`` event: a clinician label applied, undone, or (queued from a file) unmatched."""
        state = "undone" if entry.get("undone") else "unmatched" if entry.get("unmatched") else "applied"
        n = self.beat_labels.n_labels(sid) if self.beat_labels is not None else 0
        self._emit(MonitorEvent(stream=sid, kind="beat_label", label=str(entry["label"]), t_signal=entry["t_signal"],
                                extra={"label_id": int(entry["id"]), "who": str(entry.get("undone_by") or entry["who"]),
                                       "label_state": state, "labels": n},
                                clock=None if pipe is None else stream_clock(pipe)))

    def _beat_error(self, sid: str, message: str) -> None:
        """This stream's beat path failed: an ``error`` event; its beat path is off, its rhythm goes on."""
        s = self.streams.get(sid)
        pipe, st = (None, None) if s is None else (s.pipe, s.status)
        if pipe is not None:
            pipe.ectopy = None
        if self.beat_batcher is not None:
            self.beat_batcher.remove_stream(sid)
        if st is not None:
            st.ectopy, st.pvc_per_min, st.pac_per_min = "error", None, None
        self._emit(MonitorEvent(stream=sid, kind="error", extra={"message": message}))

    def _on_beat_error(self, sid: str, exc: Exception) -> None:
        s = self.streams.get(sid)
        if s is not None and s.status is not None and s.status.ectopy == "error":
            return  # already reported (items of a stream already switched off)
        self._beat_error(sid, f"beat model: {exc}")
