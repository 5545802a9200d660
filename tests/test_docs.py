"""The documentation site builds as CI builds it (``mkdocs build --strict``: no broken link or anchor,
no page left out of the navigation, the API reference resolves), its generated pages are current,
and no document speaks of how the work was organised."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.rglob("*.md"))]


def test_site_builds_strict_without_warnings(tmp_path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    log = res.stdout + res.stderr
    warnings = [ln for ln in log.splitlines() if ln.lstrip().startswith(("WARNING", "ERROR"))]
    assert res.returncode == 0 and not warnings, log[-4000:]
    site = tmp_path / "site"
    for page in ("index.html", "getting-started/index.html", "user-guide/configuration/index.html",
                 "reference/api/index.html", "models/monitor-model/index.html", "benchmarks/index.html",
                 "changelog/index.html"):
        assert (site / page).is_file(), page
    api = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    import pedstream

    for name in pedstream.__all__:  # every public name has its entry in the API reference
        if name != "__version__":
            assert re.search(rf'id="pedstream\.[\w.]*\.{name}"', api), name
    changelog = (site / "changelog" / "index.html").read_text(encoding="utf-8")
    assert "Unreleased" in changelog  # CHANGELOG.md is included, not a dangling snippet


def test_generated_pages_are_current() -> None:
    res = subprocess.run([sys.executable, str(DOCS / "gen_pages.py"), "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_configuration_reference_lists_every_key() -> None:
    from pedstream.config import Config

    page = (DOCS / "user-guide" / "configuration.md").read_text(encoding="utf-8")
    for section, field in Config.model_fields.items():
        assert f"## `[{section}]`" in page, section
        for key in field.annotation.model_fields:
            assert f"| `{key}` |" in page, f"{section}.{key}"


def test_documents_speak_of_the_software_not_of_the_work() -> None:
    bad = re.compile(r"\b(issues?|tickets?)\s*#?\d+", flags=re.I)
    found = [f"{p.relative_to(ROOT)}:{n}: {ln.strip()}" for p in _documents()
             for n, ln in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if bad.search(ln)]
    assert not found, "\n".join(found)


def test_readme_is_short_and_points_into_the_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 160
    links = re.findall(r"\]\(((?:docs/|CHANGELOG|DEVELOPERS)[^)#\s]*)", readme)
    assert links and all((ROOT / link).exists() for link in links), links
    assert "mkdocs serve" in readme
