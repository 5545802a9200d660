"""``pedstream bench``: model, engine, ingest and alarm benchmarks (click layer).

Each command prints a rich table and the machine line, writes ``--json FILE`` (atomically) and has a
``--quick`` mode (well under a minute) that the tests run. The measuring code lives in
:mod:`pedstream.bench` (``model``, ``engine``, ``ingest``, ``alarm``). Heavy imports happen inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pedstream.cliutil import with_config

__all__ = ["bench"]

_JSON = click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Also write the result as JSON here (atomically).")
_QUICK = click.option("--quick", is_flag=True, help="A short run (well under a minute) with the same JSON schema.")
_MODEL = click.option("--model", "model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                      help="ONNX model (default: the packaged monitor model).")


def _command() -> str:
    return "pedstream " + " ".join(sys.argv[1:])


def _model_path(model: Path | None) -> Path:
    from pedstream.monitor.assembly import default_model_path

    return model or default_model_path()


@click.group("bench")
def bench() -> None:
    """Benchmarks of this machine: model, engine, ingest, alarm (tables, --json, --quick)."""


@bench.command("model")
@click.option("--providers", default="cpu", show_default=True, help="Comma-separated: cpu, cuda, tensorrt.")
@click.option("--batches", default="1,8,32,128,512", show_default=True, help="Comma-separated batch sizes.")
@click.option("--seconds", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="Timed seconds per provider and batch (after warm-up).")
@click.option("--no-torch", is_flag=True, help="Skip the PyTorch eager rows and the FLOP count.")
@_MODEL
@_QUICK
@_JSON
@with_config
def bench_model(cfg: Any, providers: str, batches: str, seconds: float, no_torch: bool, model: Path | None,
                quick: bool, json_path: Path | None) -> None:
    """ONNX Runtime windows/s and latency per provider and batch, PyTorch eager beside it, GFLOP/s and
    the fraction of this run's float32 matmul peak."""
    from pedstream.bench.common import emit, parse_ints
    from pedstream.bench.model import PROVIDERS, model_bench

    names = [p.strip().lower() for p in providers.split(",") if p.strip()]
    bad = [p for p in names if p not in PROVIDERS]
    if bad or not names:
        raise click.BadParameter(f"unknown provider(s) {bad}; use {', '.join(PROVIDERS)}", param_hint="--providers")
    sizes = parse_ints(batches, name="--batches")
    if quick:
        sizes, seconds = sizes[:3], min(seconds, 0.3)
    result = model_bench(cfg, model=_model_path(model), providers=names, batches=sizes, seconds=seconds,
                         torch_eager=not no_torch, quick=quick, log=lambda m: click.echo(m, err=True))
    result["command"] = _command()
    notes = [f"FLOPs per window: {result['flops_note']}" if result["flops_per_window"] else result["flops_note"],
             f"matmul peak {result['matmul']['peak_gflops']} GFLOP/s (float32 1024^3 on {result['matmul'].get('threads')} "
             f"threads, best of numpy and ONNX Runtime's MatMul: {result['matmul'].get('peak_source')})"]
    emit(result, title="pedstream bench model", json_path=json_path, notes=notes, rows=result["results"],
         columns=[("engine", "engine"), ("provider", "provider"), ("batch", "batch"), ("windows_per_s", "windows/s"),
                  ("threads", "threads"), ("median_ms", "median ms"), ("p99_ms", "p99 ms"), ("gflops", "GFLOP/s"),
                  ("fraction_of_peak", "of peak"), ("speedup_vs_torch", "x torch"), ("status", "status")])


@bench.command("engine")
@click.option("--source", type=click.Choice(["replay", "mqtt"]), default="replay", show_default=True,
              help="replay: in-process replay; mqtt: a publisher process through a local mosquitto.")
@click.option("--streams", default="100,200,400,800,1000", show_default=True,
              help="Comma-separated stream counts, tried in order until one is not sustained.")
@click.option("--seconds", type=click.FloatRange(min=2.0), default=20.0, show_default=True,
              help="Measured seconds per stream count.")
@click.option("--providers", default=None, help="Execution providers for the engine's model (e.g. cuda); "
                                                "default: [runtime] providers.")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Latency-vs-streams plot (default: beside --json).")
@click.option("--all", "sweep_all", is_flag=True, help="Go on after the first stream count not sustained.")
@click.option("--aligned", is_flag=True, help="Start every replayed stream in the same instant (their windows all "
                                              "complete together: the worst case). Default: starts spread over one hop.")
@_MODEL
@_QUICK
@_JSON
@with_config
def bench_engine(cfg: Any, source: str, streams: str, seconds: float, providers: str | None, png: Path | None,
                 sweep_all: bool, aligned: bool, model: Path | None, quick: bool, json_path: Path | None) -> None:
    """The full engine (dashboard off) on N simultaneous 977 Hz, 19-channel streams in real time:
    sustained, real-time ratio, dropped windows, end-to-end p50/p99, CPU per core, RSS."""
    from pedstream.bench.common import emit, parse_ints
    from pedstream.bench.engine import engine_bench
    from pedstream.bench.model import PROVIDERS

    counts = parse_ints(streams, name="--streams")
    if quick:
        counts, seconds = counts[:2] if len(counts) > 1 else counts, min(seconds, 6.0)
    prov = None
    if providers:
        prov = [PROVIDERS.get(p.strip().lower(), p.strip()) for p in providers.split(",") if p.strip()]
    if png is None and json_path is not None:
        png = json_path.with_suffix(".png")
    result = engine_bench(cfg, model=_model_path(model), source=source, streams=counts, seconds=seconds,
                          providers=prov, stop_at_first_failure=not sweep_all, png=png, quick=quick, aligned=aligned,
                          log=lambda m: click.echo(m, err=True))
    result["command"] = _command()
    emit(result, title=f"pedstream bench engine (--source {source})", json_path=json_path, rows=result["results"],
         notes=[f"max real-time streams: {result['max_realtime_streams']}"
                + (f" ({result['max_realtime_streams'] / cores:g} per core of this machine's {cores})"
                   if (cores := result["machine"].get("cores")) else "")
                + (f"; plot {png}" if png is not None else "")],
         columns=[("streams", "streams"), ("sustained", "sustained"), ("realtime_ratio", "real-time"),
                  ("windows", "windows"), ("dropped", "dropped"), ("e2e_ms_p50", "e2e p50 ms"),
                  ("e2e_ms_p99", "e2e p99 ms"), ("cpu_total_pct", "CPU % (all cores)"), ("rss_mib", "RSS MiB")])


@bench.command("ingest")
@click.option("--streams", type=click.IntRange(min=1), default=200, show_default=True, help="LSL outlets.")
@click.option("--seconds", type=click.FloatRange(min=1.0), default=20.0, show_default=True,
              help="Seconds of signal each outlet pushes (real time).")
@click.option("--peer", type=click.Choice(["mne-lsl"]), default=None,
              help="Also take the same load with mne-lsl's StreamLSL (the peers extra).")
@_QUICK
@_JSON
@with_config
def bench_ingest(cfg: Any, streams: int, seconds: float, peer: str | None, quick: bool, json_path: Path | None) -> None:
    """N LSL outlets (977 Hz, 19 channels, a publisher process) into the engine's LSL inlets: samples/s
    received, samples lost, CPU of the receiving process; --peer mne-lsl: the same load into StreamLSL."""
    from pedstream.bench.common import emit
    from pedstream.bench.ingest import INGEST_COLUMNS, ingest_bench

    if quick:
        streams, seconds = min(streams, 10), min(seconds, 4.0)
    result = ingest_bench(cfg, streams=streams, seconds=seconds, peer=peer, quick=quick,
                          log=lambda m: click.echo(m, err=True))
    result["command"] = _command()
    emit(result, title="pedstream bench ingest (LSL)", json_path=json_path, rows=result["results"],
         notes=result.get("notes", []),
         columns=INGEST_COLUMNS)


@bench.command("alarm")
@_QUICK
@_JSON
def bench_alarm(quick: bool, json_path: Path | None) -> None:
    """Time to alarm and false alarms per hour (pedstream score episodes on a fixed set of simulated
    records; the same as bench/bench_alarm.py)."""
    from pedstream.bench.alarm import alarm_bench
    from pedstream.bench.common import emit
    from pedstream.cliutil import fail
    from pedstream.errors import PedstreamError

    try:
        result = alarm_bench(quick=quick)
    except PedstreamError as exc:
        fail(exc)
    result.setdefault("command", _command())
    classes = result.get("classes") if isinstance(result.get("classes"), dict) else {}
    rows = [{"class": name, **c} for name, c in classes.items() if isinstance(c, dict)]
    notes = [f"false alarms per hour: {result.get('false_alarms_per_hour')} over {result.get('monitored_h')} h monitored"]
    emit(result, title="pedstream bench alarm", json_path=json_path, rows=rows, notes=notes,
         columns=[("class", "class"), ("episodes", "episodes"), ("detected", "alarmed"), ("missed", "missed"),
                  ("false_alarms", "false alarms"), ("time_to_alarm_s_median", "time to alarm s (median)"),
                  ("time_to_alarm_s_p95", "p95")])
