"""Every module of pedstream/ with a mirror test file (``pedstream/a/b.py`` -> ``tests/a/test_b.py``) or an
entry in ``tests/test_map.toml`` naming the test files that cover it (``[covered_by]``) or why it needs none
(``[no_logic]``); every named file exists and no entry is stale."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "tests" / "test_map.toml"


def modules() -> dict[str, Path]:
    """Dotted module name -> its mirror test path, for every module of the package with code of its own
    (``__init__.py`` and the packaged assets excluded)."""
    out = {}
    for path in sorted((ROOT / "pedstream").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if path.name == "__init__.py" or "assets" in rel.parts or "__pycache__" in rel.parts:
            continue
        inner = rel.relative_to("pedstream")
        out[".".join(rel.with_suffix("").parts)] = ROOT / "tests" / inner.parent / f"test_{inner.name}"
    return out


def show(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def problems(mods: dict[str, Path], table: dict) -> list[str]:
    covered: dict = table.get("covered_by", {})
    no_logic: dict = table.get("no_logic", {})
    out = []
    unknown = set(table) - {"covered_by", "no_logic"}
    if unknown:
        out.append(f"tests/test_map.toml: unknown tables {sorted(unknown)} (only [covered_by] and [no_logic])")
    for name in sorted(covered.keys() & no_logic.keys()):
        out.append(f"{name}: listed both in [covered_by] and in [no_logic]")
    for name, mirror in mods.items():
        if not mirror.is_file() and name not in covered and name not in no_logic:
            out.append(f"{name}: no {show(mirror)} and no entry in tests/test_map.toml")
    for name in sorted(covered.keys() | no_logic.keys()):
        if name not in mods:
            out.append(f"{name}: listed in tests/test_map.toml but there is no such module (stale entry)")
        elif mods[name].is_file():
            out.append(f"{name}: has its mirror test {show(mods[name])}; remove its entry")
    for name, files in sorted(covered.items()):
        if not isinstance(files, list) or not files:
            out.append(f"{name}: [covered_by] needs a non-empty list of test files")
            continue
        for f in files:
            p = ROOT / f
            if not (f.startswith("tests/") and p.name.startswith("test_") and p.suffix == ".py" and p.is_file()):
                out.append(f"{name}: {f} is not a test file of tests/")
    for name, reason in sorted(no_logic.items()):
        if not isinstance(reason, str) or len(reason.strip()) < 10:
            out.append(f"{name}: [no_logic] needs a reason (a sentence)")
    return out


def test_every_module_has_a_mirror_test_or_a_current_entry() -> None:
    table = tomllib.loads(MAP.read_text(encoding="utf-8"))
    found = problems(modules(), table)
    assert not found, "\n".join(found)


def test_the_check_finds_each_kind_of_problem(tmp_path: Path) -> None:
    """The checker itself, on module tables made up here (the real tree is not changed)."""
    mirror = tmp_path / "test_has.py"
    mirror.write_text("", encoding="utf-8")
    mods = {"pedstream.has": mirror, "pedstream.bare": tmp_path / "test_bare.py",
            "pedstream.listed": tmp_path / "test_listed.py", "pedstream.plain": tmp_path / "test_plain.py"}
    good = {"covered_by": {"pedstream.listed": ["tests/test_cli.py"], "pedstream.bare": ["tests/test_cli.py"]},
            "no_logic": {"pedstream.plain": "constants only, read by the commands"}}
    assert problems(mods, good) == []
    del good["covered_by"]["pedstream.bare"]
    bare = f"pedstream.bare: no {show(mods['pedstream.bare'])} and no entry in tests/test_map.toml"
    assert problems(mods, good) == [bare]
    bad = {"covered_by": {"pedstream.bare": ["tests/no_such_test.py"], "pedstream.listed": ["tests/test_cli.py"],
                          "pedstream.has": ["tests/test_cli.py"], "pedstream.gone": ["tests/test_cli.py"]},
           "no_logic": {"pedstream.plain": ""}}
    found = "\n".join(problems(mods, bad))
    assert "tests/no_such_test.py is not a test file" in found
    assert "pedstream.has: has its mirror test" in found
    assert "pedstream.gone: listed in tests/test_map.toml but there is no such module" in found
    assert "pedstream.plain: [no_logic] needs a reason" in found
