"""What a running monitor is made of, in one place: a :class:`RunPlan` (decided once, by a command, the
API, the cluster, ``score`` or ``bench``) turns into sources (:func:`build_sources`), sinks
(:func:`build_sinks`) and the :class:`~pedstream.monitor.engine.Engine` between them (:func:`run_async`).

- ``source="lsl"``: monitor every LSL stream of an ECG type or with ECG/IEGM channel labels (or the
  ``[lsl] predicate``'s matches), one line per stream seen saying whether it is monitored and why not
  (LSL is configured from ``[lsl]`` before any pylsl call, so discovery stays on this machine);
- ``source="mqtt"``: monitor every stream under ``[mqtt] topic_prefix`` on the broker;
- ``source="replay"``: replay ``records`` in-process.

``demo`` replays the bundled SIMULATED records (``pedstream/assets/demo_records``, looping) over the
chosen transport on this machine and monitors them. The run ends after ``duration`` seconds, on
``stop``, or (replay without looping) when every record has been played and classified. Extra sinks:
``publish_mqtt`` (``<topic_prefix>/<stream_id>/rhythm`` on the ``[mqtt]`` broker), ``lsl_markers`` (an
LSL marker outlet named ``[lsl] marker_stream``), ``hl7``, ``fhir_path``, ``record_dir`` (EDF+), the web
station; ``capture`` writes the final dashboard frame (``.svg`` or ``.txt``). The commands that print
and exit are in :mod:`pedstream.monitor.command`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Sequence

from pedstream.config import Config
from pedstream.errors import ConfigError, ModelError, RecordError

__all__ = ["RunPlan", "Sources", "default_model_path", "demo_records_path", "open_model", "build_sources",
           "build_sinks", "run_async", "format_summary", "stop_on_signals", "broker_reachable", "broker_hint"]

SourceName = Literal["lsl", "mqtt", "replay"]


@dataclass(frozen=True, slots=True)
class RunPlan:
    """One run of the monitor, decided once: where the streams come from, where the results go, how long.

    ``records``: WFDB records or folders to replay (``source="replay"``) or to publish on the chosen
    transport; ``demo``: the bundled simulated records instead; ``duration``: seconds (None: until
    stopped, or the end of a finite replay); ``headless``: events to stdout as JSON lines instead of the
    dashboard; ``events_path``: also append them to this file; ``alarms_dir``: the alarm strips' folder
    (None: :func:`pedstream.outputs.strips.alarms_folder`); ``capture``: final dashboard frame files;
    ``publish_mqtt`` / ``lsl_markers`` / ``hl7`` / ``fhir_path`` / ``record_dir``: the extra outputs;
    ``web``/``bind``: serve the web station; ``model``: the ONNX model (None: the packaged one)."""

    source: SourceName = "lsl"
    records: tuple[Path, ...] = ()
    demo: bool = False
    duration: float | None = None
    headless: bool = False
    events_path: Path | None = None
    alarms_dir: Path | None = None
    capture: tuple[Path, ...] = ()
    capture_width: int = 100
    publish_mqtt: bool = False
    lsl_markers: bool = False
    hl7: bool = False
    fhir_path: Path | None = None
    record_dir: Path | None = None
    web: bool = False
    bind: str | None = None
    model: Path | None = None

    def __post_init__(self) -> None:
        if self.source not in ("lsl", "mqtt", "replay"):
            raise RecordError("--source", f"unknown source {self.source!r} (expected lsl, mqtt or replay)")
        object.__setattr__(self, "records", tuple(Path(r) for r in self.records))
        object.__setattr__(self, "capture", tuple(Path(c) for c in self.capture))
        for c in self.capture:
            if c.suffix.lower() not in (".svg", ".txt"):
                raise ConfigError([("--capture", f"expected a .svg or .txt file name (got {c})")], source="pedstream run")
        if self.source == "replay" and not self.records and not self.demo:
            raise RecordError("--records", "--source replay needs --records PATH... (or --demo)")


def _assets() -> Path:
    return Path(str(resources.files("pedstream") / "assets"))


def default_model_path() -> Path:
    """The packaged monitor model (trained on simulated Leipzig-format data + MIT-BIH ECG, not for clinical
    use; bench/make_monitor_model.sh). The older simulated-only model is ``assets/demo_model.onnx``."""
    return _assets() / "monitor_model.onnx"


def demo_records_path(cfg: Config) -> Path:
    return Path(cfg.demo.records) if cfg.demo.records else _assets() / "demo_records"


def open_model(cfg: Config, path: Path | None) -> Any:
    """Open the model with ONNX Runtime and refuse one whose metadata disagrees with ``cfg``; the session
    holds the checked :class:`~pedstream.dsp.windowing.WindowGeometry` everything else reads."""
    from pedstream.model.runtime import ModelSession, expected_metadata

    path = Path(path) if path is not None else default_model_path()
    if not path.is_file():
        raise ModelError(str(path), "no such model file (pass --model PATH, or export one with `pedstream export`)")
    exp = expected_metadata(signal_cfg=cfg.signal, filter_cfg=cfg.filters, window_s=cfg.segments.window_s,
                            hop_s=cfg.segments.hop_s)
    return ModelSession(path=path, runtime_cfg=cfg.runtime, expected=exp, max_batch=cfg.stream.max_batch,
                        settle_s=cfg.filters.settle_s)


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


@dataclass
class Sources:
    """What :func:`build_sources` made: the sources the engine reads, the coroutines that publish the demo or
    the records on a transport (``feeders``), the transport handles the summary reads, and the reference
    labels of annotated records (``reference``, a sink that must come first)."""

    sources: list[Any] = field(default_factory=list)
    feeders: list[Any] = field(default_factory=list)
    lsl: Any = None
    mqtt: Any = None
    replay: Any = None
    reference: Any = None


def _records(cfg: Config, plan: RunPlan) -> list[Path]:
    if not plan.demo:
        return list(plan.records)
    folder = demo_records_path(cfg)
    if not folder.is_dir():
        raise RecordError(str(folder), "demo records folder is missing (regenerate with `pedstream data synth`)")
    return [folder]


def build_sources(cfg: Config, plan: RunPlan, queue: asyncio.Queue, *, console: Any = None) -> Sources:
    """The plan's source (and demo/record feeders) putting their events on ``queue``."""
    recs = _records(cfg, plan)
    if plan.source == "lsl" or plan.lsl_markers:
        from pedstream.transports.lsl.config import configure_lsl_from

        configure_lsl_from(cfg.lsl)  # before any pylsl object exists in this process
    out = Sources()
    if recs:  # annotated records replayed: the reference label ("truth") of each call
        from pedstream.monitor.reference import ReferenceLabels

        out.reference = ReferenceLabels.from_config(cfg)
    if plan.source == "lsl":
        _lsl_source(cfg, recs, queue, out, console)
    elif plan.source == "mqtt":
        _mqtt_source(cfg, recs, queue, out)
    else:
        from pedstream.transports.replay import ReplaySource

        speed = cfg.demo.speed if plan.demo else cfg.replay.speed
        out.replay = ReplaySource.from_config(cfg, recs, events=queue, speed=speed,
                                              loop=plan.demo or cfg.replay.loop, reference=out.reference)
        out.sources.append(out.replay)
    return out


