"""Per-beat feature tables of MIT-BIH records for the gradient-boosting beat classifier.

Each record: lead II (MLII) through the beat model's serving filters (:class:`~pedstream.dsp.filters.FilterBank`
fed the whole record, as the engine feeds it chunk by chunk), the reference beats (every annotation the
AAMI grouping labels; non-beat annotations are skipped) pushed through
:class:`~pedstream.dsp.beat_features.BeatFeatures`. Reference beat positions are used (as de Chazal
2004 and the published inter-patient results do); the engine uses its QRS detector's beats instead.

Noise augmentation (``noise=``, :func:`nstdb_noise`): real noise of the MIT-BIH Noise Stress Test
Database (baseline wander ``bw``, muscle artefact ``ma``, and electrode motion ``em``, the difference
of ``118e00`` and the clean record 118) added to lead II before the filters, at a given SNR (as nstdb
defines it: signal power from the QRS peak-to-peak amplitude, ``ptp^2 / 8``, of the record's beats).
The noise records are split in two halves: the ``"train"`` half for augmenting training beats, the
``"test"`` half for scoring robustness, so a test beat never carries noise seen in training.

Cached as ``.npz`` per record under ``<cache>/beat_features/<version>-<key>/`` (outside the repository;
default ``~/.cache/pedstream``). Arrays: ``x`` (n, F) float32, ``y`` (n,) int64 AAMI class index,
``sample`` (n,) int64, ``t`` (n,) float64 seconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pedstream.dsp.beat_features import FEATURE_VERSION, beat_feature_table, feature_names
from pedstream.errors import RecordError

__all__ = ["AAMI", "DS1", "NOISE_KINDS", "BeatTable", "default_cache", "beat_config", "engine_beats", "nstdb_noise",
           "record_table", "build_tables"]

AAMI = ("N", "S", "V", "F", "Q")
DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124", "201", "203", "205",
       "207", "208", "209", "215", "220", "223", "230")
LEAD = "II"
_DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "mitdb"  # ../shared/data/mitdb
NOISE_KINDS = ("bw", "ma", "em")  # and "all": the three at equal power


def nstdb_noise(folder: str | os.PathLike[str], kind: str, half: str) -> np.ndarray:
    """Real noise (mV, 360 Hz, channel 0 of the nstdb noise record; ``em``: ``118e00`` minus mitdb
    ``118`` from the sibling ``mitdb`` folder) of one half (``"train"``: the first 15 min, ``"test"``: the
    rest), its mean removed."""
    import wfdb

    folder = Path(folder)
    if kind == "em":
        noisy = wfdb.rdrecord(str(folder / "118e00"), channels=[0]).p_signal[:, 0]
        clean = wfdb.rdrecord(str(folder.parent / "mitdb" / "118"), channels=[0]).p_signal[:, 0]
        d = noisy[: clean.size] - clean[: noisy.size]
        # nst adds the noise in 2-minute stretches (a constant offset elsewhere): keep the 1 s blocks that
        # vary, each stretch with its own mean removed
        blocks = d[: d.size // 360 * 360].reshape(-1, 360)
        on = blocks.std(axis=1) > 1e-6
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(int), [0]])))
        x = np.concatenate([blocks[a:b].ravel() - blocks[a:b].mean() for a, b in zip(edges[::2], edges[1::2])])
    elif kind == "all":  # the three at equal power, summed
        parts = [nstdb_noise(folder, k, "train" if half == "train" else "test") for k in NOISE_KINDS]
        n = min(p.size for p in parts)
        return sum(p[:n] / p[:n].std() for p in parts) / math.sqrt(len(parts))
    elif kind in ("bw", "ma"):
        x = wfdb.rdrecord(str(folder / kind), channels=[0]).p_signal[:, 0]
    else:
        raise RecordError(kind, f"unknown nstdb noise; known: {list(NOISE_KINDS)}")
    mid = x.size // 2
    x = x[:mid] if half == "train" else x[mid:]
    return (x - x.mean()).astype(np.float64)


def add_noise(lead: np.ndarray, samples: np.ndarray, noise: np.ndarray, *, snr_db: float, seed: int,
              fs: float) -> np.ndarray:
    """``lead`` plus ``noise`` (tiled from a random offset) scaled to ``snr_db`` (nstdb's definition)."""
    rng = np.random.default_rng(seed)
    half = int(round(0.1 * fs))
    ptp = [np.ptp(lead[max(s - half, 0): s + half]) for s in samples[:: max(1, samples.size // 300)]]
    signal_power = float(np.median(ptp)) ** 2 / 8.0 if ptp else 1.0
    reps = int(np.ceil(lead.size / noise.size)) + 1
    start = int(rng.integers(0, noise.size))
    n = np.tile(noise, reps)[start: start + lead.size]
    scale = math.sqrt(signal_power / max(float(np.mean(n * n)), 1e-12) / 10 ** (snr_db / 10.0))
    return lead + scale * n


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
                 beats: np.ndarray | None = None, context: bool = True,
                 noise: tuple[np.ndarray, float, int] | None = None) -> BeatTable:
    """Features of every reference beat of one WFDB record (see the module docstring); with ``beats``
    (sample indices, e.g. the engine's detections, :func:`engine_beats`) the features of those beats
    instead, each labelled by the reference beat within 150 ms (``-1`` when there is none).
    ``noise``: ``(noise samples, snr_db, seed)`` added to lead II before the filters (:func:`add_noise`)."""
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
    data = rec.read().data
    if noise is not None:
        data = np.array(data, dtype=np.float64, copy=True)
        ref = np.asarray(ann.sample)[(np.asarray(ann.sample) >= 0) & (np.asarray(ann.sample) < rec.n_samples)]
        data[:, lead] = add_noise(data[:, lead], ref, noise[0], snr_db=noise[1], seed=noise[2], fs=rec.fs)
    x = bank.process(data)[:, lead]
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
    feats = beat_feature_table(x, sample, fs=rec.fs, adapt=adapt, context=context)
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


def _key(cfg: Any, adapt: bool, context: bool = True) -> str:
    spec = {"v": FEATURE_VERSION, "adapt": adapt, "filters": cfg.filters.model_dump(), "fs": cfg.signal.fs,
            "names": feature_names(adapt, context)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]


def build_tables(folder: str | os.PathLike[str], *, records: Sequence[str] = DS1, cache: Path | None = None,
                 adapt: bool = True, progress: bool = False, positions: str = "reference",
                 model: str | os.PathLike[str] | None = None, context: bool = True,
                 noise: tuple[str, float, str] | None = None) -> list[BeatTable]:
    """Feature tables of ``records`` in ``folder`` (cached per record). ``positions="engine"``: at the
    beats the live engine classifies (:func:`engine_beats` with the feature beat model ``model``,
    cached too), labelled by the reference beat within 150 ms; ``"reference"``: the reference beats.
    ``noise``: ``(kind, snr_db, half)``, real nstdb noise (:func:`nstdb_noise`, from the ``nstdb``
    folder beside ``folder``) added to each record (a different random offset per record)."""
    cfg = beat_config()
    base = (cache or default_cache())
    tag = ("" if positions == "reference" else "-engine") + (
        "" if noise is None else f"-noise-{noise[0]}-{noise[1]:g}dB-{noise[2]}")
    where = base / "beat_features" / f"{FEATURE_VERSION}-{_key(cfg, adapt, context)}{tag}"
    noise_x = None if noise is None else nstdb_noise(Path(folder).parent / "nstdb", noise[0], noise[2])
    where.mkdir(parents=True, exist_ok=True)
    out = []
    for name in records:
        f = where / f"{name}.npz"
        src = str((Path(folder) / name).resolve())
        if f.is_file():
            z = np.load(f)
            # the record the table came from (tables cached before "src" was kept: the default DS1 folder)
            was = str(z["src"]) if "src" in z.files else str((_DEFAULT_DATA / name).resolve())
            if was == src:
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
        nz = None if noise_x is None else (noise_x, float(noise[1]), zlib.crc32(name.encode()) + (0 if noise[2] == "train" else 1))
        tab = record_table(Path(folder) / name, cfg, adapt=adapt, beats=beats, context=context, noise=nz)
        tmp = where / f"{name}.tmp.npz"
        np.savez(tmp, x=tab.x, y=tab.y, sample=tab.sample, t=tab.t, src=np.asarray(src))
        tmp.replace(f)
        if progress:
            print(f"features {name}: {tab.x.shape[0]} beats", flush=True)
        out.append(tab)
    return out
