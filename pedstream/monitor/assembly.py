"""``pedstream run`` and ``pedstream demo``: wire sources, the model, the engine, sinks and the dashboard.

- ``--source lsl``: monitor every LSL stream of an ECG type or with ECG/IEGM channel labels (or the
  ``[lsl] predicate``'s matches), one line per stream seen saying whether it is monitored and why
  not (LSL is configured from ``[lsl]`` before any pylsl call, so discovery stays on this machine);
- ``--source mqtt``: monitor every stream under ``[mqtt] topic_prefix`` on the broker;
- ``--source replay``: replay ``--records`` in-process.

``--demo`` replays the bundled SIMULATED records (``pedstream/assets/demo_records``, looping) over
the chosen transport on this machine and monitors them. The run ends after ``--duration`` seconds,
on Ctrl-C, or (replay without looping) when every record has been played and classified; it then
prints a summary. With ``--headless`` the events go to stdout as JSON lines (the model banner and
the summary to stderr), otherwise a live dashboard is shown. Optional extra sinks: ``--publish-mqtt``
(``<topic_prefix>/<stream_id>/rhythm`` on the ``[mqtt]`` broker) and ``--lsl-markers`` (an LSL
marker outlet named ``[lsl] marker_stream``); ``--capture FILE`` writes the final dashboard frame
(``.svg`` or ``.txt``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from pedstream.config import Config
from pedstream.errors import ConfigError, ModelError, NothingMonitoredError, RecordError

__all__ = ["default_model_path", "demo_records_path", "open_model", "run_command", "run_async", "format_summary",
           "replay_command"]


def _assets() -> Path:
    return Path(str(resources.files("pedstream") / "assets"))


def default_model_path() -> Path:
    """The packaged monitor model (trained on simulated Leipzig-format data + MIT-BIH ECG, not for clinical
    use; bench/make_monitor_model.sh). The older simulated-only model is ``assets/demo_model.onnx``."""
    return _assets() / "monitor_model.onnx"


def demo_records_path(cfg: Config) -> Path:
    return Path(cfg.demo.records) if cfg.demo.records else _assets() / "demo_records"


def open_model(cfg: Config, path: Path | None) -> Any:
    """Open the model with ONNX Runtime and refuse one whose metadata disagrees with ``cfg``."""
    from pedstream.model.runtime import ModelSession, expected_metadata

    path = Path(path) if path is not None else default_model_path()
    if not path.is_file():
        raise ModelError(str(path), "no such model file (pass --model PATH, or export one with `pedstream export`)")
    exp = expected_metadata(signal_cfg=cfg.signal, filter_cfg=cfg.filters, window_s=cfg.segments.window_s,
                            hop_s=cfg.segments.hop_s)
    return ModelSession(path=path, runtime_cfg=cfg.runtime, expected=exp, max_batch=cfg.stream.max_batch)


def format_summary(summary: dict[str, Any]) -> str:
    """The end-of-run summary as two lines (each under 100 columns for a few streams)."""
    def f(v: Any) -> str:
        return "-" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v))

    return (f"summary: streams {summary['streams']}, windows classified {summary['windows_classified']}, "
            f"alarms {summary['alarms']} ({summary.get('alarms_active', 0)} active at exit), errors {summary['errors']}, "
            f"dropped windows {summary['dropped_windows']}, rejected messages {summary.get('rejected_messages', 0)}, "
            f"dropped samples {summary.get('dropped_samples', 0)}\n"
            f"latency ms: end-to-end p50 {f(summary['e2e_latency_ms_p50'])} p99 {f(summary['e2e_latency_ms_p99'])}, "
            f"inference p50 {f(summary['inference_ms_p50'])} p99 {f(summary['inference_ms_p99'])}")


async def run_async(
    cfg: Config,
    *,
    session: Any,
    source: str,
    duration: float | None,
    headless: bool,
    events_path: Path | None,
    demo: bool,
    records: Sequence[Path] = (),
    stop: asyncio.Event | None = None,
    console: Any = None,
    alarms_dir: Path | None = None,
    publish_mqtt: bool = False,
    lsl_markers: bool = False,
    capture: Sequence[Path] = (),
    capture_width: int = 100,
    beat_session: Any = None,
    hl7: bool = False,
    fhir_path: Path | None = None,
    record_dir: Path | None = None,
    web: Any = None,
) -> dict[str, Any]:
    """Run the monitor until ``duration``, ``stop`` or the end of a non-looping replay; return the summary.

    ``publish_mqtt``: also publish every event to ``<[mqtt] topic_prefix>/<stream_id>/rhythm`` on the
    ``[mqtt]`` broker; ``lsl_markers``: also push every event to an LSL marker outlet named
    ``[lsl] marker_stream``; ``capture``: write the final dashboard frame to each of these files
    (``.svg`` or ``.txt``, ``capture_width`` columns); ``beat_session``: the beat model (default: opened
    from ``[stream] beat_model`` when set, see :func:`pedstream.stream.ectopy.open_beat_model`).

    Shutdown order: the dashboard draws its last frame, then the engine stops (its LSL inlets / MQTT
    subscriptions close, sinks flush), and only then are the demo feeders (replay outlets) stopped,
    so no inlet ever sees its outlet vanish (liblsl would log "Stream transmission broke off").
    """
    from pedstream.stream.engine import Engine
    from pedstream.stream.sinks import JsonLinesSink

    from pedstream.stream.strips import alarms_folder

    stop = stop or asyncio.Event()
    alarms_dir = alarms_folder(cfg.alarms, events_path=events_path, override=alarms_dir)
    recorder = None
    if record_dir is not None:  # it sees every source event of every transport through the queue
        from pedstream.stream.recording import Recorder

        recorder = Recorder(record_dir, cfg=cfg)
    queue: asyncio.Queue = recorder.queue() if recorder is not None else asyncio.Queue()
    if web is not None:  # the web station (--web) sees every source event too: pedstream.web.station
        queue = web.station.queue(recorder)
    recs = list(records)
    if demo:
        folder = demo_records_path(cfg)
        if not folder.is_dir():
            raise RecordError(str(folder), "demo records folder is missing (regenerate with `pedstream data synth`)")
        recs = [folder]
    if source == "replay" and not recs:
        raise RecordError("--records", "--source replay needs --records PATH... (or --demo)")
    capture = [Path(c) for c in capture]
    for c in capture:
        if c.suffix.lower() not in (".svg", ".txt"):
            raise ConfigError([("--capture", f"expected a .svg or .txt file name (got {c})")], source="pedstream run")
    if source == "lsl" or lsl_markers:
        from pedstream.stream.lsl.config import configure_lsl_from

        configure_lsl_from(cfg.lsl)  # before any pylsl object exists in this process
    sources: list[Any] = []
    mqtt_src: Any = None
    lsl_src: Any = None
    feeders: list[Any] = []  # coroutines publishing demo records on the chosen transport
    replay_src = None
    reference = None  # annotated records replayed: the reference label ("truth") of each call
    if recs:
        from pedstream.stream.reference import ReferenceLabels

        reference = ReferenceLabels.from_config(cfg)
    if source == "lsl":
        from pedstream.stream.lsl.inlet import LSLSource

        def seen(line: str) -> None:  # one line per LSL stream seen: monitored, or ignored and why
            if console is not None:
                console.print(line, highlight=False, markup=False, soft_wrap=True)
            else:
                print(line, file=sys.stderr, flush=True)

        lsl_src = LSLSource.from_config(cfg.lsl, events=queue, aliases=cfg.signal.aliases, on_discovery=seen)
        sources.append(lsl_src)
        if recs:
            from pedstream.stream.lsl.outlet import replay_to_lsl
            from pedstream.stream.replay import plan_replay

            plans = plan_replay(recs, cfg.signal)
            feeders.append(replay_to_lsl(plans, speed=cfg.demo.speed, chunk_ms=cfg.replay.chunk_ms, loop=True,
                                         on_t0=lambda plan, t0: reference.add(plan, t0=t0)))
    elif source == "mqtt":
        from pedstream.stream.mqtt.source import MQTTSource

        mqtt_src = MQTTSource.from_config(cfg.mqtt, events=queue)
        sources.append(mqtt_src)
        if recs:
            from pedstream.stream.mqtt.publisher import replay_to_mqtt
            from pedstream.stream.replay import plan_replay

            plans = plan_replay(recs, cfg.signal)
            feeders.append(replay_to_mqtt(plans, host=cfg.mqtt.host, port=cfg.mqtt.port, prefix=cfg.mqtt.topic_prefix,
                                          speed=cfg.demo.speed, chunk_ms=cfg.replay.chunk_ms, loop=True,
                                          auth=mqtt_src.auth, timeout_s=cfg.mqtt.timeout_s))
    elif source == "replay":
        from pedstream.stream.replay import ReplaySource

        speed = cfg.demo.speed if demo else cfg.replay.speed
        replay_src = ReplaySource.from_config(cfg, recs, events=queue, speed=speed, loop=demo or cfg.replay.loop,
                                                reference=reference)
        sources.append(replay_src)
    else:
        raise RecordError("--source", f"unknown source {source!r} (expected lsl, mqtt or replay)")

    sinks: list[Any] = [] if reference is None else [reference]  # first: later sinks see the "truth"
    if events_path is not None:
        sinks.append(JsonLinesSink(events_path))
    if headless:
        sinks.append(JsonLinesSink.stdout())
    if publish_mqtt:
        from pedstream.stream.mqtt.publisher import MQTTSink

        sinks.append(MQTTSink.from_config(cfg.mqtt, auth=mqtt_src.auth if mqtt_src is not None else None))
    if lsl_markers:
        from pedstream.stream.lsl.outlet import LSLMarkerSink

        sinks.append(LSLMarkerSink(name=cfg.lsl.marker_stream, source_id=cfg.lsl.marker_source_id or None,
                                   model={"file": Path(str(getattr(session, "path", "") or "")).name,
                                          **dict(getattr(session, "metadata", {}) or {})}))
    hl7_sink = None
    if hl7:
        from pedstream.stream.integrations import HL7Sink

        hl7_sink = HL7Sink(cfg=cfg.hl7)
        sinks.append(hl7_sink)
    if fhir_path is not None:
        from pedstream.stream.integrations import FHIRSink

        sinks.append(FHIRSink(fhir_path, observation_interval_s=cfg.hl7.observation_interval_s))
    if recorder is not None:
        sinks.append(recorder)
    if web is not None:
        sinks.append(web.station)
    if beat_session is None and cfg.stream.beat_model:
        from pedstream.stream.ectopy import open_beat_model

        beat_session, _ = open_beat_model(cfg, cfg.stream.beat_model)
    from pedstream.stream.lifecycle import Outputs  # complete alarm lifecycles, output faults (docs/integrations.md)

    outputs = Outputs([s for s in sinks if s is not reference])
    sinks = ([] if reference is None else [reference]) + [outputs]
    sources.append(outputs.status_source(queue))  # the active technical alarms on the dashboard
    engine = Engine(cfg=cfg, session=session, sources=sources, sinks=sinks, alarms_dir=alarms_dir,
                    beat_session=beat_session, rhythm_model="default" if cfg.rhythm_context.enabled else None)
    outputs.watch(engine.strip_writer)  # strips not written: reported once, counted in the summary
    final: list[tuple[Any, float]] = []  # (snapshot, monotonic time) of the last dashboard frame
    feeder_tasks: list[asyncio.Task] = []
    try:
        async with engine:
            feeder_tasks = [asyncio.create_task(c, name="demo-feeder") for c in feeders]
            dash = None
            if not headless:
                from pedstream.stream.dashboard import run_dashboard

                dash = asyncio.create_task(
                    run_dashboard(engine, hz=cfg.stream.dashboard_hz, console=console, reference=reference,
                                  strips_dir=alarms_dir if cfg.alarms.strips else None,
                                  on_final=lambda snap: final.append((snap, time.monotonic()))), name="dashboard")
            if web is not None:  # ends with the feeders (after the engine); a failure ends the run
                feeder_tasks.append(asyncio.create_task(web.serve(engine), name="web"))
            waits = [asyncio.create_task(stop.wait(), name="stop")]
            if replay_src is not None and not replay_src.loop:
                waits.append(asyncio.create_task(_replay_done(replay_src, engine), name="replay-done"))
            try:
                # a feeder that ends (it only ends by failing: the demo loops) also ends the run
                await asyncio.wait([*waits, *feeder_tasks], timeout=duration, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in waits:
                    t.cancel()
                if dash is not None:
                    dash.cancel()
                    await _reap([dash])
                if not final:
                    final.append((engine.snapshot(), time.monotonic()))
        # the engine is stopped: its inlets are closed, now the outlets may go
    finally:
        for t in feeder_tasks:
            t.cancel()
        await _reap(feeder_tasks)
    if capture:
        from pedstream.stream.dashboard import export_dashboard

        snap, t_snap = final[-1]
        for c in capture:
            export_dashboard(snap, c, width=capture_width, now=t_snap, reference=reference,
                             strips_dir=alarms_dir if cfg.alarms.strips else None)
    summary = engine.summary()
    if hl7_sink is not None:
        summary["hl7"] = hl7_sink.summary()
    summary["outputs"] = outputs.report()
    if recorder is not None:
        summary["recorded"] = [str(p) for p in recorder.files]
    if lsl_src is not None:
        summary["lsl_seen"] = sorted(lsl_src.discovery.values())
    if mqtt_src is not None:
        summary["mqtt_connected"] = getattr(mqtt_src, "connects", 1) > 0
    return summary


async def _reap(tasks: Sequence[asyncio.Task]) -> None:
    """Await cancelled/finished tasks; re-raise the first real failure among them."""
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
            raise r


async def _replay_done(src: Any, engine: Any) -> None:
    """A finite replay is done once it has sent everything and the engine has classified it."""
    await src.finished.wait()
    while (not src.events.empty() or any(engine.ingest_depth(sid) for sid in list(engine.streams))
           or engine.batcher.pending or engine.batcher.busy):
        await asyncio.sleep(0.05)  # polling the engine's queues at shutdown, bounded by --duration


def broker_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at ``host:port`` (a quick check before an MQTT run)."""
    import socket

    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def broker_hint(cfg: Config) -> str:
    return (f"no MQTT broker at {cfg.mqtt.host}:{cfg.mqtt.port}: start one (e.g. `mosquitto -p {cfg.mqtt.port}`) "
            f"or point --set mqtt.host=... --set mqtt.port=... at yours")



