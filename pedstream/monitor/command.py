"""``pedstream run``, ``pedstream demo`` and ``pedstream replay``: the commands around the monitor. They
build a :class:`~pedstream.monitor.assembly.RunPlan`, check the inputs before anything starts, print the
model banner, where the strips go, the summary and the one line of a failure, and choose the exit code;
what the monitor is made of is decided in :mod:`pedstream.monitor.assembly`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pedstream.config import Config
from pedstream.errors import ConfigError, NothingMonitoredError, RecordError
from pedstream.monitor.assembly import (
    RunPlan,
    broker_hint,
    broker_reachable,
    format_summary,
    open_model,
    run_async,
    stop_on_signals,
)

__all__ = ["run_command", "replay_command"]


def run_command(cfg: Config, plan: RunPlan) -> dict[str, Any]:
    """The ``pedstream run`` command body (the CLI turns domain errors into one line).

    The model banner (what the model was trained on) is shown once: inside the dashboard, or with
    ``--headless`` as the first line on stderr (stdout carries only JSON lines). Where alarm strips
    go is said at the start. With ``--source mqtt`` and no broker answering, a warning says how to
    start one. Exit codes (after the summary): a run that never reached a broker, or saw no stream at
    all, raises :class:`~pedstream.errors.NothingMonitoredError` (exit 3); Ctrl-C (SIGINT) raises
    ``KeyboardInterrupt`` once the summary is out (the CLI exits 130); SIGTERM ends the run normally."""
    from pedstream.monitor.banner import is_packaged_model, model_banner
    from pedstream.outputs.strips import alarms_folder, run_folder
    from pedstream.transports.replay import plan_replay

    if plan.records:  # every input is checked (headers only) before anything is printed
        plan_replay(list(plan.records), cfg.signal)
    session = open_model(cfg, plan.model)
    beat_session = None
    if cfg.stream.beat_model:  # refused here, before anything starts, when it is not a usable beat model
        from pedstream.monitor.ectopy import open_beat_model

        beat_session, _ = open_beat_model(cfg, cfg.stream.beat_model)
    console = None
    if plan.headless:
        print(model_banner(session.metadata, packaged=is_packaged_model(session.path)), file=sys.stderr, flush=True)
    else:
        from pedstream.outputs.dashboard import dashboard_console

        console = dashboard_console(cfg.stream.dashboard_width)
    explicit = plan.alarms_dir is not None or cfg.alarms.dir or plan.events_path is not None
    base = alarms_folder(cfg.alarms, events_path=plan.events_path, override=plan.alarms_dir,
                         demo=plan.demo and not explicit)
    strips_dir = run_folder(base, cfg.alarms) if cfg.alarms.strips else base

    def note(text: str) -> None:
        if console is not None:
            console.print(text, highlight=False, markup=False)
        else:
            print(text, file=sys.stderr, flush=True)

    _preflight(cfg, plan, note, strips_dir)
    web_service = _web_service(cfg, plan, note)
    interrupted: list[bool] = []

    async def main() -> dict[str, Any]:
        stop = stop_on_signals(interrupted)
        return await run_async(cfg, _with_alarms_dir(plan, strips_dir), session=session, beat_session=beat_session,
                               stop=stop, console=console, web=web_service)

    summary = asyncio.run(main())
    _report(cfg, plan, summary, note, console, strips_dir)
    return _exit(cfg, plan, summary, note, interrupted)


def _with_alarms_dir(plan: RunPlan, folder: Path) -> RunPlan:
    from dataclasses import replace

    return replace(plan, alarms_dir=folder)


def _preflight(cfg: Config, plan: RunPlan, note: Any, strips_dir: Path) -> None:
    if cfg.alarms.strips:
        note(f"alarm strips (PNG) go to {strips_dir} (--alarms-dir or [alarms] dir to change)")
    if plan.hl7 and not broker_reachable(cfg.hl7.host, cfg.hl7.port):
        note(f"warning: no HL7 receiver (MLLP) at {cfg.hl7.host}:{cfg.hl7.port} yet ([hl7] host/port); "
             "messages wait until one answers")
    if (plan.source == "mqtt" or plan.publish_mqtt) and not broker_reachable(cfg.mqtt.host, cfg.mqtt.port):
        note(f"warning: {broker_hint(cfg)}; retrying until one answers")


def _web_service(cfg: Config, plan: RunPlan, note: Any) -> Any:
    """The web station (``--web``), checked (bind, TLS, users) before the monitor starts; its URL and any
    one-time login printed."""
    if not plan.web:
        return None
    try:
        from pedstream.web.server import WebService
    except ImportError as exc:
        raise ConfigError([("--web", f"needs the web extra (pip install -e '.[web]'): {exc}")],
                          source="pedstream run") from exc
    service = WebService(cfg, bind=plan.bind)
    for line in service.intro():
        note(line)
    return service


def _report(cfg: Config, plan: RunPlan, summary: dict[str, Any], note: Any, console: Any, strips_dir: Path) -> None:
    line = format_summary(summary)
    if plan.headless:
        print(line, file=sys.stderr)
        print(json.dumps({"summary": summary}), file=sys.stderr)
    elif console is not None:
        console.print(line, highlight=False)
    for c in plan.capture:
        note(f"dashboard capture written to {c}")
    if summary.get("strips"):
        note(f"{summary['strips']} alarm strip(s) in {strips_dir}")
    for f in summary.get("recorded", []):
        note(f"recorded {f}")
    if "hl7" in summary:
        h = summary["hl7"]
        note(f"hl7: {h['acked']} messages delivered, {h['undelivered']} undelivered ({h['pending']} waiting in "
             f"{h['outbox']}, {h['rejected']} refused), {h['dropped']} observations dropped, {h['resent']} resent")


def _exit(cfg: Config, plan: RunPlan, summary: dict[str, Any], note: Any, interrupted: list[bool]) -> dict[str, Any]:
    from pedstream.outputs.lifecycle import outputs_problem

    problem = outputs_problem(summary.get("outputs"))
    if problem and interrupted:  # otherwise the error line (exit 4) says it
        note(problem)
    if interrupted:
        raise KeyboardInterrupt
    if summary.get("mqtt_connected") is False:
        raise NothingMonitoredError("mqtt: " + broker_hint(cfg) + " (none answered during the run)")
    if not summary.get("streams"):
        raise NothingMonitoredError(f"no stream was seen during the run (--source {plan.source}"
                                    + (_lsl_hint(cfg, summary) if plan.source == "lsl" else "")
                                    + (f", topics {cfg.mqtt.topic_prefix}/+/meta" if plan.source == "mqtt" else "")
                                    + ")")
    if problem:
        from pedstream.errors import OutputsIncompleteError

        raise OutputsIncompleteError(problem)
    return summary


def _lsl_hint(cfg: Config, summary: dict[str, Any]) -> str:
    what = (f", [lsl] predicate {cfg.lsl.predicate!r}" if cfg.lsl.predicate
            else f", [lsl] types {', '.join(cfg.lsl.types)} or ECG/IEGM channel labels")
    n = sum(": ignored: " in line for line in summary.get("lsl_seen", ()))
    return what + (f"; {n} other LSL stream(s) seen and ignored, see the lines above" if n else
                   f"; no LSL stream at all in session {cfg.lsl.session_id!r}, scope {cfg.lsl.resolve_scope}")



async def _bounded_exit(coro: Any, grace_s: float) -> Any:
    """Await ``coro`` with Ctrl-C bounded: asyncio's own SIGINT handling still cancels the run (its
    publishers clear their retained metas), and if the process has not ended ``grace_s`` after the
    first Ctrl-C it says so in one line and exits 130 (the broker's Last Will then clears the metas).
    Seen once in the fault tests: a replay that did not end after a broker restart (the cause,
    probably a cancellation lost in a library's ``asyncio.wait_for`` on Python 3.11, is not proven)."""
    import os
    import threading

    def force() -> None:
        sys.stderr.write(f"error: the replay did not stop within {grace_s:g} s of Ctrl-C; leaving now\n")
        sys.stderr.flush()
        os._exit(130)

    if threading.current_thread() is threading.main_thread():
        prev = signal.getsignal(signal.SIGINT)
        armed: list[threading.Timer] = []

        def on_sigint(signum: int, frame: Any) -> None:
            if not armed:
                armed.append(threading.Timer(grace_s, force))
                armed[0].daemon = True
                armed[0].start()
            if callable(prev):
                prev(signum, frame)

        signal.signal(signal.SIGINT, on_sigint)
    return await coro


def replay_command(cfg: Config, *, records: list[Path], to: str, speed: float | None = None, loop: bool | None = None,
                   start_s: float = 0.0, seconds: float | None = None, stream_id: str | None = None,
                   encoding: str | None = None, chunk_ms: float | None = None,
                   age_years: float | None = None) -> dict[str, int]:
    """``pedstream replay``: publish until the records end (or Ctrl-C with ``--loop``)."""
    import click

    from pedstream.transports.replay import ReplayPlan, plan_replay

    speed = cfg.replay.speed if speed is None else speed
    if not speed > 0:
        raise RecordError("replay", f"--speed must be > 0 (got {speed})")
    loop = cfg.replay.loop if loop is None else loop
    chunk_ms = cfg.replay.chunk_ms if chunk_ms is None else chunk_ms
    encoding = cfg.replay.encoding if encoding is None else encoding
    plans = plan_replay(records, cfg.signal, start_s=start_s, seconds=seconds, stream_id=stream_id,
                        age_years=age_years)

    def started(plan: ReplayPlan) -> None:
        click.echo(f"{to}: {plan.stream_id} <- {plan.record.name} ({plan.fs:g} Hz, "
                   f"{len(plan.channel_names)} channels: {' '.join(plan.channel_names)}, "
                   f"{(plan.stop - plan.start) / plan.fs:.1f} s{', looping' if loop else ''})", err=True)

    t0 = time.monotonic()
    if to == "lsl":
        from pedstream.transports.lsl.config import configure_lsl_from
        from pedstream.transports.lsl.outlet import replay_to_lsl

        configure_lsl_from(cfg.lsl)
        sent = asyncio.run(_bounded_exit(replay_to_lsl(plans, speed=speed, chunk_ms=chunk_ms, loop=loop,
                                                      on_start=started), grace_s=15.0))
    elif to == "mqtt":
        from pedstream.transports.mqtt.client import MQTTAuth
        from pedstream.transports.mqtt.publisher import replay_to_mqtt

        m = cfg.mqtt
        sent = asyncio.run(_bounded_exit(replay_to_mqtt(
            plans, host=m.host, port=m.port, prefix=m.topic_prefix, speed=speed, chunk_ms=chunk_ms, loop=loop,
            encoding=encoding, dtype=cfg.replay.dtype, int16_scale_mv=cfg.replay.int16_scale_mv,
            timeout_s=m.timeout_s, on_start=started, auth=MQTTAuth.from_section(m),
            reconnect_max_s=min(m.reconnect_max_s, 5.0), probe_interval_s=m.probe_interval_s,
            bundle_bytes=cfg.replay.mqtt_bundle_bytes),
            grace_s=3 * m.timeout_s + 5.0))
    else:
        raise RecordError("replay", f"--to must be lsl or mqtt (got {to!r})")
    wall = time.monotonic() - t0
    for sid, n in sent.items():
        click.echo(f"{sid}: {n} samples sent in {wall:.2f} s", err=True)
    return sent
