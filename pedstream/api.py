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
:class:`Monitor` lives in :mod:`pedstream.api_monitor` (re-exported here).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pedstream.config import Config, load_config
from pedstream.errors import RecordError, StreamError

from pedstream.api_monitor import Monitor  # it imports nothing from this module at import time

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
    from pedstream.monitor.banner import is_packaged_model, model_banner
    from pedstream.monitor.assembly import open_model

    cfg = _config(config, overrides)
    session = open_model(cfg, None if path is None else Path(path))
    meta = dict(session.metadata)
    td = meta.get("training_data")
    return Model(path=Path(session.path), classes=list(session.class_names), channels=list(meta["channels"]),
                 fs=session.geometry.fs, window_s=float(meta["window_s"]), hop_s=float(meta["hop_s"]),
                 training_data=dict(td) if isinstance(td, dict) else {},
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
    from pedstream.monitor.pipeline import StreamPipeline
    from pedstream.events import StreamInfo

    m = model if isinstance(model, Model) else load_model(model, config=config, overrides=overrides)
    cfg = m.config
    x = _signal_array(signal, channels, where="classify")
    names = [str(c) for c in channels]
    geo = m.session.geometry
    info = StreamInfo(stream_id="classify", source="replay", fs=float(fs), channel_names=names,
                      units=["mV"] * len(names))
    pipe = StreamPipeline(info=info, cfg=cfg, fs=geo.fs, window=geo.window, hop=geo.hop)
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


def _signal_array(signal: Any, channels: Sequence[str], *, where: str) -> np.ndarray:
    """``signal`` as a ``(n_samples, n_channels)`` array of numbers (no copy), or one clear error."""
    x = np.asarray(signal)  # no copy: each chunk becomes float32 as it is fed
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != len(channels):
        raise StreamError(where, f"signal shaped {np.shape(signal)} does not match {len(channels)} channel names "
                                 "(expected (n_samples, n_channels))")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise StreamError(where, f"signal of dtype {x.dtype}: expected numbers (millivolts)")
    return x


def _chunk_samples(pipe: Any, fs: float) -> int:
    """Source samples fed at a time: at most 5 s, and well inside the pipeline's ring (a chunk larger
    than the ring would lose the windows that scrolled out of it)."""
    room = (pipe.ring.capacity - pipe.window - pipe.hop) / 2  # model-rate samples
    return max(1, int(min(5.0 * fs, room * fs / pipe.fs)))


def _stream_windows(pipe: Any, x: np.ndarray, fs: float) -> Any:
    """The windows of ``x`` fed chunk by chunk through ``pipe`` (one list per chunk)."""
    from pedstream.events import Chunk

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
