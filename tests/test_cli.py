"""The command line: version, help on every command, config errors as one line per problem, exit 2."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from pedstream import __version__
from pedstream.cli import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        yield prefix + (name,)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))


def test_version() -> None:
    res = CliRunner().invoke(cli, ["--version"])
    assert res.exit_code == 0
    assert __version__ in res.output


@pytest.mark.parametrize("path", list(_commands(cli)), ids=lambda p: " ".join(p))
def test_help_on_every_command(path: tuple[str, ...]) -> None:
    res = CliRunner().invoke(cli, [*path, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output


def test_bad_config_exits_2_with_one_line_per_problem(tmp_path) -> None:
    res = CliRunner().invoke(cli, ["data", "inspect", str(tmp_path), "--set", "signal.fs=abc",
                                   "--set", "foo.bar=1"])
    assert res.exit_code == 2
    lines = [l for l in res.output.splitlines() if l.strip()]
    assert len(lines) == 2
    assert any("signal.fs" in l for l in lines) and any("foo: unknown key" in l for l in lines)
    assert "Traceback" not in res.output