def stop_on_signals(interrupted: list[bool]) -> asyncio.Event:
    """An event set by SIGINT (which also appends to ``interrupted``: exit 130) or SIGTERM (a normal
    end), for the running loop; where signals cannot be handled (not the main thread) nothing is."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, lambda: (interrupted.append(True), stop.set()))
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    return stop


def run_command(cfg: Config, *, source: str, model: Path | None, duration: float | None, headless: bool,
                events_path: Path | None, demo: bool, records: Sequence[Path] = (), publish_mqtt: bool = False,
                lsl_markers: bool = False, capture: Sequence[Path] = (), alarms_dir: Path | None = None,
                hl7: bool = False, fhir_path: Path | None = None, record_dir: Path | None = None,
                web: bool = False, bind: str | None = None) -> dict[str, Any]:
    """The ``pedstream run`` command body (the CLI turns domain errors into one line).

    The model banner (what the model was trained on) is shown once: inside the dashboard, or with
    ``--headless`` as the first line on stderr (stdout carries only JSON lines). Where alarm strips
    go is said at the start. With ``--source mqtt`` and no broker answering, a warning says how to
    start one. Exit codes (after the summary): a run that never reached a broker, or saw no stream at
    all, raises :class:`~pedstream.errors.NothingMonitoredError` (exit 3); Ctrl-C (SIGINT) raises
    ``KeyboardInterrupt`` once the summary is out (the CLI exits 130); SIGTERM ends the run normally."""
    from pedstream.stream.banner import is_packaged_model, model_banner
    from pedstream.stream.replay import plan_replay

    if source == "replay" and not records and not demo:
        raise RecordError("--records", "--source replay needs --records PATH... (or --demo)")
    if records:  # every input is checked (headers only) before anything is printed
        plan_replay(list(records), cfg.signal)
    session = open_model(cfg, model)
    beat_session = None
    if cfg.stream.beat_model:  # refused here, before anything starts, when it is not a usable beat model
        from pedstream.stream.ectopy import open_beat_model

        beat_session, _ = open_beat_model(cfg, cfg.stream.beat_model)
    console = None
    if headless:
        print(model_banner(session.metadata, packaged=is_packaged_model(session.path)), file=sys.stderr, flush=True)
    else:
        from pedstream.stream.dashboard import dashboard_console

        console = dashboard_console(cfg.stream.dashboard_width)
    from pedstream.stream.strips import alarms_folder, run_folder

    explicit = alarms_dir is not None or cfg.alarms.dir or events_path is not None
    base = alarms_folder(cfg.alarms, events_path=events_path, override=alarms_dir, demo=demo and not explicit)
    strips_dir = run_folder(base, cfg.alarms) if cfg.alarms.strips else base

    def note(text: str) -> None:
        if console is not None:
            console.print(text, highlight=False, markup=False)
        else:
            print(text, file=sys.stderr, flush=True)

    if cfg.alarms.strips:
        note(f"alarm strips (PNG) go to {strips_dir} (--alarms-dir or [alarms] dir to change)")
    if hl7 and not broker_reachable(cfg.hl7.host, cfg.hl7.port):
        note(f"warning: no HL7 receiver (MLLP) at {cfg.hl7.host}:{cfg.hl7.port} yet ([hl7] host/port); "
             "messages wait until one answers")
    if (source == "mqtt" or publish_mqtt) and not broker_reachable(cfg.mqtt.host, cfg.mqtt.port):
        note(f"warning: {broker_hint(cfg)}; retrying until one answers")

    web_service = None
    if web:  # checked (bind, TLS, users) before the monitor starts; the URL and any one-time login printed
        try:
            from pedstream.web.server import WebService
        except ImportError as exc:
            raise ConfigError([("--web", f"needs the web extra (pip install -e '.[web]'): {exc}")],
                              source="pedstream run") from exc
        web_service = WebService(cfg, bind=bind)
        for line in web_service.intro():
            note(line)
    interrupted: list[bool] = []

    async def main() -> dict[str, Any]:
        stop = stop_on_signals(interrupted)
        return await run_async(cfg, session=session, source=source, duration=duration, headless=headless,
                               events_path=events_path, demo=demo, records=records, stop=stop, console=console,
                               publish_mqtt=publish_mqtt, lsl_markers=lsl_markers, capture=capture,
                               beat_session=beat_session, alarms_dir=strips_dir, hl7=hl7, fhir_path=fhir_path,
                               record_dir=record_dir, web=web_service)

    summary = asyncio.run(main())
    line = format_summary(summary)
    if headless:
        print(line, file=sys.stderr)
        print(json.dumps({"summary": summary}), file=sys.stderr)
    elif console is not None:
        console.print(line, highlight=False)
    for c in capture:
        if console is not None:
            console.print(f"dashboard capture written to {c}", highlight=False)
        else:
            print(f"dashboard capture written to {c}", file=sys.stderr)
    if summary.get("strips"):
        note(f"{summary['strips']} alarm strip(s) in {strips_dir}")
    for f in summary.get("recorded", []):
        note(f"recorded {f}")
    if "hl7" in summary:
        h = summary["hl7"]
        note(f"hl7: {h['acked']} messages delivered, {h['undelivered']} undelivered ({h['pending']} waiting in "
             f"{h['outbox']}, {h['rejected']} refused), {h['dropped']} observations dropped, {h['resent']} resent")
    from pedstream.stream.lifecycle import outputs_problem

    problem = outputs_problem(summary.get("outputs"))
    if problem and interrupted:  # otherwise the error line (exit 4) says it
        note(problem)
    if interrupted:
        raise KeyboardInterrupt
    if summary.get("mqtt_connected") is False:
        raise NothingMonitoredError("mqtt: " + broker_hint(cfg) + " (none answered during the run)")
    if not summary.get("streams"):
        raise NothingMonitoredError(f"no stream was seen during the run (--source {source}"
                                    + (_lsl_hint(cfg, summary) if source == "lsl" else "")
                                    + (f", topics {cfg.mqtt.topic_prefix}/+/meta" if source == "mqtt" else "") + ")")
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


def replay_command(cfg: Any, *, records: list[Path], to: str, speed: float | None = None, loop: bool | None = None,
                   start_s: float = 0.0, seconds: float | None = None, stream_id: str | None = None,
                   encoding: str | None = None, chunk_ms: float | None = None,
                   age_years: float | None = None) -> dict[str, int]:
    """``pedstream replay``: publish until the records end (or Ctrl-C with ``--loop``)."""
    import click

    from pedstream.stream.replay import ReplayPlan, plan_replay

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
        from pedstream.stream.lsl.config import configure_lsl_from
        from pedstream.stream.lsl.outlet import replay_to_lsl

        configure_lsl_from(cfg.lsl)
        sent = asyncio.run(_bounded_exit(replay_to_lsl(plans, speed=speed, chunk_ms=chunk_ms, loop=loop,
                                                      on_start=started), grace_s=15.0))
    elif to == "mqtt":
        from pedstream.stream.mqtt.client import MQTTAuth
        from pedstream.stream.mqtt.publisher import replay_to_mqtt

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
