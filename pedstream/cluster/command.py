"""Command bodies: ``pedstream run --source mqtt --workers N [--ray-address ADDR]`` (:func:`cluster_command`)
and ``pedstream central --source mqtt`` (:func:`central_command`), and the central dashboard
(:func:`render_central`, :func:`export_central`)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import socket
import sys
import time
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from pedstream.cluster.central import Central, central_sinks, require_broker
from pedstream.cluster.topics import ClusterError
from pedstream.monitor.assembly import stop_on_signals
from pedstream.config import Config

__all__ = ["cluster_command", "central_command", "render_central", "export_central", "start_ray"]

# Ray's switch for multi-node mode on Linux; "0" keeps a local runtime's addresses on 127.0.0.1. Read when
# ray is first imported, so it is set before that.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_ALARM_STYLE = {"high": "bold white on red", "medium": "bold black on yellow", "advisory": "cyan"}
_QUALITY_STYLE = {"ok": "green", "warm-up": "yellow", "loss": "bold red", "stale": "bold magenta"}


# ------------------------------------------------------------------------------------------- Ray
def _probe(address: str, timeout: float) -> None:
    """A ``host:port`` (or ``ray://host:port``) Ray address must accept TCP within ``timeout``."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and the like: Ray resolves them itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return
    except OSError as exc:
        raise ClusterError("ray", f"nothing answers at --ray-address {address} within {timeout:g} s "
                                  f"({exc.strerror or type(exc).__name__}); start the cluster with `ray start --head` "
                                  "or leave --ray-address out for a local runtime") from exc


@contextlib.contextmanager
def _quiet_stderr() -> Any:
    """File descriptor 2 to /dev/null for the block (C/C++ code writes there directly)."""
    import os

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def start_ray(cfg: Config, *, workers: int, address: str | None) -> None:
    """``ray.init``: join ``address``, or start a local runtime (loopback, no dashboard) with room for
    ``workers`` actors of ``[cluster] worker_cpus``."""
    import os

    if not address:  # a local runtime stays on loopback (Ray otherwise binds the node's network address)
        os.environ.setdefault(LOOPBACK_ENV, "0")
    else:  # joining: one bounded attempt at its GCS (Ray otherwise retries for minutes), no C++ warning lines
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "1")
        os.environ.setdefault("RAY_py_gcs_connect_timeout_s", str(max(1, math.ceil(cfg.cluster.ray_connect_timeout_s))))
        os.environ.setdefault("RAY_gcs_rpc_server_connect_timeout_s",
                              str(max(1, math.ceil(cfg.cluster.ray_connect_timeout_s))))
    try:
        import ray
    except ImportError as exc:
        raise ClusterError("ray", "is not installed: pip install 'pedstream[cluster]'") from exc

    if ray.is_initialized():
        return
    kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, namespace="pedstream",
                              configure_logging=False)
    if address:
        _probe(address, cfg.cluster.ray_connect_timeout_s)
        try:
            with _quiet_stderr():  # Ray's C++ client logs each failed attempt: the error below says it once
                ray.init(address=address, **kw)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError... for an address it cannot use
            raise ClusterError("ray", f"cannot join the Ray cluster at {address} ({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0][:160] if str(exc) else ''})") from exc
        return
    cpus = max(os.cpu_count() or 1, int(-(-workers * cfg.cluster.worker_cpus // 1)))
    ray.init(num_cpus=cpus, _node_ip_address="127.0.0.1", **kw)


def cluster_command(cfg: Config, *, workers: int, ray_address: str | None, model: Path | None,
                    duration: float | None) -> dict[str, Any]:
    """``pedstream run --source mqtt --workers N``: supervisor + N worker actors until ``duration`` / Ctrl-C."""
    from pedstream.cluster.supervisor import Supervisor
    from pedstream.monitor.assembly import open_model

    open_model(cfg, model)  # a model that does not fit the configuration is refused here, before Ray starts
    require_broker(cfg)
    start_ray(cfg, workers=workers, address=ray_address)

    def line(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    interrupted: list[bool] = []

    async def main() -> dict[str, Any]:
        stop = stop_on_signals(interrupted)
        async with Supervisor(cfg=cfg, workers=workers, model_path=None if model is None else str(Path(model).resolve()),
                              on_line=line) as sup:
            runner = asyncio.create_task(sup.run(stop))
            await asyncio.wait([runner], timeout=duration)
            stop.set()
            await runner
            return {"workers": len(sup.workers), "workers_alive": len(sup.live()), "streams": len(sup.streams),
                    "streams_seen": len(sup.seen_streams),
                    "moves": len(sup.moves), "deaths": len(sup.deaths), "refused_streams": sup.refused_streams}

    try:
        summary = asyncio.run(main())
    finally:
        import ray

        ray.shutdown()
    line("summary: " + json.dumps(summary))
    if interrupted:
        raise KeyboardInterrupt
    if not summary["streams_seen"]:
        from pedstream.errors import NothingMonitoredError

        raise NothingMonitoredError(f"no stream was seen during the run (--source mqtt --workers {workers}, "
                                    f"topics {cfg.mqtt.topic_prefix}/+/meta)")
    return summary


# ------------------------------------------------------------------------------------- central
def render_central(central: Central, *, now: float | None = None) -> Group:
    """The ward: one row per stream (alarms first, by priority), the workers below."""
    now = time.monotonic() if now is None else now
    stale_s = central.cfg.cluster.stale_after_s
    up = {n for n, w in central.workers.items() if w.state == "up"}
    table = Table(title="pedstream central station", expand=True, header_style="bold", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for name, kw in (("stream", {"no_wrap": True}), ("worker", {"no_wrap": True}), ("rhythm (p)", {"no_wrap": True}),
                     ("HR", {"justify": "right"}), ("alarm", {"no_wrap": True}), ("signal", {}),
                     ("last seen", {"justify": "right"}), ("calls", {"justify": "right"})):
        table.add_column(name, **kw)
    for r in central.sorted_rows():
        age = None if r.last_seen is None else now - r.last_seen
        quality = "stale" if age is not None and age > stale_s else r.quality
        worker = Text(r.worker or "-", style="" if r.worker in up else "bold red")
        if r.alarms:
            label, prio = r.alarms[0]
            more = f" +{len(r.alarms) - 1}" if len(r.alarms) > 1 else ""
            alarm = Text(f"{prio.upper()} {label}{more}", style=_ALARM_STYLE.get(prio, "bold"))
            if r.alarm_worker and r.alarm_worker not in up:
                alarm.append(f" (from {r.alarm_worker}, gone)", style="dim")
        else:
            alarm = Text("none", style="green")
        table.add_row(r.stream, worker, "-" if r.call is None else f"{r.call} {r.p or 0:.2f}",
                      "-" if r.hr is None else f"{r.hr:.0f}", alarm, Text(quality, style=_QUALITY_STYLE.get(quality, "")),
                      "-" if age is None else f"{age:.1f} s", str(r.calls))
    if not central.rows:
        table.add_row("(waiting for events)", *[""] * 7)
    workers = Text("workers: ")
    for name in sorted(central.workers):
        w = central.workers[name]
        workers.append(f"{name} ", style="green" if w.state == "up" else "bold red")
        workers.append(f"({w.state}, {w.streams} streams, pid {w.pid}) ", style="dim")
    s = central.summary()
    footer = Text(f"streams {s['streams']} · workers up {s['workers_up']} · alarms active {s['alarms_active']} · "
                  f"events {s['events']} · rejected messages {s['rejected']} · "
                  f"{central.cfg.mqtt.host}:{central.cfg.mqtt.port} {central.prefix}/")
    return Group(table, workers, footer)


def export_central(central: Central, path: Path | str, *, width: int = 120, now: float | None = None) -> Path:
    """One frame of the central dashboard as SVG (``.svg``) or text (``.txt``)."""
    path = Path(path)
    console = Console(record=True, width=width, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    console.print(render_central(central, now=now))
    text = (console.export_svg(title="pedstream central") if path.suffix.lower() == ".svg"
            else console.export_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def central_command(cfg: Config, *, duration: float | None, headless: bool, events_path: Path | None,
                    capture: list[Path] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """``pedstream central --source mqtt``: the ward dashboard (or JSON lines with ``--headless``)."""
    from rich.live import Live

    require_broker(cfg)
    sinks = central_sinks(events_path, headless)
    interrupted: list[bool] = []
    console = Console()

    async def main() -> Central:
        stop = stop_on_signals(interrupted)
        async with Central(cfg=cfg, sinks=sinks) as central:
            if headless or not console.is_terminal:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(duration):
                        await stop.wait()
            else:
                with Live(render_central(central), console=console, refresh_per_second=cfg.stream.dashboard_hz) as live:
                    deadline = None if duration is None else time.monotonic() + duration
                    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(1.0 / cfg.stream.dashboard_hz):
                                await stop.wait()  # the refresh cadence, ended early by stop
                        live.update(render_central(central))
            for c in capture:
                export_central(central, c)
            return central

    central = asyncio.run(main())
    summary = central.summary()
    if not headless and console.is_terminal is False:
        console.print(render_central(central))
    print("summary: " + json.dumps(summary), file=sys.stderr)
    for c in capture:
        print(f"dashboard capture written to {c}", file=sys.stderr)
    if interrupted:
        raise KeyboardInterrupt
    return summary
