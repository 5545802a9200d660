"""Alarm strips: each alarm onset's 10 s ECG+IEGM strip PNG, drawn in a worker thread
(:func:`pedstream.stream.alarms.save_strip`) so the event loop never waits on matplotlib. The engine
asks for a file name at the onset (it goes into the ``alarm_on`` event) and hands over the samples
once the post-onset part has arrived (:class:`~pedstream.stream.pipeline.ReadyStrip`)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pedstream.stream.alarms import save_strip
from pedstream.stream.pipeline import ReadyStrip

__all__ = ["StripWriter", "alarms_folder"]

log = logging.getLogger(__name__)


def alarms_folder(section: Any, *, events_path: Path | str | None = None, override: Path | str | None = None) -> Path:
    """Where the alarm strips go (absolute): ``override`` (``--alarms-dir``), else ``[alarms] dir``, else
    ``alarms`` beside the events file, else ``$XDG_DATA_HOME/pedstream/alarms`` (by default
    ``~/.local/share/pedstream/alarms``): never the folder a command happens to run in."""
    if override is not None:
        return Path(override).expanduser().resolve()
    if section.dir:
        return Path(section.dir).expanduser().resolve()
    if events_path is not None:
        return Path(events_path).expanduser().resolve().parent / "alarms"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser().resolve() / "pedstream" / "alarms"


class StripWriter:
    """Names and draws the alarm strips of one engine into ``alarms_dir``; ``paths`` lists those drawn."""

    def __init__(self, *, alarms_dir: Path | str, banner: str) -> None:
        self.alarms_dir = Path(alarms_dir)
        self.banner = banner
        self.paths: list[Path] = []
        self._tasks: set[asyncio.Task] = set()

    def path_for(self, stream_id: str, label: str) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S_%f")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{stream_id}_{label}")
        return self.alarms_dir / f"{safe}_{stamp}.png"

    def write(self, pipe: Any, strip: ReadyStrip) -> None:
        """Draw ``strip`` of ``pipe``'s stream (a :class:`~pedstream.stream.pipeline.StreamPipeline`) in a thread."""
        from pedstream.data.channels import CANONICAL_CHANNELS

        req = strip.request
        path = Path(req.t_iso)
        title = (f"{pipe.stream_id}  ALARM {req.label.upper()} ({req.priority})  {path.stem.rsplit('_', 2)[-2]}  "
                 f"HR {req.hr or pipe.heart_rate or float('nan'):.0f} bpm  — {self.banner}")

        async def _draw() -> None:
            try:
                await asyncio.to_thread(save_strip, path, data=strip.data, fs=pipe.fs, channel_names=CANONICAL_CHANNELS,
                                        present=pipe.present, onset_s=strip.onset_s, title=title,
                                        alarm_s=strip.alarm_s)
                self.paths.append(path)
            except Exception as exc:  # a failed drawing must not stop monitoring
                log.warning("alarm strip %s: %s", path, exc)

        task = asyncio.get_running_loop().create_task(_draw(), name=f"strip-{pipe.stream_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def finish(self, limit_s: float) -> None:
        """Wait (at most ``limit_s``) for the strips still being drawn; abandon the rest with an error line."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=limit_s)
        if late:
            log.error("%d alarm strip(s) not drawn within %g s of leaving; abandoned", len(late), limit_s)
            for t in late:
                t.cancel()
