"""The engine's rhythm-context layer: per-stream bounded context, one batched ONNX call across streams.

Per stream (:class:`StreamRhythm`, made when the stream is added, dropped when it is lost):

- the R-peak times of the stream's own QRS detector (the pipeline's ``qrs``; ring index / rate, in
  seconds), at most ``[rhythm_context] max_beats`` of them and none older than ``context_s`` (a
  ``deque``): bounded memory, about 8 bytes x max_beats (4 KiB at 512) plus the alarm state;
- nothing else: the QRS lead of the last ``signal_s`` is read from the pipeline's ring when a call is
  due (decimated to ~125 Hz, :func:`pedstream.dsp.rhythm_features.decimation_step`).

After each window (every ``every_windows``-th) a snapshot of the stream's beats and lead is queued (a
copy taken on the event loop); :class:`RhythmLayer` computes their features
(:func:`pedstream.dsp.rhythm_features.context_features`, the same code as training) in
``[rhythm_context] feature_processes`` spawned processes (Python-heavy work that, in a thread, would
hold the interpreter lock the event loop and the DSP thread need; a thread computes them until the
processes have started, or always with 0) and runs one ``session.run`` over all queued rows of all
streams in a worker thread (off the event loop),
then each stream's :class:`pedstream.monitor.rhythm_alarms.RhythmAlarmLogic` turns the probabilities
(and the beat-run columns: the VT fast path) into alarms (VT/VF/asystole high priority; artefact -> "check leads" technical alarm that holds the
rhythm alarms back). A gap in the stream (its detector restarts) clears its context.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from pedstream.config import Config
from pedstream.dsp.rhythm_features import CONTEXT_FEATURES, context_features, decimation_step
from pedstream.dsp.rr_rule import RRIrregularityRule
from pedstream.monitor.rhythm_alarms import RhythmAlarmLogic, Transition

__all__ = ["ring_need", "RhythmLayer", "RhythmResult", "StreamRhythm"]

log = logging.getLogger(__name__)
_SINCE = CONTEXT_FEATURES.index("since_last_s")
_FLAT = CONTEXT_FEATURES.index("flat_frac")
_RUN_END = CONTEXT_FEATURES.index("vt_run_end_s")
_RUN_LEN = CONTEXT_FEATURES.index("vt_run_len_s")
_RUN_RATE = CONTEXT_FEATURES.index("vt_run_rate_bpm")
_AMP = CONTEXT_FEATURES.index("amp_range")
_RR_RULE = RRIrregularityRule()  # stateless: the alarm logic's AF confirmation on a call's context beats


def ring_need(cfg: Config, fs: float, hop: int) -> int:
    """Ring samples a stream keeps for its rhythm calls: the lead of ``signal_s`` before a window's end, and
    the hop a DSP round may have gone past that end when the call's snapshot is taken."""
    return int(np.ceil(cfg.rhythm_context.signal_s * fs)) + int(hop)


def run_column(cfg: Config) -> int:
    """The served column of the VT fast path's run length (``[rhythm_context] vt_run_corr``)."""
    return CONTEXT_FEATURES.index("vt_run_70" if cfg.rhythm_context.vt_run_corr >= 0.7 else "vt_run_50")


@dataclass(slots=True)
class RhythmResult:
    """One rhythm call of one stream."""

    stream_id: str
    t: float  # stream seconds (ring index / rate) at the end of the context
    t_signal: float | None
    label: str
    p: float
    probs: dict[str, float]
    context_s: float  # seconds of beats the call had (<= context_s)
    beats: int
    transitions: list[Transition]


