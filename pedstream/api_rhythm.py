"""``pedstream.classify_rhythm``: the rhythm-context calls of a recorded signal, as the monitor makes them.

The signal goes through the monitor's own per-stream pipeline (the same as :func:`pedstream.classify`)
in chunks of ``[replay] chunk_ms``, as a replayed record reaches the monitor; after each window the
rhythm-context layer's own per-stream state (:class:`pedstream.monitor.rhythm_context.StreamRhythm`:
the stream's QRS detector's beats over the last ``[rhythm_context] context_s`` and the QRS lead of the
last ``signal_s``) is read and classified by the rhythm model, batched. Each call says how much
context it had (``context_s``, ``beats``): the first calls of a signal see less than the full context.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pedstream.config import Config

__all__ = ["RhythmCall", "classify_rhythm"]


@dataclass
class RhythmCall:
    """One rhythm-context call: ``t_s`` (seconds from the signal's first sample at the model rate: the end
    of the context), ``label`` / ``p`` (the most probable rhythm), ``probabilities`` (class ->
    probability, in the rhythm model's class order), ``context_s`` (seconds of beats the call had, up to
    ``[rhythm_context] context_s``) and ``beats`` (beats in that context)."""

    t_s: float
    label: str
    p: float
    probabilities: dict[str, float]
    context_s: float
    beats: int


def classify_rhythm(signal: np.ndarray, *, fs: float, channels: Sequence[str], model: Any = None,
                    rhythm_model: str | Path | None = None, config: Config | str | Path | None = None,
                    batch: int = 256, overrides: Sequence[str] = ()) -> list[RhythmCall]:
    """The rhythm-context calls of ``signal`` (``(n_samples, n_channels)`` millivolts named by ``channels``,
    at ``fs`` Hz): one per window (``[rhythm_context] every_windows``) once the QRS lead has a beat.

    ``model``: the window model whose pipeline geometry is used (a :class:`pedstream.Model`, a path, or
    None for the packaged one); ``rhythm_model``: the rhythm ONNX file (default ``[rhythm_context]
    model``, else the packaged one). The calls are those the monitor emits as ``rhythm`` events for the
    same samples replayed in ``[replay] chunk_ms`` chunks."""
    from pedstream.api import Model, _signal_array, load_model
    from pedstream.events import Chunk, StreamInfo
    from pedstream.monitor.pipeline import StreamPipeline
    from pedstream.monitor.rhythm_context import StreamRhythm, ring_need
    from pedstream.monitor.rhythm_hooks import load_rhythm_model

    m = model if isinstance(model, Model) else load_model(model, config=config, overrides=overrides)
    cfg = m.config
    rm = load_rhythm_model(rhythm_model or "default", cfg)
    x = _signal_array(signal, channels, where="classify_rhythm")
    geo = m.session.geometry
    info = StreamInfo(stream_id="classify", source="replay", fs=float(fs), channel_names=[str(c) for c in channels],
                      units=["mV"] * len(channels))
    pipe = StreamPipeline(info=info, cfg=cfg, fs=geo.fs, window=geo.window, hop=geo.hop,
                          ring_at_least=ring_need(cfg, geo.fs, geo.hop))
    state = StreamRhythm(stream_id=info.stream_id, fs=geo.fs, cfg=cfg, classes=rm.classes,
                         context_s=cfg.rhythm_context.context_s, signal_s=cfg.rhythm_context.signal_s)
    step = max(1, int(round(cfg.replay.chunk_ms * float(fs) / 1000.0)))
    rows: list[tuple[tuple, float]] = []
    out: list[RhythmCall] = []
    for c0 in range(0, x.shape[0], step):
        part = np.ascontiguousarray(x[c0:c0 + step], dtype=np.float32)
        ts = (c0 + np.arange(part.shape[0], dtype=np.float64)) / float(fs)
        res = pipe.feed(Chunk(stream_id=info.stream_id, data=part, timestamps=ts, first_index=c0), 0.0)
        if not res.windows:
            continue
        state.windows += len(res.windows) - 1  # as the engine: every_windows counts windows, one snapshot now
        snap = state.snapshot(pipe, res.windows[-1].start + pipe.window)  # at the last window's end, as the engine
        if snap is not None:
            rows.append((snap, state.had_context_s(snap[1])))
        if len(rows) >= batch:
            out.extend(_classify_rows(rm, rows))
            rows = []
    if rows:
        out.extend(_classify_rows(rm, rows))
    return out


def _classify_rows(rm: Any, rows: list[tuple[tuple, float]]) -> list[RhythmCall]:
    from pedstream.monitor.rhythm_context import StreamRhythm

    feats = np.stack([StreamRhythm.compute(snap) for snap, _ in rows])
    probs = rm.predict(feats)
    out = []
    for (snap, had), f, p in zip(rows, feats, probs):
        k = int(np.argmax(p))
        out.append(RhythmCall(t_s=round(float(snap[1]), 6), label=rm.classes[k], p=float(p[k]),
                              probabilities={c: float(v) for c, v in zip(rm.classes, p)},
                              context_s=round(float(had), 3), beats=int(f[0])))
    return out
