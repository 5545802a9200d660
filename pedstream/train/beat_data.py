"""Per-beat feature tables of MIT-BIH records for the gradient-boosting beat classifier.

Each record: lead II (MLII) through the beat model's serving filters (:class:`~pedstream.dsp.filters.FilterBank`
fed the whole record, as the engine feeds it chunk by chunk), the reference beats (every annotation the
AAMI grouping labels; non-beat annotations are skipped) pushed through
:class:`~pedstream.dsp.beat_features.BeatFeatures`. Reference beat positions are used (as de Chazal
2004 and the published inter-patient results do); the engine uses its QRS detector's beats instead.

Cached as ``.npz`` per record under ``<cache>/beat_features/<version>-<key>/`` (outside the repository;
default ``~/.cache/pedstream``). Arrays: ``x`` (n, F) float32, ``y`` (n,) int64 AAMI class index,
``sample`` (n,) int64, ``t`` (n,) float64 seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pedstream.dsp.beat_features import FEATURE_VERSION, beat_feature_table, feature_names
from pedstream.errors import RecordError

__all__ = ["AAMI", "DS1", "BeatTable", "default_cache", "beat_config", "engine_beats", "record_table", "build_tables"]

AAMI = ("N", "S", "V", "F", "Q")
DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124", "201", "203", "205",
       "207", "208", "209", "215", "220", "223", "230")
LEAD = "II"


def default_cache() -> Path:
    return Path(os.environ.get("PEDSTREAM_CACHE", Path.home() / ".cache" / "pedstream"))


def beat_config() -> Any:
    """The configuration of the shipped MIT-BIH beat model (``configs/mitdb-aami.toml``, packaged defaults
    when the file is absent): 360 Hz, 0.5-40 Hz, 60 Hz mains, AAMI grouping."""
    from pedstream.config import load_config

    here = Path(__file__).resolve().parents[2] / "configs" / "mitdb-aami.toml"
    if here.is_file():
        return load_config(here)
    return load_config(None, ["signal.fs=360.0", "filters.mains_hz=60.0", "filters.ecg_lowpass_hz=40.0",
                              "labels.scheme=\"aami\""])


@dataclass
class BeatTable:
    record: str
    x: np.ndarray
    y: np.ndarray
    sample: np.ndarray
    t: np.ndarray


def record_table(path: str | os.PathLike[str], cfg: Any, *, adapt: bool = True,
                 beats: np.ndarray | None = None) -> BeatTable:
    """Features of every reference beat of one WFDB record (see the module docstring); with ``beats``
    (sample indices, e.g. the engine's detections, :func:`engine_beats`) the features of those beats
    instead, each labelled by the reference beat within 150 ms (``-1`` when there is none)."""
    from pedstream.data.channels import CANONICAL_CHANNELS
    from pedstream.data.labels import LabelGrouping
    from pedstream.data.loader import open_record
    from pedstream.dsp.filters import FilterBank, FilterCutoffWarning

    rec = open_record(path, cfg.signal)
    ann = rec.annotations()
    if ann is None:
        raise RecordError(str(path), "has no .atr beat annotations")
    lead = CANONICAL_CHANNELS.index(LEAD)
    if not rec.present[lead]:
        raise RecordError(str(path), f"has no lead {LEAD} (MLII)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FilterCutoffWarning)
        bank = FilterBank(fs=rec.fs, cfg=cfg.filters)
    x = bank.process(rec.read().data)[:, lead]
    grouping = LabelGrouping.from_config(cfg)
    y = grouping.labels(ann.symbol, ann.aux)
    keep = (y >= 0) & (ann.sample >= 0) & (ann.sample < rec.n_samples)
    sample = np.asarray(ann.sample)[keep].astype(np.int64)
    y = y[keep]
    if beats is not None:
        det = np.unique(np.asarray(beats, dtype=np.int64))
        det = det[(det >= 0) & (det < rec.n_samples)]
        j = np.clip(np.searchsorted(sample, det), 1, max(sample.size - 1, 1))
        near = np.where(np.abs(sample[j - 1] - det) <= np.abs(sample[j] - det), j - 1, j)
        ok = np.abs(sample[near] - det) <= int(round(0.15 * rec.fs))
        sample, y = det, np.where(ok, y[near], -1)
    feats = beat_feature_table(x, sample, fs=rec.fs, adapt=adapt)
    return BeatTable(record=rec.name, x=feats, y=y, sample=sample, t=sample / rec.fs)


def engine_beat_events(path: str | os.PathLike[str],
                       model: str | os.PathLike[str]) -> tuple[list[Any], float, float]:
    """Every ``beat`` event of a record fed through :class:`pedstream.Monitor` with the feature beat model
    ``model``, nothing dropped: ``(events, t0, fs)``, ``t0`` the stream time of the record's first
    sample, ``fs`` the record's rate."""
    import asyncio

    from pedstream.api import Monitor, read_record

    rd = read_record(path)
    events: list[Any] = []

    async def run() -> float:
        async with Monitor(beat_model=model, overrides=["alarms.strips=false", "stream.queue_windows=100000",
                                                        "stream.beat_queue=100000"]) as mon:
            mon.engine.add_listener(lambda e: events.append(e) if e.kind == "beat" else None)
            ch = [c for c, p in zip(rd.channels, rd.present) if p]
            await mon.feed("rec", rd.signal[:, rd.present], fs=rd.fs, channels=ch)
            await mon.drain(timeout=600)
            eng = mon.engine
            while eng.beat_batcher.pending or eng.beat_batcher.busy:
                await mon.wait_for(lambda e: e.kind == "beat", timeout=60)
            return float(eng.pipelines["rec"].segment_t0)

    t0 = asyncio.run(run())
    return events, t0, float(rd.fs)


def engine_beats(path: str | os.PathLike[str], model: str | os.PathLike[str]) -> np.ndarray:
    """Sample indices (at the record's rate) of the beats the live engine classifies in a record
    (:func:`engine_beat_events`; its QRS detector and beat clock: the positions do not depend on the
    model's weights)."""
    events, t0, fs = engine_beat_events(path, model)
    return np.round((np.asarray([e.extra["beat_t"] for e in events]) - t0) * fs).astype(np.int64)


def _key(cfg: Any, adapt: bool) -> str:
    spec = {"v": FEATURE_VERSION, "adapt": adapt, "filters": cfg.filters.model_dump(), "fs": cfg.signal.fs,
            "names": feature_names(adapt)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]


def build_tables(folder: str | os.PathLike[str], *, records: Sequence[str] = DS1, cache: Path | None = None,
                 adapt: bool = True, progress: bool = False, positions: str = "reference",
                 model: str | os.PathLike[str] | None = None) -> list[BeatTable]:
    """Feature tables of ``records`` in ``folder`` (cached per record). ``positions="engine"``: at the
    beats the live engine classifies (:func:`engine_beats` with the feature beat model ``model``,
    cached too), labelled by the reference beat within 150 ms; ``"reference"``: the reference beats."""
    cfg = beat_config()
    base = (cache or default_cache())
    tag = "" if positions == "reference" else "-engine"
    where = base / "beat_features" / f"{FEATURE_VERSION}-{_key(cfg, adapt)}{tag}"
    where.mkdir(parents=True, exist_ok=True)
    out = []
    for name in records:
        f = where / f"{name}.npz"
        if f.is_file():
            z = np.load(f)
            out.append(BeatTable(record=name, x=z["x"], y=z["y"], sample=z["sample"], t=z["t"]))
            continue
        beats = None
        if positions == "engine":
            pos = base / "beat_positions" / f"{name}.npy"
            if not pos.is_file():
                if model is None:
                    raise RecordError(name, "engine beat positions are not cached: give a feature beat model")
                pos.parent.mkdir(parents=True, exist_ok=True)
                np.save(pos, engine_beats(Path(folder) / name, model))
            beats = np.load(pos)
        tab = record_table(Path(folder) / name, cfg, adapt=adapt, beats=beats)
        tmp = where / f"{name}.tmp.npz"
        np.savez(tmp, x=tab.x, y=tab.y, sample=tab.sample, t=tab.t)
        tmp.replace(f)
        if progress:
            print(f"features {name}: {tab.x.shape[0]} beats", flush=True)
        out.append(tab)
    return out
