"""Domain exceptions. Each carries the fields a user needs to act on it and renders as one line.

Raise them ``from`` the underlying cause; the CLI prints ``str(exc)`` (never a traceback) and exits
with ``exc.exit_code``: 2 for bad input the user can fix (configuration, records, annotations,
channels, model files), 3 when a monitor run had nothing to monitor (no broker reached, no stream
seen), 4 when a run ended with output not written or alarm messages undelivered, 1 for everything
else (a failure while running). Ctrl-C is 130.
"""

from __future__ import annotations

__all__ = [
    "PedstreamError",
    "ConfigError",
    "RecordError",
    "AnnotationError",
    "ChannelError",
    "ModelError",
    "ModelMismatchError",
    "StreamError",
    "PayloadError",
    "FetchError",
    "NothingMonitoredError",
    "OutputsIncompleteError",
]


class PedstreamError(Exception):
    """Base class: a one-line, user-facing message."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(PedstreamError):
    """A configuration problem. ``problems`` holds ``(key_path, what_was_expected)`` pairs."""

    exit_code = 2

    def __init__(self, problems: list[tuple[str, str]], *, source: str = "config",
                 sources: list[str] | None = None) -> None:
        """``sources``: one per problem where they differ (e.g. ``--set signal.fs=abc`` beside the file)."""
        self.problems = problems
        self.source = source
        self.sources = list(sources) if sources is not None else [source] * len(problems)
        lines = [f"{src}: {key}: {msg}" for src, (key, msg) in zip(self.sources, problems)]
        super().__init__("\n".join(lines))


class RecordError(PedstreamError):
    """A WFDB record that cannot be read or does not make sense."""

    exit_code = 2

    def __init__(self, record: str, reason: str) -> None:
        self.record = record
        self.reason = reason
        super().__init__(f"record {record}: {reason}")


class AnnotationError(PedstreamError):
    exit_code = 2

    def __init__(self, record: str, reason: str) -> None:
        self.record = record
        self.reason = reason
        super().__init__(f"annotations of {record}: {reason}")


class ChannelError(PedstreamError):
    """Channel names that cannot be mapped onto the canonical layout."""

    exit_code = 2

    def __init__(self, where: str, reason: str, *, channels: list[str] | None = None) -> None:
        self.where = where
        self.reason = reason
        self.channels = list(channels or [])
        super().__init__(f"{where}: {reason}")


class ModelError(PedstreamError):
    """A model file (checkpoint or ONNX) that is missing, malformed or does not fit."""

    exit_code = 2

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"model {path}: {reason}")


class ModelMismatchError(ModelError):
    """The model's embedded metadata disagrees with the engine's configuration."""

    def __init__(self, path: str, field: str, expected: object, got: object) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(path, f"metadata field {field!r} is {got!r}, configuration expects {expected!r}")


class StreamError(PedstreamError):
    """A live stream misbehaved (bad metadata, gap, unknown channels...)."""

    def __init__(self, stream: str, reason: str) -> None:
        self.stream = stream
        self.reason = reason
        super().__init__(f"stream {stream}: {reason}")


class PayloadError(StreamError):
    """A data payload that cannot be decoded."""

    def __init__(self, stream: str, reason: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(stream, reason if field is None else f"{field}: {reason}")


class FetchError(PedstreamError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)


class NothingMonitoredError(PedstreamError):
    """A monitor run ended without monitoring anything: no broker reached, or no stream ever seen."""

    exit_code = 3


class OutputsIncompleteError(PedstreamError):
    """A monitor run ended with output not written (storage faults) or alarm messages undelivered."""

    exit_code = 4
