"""The rhythm-context training tables of the shared data sets and how rows are combined and weighted.

Used by the shipped model's export (:mod:`pedstream.train.rhythm_export`) and by the cross-validation
scripts (``bench/rhythm_context_*.py``), so both see the same rows and the same class weights:

- :func:`load`: the feature tables (:mod:`pedstream.train.rhythm_context_data`, cached) of CinC 2017,
  MIT-BIH Arrhythmia and vfdb under ``shared`` (``../shared/data`` of the checkout by default), at
  :data:`HOP_S`, :data:`SIGNAL_S` and every context length of :data:`CONTEXTS`;
- :func:`merge`: tables of several sources at one context length as one table;
- :func:`weights`: per-row source weights of a class-weight mode (``balanced`` or ``sqrt``; :func:`fit
  <pedstream.train.rhythm_context.fit>` divides by each class's count).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from pedstream.train.rhythm_context_data import CLASSES

if TYPE_CHECKING:  # pragma: no cover
    from pedstream.config import Config

__all__ = ["CONTEXTS", "HOP_S", "SIGNAL_S", "default_shared", "load", "merge", "weights"]

CONTEXTS: tuple[float, ...] = (30.0, 60.0)
HOP_S = 1.25
SIGNAL_S = 8.0


def default_shared() -> Path:
    """``../shared/data`` beside the checkout (``PEDSTREAM_SHARED`` overrides)."""
    env = os.environ.get("PEDSTREAM_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def load(cfg: "Config", cache: str | os.PathLike[str], shared: str | os.PathLike[str] | None = None, *,
         log: Callable[[str], None] = print) -> dict[str, dict[str, np.ndarray]]:
    """``{"cinc2017": table, "mitdb": table, "vfdb": table}`` (built once, then read from ``cache``)."""
    from pedstream.train.rhythm_context_data import build_cinc, build_records

    root = Path(shared) if shared is not None else default_shared()
    kw = dict(cache=cache, hop_s=HOP_S, contexts=CONTEXTS, signal_s=SIGNAL_S, log=log)
    return {"cinc2017": build_cinc(root / "cinc2017" / "training2017.tar.xz", cfg, **kw),
            "mitdb": build_records(root / "mitdb", "mitdb", cfg, **kw),
            "vfdb": build_records(root / "vfdb", "vfdb", cfg, **kw)}


def merge(tabs: list[dict[str, np.ndarray]], ctx: float, features: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """One table of ``tabs`` with ``X`` = their features at context ``ctx`` seconds: the columns named
    ``features`` (default the packaged model's :data:`~pedstream.dsp.rhythm_features.MODEL_FEATURES`), and
    ``runs`` = the :data:`~pedstream.dsp.rhythm_features.BEAT_RUN_FEATURES` columns (the alarm logic's VT
    fast path reads them whatever the model's features)."""
    from pedstream.dsp.rhythm_features import ALL_FEATURES, BEAT_RUN_FEATURES, MODEL_FEATURES

    out = {f: np.concatenate([t[f] for t in tabs]) for f in ("y", "t", "age_s", "record", "rule_af", "rr_seq")
           if all(f in t for t in tabs)}
    cols = [ALL_FEATURES.index(f) for f in (MODEL_FEATURES if features is None else features)]
    out["X"] = np.concatenate([t[f"X_{ctx:g}"][:, cols] for t in tabs])
    rcols = [ALL_FEATURES.index(f) for f in BEAT_RUN_FEATURES]
    out["runs"] = np.concatenate([t[f"X_{ctx:g}"][:, rcols] for t in tabs])
    return out


def weights(y: np.ndarray, mode: str) -> np.ndarray:
    """Source weights of labels ``y`` for class-weight ``mode``: ``balanced`` every class the same total
    weight (ones here: :func:`~pedstream.train.rhythm_context.fit` balances), ``sqrt`` 1/sqrt(count)."""
    if mode == "balanced":
        return np.ones(y.size)
    if mode != "sqrt":
        raise ValueError(f"class weights must be 'balanced' or 'sqrt', not {mode!r}")
    counts = np.bincount(y, minlength=len(CLASSES)).astype(float)
    nz = np.count_nonzero(counts)
    return np.sqrt(counts[y] * nz / y.size)  # fit() divides by count: overall 1/sqrt(count)