class StreamRhythm:
    """Bounded rhythm context of one stream (see the module docstring)."""

    def __init__(self, *, stream_id: str, fs: float, cfg: Config, classes: list[str], context_s: float,
                 signal_s: float) -> None:
        rc = cfg.rhythm_context
        self.stream_id, self.fs = stream_id, float(fs)
        self.context_s, self.signal_s = float(context_s), float(signal_s)
        self.beats: deque[float] = deque(maxlen=rc.max_beats)
        self.every = rc.every_windows
        self.windows = 0
        self.first_t: float | None = None  # start of the current context (after a gap: the new segment)
        self._qrs: Any = None
        self._seen = 0
        self.step = decimation_step(self.fs)
        self.logic = RhythmAlarmLogic.from_section(rc, classes=classes, hop_s=cfg.segments.hop_s * rc.every_windows)

    def _sync_beats(self, pipe: Any, end: int) -> None:
        qrs = pipe.qrs
        if qrs is not self._qrs:  # a new segment (gap): its beats start afresh
            self._qrs, self._seen = qrs, 0
            self.beats.clear()
            self.first_t = pipe.segment_start / self.fs
        if qrs is None:
            return
        new = qrs.n_beats - self._seen
        if new > 0:
            recent = list(qrs.beats)[-new:]
            off = pipe.segment_start
            self.beats.extend((off + r) / self.fs for r in recent)
            self._seen = qrs.n_beats
        lo = end / self.fs - self.context_s
        while self.beats and self.beats[0] < lo:
            self.beats.popleft()

    def snapshot(self, pipe: Any, end: int | None = None) -> tuple | None:
        """What a rhythm call needs, copied now on the event loop (the features are computed off it):
        ``(beat times, t_now, decimated QRS lead, lead start, lead rate, context_s)``; None when this window is not a call
        (``every_windows``) or there is no QRS lead. ``end``: the ring index the call is made at (the end of the
        window that made it; default: the ring's end): the lead and the beats after it are left out, so the
        call does not depend on how much signal the DSP round that cut the window had past its end."""
        self.windows += 1
        if (self.windows - 1) % self.every:
            return None
        end = pipe.ring.total_written if end is None else min(int(end), pipe.ring.total_written)
        self._sync_beats(pipe, end)
        if self._qrs is None:
            return None
        n = min(int(round(self.signal_s * self.fs)), end - max(pipe.ring.oldest, pipe.segment_start))
        if n <= 0:
            return None
        lead = pipe.ring.rows(end - n, end)  # a view unless the range wraps: only the QRS column is copied
        x = np.array(lead[:: self.step, pipe.qrs_channel], dtype=np.float64)
        t_now = end / self.fs
        beats = np.fromiter(self.beats, np.float64, len(self.beats))
        return beats[beats <= t_now], t_now, x, (end - n) / self.fs, self.fs / self.step, self.context_s

    @staticmethod
    def compute(snap: tuple) -> np.ndarray:
        """The features of a :meth:`snapshot` (any thread)."""
        beats, t_now, x, t0, fs_lead, context_s = snap
        return context_features(beats, t_now, context_s, x, fs_lead, lead_t0=t0)

    def features(self, pipe: Any) -> np.ndarray | None:
        """The context features now (snapshot + compute in one), or None when this window is not a call."""
        snap = self.snapshot(pipe)
        return None if snap is None else self.compute(snap)

    def had_context_s(self, t_now: float) -> float:
        return float(min(self.context_s, t_now - (self.first_t or 0.0)))


def _started(ready: list | None) -> bool:
    """Every feature process answered its first (empty) task; one that failed to start keeps the
    features in the thread."""
    return bool(ready) and all(f.done() and f.exception() is None for f in ready)


def features_of(snaps: list[tuple]) -> list[np.ndarray]:
    """The features of many :meth:`StreamRhythm.snapshot` (in a feature process)."""
    return [StreamRhythm.compute(s) for s in snaps]


@dataclass(slots=True)
class _Row:
    stream_id: str
    t: float
    t_signal: float | None
    snap: tuple  # StreamRhythm.snapshot; the features are computed in the worker thread
    context_s: float
    x: np.ndarray | None = None