def _lsl_source(cfg: Config, recs: list[Path], queue: asyncio.Queue, out: Sources, console: Any) -> None:
    from pedstream.transports.lsl.inlet import LSLSource

    def seen(line: str) -> None:  # one line per LSL stream seen: monitored, or ignored and why
        if console is not None:
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        else:
            print(line, file=sys.stderr, flush=True)

    out.lsl = LSLSource.from_config(cfg.lsl, events=queue, aliases=cfg.signal.aliases, on_discovery=seen)
    out.sources.append(out.lsl)
    if recs:
        from pedstream.transports.lsl.outlet import replay_to_lsl
        from pedstream.transports.replay import plan_replay

        reference = out.reference
        out.feeders.append(replay_to_lsl(plan_replay(recs, cfg.signal), speed=cfg.demo.speed,
                                         chunk_ms=cfg.replay.chunk_ms, loop=True,
                                         on_t0=lambda plan, t0: reference.add(plan, t0=t0)))


def _mqtt_source(cfg: Config, recs: list[Path], queue: asyncio.Queue, out: Sources) -> None:
    from pedstream.transports.mqtt.source import MQTTSource

    out.mqtt = MQTTSource(cfg.mqtt, events=queue)
    out.sources.append(out.mqtt)
    if recs:
        from pedstream.transports.mqtt.publisher import replay_to_mqtt
        from pedstream.transports.replay import plan_replay

        reference = out.reference
        out.feeders.append(replay_to_mqtt(plan_replay(recs, cfg.signal), host=cfg.mqtt.host, port=cfg.mqtt.port,
                                          prefix=cfg.mqtt.topic_prefix, speed=cfg.demo.speed,
                                          chunk_ms=cfg.replay.chunk_ms, loop=True, auth=out.mqtt.auth,
                                          timeout_s=cfg.mqtt.timeout_s,
                                          on_t0=lambda plan, t0: reference.add(plan, t0=t0)))


