"""WFDB beat/rhythm annotations as the Leipzig files use them.

The Leipzig Heart Center files use beat symbols that are not in the standard WFDB table: ``X``
(tachycardia beat; the aux string names the mechanism: ``AVRT``, ``AVNRT``, ``VT``, ``AFIB``...) and
``b`` (aux ``BI``). Left alone, :func:`wfdb.wrann` rewrites such a symbol into a comment annotation
(``"`` with aux ``"X AVRT"``), and :func:`wfdb.rdann` gives it back as ``"``.

Encoding used here (the standard WFDB mechanism for user-defined annotation codes, understood by
``rdann`` and by the WFDB C library): the file starts with the ``## annotation type definitions``
block of NOTE annotations at sample 0, which binds the non-standard symbols to the unused codes
(``X`` -> 42, ``b`` -> 43, further unknown symbols to the next free codes). ``rdann`` reads the
block back, so ``X`` survives the round trip. For files written the naive way, the reader also
undoes wfdb's rewrite: a ``"`` annotation whose aux is ``"X <aux>"`` (or just ``"X"``) for a known
non-standard beat symbol is returned as symbol ``X`` with aux ``<aux>``. Real free-text comments
(``"`` with any other aux, as in MIT-BIH) are left as they are.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pedstream.errors import AnnotationError

__all__ = [
    "Annotations",
    "EXTRA_SYMBOLS",
    "BEAT_SYMBOLS",
    "NON_BEAT_SYMBOLS",
    "read_annotations",
    "write_annotations",
]

# Non-standard beat symbols of the Leipzig files -> (WFDB code used to store them, description).
EXTRA_SYMBOLS: dict[str, tuple[int, str]] = {
    "X": (42, "Tachycardia beat (mechanism in aux)"),
    "b": (43, "Blocked beat (aux BI)"),
}
# Symbols that mark a beat (a QRS), standard WFDB beat codes plus the Leipzig extras.
BEAT_SYMBOLS: frozenset[str] = frozenset("NLRBAaJSVrFejnE/fQ?") | frozenset(EXTRA_SYMBOLS)
# Standard WFDB symbols that are not beats: rhythm (+), quality (~), artefact (|), comment ("),
# measurement, wave peaks/boundaries, flutter marks, blocked P waves. Any other symbol counts as a beat.
NON_BEAT_SYMBOLS: frozenset[str] = frozenset('+~|"=^tpusT*D@()[]!x')

@contextmanager
def _quiet_wfdb():
    """wfdb 4.x triggers pandas deprecation warnings on every call; they are not ours to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"wfdb\..*")
        warnings.filterwarnings("ignore", message=r".*inplace keyword.*")
        yield


_FREE_CODES = (44, 45, 46, 47, 48, 49, 15, 17)  # WFDB codes with no standard meaning


@dataclass
class Annotations:
    """Annotations of one record.

    ``sample``: (n,) int64 sample indices at ``fs``; ``symbol``: n symbols; ``aux``: n aux strings
    (``""`` when none); ``fs``: the sampling rate in Hz (None when the file does not say).
    """

    sample: np.ndarray
    symbol: list[str]
    aux: list[str]
    fs: float | None = None
    record: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        self.sample = np.asarray(self.sample, dtype=np.int64).reshape(-1)
        self.symbol = [str(s) for s in self.symbol]
        self.aux = ["" if a is None else str(a) for a in self.aux]
        n = self.sample.shape[0]
        if len(self.symbol) != n or len(self.aux) != n:
            raise AnnotationError(self.record or "(in memory)",
                                  f"{n} samples but {len(self.symbol)} symbols and {len(self.aux)} aux strings")
        if n > 1 and np.any(np.diff(self.sample) < 0):
            raise AnnotationError(self.record or "(in memory)", "sample positions are not in increasing order")

    def __len__(self) -> int:
        return int(self.sample.shape[0])

    def pairs(self) -> list[tuple[str, str]]:
        """``(symbol, aux)`` per annotation."""
        return list(zip(self.symbol, self.aux))

    def select(self, mask: np.ndarray) -> "Annotations":
        """A subset by boolean ``mask`` of shape (n,)."""
        idx = np.flatnonzero(np.asarray(mask, dtype=bool))
        return Annotations(sample=self.sample[idx], symbol=[self.symbol[i] for i in idx],
                           aux=[self.aux[i] for i in idx], fs=self.fs, record=self.record)

    def window(self, start: int, stop: int, *, shift: bool = False) -> "Annotations":
        """Annotations with ``start <= sample < stop``; ``shift`` makes samples relative to ``start``."""
        out = self.select((self.sample >= start) & (self.sample < stop))
        if shift:
            out.sample = out.sample - int(start)
        return out

    def beat_mask(self) -> np.ndarray:
        """(n,) bool: True where the symbol is a beat (QRS) label, not a rhythm/quality/comment mark.

        Every symbol outside :data:`NON_BEAT_SYMBOLS` counts as a beat (so do custom symbols)."""
        return np.fromiter((s not in NON_BEAT_SYMBOLS for s in self.symbol), dtype=bool, count=len(self))


