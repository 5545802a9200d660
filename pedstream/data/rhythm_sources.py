"""Rhythm-labelled real sources for the rhythm-context layer: WFDB records with rhythm annotations
(MIT-BIH Arrhythmia ``mitdb``, Malignant Ventricular Ectopy ``vfdb``) and annotation-only Holter
records (``nsrdb-ann``, ``sddb-ann``: beats, and for sddb rhythm ``+`` marks in the ``.ari`` file).

- :func:`read_lead` -> the first ECG channel of a record in mV with its rate;
- :func:`rhythm_spans` -> ``[(start_s, end_s, label | None)]`` from the ``+`` annotations, each aux
  mapped by a ``{class: [aux, ...]}`` table (``[rhythm_context.labels.<source>]`` in ``config.toml``);
  an unmapped aux gives ``None`` (excluded);
- :func:`annotated_beats` -> beat times (s) and symbols of an annotation file (no signal needed).

Errors are :class:`~pedstream.errors.RecordError` / :class:`~pedstream.errors.AnnotationError` (exit 2).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from pedstream.data.annotations import read_annotations
from pedstream.errors import AnnotationError, RecordError

__all__ = ["annotated_beats", "label_of", "read_lead", "rhythm_extension", "rhythm_spans"]


def read_lead(record: str | os.PathLike[str], channel: int = 0) -> tuple[np.ndarray, float]:
    """``(lead (n,) float64 mV, fs)``; NaN (invalid samples) become 0."""
    import wfdb

    try:
        rec = wfdb.rdrecord(str(record), channels=[channel])
    except Exception as exc:  # wfdb raises many kinds on damaged files
        raise RecordError(str(record), f"cannot read record: {exc}") from exc
    return np.nan_to_num(np.asarray(rec.p_signal[:, 0], dtype=np.float64)), float(rec.fs)


def label_of(aux: str, table: Mapping[str, Sequence[str]]) -> str | None:
    a = aux.strip().rstrip("\x00")
    for cls, auxes in table.items():
        if a in auxes:
            return cls
    return None


def rhythm_extension(record: str | os.PathLike[str]) -> str:
    """The annotation extension of ``record`` that carries rhythm ``+`` marks (``atr`` or ``ari``)."""
    for ext in ("atr", "ari"):
        if Path(f"{record}.{ext}").is_file():
            ann = read_annotations(record, ext)
            if any(s == "+" and a for s, a in zip(ann.symbol, ann.aux)):
                return ext
    raise AnnotationError(str(record), "no rhythm annotations ('+' with an aux such as '(N') in .atr or .ari")


def rhythm_spans(record: str | os.PathLike[str], table: Mapping[str, Sequence[str]], *, n_samples: int | None = None,
                 extension: str | None = None) -> list[tuple[float, float, str | None]]:
    """Rhythm episodes in seconds; the last one lasts to ``n_samples`` (or the last annotation)."""
    ext = extension or rhythm_extension(record)
    ann = read_annotations(record, ext)
    marks = [(int(s), a) for s, sym, a in zip(ann.sample, ann.symbol, ann.aux) if sym == "+" and a]
    if not marks:
        raise AnnotationError(str(record), f"no rhythm annotations in .{ext}")
    end = int(n_samples) if n_samples is not None else int(ann.sample[-1]) + 1
    fs = float(ann.fs)
    out = []
    for (s, a), nxt in zip(marks, [m[0] for m in marks[1:]] + [end]):
        if nxt > s:
            out.append((s / fs, nxt / fs, label_of(a, table)))
    return out


def annotated_beats(record: str | os.PathLike[str], extension: str = "atr") -> tuple[np.ndarray, list[str]]:
    """``(beat times in seconds (n,), symbols)`` of the beat annotations of ``record.<extension>``."""
    ann = read_annotations(record, extension)
    m = ann.beat_mask()
    if not m.any():
        raise AnnotationError(str(record), f"no beat annotations in .{extension}")
    return ann.sample[m].astype(np.float64) / float(ann.fs), [s for s, k in zip(ann.symbol, m) if k]
