"""The monitor for your own transport (:class:`Monitor`, re-exported by :mod:`pedstream.api` and
:mod:`pedstream`): live pushes (``push``), recordings without loss (``feed``, ``drain``), the events."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Sequence

import numpy as np

from pedstream.config import Config
from pedstream.errors import PedstreamError, StreamError

if TYPE_CHECKING:
    from pedstream.api import Model

__all__ = ["Monitor"]


class _PushSource:
    """The source behind :class:`Monitor`: what ``push`` hands it becomes engine source events."""

    def __init__(self) -> None:
        self.events: asyncio.Queue = asyncio.Queue()
        self.streams: dict[str, tuple[float, list[str], int, float]] = {}  # id -> (fs, channels, next index, next t)

    async def __aenter__(self) -> "_PushSource":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class Monitor:
    """The monitor for your own transport (an async context manager)::

        async with pedstream.Monitor() as mon:                     # the packaged monitor model
            mon.push("bed1", samples, fs=500, channels=["I", "II", "V1"])  # (n, 3) mV, any chunk size
            async for ev in mon.events():                         # MonitorEvent: call, alarm_on, ...
                print(ev.kind, ev.label, ev.p, ev.t_signal)

        async with pedstream.Monitor() as mon:                     # a recording: nothing dropped
            await mon.feed("rec1", x, fs=360, channels=["MLII", "V1"])
            await mon.drain()                                     # every call of it emitted

    ``push(stream_id, samples, fs=..., channels=..., t0=None, age_years=None)``: the first push of a
    stream (or one whose ``fs``/``channels`` changed) announces it; later pushes continue it (the
    sample index continues, so no gap). ``t0``: source-clock time (s) of ``samples[0]``; default: it
    follows the previous push (0 for the first). ``lost(stream_id)`` says the stream went away.
    ``push`` is for live signal: like any monitored stream, a stream pushed faster than the engine
    takes it keeps only ``[stream] ingest_queue_s`` of signal and ``queue_windows`` windows waiting
    (the oldest are dropped and counted in :meth:`summary`). For recorded signal, ``await
    mon.feed(...)`` (same arguments) pushes it as fast as the engine takes it and drops nothing;
    ``await mon.drain()`` waits until every call of what was pushed has been emitted.
    Events carry ``t_signal`` on that clock. ``sinks``: extra sinks (e.g.
    :class:`pedstream.outputs.jsonlines.JsonLinesSink`). Alarm strips go to ``alarms_dir`` (default
    ``[alarms] dir``, else ``$XDG_DATA_HOME/pedstream/alarms``; ``config`` or ``overrides`` may set ``alarms.strips = false``).
    """

    def __init__(self, *, model: Model | str | Path | None = None, config: Config | str | Path | None = None,
                 sinks: Sequence[Any] = (), alarms_dir: str | Path | None = None, overrides: Sequence[str] = (),
                 beat_model: str | Path | None = None, labels_dir: str | Path | None = None) -> None:
        from pedstream.api import Model, load_model

        self.model = model if isinstance(model, Model) else load_model(model, config=config, overrides=overrides)
        self.config = self.model.config
        self._source = _PushSource()
        self._sinks = list(sinks)
        self._alarms_dir = alarms_dir
        self.engine: Any = None
        self._sub: Any = None
        self._feeding = False  # feed() pushes its own chunks (never the warning about a large push)
        self._beat_model = beat_model or self.config.stream.beat_model or None  # ectopy (beat events) when set
        self._labels_dir = labels_dir

    async def __aenter__(self) -> "Monitor":
        from pedstream.monitor.engine import Engine

        beat = None
        if self._beat_model:
            from pedstream.monitor.ectopy import open_beat_model

            beat, _ = open_beat_model(self.config, self._beat_model)
        self.engine = Engine(cfg=self.config, session=self.model.session, sources=[self._source], sinks=self._sinks,
                             alarms_dir=self._alarms_dir, beat_session=beat)
        if self._labels_dir is not None and self.engine.beat_labels is not None:
            self.engine.beat_labels.folder = Path(self._labels_dir)
        self._sub = self.engine.subscribe()  # before entering: no event is missed
        await self.engine.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.engine is not None:
            await self.engine.__aexit__(*exc)

    def label_beats(self, stream_id: str, labels: Sequence[tuple[float, str]], *, who: str = "clinician") -> list[dict]:
        """Clinician labels ``[(t_signal, "S"), ...]`` (the ``beat_t`` of ``beat`` events) adapt the beat
        calls of ``stream_id`` only (needs a feature beat model, ``beat_model=``); persisted per patient
        under ``labels_dir`` (default ``$XDG_DATA_HOME/pedstream/beat_labels``). A wrong label (unknown
        class or stream, a time with no beat) raises one :class:`~pedstream.monitor.adapt.LabelError` and
        changes nothing. :meth:`undo_beat_labels` reverses labels. Each label is a ``beat_label`` event."""
        if self.engine is None:
            raise PedstreamError("Monitor.label_beats: use the monitor inside `async with Monitor() as mon:`")
        return self.engine.label_beats(stream_id, labels, who=who)

    def undo_beat_labels(self, stream_id: str, ids: Sequence[int] | None = None, *, who: str = "clinician") -> int:
        """Undo beat labels ``ids`` of ``stream_id`` (default: the newest): marked undone in the labels file
        (nothing erased), a ``beat_label`` event each; returns how many."""
        if self.engine is None:
            raise PedstreamError("Monitor.undo_beat_labels: use the monitor inside `async with Monitor() as mon:`")
        return self.engine.undo_beat_labels(stream_id, ids, who=who)

    def push(self, stream_id: str, samples: np.ndarray, *, fs: float, channels: Sequence[str],
             t0: float | None = None, age_years: float | None = None) -> None:
        """Queue ``samples`` (``(n, n_channels)`` mV) of ``stream_id`` (non-blocking)."""
        from pedstream.events import Chunk, ChunkReceived, StreamAdded, StreamInfo

        if self.engine is None:
            raise PedstreamError("Monitor.push: use the monitor inside `async with Monitor() as mon:`")
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim == 1:
            x = x[:, None]
        names = [str(c) for c in channels]
        if x.ndim != 2 or x.shape[1] != len(names):
            raise StreamError(stream_id, f"samples shaped {np.shape(samples)}, expected (n, {len(names)}) for {names}")
        known = self._source.streams.get(stream_id)
        if known is None or known[0] != float(fs) or known[1] != names:
            info = StreamInfo(stream_id=stream_id, source="replay", fs=float(fs), channel_names=names,
                              units=["mV"] * len(names), age_years=age_years, meta={"transport": "python", "clock": "python"})
            self._source.events.put_nowait(StreamAdded(info))
            known = (float(fs), names, 0, 0.0)
        index = known[2]
        if x.shape[0] > self.config.stream.ingest_queue_s * float(fs) and not self._feeding:
            import warnings

            warnings.warn(f"Monitor.push: {x.shape[0] / float(fs):.0f} s of {stream_id} at once; a live stream keeps "
                          f"only {self.config.stream.queue_windows} windows waiting for the model (the oldest are "
                          "dropped, counted in summary()): use `await mon.feed(...)` for recorded signal",
                          stacklevel=2)
        start = known[3] if t0 is None else float(t0)
        ts = start + np.arange(x.shape[0], dtype=np.float64) / float(fs)
        self._source.events.put_nowait(ChunkReceived(Chunk(stream_id=stream_id, data=x, timestamps=ts,
                                                           first_index=index)))
        self._source.streams[stream_id] = (float(fs), names, index + x.shape[0], start + x.shape[0] / float(fs))

    async def feed(self, stream_id: str, samples: np.ndarray, *, fs: float, channels: Sequence[str],
                   t0: float | None = None, age_years: float | None = None, chunk_s: float = 1.0) -> None:
        """Push recorded ``samples`` (as :meth:`push`) ``chunk_s`` seconds at a time, each once the
        engine has room for it (at most one chunk of this stream waiting in its ingest and fewer than
        half of ``[stream] queue_windows`` windows waiting for the model): nothing is dropped, and
        memory stays bounded whatever the length. Returns when the last chunk was pushed."""
        x = np.asarray(samples)  # no copy: push makes each chunk float32
        if x.ndim == 1:
            x = x[:, None]
        step = max(1, int(round(float(chunk_s) * float(fs)))) if np.isfinite(fs) and fs > 0 else max(1, len(x))
        for k in range(0, max(1, x.shape[0]), step):
            await self._room(stream_id)
            self._feeding = True
            try:
                self.push(stream_id, x[k:k + step], fs=fs, channels=channels, t0=t0 if k == 0 else None,
                          age_years=age_years)
            finally:
                self._feeding = False

    def _busy(self, stream_id: str | None) -> bool:
        eng = self.engine
        if not self._source.events.empty():
            return True
        if stream_id is None:  # everything: ingest, DSP, model queue, the model call running, the results
            return bool(any(eng.ingest_depth(s) for s in eng.streams) or eng.batcher.pending or eng.batcher.busy
                        or any(self._behind(sid, pushed[2]) for sid, pushed in self._source.streams.items()))
        return eng.ingest_depth(stream_id) > 1 or eng.batcher.queue_depth(stream_id) >= max(1, self.config.stream.queue_windows // 2)

    def _behind(self, stream_id: str, pushed: int) -> bool:
        """A pushed chunk not through the DSP yet (one may be between the source queue and the engine's
        ingest, where neither shows it), or a window made without its result yet."""
        st = self.engine.streams.get(stream_id)
        pipe = None if st is None else st.pipe
        if pipe is None or st.status is None or st.status.error:  # a refused chunk never goes through
            return False
        at = getattr(pipe, "expected_index", None)
        done = st.status.windows + self.engine.batcher.dropped.get(stream_id, 0)
        return (at is not None and at < pushed) or pipe.windows_made > done

    async def _room(self, stream_id: str | None, timeout: float | None = None) -> None:
        if self.engine is None:
            raise PedstreamError("Monitor.feed: use the monitor inside `async with Monitor() as mon:`")
        limit = timeout if timeout is not None else max(10.0, self.config.stream.infer_timeout_s or 0.0)
        deadline = asyncio.get_running_loop().time() + limit
        while self._busy(stream_id):
            if asyncio.get_running_loop().time() > deadline:
                raise StreamError(stream_id or "monitor", f"the engine took nothing for {limit:g} s")
            await asyncio.sleep(0.002)  # the engine's tasks run meanwhile

    async def drain(self, *, timeout: float = 30.0) -> None:
        """Wait until everything pushed so far went through the DSP and the model (its events emitted)."""
        await self._room(None, timeout)

    def lost(self, stream_id: str, reason: str = "closed by the caller") -> None:
        from pedstream.events import StreamLost

        self._source.events.put_nowait(StreamLost(stream_id=stream_id, reason=reason))

    async def events(self) -> AsyncIterator[Any]:
        """Every :class:`pedstream.events.MonitorEvent` from the moment the monitor started."""
        if self._sub is None:
            raise PedstreamError("Monitor.events: use the monitor inside `async with Monitor() as mon:`")
        async for ev in self._sub:
            yield ev

    async def wait_for(self, predicate: Any, *, timeout: float) -> Any:
        """The first event (from now on or already queued) for which ``predicate(event)`` is true."""
        return await self._sub.wait_for(predicate, timeout=timeout)

    def summary(self) -> dict[str, Any]:
        return self.engine.summary() if self.engine is not None else {}
