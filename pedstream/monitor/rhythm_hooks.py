"""The engine's side of the rhythm-context layer (:mod:`pedstream.monitor.rhythm_context`), a mixin of
:class:`pedstream.monitor.engine.Engine`.

``Engine(..., rhythm_model=...)`` (a :class:`~pedstream.model.rhythm_runtime.RhythmModel`, a path,
``"default"`` for the packaged model, or ``None``: off) turns it on. Events it adds:

- ``rhythm`` (one per stream per rhythm call): ``label`` the most probable rhythm class, ``p``,
  ``probs`` (every class), ``context_s`` (seconds of context the call had, at most
  ``[rhythm_context] context_s``), ``beats`` (QRS in that context), ``layer`` ``"rhythm_context"``;
- ``alarm_on`` / ``alarm_off`` with ``source`` ``"rhythm_context"`` for vt, vf, asystole (high),
  af_afl, svt (medium) - priorities from ``[rhythm_context] priorities``;
- ``technical_alarm`` ``check_leads`` (``state`` on/off, priority advisory) while the layer calls
  the signal artefact; rhythm alarms are held back meanwhile.

The layer needs the pipelines in this process (``[stream] workers`` = 1); with DSP workers it stays off.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pedstream.monitor.pipeline import stream_clock
from pedstream.monitor.rhythm_alarms import Transition
from pedstream.monitor.rhythm_context import RhythmLayer, RhythmResult
from pedstream.events import MonitorEvent
from pedstream.config import Config

__all__ = ["RhythmHooks", "load_rhythm_model"]

log = logging.getLogger(__name__)


def load_rhythm_model(model: Any, cfg: Config) -> Any:
    """``model`` as a RhythmModel (None stays None; ``"default"``: ``[rhythm_context] model`` or the packaged one)."""
    if model is None:
        return None
    if isinstance(model, (str, Path)):
        from pedstream.model.rhythm_runtime import RhythmModel

        path = (cfg.rhythm_context.model or None) if str(model) == "default" else model
        return RhythmModel.load(path)
    return model


class RhythmHooks:
    """Mixin: the few calls the engine makes into the rhythm layer."""

    rhythm: RhythmLayer | None

    def _rhythm_init(self, rhythm_model: Any) -> None:
        model = load_rhythm_model(rhythm_model, self.cfg)  # type: ignore[attr-defined]
        self.rhythm = None
        if model is None:
            return
        if getattr(self, "workers", None) is not None:
            log.warning("rhythm-context layer off: it needs [stream] workers = 1")
            return
        self.rhythm = RhythmLayer(model=model, cfg=self.cfg, on_results=self._on_rhythm)  # type: ignore[attr-defined]

    def _rhythm_add(self, sid: str) -> None:
        if self.rhythm is not None:
            self._rhythm_emit(sid, self.rhythm.remove_stream(sid), None)
            self.rhythm.add_stream(sid, self.fs)  # type: ignore[attr-defined]

    def _rhythm_lost(self, sid: str) -> None:
        """The stream ended: its context is freed and its rhythm alarms go off."""
        if self.rhythm is not None:
            self._rhythm_emit(sid, self.rhythm.remove_stream(sid), None)

    def _rhythm_window(self, pipe: Any, windows: list) -> None:
        if self.rhythm is None:
            return
        last = windows[-1]
        t_end = None if last.t_signal is None else last.t_signal + pipe.window / pipe.fs
        for _ in windows[:-1]:  # every_windows counts windows; the features are taken once, now
            s = self.rhythm.streams.get(pipe.stream_id)
            if s is not None:
                s.windows += 1
        self.rhythm.on_window(pipe, t_end, end=last.start + pipe.window)

    def _on_rhythm(self, results: list[RhythmResult]) -> None:
        for r in results:
            s = self.streams.get(r.stream_id)  # type: ignore[attr-defined]
            pipe = None if s is None else s.pipe
            if pipe is None:
                continue
            self._emit(MonitorEvent(  # type: ignore[attr-defined]
                stream=r.stream_id, kind="rhythm", label=r.label, p=r.p, hr=pipe.heart_rate,
                extra={"probs": r.probs, "context_s": round(r.context_s, 2), "beats": r.beats, "layer": "rhythm_context"},
                t_signal=r.t_signal, clock=stream_clock(pipe)))
            self._rhythm_emit(r.stream_id, r.transitions, r.t_signal)

    def _rhythm_emit(self, sid: str, transitions: list[Transition], t_signal: float | None) -> None:
        s = self.streams.get(sid)  # type: ignore[attr-defined]
        st = None if s is None else s.status
        for kind, label, prio, _back in transitions:
            if label == "artefact":
                self._emit(MonitorEvent(stream=sid, kind="technical_alarm", label="check_leads",  # type: ignore[attr-defined]
                                        extra={"state": "on" if kind == "alarm_on" else "off", "priority": prio,
                                               "source": "rhythm_context"}, t_signal=t_signal))
                continue
            if st is not None and kind == "alarm_on":
                st.alarms += 1
            self._emit(MonitorEvent(stream=sid, kind=kind, label=label,  # type: ignore[attr-defined]
                                    extra={"priority": prio, "source": "rhythm_context"}, t_signal=t_signal))