def _ann_path(record_path: str | os.PathLike[str], extension: str) -> tuple[Path, str]:
    p = Path(record_path)
    if p.suffix in (".hea", ".dat", f".{extension}"):
        p = p.with_suffix("")
    return p, p.name


def read_annotations(record_path: str | os.PathLike[str], extension: str = "atr") -> Annotations:
    """Read ``<record_path>.<extension>`` (e.g. ``x001.atr``). Raises :class:`AnnotationError`."""
    import wfdb

    base, name = _ann_path(record_path, extension)
    path = base.with_name(f"{name}.{extension}")
    if not path.is_file():
        raise AnnotationError(name, f"annotation file {path} does not exist")
    try:
        with _quiet_wfdb():
            ann = wfdb.rdann(str(base), extension)
    except Exception as exc:  # wfdb raises bare Exceptions / ValueErrors on corrupt files
        raise AnnotationError(name, f"cannot read {path}: {exc}") from exc
    symbols = list(ann.symbol or [])
    auxes = ["" if a is None else str(a).rstrip("\x00") for a in (ann.aux_note or [""] * len(symbols))]
    for i, (s, a) in enumerate(zip(symbols, auxes)):
        if s == '"' and a:
            head, _, rest = a.partition(" ")
            if head in EXTRA_SYMBOLS:  # undo wfdb's symbol -> comment rewrite
                symbols[i], auxes[i] = head, rest
    fs = float(ann.fs) if ann.fs is not None else None
    return Annotations(sample=np.asarray(ann.sample, dtype=np.int64), symbol=symbols, aux=auxes,
                       fs=fs, record=name)


def write_annotations(record_path: str | os.PathLike[str], ann: Annotations, extension: str = "atr") -> Path:
    """Write ``ann`` to ``<record_path>.<extension>``; non-standard symbols keep their identity.

    Returns the written path. Raises :class:`AnnotationError` for symbols that cannot be stored
    (longer than one WFDB mnemonic or more distinct non-standard symbols than free codes).
    """
    import wfdb
    from wfdb.io.annotation import ann_label_table

    base, name = _ann_path(record_path, extension)
    standard = set(ann_label_table["symbol"].values)
    extra = sorted({s for s in ann.symbol if s not in standard})
    custom: list[tuple[int, str, str]] = []
    free = [c for c in _FREE_CODES]
    for s in extra:
        if not s or len(s) > 8 or any(c.isspace() for c in s):
            raise AnnotationError(name, f"symbol {s!r} cannot be stored in a WFDB annotation file")
        if s in EXTRA_SYMBOLS:
            code, desc = EXTRA_SYMBOLS[s]
        else:
            if not free:
                raise AnnotationError(name, f"too many non-standard symbols ({extra}); WFDB has 10 free codes")
            code, desc = free.pop(0), f"User-defined label {s}"
        custom.append((code, s, desc))
    if len(ann) and int(ann.sample[0]) < 0:
        raise AnnotationError(name, "negative sample position")
    a = wfdb.Annotation(
        record_name=name,
        extension=extension,
        sample=np.asarray(ann.sample, dtype=np.int64),
        symbol=list(ann.symbol),
        aux_note=[a if a else "" for a in ann.aux],
        fs=ann.fs,
        custom_labels=custom or None,
    )
    base.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet_wfdb():
            a.wrann(write_fs=ann.fs is not None, write_dir=str(base.parent))
    except Exception as exc:
        raise AnnotationError(name, f"cannot write {base}.{extension}: {exc}") from exc
    return base.with_name(f"{name}.{extension}")