def build_sinks(cfg: Config, plan: RunPlan, *, session: Any, srcs: Sources, recorder: Any = None,
                web: Any = None) -> tuple[list[Any], Any]:
    """The plan's outputs behind one :class:`~pedstream.outputs.lifecycle.Outputs` (complete alarm
    lifecycles, output faults), after the reference labels; returns ``(sinks, outputs)``."""
    from pedstream.outputs.jsonlines import JsonLinesSink
    from pedstream.outputs.lifecycle import Outputs

    sinks: list[Any] = []
    if plan.events_path is not None:
        sinks.append(JsonLinesSink(plan.events_path))
    if plan.headless:
        sinks.append(JsonLinesSink.stdout())
    if plan.publish_mqtt:
        from pedstream.transports.mqtt.publisher import MQTTSink

        sinks.append(MQTTSink.from_config(cfg.mqtt, auth=srcs.mqtt.auth if srcs.mqtt is not None else None))
    if plan.lsl_markers:
        from pedstream.transports.lsl.outlet import LSLMarkerSink

        sinks.append(LSLMarkerSink(name=cfg.lsl.marker_stream, source_id=cfg.lsl.marker_source_id or None,
                                   model={"file": Path(str(getattr(session, "path", "") or "")).name,
                                          **dict(getattr(session, "metadata", {}) or {})}))
    if plan.hl7:
        from pedstream.outputs.integrations import HL7Sink

        sinks.append(HL7Sink(cfg=cfg.hl7))
    if plan.fhir_path is not None:
        from pedstream.outputs.integrations import FHIRSink

        sinks.append(FHIRSink(plan.fhir_path, observation_interval_s=cfg.hl7.observation_interval_s))
    if recorder is not None:
        sinks.append(recorder)
    if web is not None:
        sinks.append(web.station)
    outputs = Outputs(sinks)
    return ([] if srcs.reference is None else [srcs.reference]) + [outputs], outputs


async def run_async(cfg: Config, plan: RunPlan, *, session: Any, beat_session: Any = None,
                    stop: asyncio.Event | None = None, console: Any = None, web: Any = None) -> dict[str, Any]:
    """Run the monitor of ``plan`` until its ``duration``, ``stop`` or the end of a non-looping replay;
    return the summary. ``beat_session``: the beat model (default: opened from ``[stream] beat_model``
    when set, :func:`pedstream.monitor.ectopy.open_beat_model`); ``web``: a started
    :class:`pedstream.web.server.WebService` (``plan.web``).

    Shutdown order: the dashboard draws its last frame, then the engine stops (its LSL inlets / MQTT
    subscriptions close, sinks flush), and only then are the demo feeders (replay outlets) stopped,
    so no inlet ever sees its outlet vanish (liblsl would log "Stream transmission broke off").
    """
    from pedstream.monitor.engine import Engine
    from pedstream.outputs.strips import alarms_folder

    stop = stop or asyncio.Event()
    alarms_dir = alarms_folder(cfg.alarms, events_path=plan.events_path, override=plan.alarms_dir)
    recorder = None
    if plan.record_dir is not None:  # it sees every source event of every transport through the queue
        from pedstream.outputs.recording import Recorder

        recorder = Recorder(plan.record_dir, cfg=cfg)
    queue: asyncio.Queue = recorder.queue() if recorder is not None else asyncio.Queue()
    if web is not None:  # the web station sees every source event too: pedstream.web.station
        queue = web.station.queue(recorder)
    srcs = build_sources(cfg, plan, queue, console=console)
    sinks, outputs = build_sinks(cfg, plan, session=session, srcs=srcs, recorder=recorder, web=web)
    if beat_session is None and cfg.stream.beat_model:
        from pedstream.monitor.ectopy import open_beat_model

        beat_session, _ = open_beat_model(cfg, cfg.stream.beat_model)
    sources = [*srcs.sources, outputs.status_source(queue)]  # the active technical alarms on the dashboard
    engine = Engine(cfg=cfg, session=session, sources=sources, sinks=sinks, alarms_dir=alarms_dir,
                    beat_session=beat_session, rhythm_model="default" if cfg.rhythm_context.enabled else None)
    outputs.watch(engine.strip_writer)  # strips not written: reported once, counted in the summary
    final = await _supervise(cfg, plan, engine, srcs, stop=stop, console=console, web=web, alarms_dir=alarms_dir)
    _capture(cfg, plan, final, reference=srcs.reference, alarms_dir=alarms_dir)
    return _summary(plan, engine, outputs, srcs, recorder)


