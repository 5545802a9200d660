"""PhysioNet/CinC Challenge 2017 training set (single-lead AF classification) from its archive.

``training2017.tar.xz`` holds ``training2017/A00001.hea`` + ``.mat`` (300 Hz, one lead, 1000/mV) and
``REFERENCE.csv`` (``A00001,N``; a header line ``data_source,class`` is skipped when present).
:func:`extract_archive` unpacks it once into a cache folder outside the repository (keyed by the
archive's size and the hash of its first MiB; ``tarfile`` with the ``data`` filter, into a temporary
folder renamed when complete), :func:`read_reference` reads the labels, :func:`read_recording` one
recording in mV.

Labels: ``N`` normal sinus rhythm, ``A`` atrial fibrillation, ``O`` other rhythm, ``~`` too noisy.
A damaged or foreign archive raises :class:`~pedstream.errors.RecordError` (one line, exit 2).
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from pedstream.errors import RecordError

__all__ = ["CINC_LABELS", "default_cache", "extract_archive", "read_recording", "read_reference"]

CINC_LABELS = ("N", "A", "O", "~")


def default_cache() -> Path:
    """``$PEDSTREAM_CACHE`` or ``~/.cache/pedstream``."""
    return Path(os.environ.get("PEDSTREAM_CACHE") or Path.home() / ".cache" / "pedstream")


def _key(archive: Path) -> str:
    h = hashlib.sha256()
    with archive.open("rb") as f:
        h.update(f.read(1 << 20))
    return f"{archive.stat().st_size}-{h.hexdigest()[:16]}"


def extract_archive(archive: str | os.PathLike[str], cache: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding ``REFERENCE.csv`` and the recordings (extracted on the first call)."""
    archive = Path(archive)
    if archive.is_dir():  # already extracted by the user
        folder = archive / "training2017" if (archive / "training2017").is_dir() else archive
        if not (folder / "REFERENCE.csv").is_file():
            raise RecordError(str(archive), "has no REFERENCE.csv (not a CinC 2017 training folder)")
        return folder
    if not archive.is_file():
        raise RecordError(str(archive), "no such archive")
    root = Path(cache) if cache is not None else default_cache()
    target = root / f"cinc2017-{_key(archive)}"
    if (target / ".complete").is_file():
        return _folder(target, archive)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".cinc2017-", dir=root))
    try:
        with tarfile.open(archive, "r:*") as tf:
            tf.extractall(tmp, filter="data")
        (tmp / ".complete").write_text(archive.name, encoding="utf-8")
        _folder(tmp, archive)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except (tarfile.TarError, lzma.LZMAError, EOFError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        why = " ".join(str(exc).split())  # tarfile's message spans lines: one line
        raise RecordError(str(archive), f"not a readable CinC 2017 archive: {why}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _folder(target, archive)


def _folder(root: Path, archive: Path) -> Path:
    for cand in (root / "training2017", root):
        if (cand / "REFERENCE.csv").is_file():
            return cand
    raise RecordError(str(archive), "holds no training2017/REFERENCE.csv (not the CinC 2017 training set)")


def read_reference(folder: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``[(recording, label)]`` from ``REFERENCE.csv`` (header line skipped; labels in N A O ~)."""
    path = Path(folder) / "REFERENCE.csv"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise RecordError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    out: list[tuple[str, str]] = []
    for no, line in enumerate(lines, 1):
        parts = [p.strip() for p in line.split(",")]
        if not line.strip() or parts == ["data_source", "class"]:
            continue
        if len(parts) != 2 or parts[1] not in CINC_LABELS:
            raise RecordError(str(path), f"line {no}: expected 'A00001,N' with a label in {'/'.join(CINC_LABELS)}")
        out.append((parts[0], parts[1]))
    if not out:
        raise RecordError(str(path), "no labels")
    return out


def read_recording(folder: str | os.PathLike[str], name: str) -> tuple[np.ndarray, float]:
    """``(lead (n,) float64 mV, fs)`` of one recording."""
    import wfdb

    path = Path(folder) / name
    try:
        rec = wfdb.rdrecord(str(path), channels=[0])
    except Exception as exc:  # wfdb raises many kinds on damaged files
        raise RecordError(str(path), f"cannot read recording: {exc}") from exc
    x = np.nan_to_num(np.asarray(rec.p_signal[:, 0], dtype=np.float64))
    return x, float(rec.fs)
