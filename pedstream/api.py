"""pedstream as a Python library: the few calls a notebook or another program needs.

All of them go through the code the command line uses: the same configuration (``config=``: a
:class:`~pedstream.config.Config`, a TOML path, or ``None`` for the default), the same model
metadata check (a model whose sampling rate, channels, filters, window or normalisation disagree
with the configuration is refused with :class:`~pedstream.errors.ModelMismatchError`; ``overrides=
["section.key=value", ...]`` applies settings as the command line's ``--set`` does, and
:func:`load_config` builds a :class:`~pedstream.config.Config` the same way), and the same
streaming DSP as the monitor (channel mapping by name, causal resampling, the training filter bank,
warm-up, per-window normalisation).

- :func:`load_model` -> :class:`Model` (the packaged monitor model by default) with its metadata;
- :func:`classify` a NumPy array -> one :class:`WindowCall` per window;
- :class:`Monitor`: the streaming engine for your own transport (``push`` samples, ``async for``
  over the events);
- :func:`read_record` and :func:`plot_strip` for WFDB records.

Heavy imports (onnxruntime, matplotlib) happen inside the calls, never at ``import pedstream``.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

import numpy as np

from pedstream.config import Config, load_config
from pedstream.errors import PedstreamError, RecordError, StreamError

__all__ = ["Model", "WindowCall", "RecordData", "Monitor", "load_model", "load_config", "classify", "read_record",
           "plot_strip", "demo_records"]


def demo_records() -> Path:
    """The folder of the bundled SIMULATED demo records (x001, x002, x003: WFDB, 977 Hz)."""
    from importlib import resources

    return Path(str(resources.files("pedstream") / "assets" / "demo_records"))


def _config(config: Config | str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """``config`` (a :class:`Config`, a TOML path or None for the default) with ``overrides``
    (``"section.key=value"``, as ``--set``) applied; :class:`~pedstream.errors.ConfigError` when a
    setting is unknown or invalid."""
    if isinstance(overrides, str):
        overrides = [overrides]
    if not isinstance(config, Config):
        return load_config(config, tuple(overrides))
    if not overrides:
        return config
    from pydantic import ValidationError

    from pedstream.config import _apply, _format_errors, parse_override
    from pedstream.errors import ConfigError

    data = config.model_dump()
    for ov in overrides:
        keys, value = parse_override(ov)
        _apply(data, keys, value)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc), source="overrides") from exc


@dataclass
class Model:
    """An opened ONNX model and what its metadata says about it.

    ``classes``: class names in output order; ``channels``: the 19 canonical input channels; ``fs``:
    the model rate (Hz); ``window_s`` / ``hop_s``: window length and step; ``training_data``: the
    structured summary (format, subjects, records, simulated, name); ``trained_on_simulated_data``;
    ``banner``: the one line the monitor shows; ``metadata``: everything; ``session``: the
    :class:`pedstream.model.runtime.ModelSession`; ``config``: the configuration it was checked against.
    """

    path: Path
    classes: list[str]
    channels: list[str]
    fs: float
    window_s: float
    hop_s: float
    training_data: dict[str, Any]
    trained_on_simulated_data: bool
    banner: str
    metadata: dict[str, Any]
    session: Any = field(repr=False)
    config: Config = field(repr=False)


def load_model(path: str | Path | None = None, *, config: Config | str | Path | None = None,
               overrides: Sequence[str] = ()) -> Model:
    """Open ``path`` (default: the packaged monitor model, trained on simulated Leipzig-format data +
    MIT-BIH ECG) with ONNX Runtime and check its metadata against ``config`` (with ``overrides``,
    ``"section.key=value"`` as ``--set``) exactly as ``pedstream run`` does."""
    from pedstream.stream.banner import is_packaged_model, model_banner
    from pedstream.stream.runner import open_model

    cfg = _config(config, overrides)
    session = open_model(cfg, None if path is None else Path(path))
    meta = dict(session.metadata)
    td = meta.get("training_data")
    return Model(path=Path(session.path), classes=list(session.class_names), channels=list(meta["channels"]),
                 fs=float(meta["fs"]), window_s=float(meta.get("window_s", cfg.segments.window_s)),
                 hop_s=float(meta.get("hop_s", cfg.segments.hop_s)), training_data=dict(td) if isinstance(td, dict) else {},
                 trained_on_simulated_data=bool(meta.get("trained_on_simulated_data", False)),
                 banner=model_banner(meta, packaged=is_packaged_model(session.path)), metadata=meta,
                 session=session, config=cfg)


@dataclass
class WindowCall:
    """One classified window: ``start_s`` (seconds from the first sample of the signal, at the model
    rate), ``label`` (the most probable class), ``p`` (its probability) and ``probabilities`` (class
    -> probability, in the model's class order)."""

    start_s: float
    label: str
    p: float
    probabilities: dict[str, float]


def classify(signal: np.ndarray, *, fs: float, channels: Sequence[str], model: Model | str | Path | None = None,
             config: Config | str | Path | None = None, batch: int = 32,
             overrides: Sequence[str] = ()) -> list[WindowCall]:
    """Classify ``signal`` (``(n_samples, n_channels)`` millivolts, channels named by ``channels``,
    sampled at ``fs`` Hz) window by window with ``model`` (a :class:`Model`, a path, or ``None`` for
    the packaged monitor model).

    The signal goes through the monitor's own per-stream pipeline (channel mapping, resampling to
    the model rate, the training filter bank, warm-up, normalisation) in chunks, as a live stream
    would, so the calls equal the monitor's raw calls on the same samples: one call per hop over the
    whole signal, whatever its length, in bounded memory (a chunk of signal and ``batch`` windows at
    a time, besides the calls returned). The first ``filters.settle_s`` seconds (filter warm-up)
    are not classified: a signal shorter than that plus one window gives an empty list.
    ``overrides``: ``"section.key=value"`` settings applied to ``config`` (as ``--set``), when
    ``model`` is not an opened :class:`Model`.
    """
    from pedstream.stream.pipeline import StreamPipeline
    from pedstream.stream.source import StreamInfo
    from pedstream.dsp.windowing import window_samples

    m = model if isinstance(model, Model) else load_model(model, config=config, overrides=overrides)
    cfg = m.config
    x = np.asarray(signal)  # no copy: each chunk becomes float32 as it is fed
    if x.ndim == 1:
        x = x[:, None]
    names = [str(c) for c in channels]
    if x.ndim != 2 or x.shape[1] != len(names):
        raise StreamError("classify", f"signal shaped {np.shape(signal)} does not match {len(names)} channel names "
                                      "(expected (n_samples, n_channels))")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise StreamError("classify", f"signal of dtype {x.dtype}: expected numbers (millivolts)")
    window = int(m.metadata.get("window_samples") or window_samples(m.window_s, m.fs))
    hop = window_samples(m.hop_s, m.fs)
    info = StreamInfo(stream_id="classify", source="replay", fs=float(fs), channel_names=names,
                      units=["mV"] * len(names))
    pipe = StreamPipeline(info=info, cfg=cfg, fs=m.fs, window=window, hop=hop)
    out: list[WindowCall] = []
    pending: list[Any] = []
    size = max(1, int(batch))
    for items in _stream_windows(pipe, x, float(fs)):
        pending.extend(items)
        while len(pending) >= size:
            out.extend(_run_windows(m, pending[:size]))
            del pending[:size]
    if pending:
        out.extend(_run_windows(m, pending))
    return out


def _chunk_samples(pipe: Any, fs: float) -> int:
    """Source samples fed at a time: at most 5 s, and well inside the pipeline's ring (a chunk larger
    than the ring would lose the windows that scrolled out of it)."""
    room = (pipe.ring.capacity - pipe.window - pipe.hop) / 2  # model-rate samples
    return max(1, int(min(5.0 * fs, room * fs / pipe.fs)))


def _stream_windows(pipe: Any, x: np.ndarray, fs: float) -> Any:
    """The windows of ``x`` fed chunk by chunk through ``pipe`` (one list per chunk)."""
    from pedstream.stream.source import Chunk

    step = _chunk_samples(pipe, fs)
    for c0 in range(0, x.shape[0], step):
        part = np.ascontiguousarray(x[c0:c0 + step], dtype=np.float32)  # (n, n_ch) mV
        ts = (c0 + np.arange(part.shape[0], dtype=np.float64)) / fs
        res = pipe.feed(Chunk(stream_id=pipe.stream_id, data=part, timestamps=ts, first_index=c0), 0.0)
        if res.windows:
            yield res.windows


def _run_windows(m: Model, part: list[Any]) -> list[WindowCall]:
    """One model call on ``part`` (window items of the pipeline), normalised as the monitor does."""
    from pedstream.model.runtime import softmax

    n_ecg = len(m.config.signal.ecg)
    xs = np.stack([it.normalized() for it in part])  # (B, 19, T)
    mask = np.stack([it.mask for it in part]).astype(np.float32)
    logits, _ = m.session.run(np.ascontiguousarray(xs[:, :n_ecg]), np.ascontiguousarray(xs[:, n_ecg:]), mask)
    out = []
    for it, lg in zip(part, np.asarray(logits)):
        probs = softmax(lg, dtype=np.float64)
        k = int(np.argmax(probs))
        out.append(WindowCall(start_s=round(it.start / m.fs, 6), label=m.classes[k], p=float(probs[k]),
                              probabilities={c: float(p) for c, p in zip(m.classes, probs)}))
    return out


@dataclass
class RecordData:
    """A WFDB record read onto the canonical layout: ``signal`` ``(n, 19)`` float32 mV (absent
    channels 0), ``channels`` (the 19 canonical names), ``present`` ``(19,)`` bool, ``fs`` (Hz),
    ``start_s`` of the first sample, ``annotations`` (:class:`pedstream.data.annotations.Annotations`
    or ``None``), ``record`` (the lazy :class:`pedstream.data.loader.Record`)."""

    name: str
    signal: np.ndarray
    channels: list[str]
    present: np.ndarray
    fs: float
    start_s: float
    annotations: Any
    record: Any = field(repr=False)

    @property
    def present_channels(self) -> list[str]:
        return [c for c, p in zip(self.channels, self.present) if p]


def read_record(path: str | Path, *, start_s: float = 0.0, seconds: float | None = None,
                config: Config | str | Path | None = None, overrides: Sequence[str] = ()) -> RecordData:
    """Read ``seconds`` (default: all) of the WFDB record ``path`` (without extension) from ``start_s``."""
    from pedstream.data.loader import open_record

    cfg = _config(config, overrides)
    rec = open_record(path, cfg.signal)
    s0 = int(round(start_s * rec.fs))
    if not 0 <= s0 < rec.n_samples:
        raise RecordError(rec.name, f"start {start_s:g} s is outside the record (0 to {rec.duration_s:.1f} s)")
    s1 = rec.n_samples if seconds is None else min(rec.n_samples, s0 + int(round(seconds * rec.fs)))
    sig = rec.read(s0, s1)
    return RecordData(name=rec.name, signal=sig.data, channels=list(sig.channels), present=np.asarray(sig.present),
                      fs=rec.fs, start_s=s0 / rec.fs, annotations=rec.annotations(), record=rec)


def plot_strip(record: str | Path, *, start_s: float = 0.0, seconds: float = 10.0, out: str | Path | None = None,
               config: Config | str | Path | None = None, overrides: Sequence[str] = ()) -> Path:
    """Draw the clinical-style strip of ``pedstream data plot`` (12 leads + IEGM on ECG paper, with
    the annotations) into ``out`` (PNG; default a new temporary file) and return its path. In a
    notebook: ``IPython.display.Image(plot_strip(...))``."""
    from pedstream.data.plot import plot_strip as _plot

    cfg = _config(config, overrides)
    if out is None:
        fd, name = tempfile.mkstemp(prefix=f"{Path(record).name}_", suffix=".png")
        import os

        os.close(fd)
        out = name
    return _plot(cfg, Path(record), start=float(start_s), seconds=float(seconds), out=Path(out))


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
    :class:`pedstream.stream.sinks.JsonLinesSink`). Alarm strips go to ``alarms_dir`` (default
    ``[alarms] dir``, else ``$XDG_DATA_HOME/pedstream/alarms``; ``config`` or ``overrides`` may set ``alarms.strips = false``).
    """

    def __init__(self, *, model: Model | str | Path | None = None, config: Config | str | Path | None = None,
                 sinks: Sequence[Any] = (), alarms_dir: str | Path | None = None, overrides: Sequence[str] = ()) -> None:
        self.model = model if isinstance(model, Model) else load_model(model, config=config, overrides=overrides)
        self.config = self.model.config
        self._source = _PushSource()
        self._sinks = list(sinks)
        self._alarms_dir = alarms_dir
        self.engine: Any = None
        self._sub: Any = None
        self._feeding = False  # feed() pushes its own chunks (never the warning about a large push)

    async def __aenter__(self) -> "Monitor":
        from pedstream.stream.engine import Engine

        self.engine = Engine(cfg=self.config, session=self.model.session, sources=[self._source], sinks=self._sinks,
                             alarms_dir=self._alarms_dir)
        self._sub = self.engine.subscribe()  # before entering: no event is missed
        await self.engine.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.engine is not None:
            await self.engine.__aexit__(*exc)

    def push(self, stream_id: str, samples: np.ndarray, *, fs: float, channels: Sequence[str],
             t0: float | None = None, age_years: float | None = None) -> None:
        """Queue ``samples`` (``(n, n_channels)`` mV) of ``stream_id`` (non-blocking)."""
        from pedstream.stream.source import Chunk, ChunkReceived, StreamAdded, StreamInfo

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
        if stream_id is None:  # everything: ingest, model queue and the model call running
            return bool(any(eng.ingest_depth(s) for s in eng.streams) or eng.batcher.pending or eng.batcher.busy)
        return eng.ingest_depth(stream_id) > 1 or eng.batcher.queue_depth(stream_id) >= max(1, self.config.stream.queue_windows // 2)

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
        from pedstream.stream.source import StreamLost

        self._source.events.put_nowait(StreamLost(stream_id=stream_id, reason=reason))

    async def events(self) -> AsyncIterator[Any]:
        """Every :class:`pedstream.stream.sinks.MonitorEvent` from the moment the monitor started."""
        if self._sub is None:
            raise PedstreamError("Monitor.events: use the monitor inside `async with Monitor() as mon:`")
        async for ev in self._sub:
            yield ev

    async def wait_for(self, predicate: Any, *, timeout: float) -> Any:
        """The first event (from now on or already queued) for which ``predicate(event)`` is true."""
        return await self._sub.wait_for(predicate, timeout=timeout)

    def summary(self) -> dict[str, Any]:
        return self.engine.summary() if self.engine is not None else {}
