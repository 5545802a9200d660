"""The layering is checked, not only written down: import-linter's contracts in pyproject.toml
(``[tool.importlinter]``) hold for the whole package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    exe = Path(sys.executable).parent / "lint-imports"
    if not exe.is_file() and shutil.which("lint-imports") is None:
        pytest.fail("lint-imports not installed (the dev extra has import-linter)")
    res = subprocess.run([str(exe) if exe.is_file() else "lint-imports", "--no-cache"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout
