"""The terminal dashboard (rich): one row per stream plus a footer of engine figures.

:func:`render_dashboard` turns an :class:`~pedstream.stream.engine.EngineSnapshot` into a rich
renderable (testable with ``Console(record=True, width=...)``, no terminal needed);
:func:`run_dashboard` refreshes it with :class:`rich.live.Live` at ``hz`` until cancelled.
"""

from __future__ import annotations

import asyncio
import time

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pedstream.data.channels import CANONICAL_CHANNELS
from pedstream.stream.engine import Engine, EngineSnapshot, StreamStatus

__all__ = ["render_dashboard", "run_dashboard"]

_ALARM_STYLE = {"high": "bold white on red", "medium": "bold black on yellow", "advisory": "cyan", "none": "green"}
_QUALITY_STYLE = {"ok": "green", "warm-up": "yellow", "loss": "bold red", "clipped": "magenta", "error": "bold red"}


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 60}:{s % 60:02d}" if s < 3600 else f"{s // 3600}h{(s % 3600) // 60:02d}"


def _row(st: StreamStatus, now: float) -> list[Text | str]:
    call = Text("-" if st.call is None else f"{st.call} {st.p:.2f}")
    hr = "-" if st.hr is None else f"{st.hr:.0f}"
    since = None if st.rhythm_since is None else now - st.rhythm_since
    if st.alarm is None:
        alarm = Text("none", style=_ALARM_STYLE["none"])
    else:
        label, prio = st.alarm
        alarm = Text(f"{prio.upper()} {label}", style=_ALARM_STYLE.get(prio, "bold"))
    mods = "+".join(m for m, on in (("ECG", st.has_ecg), ("IEGM", st.has_iegm)) if on) or "-"
    chans = f"{st.n_present}/{len(CANONICAL_CHANNELS)} {mods}"
    quality = Text(st.quality, style=_QUALITY_STYLE.get(st.quality, ""))
    if st.error:
        quality = Text(f"error: {st.error}"[:60], style="bold red")
    units = "mV?" if st.units_assumed else ""
    return [st.stream_id, st.source, call, hr, _duration(since), alarm, chans, quality, str(st.dropped), units]


def render_dashboard(snap: EngineSnapshot, *, now: float | None = None, title: str = "pedstream monitor") -> Group:
    """The dashboard as a rich renderable: banner, stream table, footer."""
    now = time.monotonic() if now is None else now
    banner = Text(snap.banner, style="bold yellow on dark_red" if "SIMULATED" in snap.banner else "bold")
    table = Table(title=title, expand=True, header_style="bold")
    for name, kw in (("stream", {}), ("source", {}), ("rhythm (p)", {}), ("HR", {"justify": "right"}),
                     ("in rhythm", {"justify": "right"}), ("alarm", {}), ("channels", {}), ("signal", {}),
                     ("dropped", {"justify": "right"}), ("units", {})):
        table.add_column(name, **kw)
    for st in sorted(snap.streams, key=lambda s: s.stream_id):
        table.add_row(*_row(st, now))
    if not snap.streams:
        table.add_row("(waiting for streams)", *[""] * 9)
    footer = Text(
        f"streams {len(snap.streams)} | windows/s {snap.windows_per_s:.1f} | batch {_ms(snap.batch_mean)} | "
        f"inference ms p50 {_ms(snap.infer_p50)} p99 {_ms(snap.infer_p99)} | "
        f"end-to-end ms p50 {_ms(snap.e2e_p50)} p99 {_ms(snap.e2e_p99)} | queue {snap.queue_depth} | "
        f"classified {snap.windows_total} | dropped {snap.dropped_total} | alarms {snap.alarms_total} | "
        f"up {_duration(snap.uptime_s)}"
    )
    legend = Text("units: 'mV?' = stream declared no units, millivolts assumed", style="dim")
    return Group(Panel(banner), table, footer, legend)


async def run_dashboard(engine: Engine, *, hz: float = 4.0, console: Console | None = None) -> None:
    """Refresh the live dashboard of ``engine`` at ``hz`` until cancelled."""
    console = console or Console()
    period = 1.0 / hz
    with Live(render_dashboard(engine.snapshot()), console=console, refresh_per_second=hz, transient=False) as live:
        while True:
            await asyncio.sleep(period)  # pacing of a display refresh, not waiting for a condition
            live.update(render_dashboard(engine.snapshot()))
