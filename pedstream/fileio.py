"""Atomic file output: a result file is either the old one or the whole new one, never half written.

Each file is written to a temporary file beside its target (same folder, so ``os.replace`` is atomic)
and moved into place only after every file of the group was written; the temporaries get an
ordinary file's mode (``0666 & ~umask``; ``tempfile.mkstemp`` would leave them 0600).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["replace_atomically", "write_json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_atomically(writers: Mapping[Path, Callable[[Path], None]]) -> None:
    """Call each ``writer(tmp)`` with a temporary path beside its target; only when every one succeeded
    move them all into place (else remove the temporaries and re-raise). OSError names the target."""
    tmps: dict[Path, Path] = {}
    try:
        for target, writer in writers.items():
            target = Path(target)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
                os.close(fd)
                os.chmod(name, 0o666 & ~_umask())
            except OSError as exc:
                raise OSError(exc.errno, f"cannot write {target}: {exc.strerror or exc}") from exc
            tmps[target] = Path(name)
            writer(tmps[target])
        for target, tmp in tmps.items():
            os.replace(tmp, target)
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)


def write_json(path: str | Path, obj: Any, *, indent: int = 1) -> Path:
    """Write ``obj`` as indented JSON (and a final newline) to ``path`` atomically."""
    path = Path(path)

    def dump(tmp: Path) -> None:
        tmp.write_text(json.dumps(obj, indent=indent) + "\n", encoding="utf-8")

    replace_atomically({path: dump})
    return path
