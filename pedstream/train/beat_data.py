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

__all__ = ["AAMI", "DS1", "BeatTable", "default_cache", "beat_config", "record_table", "build_tables"]

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


def record_table(path: str | os.PathLike[str], cfg: Any, *, adapt: bool = True) -> BeatTable:
    """Features of every reference beat of one WFDB record (see the module docstring)."""
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
    feats = beat_feature_table(x, sample, fs=rec.fs, adapt=adapt)
    return BeatTable(record=rec.name, x=feats, y=y[keep], sample=sample, t=sample / rec.fs)


def _key(cfg: Any, adapt: bool) -> str:
    spec = {"v": FEATURE_VERSION, "adapt": adapt, "filters": cfg.filters.model_dump(), "fs": cfg.signal.fs,
            "names": feature_names(adapt)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]


def build_tables(folder: str | os.PathLike[str], *, records: Sequence[str] = DS1, cache: Path | None = None,
                 adapt: bool = True, progress: bool = False) -> list[BeatTable]:
    """Feature tables of ``records`` in ``folder`` (cached per record)."""
    cfg = beat_config()
    where = (cache or default_cache()) / "beat_features" / f"{FEATURE_VERSION}-{_key(cfg, adapt)}"
    where.mkdir(parents=True, exist_ok=True)
    out = []
    for name in records:
        f = where / f"{name}.npz"
        if f.is_file():
            z = np.load(f)
            out.append(BeatTable(record=name, x=z["x"], y=z["y"], sample=z["sample"], t=z["t"]))
            continue
        tab = record_table(Path(folder) / name, cfg, adapt=adapt)
        tmp = where / f"{name}.tmp.npz"
        np.savez(tmp, x=tab.x, y=tab.y, sample=tab.sample, t=tab.t)
        tmp.replace(f)
        if progress:
            print(f"features {name}: {tab.x.shape[0]} beats", flush=True)
        out.append(tab)
    return out
