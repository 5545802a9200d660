"""``pedstream record repair``: complete the EDF+ recordings a crash cut short (pedstream.outputs.edfrepair)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pedstream.cliutil import with_config

__all__ = ["record"]


@click.group("record")
def record() -> None:
    """EDF+ recordings of `pedstream run --record DIR`."""


@record.command("repair")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@with_config
def record_repair(cfg: Any, paths: tuple[Path, ...]) -> None:
    """Rewrite the recordings in PATHS (folders, journals or .edf files) that a crash left unfinished into
    complete EDF+ files: every whole data record and the journal's annotations. Closed files are left as
    they are. Exit 1 when a file could not be repaired."""
    from pedstream.errors import PedstreamError
    from pedstream.outputs.edfrepair import describe, repair

    results = repair(list(paths))
    for line in describe(results):
        click.echo(line, err=True)
    bad = [p for p, what in results if what.startswith("not repaired")]
    if bad:
        raise PedstreamError(f"{len(bad)} recording(s) could not be repaired: {', '.join(map(str, bad))}")