class RhythmLayer:
    """Queues rows of all streams and classifies them in one batched model call (task ``rhythm``)."""

    def __init__(self, *, model: Any, cfg: Config, on_results: Callable[[list[RhythmResult]], None],
                 max_batch: int = 4096) -> None:
        self.model, self.cfg = model, cfg
        self.classes: list[str] = list(model.classes)
        self.context_s = float(cfg.rhythm_context.context_s)
        self.signal_s = float(cfg.rhythm_context.signal_s)
        self.on_results = on_results
        self.max_batch = max_batch
        self.streams: dict[str, StreamRhythm] = {}
        self._rows: list[_Row] = []
        self._wake = asyncio.Event()
        self._run = run_column(cfg)
        self.calls = 0
        self.batches = 0
        self.errors = 0
        self.processes = int(cfg.rhythm_context.feature_processes)
        self.process_batches = 0  # batches whose features the processes computed

    def add_stream(self, stream_id: str, fs: float) -> StreamRhythm:
        s = self.streams[stream_id] = StreamRhythm(stream_id=stream_id, fs=fs, cfg=self.cfg, classes=self.classes,
                                                   context_s=self.context_s, signal_s=self.signal_s)
        return s

    def remove_stream(self, stream_id: str) -> list[Transition]:
        """Free a stream's context (stream lost or replaced); the alarms it had on are turned off."""
        s = self.streams.pop(stream_id, None)
        self._rows = [r for r in self._rows if r.stream_id != stream_id]
        return [] if s is None else s.logic.reset()

    def on_window(self, pipe: Any, t_signal: float | None, end: int | None = None) -> None:
        """After a window of ``pipe`` ending at ring index ``end``: queue its rhythm row when one is due."""
        s = self.streams.get(pipe.stream_id)
        if s is None:
            return
        snap = s.snapshot(pipe, end)
        if snap is None:
            return
        t = snap[1]
        if len(self._rows) >= self.max_batch:  # never grow without bound: the oldest row of the batch goes
            self._rows.pop(0)
        self._rows.append(_Row(pipe.stream_id, t, t_signal, snap, s.had_context_s(t)))
        self._wake.set()

    async def run(self) -> None:
        """The layer's task: with ``feature_processes`` > 0 the features are computed in that many
        processes (spawned once, ended with the task), the model call in a thread. Until every process
        has started (about 2 s), the features are computed in the thread, so no call waits for them."""
        pool, ready = None, None
        if self.processes > 0:
            pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
            ready = [pool.submit(features_of, []) for _ in range(self.processes)]
        try:
            await self._serve(pool, ready)
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    async def _serve(self, pool: ProcessPoolExecutor | None, ready: list | None) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0)  # let the rest of this ingest round queue its rows
            rows, self._rows = self._rows, []
            if not rows:
                continue
            try:
                if pool is None or not _started(ready):
                    probs = await asyncio.to_thread(self._classify, rows)
                else:
                    probs = await self._classify_in(pool, rows)
            except Exception as exc:  # a model failure is reported, monitoring goes on
                self.errors += 1
                log.warning("rhythm model failed on a batch of %d: %s", len(rows), exc)
                continue
            results = self._results(rows, probs)
            self.batches += 1
            self.calls += len(results)  # calls delivered; rows of a stream that ended meanwhile are not
            self.on_results(results)

    async def _classify_in(self, pool: ProcessPoolExecutor, rows: list[_Row]) -> np.ndarray:
        """The rows' features in the processes (the rows split evenly), then one model call in a thread."""
        loop = asyncio.get_running_loop()
        parts = np.array_split(np.arange(len(rows)), min(self.processes, len(rows)))
        done = await asyncio.gather(*(loop.run_in_executor(pool, features_of, [rows[i].snap for i in part])
                                      for part in parts))
        self.process_batches += 1
        for part, xs in zip(parts, done):
            for i, x in zip(part, xs):
                rows[i].x = x
        return await asyncio.to_thread(self.model.predict, np.stack([r.x for r in rows]))

    def _classify(self, rows: list[_Row]) -> np.ndarray:
        """Worker thread: every row's features (from its snapshot), then one batched model call."""
        for r in rows:
            r.x = StreamRhythm.compute(r.snap)
        return self.model.predict(np.stack([r.x for r in rows]))

    def _results(self, rows: list[_Row], probs: np.ndarray) -> list[RhythmResult]:
        out = []
        for r, p in zip(rows, probs):
            s = self.streams.get(r.stream_id)
            if s is None:  # the stream went away meanwhile
                continue
            k = int(np.argmax(p))
            tr = s.logic.step(p, since_beat_s=float(r.x[_SINCE]), readable=bool(r.x[_FLAT] < 0.95),
                              vt_run=float(r.x[self._run]), vt_run_end_s=float(r.x[_RUN_END]),
                              vt_run_len_s=float(r.x[_RUN_LEN]), vt_run_rate_bpm=float(r.x[_RUN_RATE]),
                              amp_mv=float(r.x[_AMP]), rr_af=_RR_RULE.is_af(r.snap[0]) if s.logic.af_rr_confirm else None)
            out.append(RhythmResult(r.stream_id, r.t, r.t_signal, self.classes[k], float(p[k]),
                                    {c: round(float(v), 4) for c, v in zip(self.classes, p)}, r.context_s,
                                    int(r.x[0]), tr))
        return out
