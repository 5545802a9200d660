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


def test_set_errors_name_the_override_not_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "default"\n[filters]\nmains_hz = "fifty"\n', encoding="utf-8")
    res = CliRunner().invoke(cli, ["data", "inspect", str(tmp_path), "--config", str(bad), "--set", "signal.fs=abc"])
    assert res.exit_code == 2
    lines = [l for l in res.output.splitlines() if l.strip()]
    assert any(l.startswith("error: --set signal.fs=abc: signal.fs: ") for l in lines), lines
    assert any(l.startswith(f"error: {bad}: filters.mains_hz: ") for l in lines), lines


def _help(*path: str) -> str:
    res = CliRunner().invoke(cli, [*path, "--help"], terminal_width=200)
    assert res.exit_code == 0
    return " ".join(res.output.split())


def test_help_texts_cover_every_command_and_option() -> None:
    assert "labels" in _help("data").split("Commands:")[0]  # the group's own line names every subcommand
    plot = _help("data", "plot")
    for opt in ("--start", "--seconds", "--out"):
        assert plot.split(opt, 1)[1].split("--", 1)[0].strip(" FLOAT") != ""
    assert "Folder to download" in _help("data", "fetch") and "Which subjects" in _help("data", "labels")
    assert "until Ctrl-C" not in _help("demo") and "demo.duration_s, 60" in _help("demo")
    assert "--epochs" in _help("train") and "--steps" in _help("train")
    for path in _commands(cli):  # every option of every command says what it does
        cmd = cli
        for name in path:
            cmd = cmd.commands[name]
        for p in cmd.params:
            if isinstance(p, click.Option) and p.name != "help":
                assert p.help, f"{' '.join(path)} {p.opts[0]} has no help text"