async def _supervise(cfg: Config, plan: RunPlan, engine: Any, srcs: Sources, *, stop: asyncio.Event, console: Any,
                     web: Any, alarms_dir: Path) -> list[tuple[Any, float]]:
    """Run the engine, the dashboard and the feeders until the run ends; the last dashboard frame."""
    final: list[tuple[Any, float]] = []  # (snapshot, monotonic time) of the last dashboard frame
    feeder_tasks: list[asyncio.Task] = []
    try:
        async with engine:
            feeder_tasks = [asyncio.create_task(c, name="demo-feeder") for c in srcs.feeders]
            dash = None
            if not plan.headless:
                from pedstream.outputs.dashboard import run_dashboard

                dash = asyncio.create_task(
                    run_dashboard(engine, hz=cfg.stream.dashboard_hz, console=console, reference=srcs.reference,
                                  strips_dir=alarms_dir if cfg.alarms.strips else None,
                                  on_final=lambda snap: final.append((snap, time.monotonic()))), name="dashboard")
            if web is not None:  # ends with the feeders (after the engine); a failure ends the run
                feeder_tasks.append(asyncio.create_task(web.serve(engine), name="web"))
            waits = [asyncio.create_task(stop.wait(), name="stop")]
            if srcs.replay is not None and not srcs.replay.loop:
                waits.append(asyncio.create_task(_replay_done(srcs.replay, engine), name="replay-done"))
            try:
                # a feeder that ends (it only ends by failing: the demo loops) also ends the run
                await asyncio.wait([*waits, *feeder_tasks], timeout=plan.duration, return_when=asyncio.FIRST_COMPLETED)
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
    return final


def _capture(cfg: Config, plan: RunPlan, final: list[tuple[Any, float]], *, reference: Any, alarms_dir: Path) -> None:
    if not plan.capture:
        return
    from pedstream.outputs.dashboard import export_dashboard

    snap, t_snap = final[-1]
    for c in plan.capture:
        export_dashboard(snap, c, width=plan.capture_width, now=t_snap, reference=reference,
                         strips_dir=alarms_dir if cfg.alarms.strips else None)


def _summary(plan: RunPlan, engine: Any, outputs: Any, srcs: Sources, recorder: Any) -> dict[str, Any]:
    summary = engine.summary()
    if plan.hl7:
        from pedstream.outputs.integrations import HL7Sink

        summary["hl7"] = next(s for s in outputs.sinks if isinstance(s, HL7Sink)).summary()
    summary["outputs"] = outputs.report()
    if recorder is not None:
        summary["recorded"] = [str(p) for p in recorder.files]
    if srcs.lsl is not None:
        summary["lsl_seen"] = sorted(srcs.lsl.discovery.values())
    if srcs.mqtt is not None:
        summary["mqtt_connected"] = getattr(srcs.mqtt, "connects", 1) > 0
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
        await asyncio.sleep(0.05)  # polling the engine's queues at shutdown, bounded by the run's duration


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
