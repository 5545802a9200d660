"""The quoted outputs of the README and the docs are the real ones: the model banner in the API examples,
the dashboard capture, the configuration error example, and the extras the set-up installs."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

import pedstream
from pedstream.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _block_after(text: str, marker: str) -> list[str]:
    """The lines of the first fenced block after ``marker`` in ``text``."""
    rest = text[text.index(marker):]
    start = rest.index("```")
    body = rest[rest.index("\n", start) + 1:]
    return body[:body.index("```")].rstrip("\n").splitlines()


def test_api_example_banner_comment_is_the_packaged_models_banner() -> None:
    banner = pedstream.load_model().banner
    for where, text in (("README.md", README), ("python-api.md", _page("user-guide/python-api.md"))):
        m = re.search(r"print\(model\.banner\)\s+# (.+?)(?: \.\.\.)?$", text, flags=re.M)
        assert m is not None, where
        assert banner.startswith(m.group(1)), (where, m.group(1), banner)


def test_dashboard_sample_is_the_capture_and_names_the_packaged_model() -> None:
    sample = [ln.rstrip() for ln in _block_after(_page("user-guide/dashboard.md"), "# Dashboard")]
    capture = [ln.rstrip() for ln in (DOCS / "dashboard.txt").read_text(encoding="utf-8").splitlines()]
    assert sample == [ln for ln in capture if ln.strip() or ln in sample], "dashboard.md sample != docs/dashboard.txt"
    assert sample[0].strip() == pedstream.load_model().banner


def test_config_error_example_is_what_the_cli_prints(tmp_path) -> None:
    block = _block_after(_page("user-guide/commands.md"), "and what was expected:")
    cmd = block[0].removeprefix("$ ").split()
    assert cmd[0] == "pedstream"
    args = [str(tmp_path) if a == "/tmp/s" else a for a in cmd[1:]]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2
    assert [ln for ln in res.output.splitlines() if ln.strip()] == block[1:]


def test_setup_line_names_the_extras_make_installs() -> None:
    extras = re.search(r"^EXTRAS \?= (\S+)$", (ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.M)
    assert extras is not None
    line = f'pip install -e ".[{extras.group(1)}]"'
    assert line in README
    assert line in _page("getting-started.md")
