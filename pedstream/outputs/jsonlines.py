"""The JSON lines sink: events as JSON lines to a file (by a thread of its own) or to stdout. The line
format is :class:`pedstream.events.MonitorEvent`'s (see :mod:`pedstream.events.monitor`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, TextIO

from pedstream.events import MonitorEvent

__all__ = ["JsonLinesSink"]

log = logging.getLogger(__name__)


class JsonLinesSink:
    """Append events as JSON lines to ``path`` (or write them to ``stream``, e.g. stdout). A file is
    written by its own thread (:class:`~pedstream.outputs.linewriter.LineWriter`): each line is in the
    file once written (``tail -f`` and crashed runs see it), a FIFO without a reader or a hung path
    never blocks the monitor, and a full or read-only disk is reported once (``on_technical``, a
    ``technical_alarm`` event ``events_unwritable``), counted (:meth:`report`) and retried."""

    def __init__(self, path: Path | str | None = None, *, stream: TextIO | None = None) -> None:
        if (path is None) == (stream is None):
            raise ValueError("JsonLinesSink needs exactly one of path or stream")
        self.path = None if path is None else Path(path)
        self._stream = stream
        self._fh: TextIO | None = None
        self._writer: Any = None
        self.count = 0
        self.on_technical: Any = None  # set by the outputs layer: receives technical_alarm events

    async def __aenter__(self) -> "JsonLinesSink":
        if self.path is not None:
            from pedstream.outputs.linewriter import LineWriter

            self._writer = LineWriter(self.path, on_fault=self._fault)
            self._writer.start()
        else:
            self._fh = self._stream
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            await self._writer.close()
        self._fh = None

    def _fault(self, message: str | None) -> None:
        if message is not None:
            log.error("events file: %s; events go on to the other outputs, writing is retried", message)
        else:
            log.warning("events file %s: writing again", self.path)
        if self.on_technical is not None:
            self.on_technical(MonitorEvent(stream="pedstream", kind="technical_alarm", label="events_unwritable",
                                           extra={"state": "off" if message is None else "on", "output": "events",
                                                  "message": message or f"{self.path}: writing again"}))

    async def wait_written(self, n: int, timeout: float = 10.0) -> None:
        """Wait until ``n`` lines of this run are in the file."""
        if self._writer is not None:
            await self._writer.wait_written(n, timeout)

    def report(self) -> dict[str, Any] | None:
        """``{"output", "path", "written", "not_written", "fault"}`` of a file sink (None for a stream)."""
        w = self._writer
        if w is None:
            return None
        return {"output": "events", "path": str(self.path), "written": w.written, "not_written": w.not_written,
                "fault": w.fault, "faults": w.faults}

    def emit(self, event: MonitorEvent) -> None:
        if self._writer is not None:
            self._writer.write(event.to_json())
            self.count += 1
            return
        if self._fh is None:
            return
        self._fh.write(event.to_json() + "\n")
        self._fh.flush()
        self.count += 1

    @classmethod
    def stdout(cls) -> "JsonLinesSink":
        return cls(stream=sys.stdout)
