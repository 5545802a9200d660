"""Records replayed through the live engine on the record's own clock, events collected per stream.

:func:`replay_events` is what ``pedstream score episodes`` runs: the same replay source, DSP,
batcher, smoothing and alarms as ``pedstream run --source replay``, with three differences that
make the result a function of the signal alone:

- timestamps are record time (``ReplaySource(record_clock=True)``), so every event's ``t_signal``
  is seconds from the record's start, and the alarm logic (which counts windows, never wall-clock
  seconds) sees the same stream whatever the pace;
- ``speed = inf`` replays as fast as the engine takes the data: the source waits (``throttle``)
  while the stream has more than one chunk queued in the engine or half of ``[stream] queue_windows``
  windows waiting for the model, so no chunk or window is ever dropped (a dropped window would
  change the alarms), and reports the end of a record only once its last windows were classified;
- no alarm strips are drawn.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pedstream.events import MonitorEvent
from pedstream.config import Config

__all__ = ["ReplayRun", "replay_events", "run_replay", "simulate_alarms"]

_POLL_S = 0.002  # the paced source's poll of the engine's queues


@dataclass
class ReplayRun:
    """Events per stream id, the plans replayed, and the engine's loss counters (all 0 for a valid run)."""

    events: dict[str, list[MonitorEvent]]
    plans: list[Any]
    window_s: float
    hop_s: float
    probs: dict[str, list[tuple[float, Any]]] = field(default_factory=dict)  # probe: (t_signal, (C,) probs) per window
    dropped_windows: dict[str, int] = field(default_factory=dict)
    dropped_samples: dict[str, int] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


class _Collect:
    def __init__(self, kinds: set[str] | None) -> None:
        self.kinds = kinds
        self.events: dict[str, list[MonitorEvent]] = {}

    async def __aenter__(self) -> "_Collect":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def emit(self, ev: MonitorEvent) -> None:
        if self.kinds is None or ev.kind in self.kinds:
            self.events.setdefault(ev.stream, []).append(ev)


def _probe_engine(base: type) -> type:
    """An engine that also keeps each window's class probabilities (what the alarm tracker got), so
    alarm settings can be tried again without replaying (:func:`simulate_alarms`)."""
    from pedstream.model.runtime import softmax

    class ProbeEngine(base):  # type: ignore[misc, valid-type]
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.probe: dict[str, list[tuple[float, Any]]] = {}

        def _on_results(self, results: list) -> None:
            for r in results:
                if r.item.t_signal is not None:
                    self.probe.setdefault(r.item.stream_id, []).append(
                        (float(r.item.t_signal), softmax(r.logits, dtype=np.float64)))
            super()._on_results(results)

    return ProbeEngine


async def replay_events(cfg: Any, session: Any, plans: Sequence[Any], *, speed: float = math.inf,
                        kinds: Sequence[str] | None = ("call", "alarm_on", "alarm_off", "signal_loss", "error"),
                        probe: bool = False) -> ReplayRun:
    """Replay ``plans`` (:func:`pedstream.transports.replay.plan_replay`) through an engine built from
    ``cfg`` and ``session``; return the events of ``kinds`` (None: all) per stream id (with ``probe``
    also each window's class probabilities)."""
    from pedstream.monitor.engine import Engine
    from pedstream.transports.replay import ReplaySource

    run_cfg = cfg.model_copy(deep=True)
    run_cfg.alarms.strips = False
    run_cfg.stream.dsp_defer_s = 0.0  # the throttle feeds a chunk at a time: each one is processed at once
    run_cfg.stream.dsp_thread = False  # scoring replays as fast as the engine goes: the DSP paces it, nothing dropped
    limit = max(1, cfg.stream.queue_windows // 2)
    engine: Engine | None = None

    def behind(sid: str, final: bool) -> bool:
        if engine is None:
            return False
        if final:  # the end of the record waits for its last windows' results (a lost stream resets smoothing)
            st = engine.streams.get(sid)
            if st is None or st.pipe is None or st.status is None:
                return False
            done = st.status.windows + engine.batcher.dropped.get(sid, 0)
            # every chunk sent went through the DSP (one may be on its way from the source queue to the
            # engine's ingest, where neither queue shows it), and every window made has its result
            at = getattr(st.pipe, "expected_index", None)  # None: a DSP worker's pipeline
            sent = src.samples_sent.get(sid)
            return (bool(engine.ingest_depth(sid)) or st.pipe.windows_made > done
                    or (at is not None and sent is not None and at < sent))
        return engine.ingest_depth(sid) > 1 or engine.batcher.queue_depth(sid) >= limit

    async def throttle(sid: str, final: bool) -> None:
        # bounded: a window lost to a stream's processing error must not hold the replay forever
        deadline = time.monotonic() + max(10.0, cfg.stream.infer_timeout_s or 0.0)
        while behind(sid, final) and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S)

    queue: asyncio.Queue = asyncio.Queue()
    src = ReplaySource(events=queue, plans=list(plans), speed=speed, chunk_ms=cfg.replay.chunk_ms, loop=False,
                       record_clock=True, throttle=throttle)
    sink = _Collect(None if kinds is None else set(kinds))
    engine = (_probe_engine(Engine) if probe else Engine)(cfg=run_cfg, session=session, sources=[src], sinks=[sink])
    async with engine:
        await src.finished.wait()
        deadline = time.monotonic() + max(10.0, cfg.stream.infer_timeout_s or 0.0)
        while (not queue.empty() or any(engine.ingest_depth(p.stream_id) for p in plans)
               or engine.batcher.pending or engine.batcher.busy) and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S * 5)  # the last windows through the model
    return ReplayRun(events=sink.events, plans=list(plans), window_s=engine.window / engine.fs,
                     probs=getattr(engine, "probe", {}),
                     hop_s=engine.hop / engine.fs, dropped_windows={k: v for k, v in engine.batcher.dropped.items() if v},
                     dropped_samples=dict(engine.ingest_dropped), summary=engine.summary())


def run_replay(cfg: Config, session: Any, records: Sequence[str | Path], *, speed: float = math.inf,
               start_s: float = 0.0, seconds: float | None = None,
               kinds: Sequence[str] | None = ("call", "alarm_on", "alarm_off", "signal_loss", "error")) -> ReplayRun:
    """Plan ``records`` and :func:`replay_events` them (a fresh event loop)."""
    from pedstream.transports.replay import plan_replay

    plans = plan_replay(records, cfg.signal, start_s=start_s, seconds=seconds)
    return asyncio.run(replay_events(cfg, session, plans, speed=speed, kinds=kinds))


def simulate_alarms(cfg: Config, class_names: Sequence[str], probs: Sequence[tuple[float, Any]],
                    stream: str = "s") -> list[MonitorEvent]:
    """The call and rhythm-alarm events an :class:`~pedstream.monitor.alarms.AlarmTracker` with
    ``cfg.alarms`` makes from one stream's recorded window probabilities (``ReplayRun.probs``), as the
    engine emits them (``t_signal`` = window start). No heart rate: no hr_high/hr_low alarms."""
    from pedstream.monitor.alarms import AlarmTracker

    tracker = AlarmTracker(class_names=list(class_names), cfg=cfg.alarms)
    out: list[MonitorEvent] = []
    for t, p in probs:
        call, transitions = tracker.update(np.asarray(p), None)
        out.append(MonitorEvent(stream=stream, kind="call", label=call.label, p=call.p, t_signal=t))
        out.extend(MonitorEvent(stream=stream, kind=tr.kind, label=tr.label, p=tr.p, t_signal=t) for tr in transitions)
    return out
