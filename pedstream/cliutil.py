"""What every ``pedstream`` command shares: ``--config``/``--set`` loaded once (:func:`with_config`)
and one ``error:`` line per domain error (:func:`fail`).

Its own module so the command groups defined outside :mod:`pedstream.cli` (``bench``, ``score``) use
the same code without importing ``pedstream.cli`` (under ``python -m pedstream.cli`` that module is
``__main__``, and importing it again would build the CLI twice).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click

from pedstream.errors import PedstreamError

__all__ = ["fail", "with_config"]


def fail(exc: PedstreamError) -> None:
    """One ``error:`` line per line of the message, then exit with the error's code."""
    for line in str(exc).splitlines() or [type(exc).__name__]:
        click.echo(f"error: {line}", err=True)
    sys.exit(exc.exit_code)


def with_config(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--config``/``--set``, load and validate the config once, pass it as ``cfg``."""

    @click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Configuration file (default: the packaged config.toml).")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                  help="Override one configuration key, e.g. --set filters.mains_hz=60 (repeatable).")
    @functools.wraps(fn)
    def wrapper(*args: Any, config_path: Path | None, overrides: tuple[str, ...], **kwargs: Any) -> Any:
        from pedstream.config import load_config

        try:
            cfg = load_config(config_path, overrides)
            return fn(*args, cfg=cfg, **kwargs)
        except PedstreamError as exc:
            fail(exc)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper
