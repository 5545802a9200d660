"""One typed configuration, validated once at start.

The sections are in :mod:`pedstream.config_offline` (data, training) and :mod:`pedstream.config_monitor`
(the running monitor); they are re-exported here, the one place to import them from.

``load_config(path, overrides)`` reads ``config.toml`` with :mod:`tomllib`, applies ``--set
key.sub=value`` overrides, and validates everything with pydantic (unknown keys rejected). Problems
are raised as one :class:`~pedstream.errors.ConfigError` that lists every bad key path.
"""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pedstream.errors import ConfigError
from pedstream.config_offline import (  # noqa: F401 - re-exported: import the sections from here
    FilterConfig,
    LabelScheme,
    LabelsConfig,
    LossName,
    LossSection,
    MixSection,
    ModelSection,
    RhythmMap,
    Section,
    SegmentConfig,
    SignalConfig,
    SplitConfig,
    SynthConfig,
    TrainSection,
)
from pedstream.config_monitor import (  # noqa: F401 - re-exported
    AlarmsSection,
    ClusterSection,
    DemoSection,
    HL7Section,
    HRBand,
    LSLSection,
    MQTTSection,
    RecordSection,
    ReplaySection,
    RhythmContextSection,
    RuntimeSection,
    StreamSection,
    WebSection,
)

__all__ = [
    "Config",
    "SignalConfig",
    "FilterConfig",
    "LabelScheme",
    "LabelsConfig",
    "RhythmMap",
    "SegmentConfig",
    "SplitConfig",
    "SynthConfig",
    "ModelSection",
    "TrainSection",
    "LossSection",
    "MixSection",
    "LossName",
    "RuntimeSection",
    "StreamSection",
    "LSLSection",
    "MQTTSection",
    "ReplaySection",
    "AlarmsSection",
    "HRBand",
    "DemoSection",
    "HL7Section",
    "RecordSection",
    "ClusterSection",
    "RhythmContextSection",
    "default_config_path",
    "load_config",
    "parse_override",
]



class Config(Section):
    signal: SignalConfig = SignalConfig()
    filters: FilterConfig = FilterConfig()
    labels: LabelsConfig
    segments: SegmentConfig = SegmentConfig()
    split: SplitConfig = SplitConfig()
    synth: SynthConfig = SynthConfig()
    model: ModelSection = ModelSection()
    train: TrainSection = TrainSection()
    loss: LossSection = LossSection()
    mix: MixSection = MixSection()
    runtime: RuntimeSection = RuntimeSection()
    stream: StreamSection = StreamSection()
    lsl: LSLSection = LSLSection()
    mqtt: MQTTSection = MQTTSection()
    replay: ReplaySection = ReplaySection()
    alarms: AlarmsSection = AlarmsSection()
    demo: DemoSection = DemoSection()
    hl7: HL7Section = HL7Section()
    record: RecordSection = RecordSection()
    cluster: ClusterSection = ClusterSection()
    rhythm_context: RhythmContextSection = RhythmContextSection()
    web: WebSection = WebSection()


def default_config_path() -> Path:
    """The packaged default (a copy of the repository's ``config.toml``)."""
    repo = Path(__file__).resolve().parent.parent / "config.toml"
    if repo.is_file():
        return repo
    return Path(str(resources.files("pedstream") / "default_config.toml"))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.c=value"`` -> (["a","b","c"], value). The value is read as TOML, else as a string."""
    if "=" not in text:
        raise ConfigError([(text, "an override must look like section.key=value")], source="--set")
    key, raw = text.split("=", 1)
    path = [p.strip() for p in key.strip().split(".")]
    if not all(path):
        raise ConfigError([(key, "empty key component")], source="--set")
    _check_bounded(text, where=key.strip()[:80], source="--set", limit=MAX_OVERRIDE_CHARS)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return path, value


MAX_CONFIG_BYTES = 1 << 20  # a configuration file larger than this is refused (it is not one)
MAX_OVERRIDE_CHARS = 4096
MAX_NESTING = 32  # arrays/tables nested deeper are refused before parsing


def _check_bounded(text: str, *, where: str, source: str, limit: int) -> None:
    """Refuse, before parsing, text longer than ``limit`` or nesting ``[``/``{`` deeper than MAX_NESTING."""
    if len(text) > limit:
        raise ConfigError([(where, f"{len(text)} characters, over the limit of {limit}")], source=source)
    depth = top = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            top = max(top, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    if top > MAX_NESTING:
        raise ConfigError([(where, f"nests {top} levels deep, over the limit of {MAX_NESTING}")], source=source)


def _read_text_bounded(src: Path) -> str:
    """A configuration file's text, read at most MAX_CONFIG_BYTES (+1) bytes (``/dev/zero`` is refused)."""
    try:
        with open(src, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([("(file)", f"cannot read: {exc.strerror or exc}")], source=str(src)) from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([("(file)", f"larger than {MAX_CONFIG_BYTES // 1024} KiB: not a configuration file")],
                          source=str(src))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([("(file)", "not UTF-8 text: not a configuration file")], source=str(src)) from exc
    _check_bounded(text, where="(syntax)", source=str(src), limit=MAX_CONFIG_BYTES)
    return text


def _apply(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError([(".".join(path), f"{part!r} is not a table")], source="--set")
    node[path[-1]] = value


def _format_errors(err: ValidationError) -> list[tuple[str, str]]:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {json.dumps(e['input'], default=str)})"
        out.append((loc, msg))
    return out


def _read_toml(src: Path, depth: int = 0) -> dict[str, Any]:
    """The TOML of ``src``; a top-level ``extends = "default"`` (the packaged default) or ``extends =
    "PATH"`` (relative to ``src``) loads that file first and deep-merges this one over it."""
    text = _read_text_bounded(src)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("(syntax)", str(exc))], source=str(src)) from exc
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str) or depth >= 4:
        raise ConfigError([("extends", "must be \"default\" or a path, at most 4 files deep")], source=str(src))
    base_path = default_config_path() if base == "default" else (src.parent / base)
    return _merge(_read_toml(base_path, depth + 1), data)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    src = Path(path) if path is not None else default_config_path()
    data = _read_toml(src)
    applied: list[tuple[list[str], str]] = []
    for ov in overrides:
        keys, value = parse_override(ov)
        _apply(data, keys, value)
        applied.append((keys, ov.strip()))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = _format_errors(exc)
        raise ConfigError(problems, source=str(src),
                          sources=[_blame(key, applied, str(src)) for key, _ in problems]) from exc


def _blame(key: str, applied: list[tuple[list[str], str]], file: str) -> str:
    """``--set KEY=VALUE`` when the bad key came from an override (the last one that touched it), else the file."""
    loc = key.split(".")
    for keys, text in reversed(applied):
        n = min(len(loc), len(keys))
        if loc[:n] == keys[:n]:
            return f"--set {text}"
    return file