"""``pedstream central --web``: the web station over the whole ward of Ray monitor workers.

The ward comes from the broker as for the terminal central station
(:class:`~pedstream.cluster.central.Central`: every worker's events and retained alarm states); the
waveforms from the same broker, where the streams are published (an
:class:`~pedstream.transports.mqtt.source.MQTTSource` whose queue only feeds the station's display
rings: nothing is classified here). Acknowledge/silence events go to the central station's sinks
(``--events``, stdout with ``--headless``) and to every screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pedstream.events import MonitorEvent
from pedstream.config import Config

__all__ = ["CentralView", "central_web_command"]


class CentralView:
    """What the web station reads of a monitor, made from a :class:`Central` (tile states, the
    retained alarm states, the sinks that record actions)."""

    banner = "central station: every stream of every monitor worker (pedstream run --workers)"
    alarms_dir = None

    def __init__(self, central: Any, station: Any) -> None:
        self.central = central
        self.station = station
        self.stale_s = float(central.cfg.cluster.stale_after_s)

    def snapshot(self) -> SimpleNamespace:
        now = time.monotonic()
        streams = []
        for row in self.central.rows.values():
            self.station.board.sync(row.stream, row.alarms)
            stale = row.last_seen is not None and now - row.last_seen > self.stale_s
            streams.append(SimpleNamespace(
                stream_id=row.stream, call=row.call, p=row.p, hr=row.hr, rhythm_since=None, pvc_per_min=None,
                pac_per_min=None, stalled=f"no event for {self.stale_s:g} s" if stale else None, error=None,
                quality=row.quality))
        return SimpleNamespace(streams=streams)

    def _emit(self, ev: MonitorEvent) -> None:
        for sink in self.central.sinks:
            sink.emit(ev)


async def serve_central(cfg: Config, service: Any, *, sinks: list[Any], stop: asyncio.Event,
                        duration: float | None) -> Any:
    """Run :class:`Central`, the waveform source and the web server until ``stop`` or ``duration``."""
    from pedstream.cluster.central import Central
    from pedstream.transports.mqtt.source import MQTTSource

    station = service.station
    queue = station.queue()
    source = MQTTSource(cfg.mqtt, events=queue)

    async def drain() -> None:  # the station saw each event as it was queued; nothing else reads them
        while True:
            await queue.get()

    async with Central(cfg=cfg, sinks=[*sinks, station]) as central, source:
        tasks = [asyncio.create_task(drain(), name="web-drain"),
                 asyncio.create_task(service.serve(CentralView(central, station)), name="web")]
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration):
                    await asyncio.wait([asyncio.ensure_future(stop.wait()), tasks[1]], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return central


def central_web_command(cfg: Any, *, bind: str | None, duration: float | None, headless: bool,
                        events_path: Path | None) -> dict[str, Any]:
    """``pedstream central --web``: the web station of the ward (the URL and any one-time login on stderr)."""
    from pedstream.cluster.central import central_sinks, require_broker
    from pedstream.monitor.assembly import stop_on_signals
    from pedstream.errors import ConfigError

    try:
        from pedstream.web.server import WebService
    except ImportError as exc:
        raise ConfigError([("--web", f"needs the web extra (pip install -e '.[web]'): {exc}")],
                          source="pedstream central") from exc

    require_broker(cfg)
    service = WebService(cfg, bind=bind)
    for line in service.intro():
        print(line, file=sys.stderr, flush=True)
    sinks = central_sinks(events_path, headless)
    interrupted: list[bool] = []

    async def main() -> Any:
        return await serve_central(cfg, service, sinks=sinks, stop=stop_on_signals(interrupted), duration=duration)

    summary = asyncio.run(main()).summary()
    print("summary: " + json.dumps(summary), file=sys.stderr)
    if interrupted:
        raise KeyboardInterrupt
    return summary
