"""The terminal dashboard (rich): one row per stream plus a footer of engine figures.

With a beat model loaded a ``PVC/PAC min`` column shows each stream's PVC/min and PAC/min (V and S
beats in the last 60 s of stream time; ``err`` when that stream's beat path failed).

:func:`render_dashboard` turns an :class:`~pedstream.monitor.engine.EngineSnapshot` into a rich
renderable (testable with ``Console(record=True, width=...)``, no terminal needed);
:func:`run_dashboard` refreshes it with :class:`rich.live.Live` at ``hz`` until cancelled;
:func:`export_dashboard` writes one frame as SVG or text (the README capture, ``--capture FILE``).
"""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any, Callable

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pedstream.data.channels import CANONICAL_CHANNELS
from pedstream.events import EngineSnapshot, SnapshotSource, StreamStatus

__all__ = ["dashboard_console", "render_dashboard", "run_dashboard", "export_dashboard"]

_ALARM_STYLE = {"high": "bold white on red", "medium": "bold black on yellow", "advisory": "cyan", "none": "green"}
_QUALITY_STYLE = {"ok": "green", "warm-up": "yellow", "loss": "bold red", "clipped": "magenta", "error": "bold red"}


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 60}:{s % 60:02d}" if s < 3600 else f"{s // 3600}h{(s % 3600) // 60:02d}"


def _alarm_cell(st: StreamStatus, now: float) -> Text:
    """Active alarm (``HIGH vt``, ``+n`` more, in its priority colour), else the last one that ended
    (``ended 0:12 ago avrt``, dim), else ``none``."""
    if st.alarm is not None:
        label, prio = st.alarm
        more = f" +{st.alarms_active - 1}" if st.alarms_active > 1 else ""
        return Text(f"{prio.upper()} {label}{more}", style=_ALARM_STYLE.get(prio, "bold"))
    if st.last_alarm is not None and st.last_alarm_ended is not None:
        label, prio = st.last_alarm
        return Text(f"ended {_duration(max(0.0, now - st.last_alarm_ended))} ago {label}", style="dim")
    return Text("none", style=_ALARM_STYLE["none"])


def _call_cell(st: StreamStatus) -> Text:
    """``sinus 0.75``: the call and its smoothed probability. While a call is held against another class
    that leads now, never the held class's (low) probability: ``sinus ▸ avrt 0.71`` (the call, then the
    class that leads and its smoothed probability; the call follows after ``call_hold_windows``)."""
    if st.call is None:
        return Text("-")
    if st.lead is None or st.lead == st.call or st.lead_p is None:
        return Text(f"{st.call} {st.p:.2f}")
    cell = Text(st.call)
    cell.append(f" ▸ {st.lead} {st.lead_p:.2f}", style="yellow")
    return cell


def _row(st: StreamStatus, now: float) -> list[Text | str]:
    call = _call_cell(st)
    hr = "-" if st.hr is None else f"{st.hr:.0f}"
    since = None if st.rhythm_since is None else now - st.rhythm_since
    mods = "+".join(m for m, on in (("ECG", st.has_ecg), ("IEGM", st.has_iegm)) if on) or "-"
    chans = f"{st.n_present}/{len(CANONICAL_CHANNELS)} {mods}" + (" mV?" if st.units_assumed else "")
    state = "stalled" if st.stalled else ("error" if st.error else st.quality)
    quality = Text(state, style=_QUALITY_STYLE.get("error" if st.stalled else state, ""))
    return [st.stream_id, st.source, call, hr, _duration(since), _alarm_cell(st, now), chans, quality, _drops_cell(st)]


def _drops_cell(st: StreamStatus) -> Text:
    """Windows dropped; with ``!r<n>`` messages rejected and ``!s<n>`` samples dropped before processing
    (a flooding or malformed publisher, or the engine's per-stream queue) flagged in red."""
    cell = Text(str(st.dropped))
    flags = " ".join(f"{k}{v}" for k, v in (("!r", st.rejected), ("!s", st.dropped_samples)) if v)
    if flags:
        cell.append(" " + flags, style="bold red")
    return cell


def _ectopy_cell(st: StreamStatus) -> Text:
    """``PVC/PAC`` per minute (last 60 s), then ``big``/``tri`` in bigeminy/trigeminy and ``L<n>`` when n
    clinician labels adapt the stream; ``err`` when the stream's beat path failed, ``-`` when off."""
    if st.ectopy == "error":
        return Text("err", style="bold red")
    if st.ectopy != "on" or st.pvc_per_min is None:
        return Text("-")
    pat = (st.ectopy_patterns or {}).get("pattern")
    extra = (f" {pat[:3]}" if pat else "") + (f" L{st.beat_labels}" if st.beat_labels else "")  # bigeminy/trigeminy, labels
    return Text(f"{st.pvc_per_min}/{st.pac_per_min}{extra}", style="cyan" if st.pvc_per_min or st.pac_per_min else "")


def _truth_cell(st: StreamStatus, reference: Any) -> Text:
    """``=`` (green) when the stream's last call equals its reference label, else that label (red)."""
    track = reference.tracks.get(st.stream_id)
    if track is None or track.truth is None:
        return Text("-")
    if track.truth == st.call:
        return Text("=", style="green")
    return Text(track.truth, style="red")


PLAIN_WIDTH = 100  # columns of the dashboard when stdout is not a terminal (a log, a pipe)

# the fixed layout (a log, a pipe): column widths at PLAIN_WIDTH; the first of FLEX absorbs more or less room
_FIXED = {"stream": 8, "src": 6, "truth": 10, "rhythm (p)": 18, "HR": 3, "PVC/PAC min": 7, "for": 5, "alarm": 22,
          "channels": 8, "signal": 7, "drops": 5}
_SHRINK = (("truth", 8), ("channels", 5), ("alarm", 12), ("rhythm (p)", 14), ("src", 4))


def dashboard_console(width: int = 0) -> Console:
    """The console the live dashboard draws on: ``width`` columns (0: the terminal's own width; when
    stdout is not a terminal, :data:`PLAIN_WIDTH` with the fixed layout of :func:`render_dashboard`)."""
    console = Console()
    if width:
        console = Console(width=width)
    elif not console.is_terminal:
        console = Console(width=PLAIN_WIDTH)
    return console


def _fixed_widths(names: list[str], total: int) -> dict[str, int]:
    """Column widths for the fixed layout: the defaults, then the rhythm column grown to fill ``total``
    columns, or the channels, alarm and rhythm columns shrunk (in that order, to a floor) to fit."""
    w = {n: _FIXED.get(n, 8) for n in names}
    spare = total - (sum(w.values()) + 2 * len(names) - 1)  # padded by one space, one space between columns
    if spare > 0:
        w["rhythm (p)"] += spare
    for n, floor in _SHRINK:
        if spare >= 0:
            break
        if n in w:
            take = min(-spare, max(0, w[n] - floor))
            w[n] -= take
            spare += take
    return w


def render_dashboard(snap: EngineSnapshot, *, now: float | None = None, title: str = "pedstream monitor",
                     banner: bool = True, reference: Any = None, strips_dir: Path | str | None = None,
                     fixed_width: int | None = None) -> Group:
    """The dashboard as a rich renderable: banner line, stream table, two footer lines (and a legend
    line when a stream declared no units). Fits 100 columns without wrapping for short stream ids.

    ``reference`` (a :class:`~pedstream.monitor.reference.ReferenceLabels`, annotated records replayed):
    a ``truth`` column beside the call (instead of the source column) and the running agreement in
    the footer. ``strips_dir``: the
    alarm strip folder, named in the footer. ``fixed_width``: every column a fixed width, the table
    that many columns wide (frames printed to a log line up and never wrap)."""
    now = time.monotonic() if now is None else now
    simulated = "SIMULATED" in snap.banner
    banner_text = Text(snap.banner, style="bold yellow on dark_red" if simulated else "bold", justify="center")
    table = Table(title=title, expand=True, header_style="bold", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, padding=(0, 1, 0, 0))  # columns 2 apart: fits 100 columns
    right = {"justify": "right", "no_wrap": True}
    ectopy = any(st.ectopy is not None for st in snap.streams)  # a beat model is loaded
    cols = [("stream", {"no_wrap": True}), ("src", {}), ("rhythm (p)", {"no_wrap": True}),
            ("HR", right), ("for", right), ("alarm", {"no_wrap": True}), ("channels", {}),
            ("signal", {}), ("drops", right)]
    truth = reference is not None and bool(reference.tracks)
    if ectopy:
        cols.insert(4, ("PVC/PAC min", right))
    if truth:  # annotated replays: the reference label takes the place of the source column
        cols[1] = ("truth", {"no_wrap": True, "max_width": 10, "overflow": "ellipsis"})
        cols[1:3] = [cols[2], cols[1]]
    if fixed_width:
        table.expand = False
        widths = _fixed_widths([n for n, _ in cols], fixed_width)
        cols = [(n, {**kw, "width": widths[n], "no_wrap": True, "overflow": "ellipsis"}) for n, kw in cols]
    for name, kw in cols:
        table.add_column(name, **kw)  # when space is short, src/channels/signal wrap; calls and alarms never do
    for st in sorted(snap.streams, key=lambda s: s.stream_id):
        row = _row(st, now)
        if ectopy:
            row.insert(4, _ectopy_cell(st))
        if truth:  # and the channel count without the modalities (the row fits 100 columns)
            row[1:3] = [row[2], _truth_cell(st, reference)]
            row[-3] = f"{st.n_present}/{len(CANONICAL_CHANNELS)}" + (" mV?" if st.units_assumed else "")
        table.add_row(*row)
    if not snap.streams:
        table.add_row("(waiting for streams)", *[""] * (len(cols) - 1))
    footer = Text(
        f"streams {len(snap.streams)} · windows/s {snap.windows_per_s:.1f} · batch {_ms(snap.batch_mean)} · "
        f"queue {snap.queue_depth} · classified {snap.windows_total} · dropped {snap.dropped_total} · "
        f"up {_duration(snap.uptime_s)}\n"
        f"alarms {snap.alarms_total} ({snap.alarms_active} active) · latency ms: inference p50 {_ms(snap.infer_p50)} "
        f"p99 {_ms(snap.infer_p99)} · end-to-end p50 {_ms(snap.e2e_p50)} p99 {_ms(snap.e2e_p99)}"
    )
    if truth:
        agreed, compared = reference.agreement()
        footer.append(f"\nagreement with the annotations {agreed / compared:.0%} ({agreed}/{compared} calls)"
                      if compared else "\nagreement with the annotations - (no annotated window yet)")
    if strips_dir is not None:
        footer.append(f"\nalarm strips: {strips_dir}")
    parts: list = [banner_text, table] if banner else [table]
    for st in sorted(snap.streams, key=lambda s: s.stream_id):
        if st.stalled or st.error:  # below the table: error messages are long
            parts.append(Text(f"{st.stream_id}: {st.stalled or st.error}", style="bold red"))
    for notice in snap.extra.get("notices", ()):  # a source's own state (e.g. its broker unreachable)
        parts.append(Text(notice, style="bold red"))
    parts.append(footer)
    if any(st.rejected or st.dropped_samples for st in snap.streams):
        parts.append(Text("drops: windows dropped; !r messages rejected, !s samples dropped before processing",
                          style="dim"))
    if any(st.call is not None and st.lead not in (None, st.call) for st in snap.streams):
        parts.append(Text("a ▸ b p: call a is held while b leads (smoothed probability p); b takes over if it "
                          "keeps the lead", style="dim"))
    if any(st.units_assumed for st in snap.streams):
        parts.append(Text("mV? = the stream declared no units, millivolts assumed", style="dim"))
    return Group(*parts)


def export_dashboard(snap: EngineSnapshot, path: Path | str, *, width: int = 100, now: float | None = None,
                     title: str = "pedstream monitor", **extra: Any) -> Path:
    """Write one dashboard frame to ``path``: SVG (``.svg``, rich's ``export_svg``) or plain text
    (``.txt``, ``export_text``), rendered ``width`` columns wide. Returns the path."""
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in (".svg", ".txt"):
        raise ValueError(f"dashboard capture {path}: expected a .svg or .txt file name")
    console = Console(record=True, width=width, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    console.print(render_dashboard(snap, now=now, title=title, **extra))
    text = console.export_svg(title=title) if kind == ".svg" else console.export_text()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


async def _plain_dashboard(engine: SnapshotSource, *, console: Console, every_s: float,
                           on_final: Callable[[EngineSnapshot], None] | None, **extra: Any) -> None:
    """Print a full frame every ``every_s`` seconds (and a last one when cancelled), each ending in a newline."""
    console.print(engine.snapshot().banner, highlight=False)  # once; the frames below leave it out
    console.print(f"(output is not a terminal: the dashboard is printed every {every_s:g} s)", highlight=False)
    try:
        while True:
            await asyncio.sleep(every_s)  # pacing of a printed frame, not waiting for a condition
            console.print(render_dashboard(engine.snapshot(), banner=False, fixed_width=console.width, **extra))
    except asyncio.CancelledError:
        snap = engine.snapshot()
        console.print(render_dashboard(snap, banner=False, fixed_width=console.width, **extra))
        if on_final is not None:
            on_final(snap)
        raise


async def run_dashboard(engine: SnapshotSource, *, hz: float = 4.0, console: Console | None = None,
                        on_final: Callable[[EngineSnapshot], None] | None = None,
                        plain_every_s: float = 5.0, **extra: Any) -> None:
    """Refresh the live dashboard of ``engine`` at ``hz`` until cancelled.

    When the console is not a terminal (``make demo | tee log``) it prints a whole frame every
    ``plain_every_s`` seconds instead, so the log shows the run as it goes.

    When cancelled it draws one last frame from a fresh snapshot (left on the terminal) and hands
    that snapshot to ``on_final`` (e.g. to export the same frame). ``extra``: ``reference`` and
    ``strips_dir`` of :func:`render_dashboard`."""
    console = console or Console()
    if not console.is_terminal:  # piped / tee'd: no live redraw (it would show only the last frame at exit)
        await _plain_dashboard(engine, console=console, every_s=plain_every_s, on_final=on_final, **extra)
        return
    period = 1.0 / hz
    with Live(render_dashboard(engine.snapshot(), **extra), console=console, refresh_per_second=hz, transient=False) as live:
        try:
            while True:
                await asyncio.sleep(period)  # pacing of a display refresh, not waiting for a condition
                live.update(render_dashboard(engine.snapshot(), **extra))
        except asyncio.CancelledError:
            snap = engine.snapshot()
            live.update(render_dashboard(snap, **extra), refresh=True)
            if on_final is not None:
                on_final(snap)
            raise
