"""The typed configuration: defaults validate, overrides apply, every problem is named by key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from pedstream.config import default_config_path, load_config, parse_override
from pedstream.errors import ConfigError


def test_default_config_validates() -> None:
    cfg = load_config()
    assert cfg.signal.fs == 977.0
    assert len(cfg.signal.channels) == 19
    assert cfg.labels.scheme == "leipzig"
    assert list(cfg.labels.active.classes)[:3] == ["sinus", "preexcited", "rbbb"]
    assert "aami" in cfg.labels.schemes


def test_packaged_default_is_the_repository_config() -> None:
    packaged = Path(__file__).resolve().parent.parent / "pedstream" / "default_config.toml"
    assert packaged.read_text() == default_config_path().read_text()


def test_override_types_are_read_as_toml() -> None:
    assert parse_override("filters.mains_hz=60") == (["filters", "mains_hz"], 60)
    assert parse_override("labels.scheme=aami") == (["labels", "scheme"], "aami")
    assert parse_override('segments.mode="beat"') == (["segments", "mode"], "beat")
    cfg = load_config(overrides=["filters.mains_hz=60", "labels.scheme=aami", "segments.mode=beat"])
    assert cfg.filters.mains_hz == 60.0
    assert cfg.labels.active.classes["V"] == ["V", "E"]
    assert cfg.segments.mode == "beat"


def test_every_problem_is_reported_with_its_key_path() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["signal.fs=-3", "segments.mode=sideways", "nonsense.key=1", "filters.typo=2"])
    keys = {k for k, _ in info.value.problems}
    assert {"signal.fs", "segments.mode", "nonsense", "filters.typo"} <= keys
    assert info.value.exit_code == 2
    for line in str(info.value).splitlines():
        assert line.count(":") >= 2  # "<file>: <key>: <what was expected>"


def test_unknown_scheme_and_bad_alias_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="labels"):
        load_config(overrides=["labels.scheme=nope"])
    with pytest.raises(ConfigError, match="alias"):
        load_config(overrides=['signal.aliases={ MLII = "Lead2" }'])


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[signal\nfs = 1")
    with pytest.raises(ConfigError, match="syntax"):
        load_config(bad)
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(overrides=["no-equals-sign"])


def test_extends_merges_over_a_base_file(tmp_path):
    from pedstream.config import load_config
    from pedstream.errors import ConfigError

    base = tmp_path / "base.toml"
    base.write_text('extends = "default"\n[signal]\nfs = 500.0\n[filters]\nmains_hz = 60.0\n')
    child = tmp_path / "child.toml"
    child.write_text('extends = "base.toml"\n[filters]\necg_lowpass_hz = 35.0\n')
    cfg = load_config(child, ["filters.notch_q=20"])
    assert cfg.signal.fs == 500.0 and cfg.filters.mains_hz == 60.0 and cfg.filters.ecg_lowpass_hz == 35.0
    assert cfg.filters.notch_q == 20 and "aami" in cfg.labels.schemes
    loop = tmp_path / "loop.toml"
    loop.write_text('extends = "loop.toml"\n')
    with pytest.raises(ConfigError, match="extends"):
        load_config(loop)
