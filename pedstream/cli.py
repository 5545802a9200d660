"""The ``pedstream`` command line.

Every command takes ``--config PATH`` and repeatable ``--set key.sub=value``. Commands are thin: they
validate the configuration once, then call the function that does the work in its subpackage
(imported lazily so ``pedstream run`` never imports torch). Domain errors print one line and exit
with the error's code; nothing prints a traceback at a user.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import click

from pedstream import __version__
from pedstream.cliutil import with_config
from pedstream.config import Config

__all__ = ["main", "cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pedstream")
def cli() -> None:
    """pedstream: real-time pediatric arrhythmia monitoring from 12-lead ECG + intracardiac electrograms."""


# ---------------------------------------------------------------------------------------------- data
@cli.group()
def data() -> None:
    """WFDB records: simulate (synth), inspect, label counts (labels), plot, fetch."""


@data.command("synth")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the WFDB records into.")
@click.option("--records", type=int, default=None, help="How many records (default: synth.records).")
@click.option("--minutes", type=float, default=None, help="Minutes per record (default: synth.minutes).")
@click.option("--seed", type=int, default=None, help="Random seed (default: synth.seed).")
@click.option("--follow-real", "follow_real", type=click.Path(exists=True, path_type=Path), default=None,
              help="Folder with the real Leipzig annotation tables: drive each record with one real child's label sequence.")
@with_config
def data_synth(cfg: Any, out: Path, records: int | None, minutes: float | None, seed: int | None,
               follow_real: Path | None) -> None:
    """Write simulated Leipzig-format records (977 Hz, format 16, 19 channels). SIMULATED, not clinical data."""
    from pedstream.data.synth import synth_command

    synth_command(cfg, out=out, records=records, minutes=minutes, seed=seed, follow_real=follow_real)


@data.command("inspect")
@click.argument("folder", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "json_path", is_flag=False, flag_value="-", default=None, metavar="[FILE]",
              help="Write JSON to FILE instead of the table (as in eval and score); --json alone prints it.")
@with_config
def data_inspect(cfg: Any, folder: Path, json_path: str | None) -> None:
    """Table of the records in FOLDER: layout, duration, channels, clipped/flat channels, class counts."""
    from pedstream.data.inspect import inspect_command

    inspect_command(cfg, folder=folder, as_json=json_path is not None,
                    json_path=None if json_path in (None, "-") else Path(json_path))


@data.command("labels")
@click.argument("table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--subjects", default="children", type=click.Choice(["children", "adults", "all"]), show_default=True,
              help="Which subjects of the table to count.")
@click.option("--markdown", is_flag=True, help="Print a Markdown table (for the README).")
@with_config
def data_labels(cfg: Any, table: Path, subjects: str, markdown: bool) -> None:
    """Class counts of a Leipzig annotation table (processed_segments_with_aux.csv) after grouping."""
    from pedstream.data.inspect import labels_command

    labels_command(cfg, table=table, subjects=subjects, markdown=markdown)


@data.command("plot")
@click.argument("record", type=click.Path(path_type=Path))
@click.option("--start", type=float, default=0.0, show_default=True, help="Start of the strip, seconds into the record.")
@click.option("--seconds", type=float, default=10.0, show_default=True, help="Length of the strip, seconds.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="PNG file to write.")
@with_config
def data_plot(cfg: Any, record: Path, start: float, seconds: float, out: Path) -> None:
    """Clinical-style strip of RECORD (12 leads + IEGM, grid, annotations) to a PNG."""
    from pedstream.data.plot import plot_command

    plot_command(cfg, record=record, start=start, seconds=seconds, out=out)


@data.command("fetch")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to download the records and annotation tables into (created if missing).")
@with_config
def data_fetch(cfg: Any, dest: Path) -> None:
    """Download the real Leipzig Heart Center ECG-Database from PhysioNet."""
    from pedstream.data.fetch import fetch_command

    fetch_command(cfg, dest=dest)


# ----------------------------------------------------------------- model & training (train/, model/)
@cli.command("train")
@click.option("--data", "data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of WFDB records (.hea/.dat/.atr) to train on.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder to write (checkpoint, curves, manifest, predictions, metrics).")
@click.option("--protocol", type=click.Choice(["segment", "subject", "loso", "all"]), default=None,
              help="Split protocol (default: split.protocol). 'segment' leaks subjects (as published); "
                   "'all' trains on every record but a few validation subjects (no test set).")
@click.option("--fold", type=int, default=0, show_default=True, help="Which fold of the protocol is the test set.")
@click.option("--method", default=None, help="Name of the method in reports (default: from loss/model config).")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Window cache folder (default: train.cache_dir).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Maximum epochs (sets train.epochs).")
@click.option("--steps", type=click.IntRange(min=0), default=None,
              help="Batches per epoch, 0 = a full pass (sets train.steps_per_epoch).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@with_config
def train_cmd(cfg: Config, data: Path, out: Path, protocol: str | None, fold: int, method: str | None,
              cache_dir: Path | None, epochs: int | None, steps: int | None, quiet: bool) -> None:
    """Train one model on DATA into the run folder OUT (AdamW, cosine schedule, early stopping).

    With fewer subjects than split.folds (a small folder) the subject protocol uses one fold per
    subject and says so."""
    from pedstream.train.loop import train_run

    if epochs is not None:
        cfg.train.epochs = epochs
    if steps is not None:
        cfg.train.steps_per_epoch = steps
    train_run(cfg, data=data, out=out, protocol=protocol, fold=fold, method=method, cache_dir=cache_dir,
              progress=not quiet)


@cli.command("eval")
@click.option("--run", "run", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Run folder written by pedstream train (not with --adapt-minutes / --adapt-beats).")
@click.option("--adapt-minutes", "adapt_minutes", type=click.FloatRange(min=0, min_open=True), multiple=True,
              help="Patient-specific protocol of the feature beat model (record-wise CV over DATA): adapt with "
                   "the first N minutes of labelled beats of each held-out record, score the rest.")
@click.option("--adapt-beats", "adapt_beats", type=click.IntRange(min=1), multiple=True,
              help="The same with N labelled beats of the first 5 minutes (a learning curve: repeat the option).")
@click.option("--data", "data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of WFDB records to score.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the metrics as JSON here.")
@click.option("--split", type=click.Choice(["auto", "test", "all"]), default="auto", show_default=True,
              help="test: the run's test windows of DATA (DATA must be its training data); all: every window; "
                   "auto: test when DATA is the training data, else all.")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Confusion-matrix PNG (default: next to --json, else RUN/confusion.png).")
@click.option("--subject-bootstrap", is_flag=True, help="Bootstrap intervals resample subjects, not windows.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Window cache folder (default: the run's).")
@with_config
def eval_cmd(cfg: Any, run: Path | None, data: Path, json_path: Path | None, split: str, png: Path | None,
             subject_bootstrap: bool, cache_dir: Path | None, adapt_minutes: tuple[float, ...],
             adapt_beats: tuple[int, ...]) -> None:
    """Score a trained run: top-1, macro P/R/F1/F2, per class, confusion, 95% bootstrap intervals.

    The run's own configuration (from its manifest) decides filters, windows and labels; --config/--set
    do not change how a trained model is evaluated. With --adapt-minutes / --adapt-beats: the
    patient-specific protocol of the feature beat model instead (pedstream.train.adapt_eval; no --run).
    """
    if adapt_minutes or adapt_beats:
        from pedstream.train.adapt_eval import eval_adapt_command

        eval_adapt_command(data=data, minutes=adapt_minutes, beats=adapt_beats, json_path=json_path,
                           md_path=None if json_path is None else json_path.with_suffix(".md"),
                           command="pedstream " + " ".join(sys.argv[1:]))
        return
    if run is None:
        raise click.UsageError("--run is required (or --adapt-minutes / --adapt-beats)")
    from pedstream.train.evaluate import eval_command

    eval_command(run=run, data=data, json_path=json_path, split=split, png=png, cache_dir=cache_dir,
                 subject_bootstrap=subject_bootstrap)


@cli.command("label")
@click.argument("stream")
@click.option("--beats", "beats_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Text file, one 't_signal,class' per line (t_signal: the beat_t of a beat event; class: N S V F).")
@click.option("--who", default=None, help="Who labels (default: the login name).")
@click.option("--labels-dir", "labels_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The monitor's labels folder (default: $PEDSTREAM_LABELS_DIR, else $XDG_DATA_HOME/pedstream/beat_labels).")
@click.option("--model", "model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The feature beat model whose classes the labels use (default: N S V F).")
@with_config
def label_cmd(cfg: Any, stream: str, beats_file: Path, who: str | None, labels_dir: Path | None,
              model: Path | None) -> None:
    """Queue clinician beat labels for STREAM (its patient file): the monitor applies each to the beat it
    classifies at that time when STREAM runs, adapting that stream's beat calls only."""
    from pedstream.monitor.adapt import label_command

    label_command(stream=stream, beats_file=beats_file, who=who, labels_dir=labels_dir, model=model)


@cli.command("compare")
@click.option("--runs", "runs", type=click.Path(exists=True, file_okay=False, path_type=Path), multiple=True,
              required=True, help="Run folders (repeat --runs, or give several after one --runs via the shell).")
@click.argument("more_runs", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Markdown report to write (a .json twin and a _tsne.png go beside it).")
@click.option("--bootstrap", "n_boot", type=int, default=None, help="Bootstrap resamples (default: train.bootstrap).")
@click.option("--no-tsne", is_flag=True, help="Skip the t-SNE embedding plot.")
@with_config
def compare_cmd(cfg: Config, runs: tuple[Path, ...], more_runs: tuple[Path, ...], out: Path, n_boot: int | None,
                no_tsne: bool) -> None:
    """Paper-style tables (one per protocol), AGCACL ablation, per-class F1 and a t-SNE plot from run folders."""
    from pedstream.train.compare import compare_command

    compare_command(runs=[*runs, *more_runs], out=out, n_boot=cfg.train.bootstrap if n_boot is None else n_boot,
                    seed=cfg.train.seed, tsne=not no_tsne, command="pedstream " + " ".join(sys.argv[1:]))




@cli.command("export")
@click.option("--run", "run", type=click.Path(exists=True, path_type=Path), required=True,
              help="Run folder holding checkpoint.pt (or the .pt file itself).")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="ONNX file to write (one self-contained file).")
@click.option("--data", "data", type=click.Path(exists=True, path_type=Path), default=None,
              help="WFDB record or folder to take real parity-check windows from (default: the windows stored in the checkpoint).")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default="dynamo", show_default=True,
              help="torch.onnx exporter: torch.export-based (default) or the legacy TorchScript tracer (faster).")
@with_config
def export_cmd(cfg: Any, run: Path, out: Path, data: Path | None, exporter: str) -> None:
    """Export a trained run to ONNX with its metadata; verify ONNX Runtime matches PyTorch (max |diff| < 1e-4)."""
    from pedstream.model.export import export_command

    export_command(cfg, run=run, out=out, data=data, exporter=exporter)


# --------------------------------------------------------------------------- streaming (stream/)


@cli.command("replay")
@click.argument("records", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--to", "to", type=click.Choice(["lsl", "mqtt"]), required=True, help="Transport to publish on.")
@click.option("--speed", type=float, default=None,
              help="Pacing factor (default: replay.speed; 1 = real time; 'inf' = as fast as possible).")
@click.option("--loop", is_flag=True, default=None, help="Start over at the end of each record.")
@click.option("--start", "start_s", type=float, default=0.0, show_default=True, help="Start, seconds into each record.")
@click.option("--seconds", type=float, default=None, help="Replay only this many seconds of each record.")
@click.option("--stream-id", "stream_id", default=None,
              help="Stream id (one record) or id prefix (several); default: the record names.")
@click.option("--encoding", type=click.Choice(["binary", "json"]), default=None,
              help="MQTT payload encoding (default: replay.encoding).")
@click.option("--chunk-ms", "chunk_ms", type=float, default=None, help="Milliseconds of signal per chunk (default: replay.chunk_ms).")
@click.option("--age", "age_years", type=float, default=None, help="Child's age in years, sent in the stream metadata.")
@with_config
def replay(cfg: Any, records: tuple[Path, ...], to: str, speed: float | None, loop: bool | None, start_s: float,
           seconds: float | None, stream_id: str | None, encoding: str | None, chunk_ms: float | None,
           age_years: float | None) -> None:
    """Replay WFDB RECORDS (records or folders) as live LSL or MQTT streams, paced in real time."""
    from pedstream.monitor.command import replay_command

    replay_command(cfg, records=list(records), to=to, speed=speed, loop=loop, start_s=start_s, seconds=seconds,
                   stream_id=stream_id, encoding=encoding, chunk_ms=chunk_ms, age_years=age_years)


_RUN_OPTIONS = [
    click.option("--source", "source", type=click.Choice(["lsl", "mqtt", "replay"]), default="lsl", show_default=True,
                 help="Where the streams come from."),
    click.option("--model", "model", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="ONNX model (default: the packaged monitor model, trained on simulated Leipzig-format data + MIT-BIH ECG; not for clinical use)."),
    click.option("--headless", is_flag=True, help="No dashboard: print the events to stdout as JSON lines."),
    click.option("--events", "events_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="Append the events as JSON lines to this file."),
    click.option("--publish-mqtt", "publish_mqtt", is_flag=True,
                 help="Also publish each event (JSON) to <mqtt.topic_prefix>/<stream_id>/rhythm on the mqtt broker."),
    click.option("--lsl-markers", "lsl_markers", is_flag=True,
                 help="Also push each event (JSON) to an LSL marker stream named lsl.marker_stream."),
    click.option("--capture", "capture", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
                 callback=lambda ctx, param, v: _check_capture(v),
                 help="At exit, write the final dashboard frame (100 columns) to this .svg or .txt file "
                      "(rich export). Repeatable."),
    click.option("--hl7", "hl7", is_flag=True,
                 help="Also send alarms (ORU^R40, IHE PCD-04) and rhythm/heart-rate observations (ORU^R01, PCD-01) "
                      "as HL7 v2 over MLLP to [hl7] host:port (needs the integrations extra)."),
    click.option("--fhir", "fhir_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="Also append FHIR R4 Observation / DetectedIssue resources to this NDJSON file "
                      "(needs the integrations extra)."),
    click.option("--record", "record_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Record every monitored stream (any transport) to DIR as EDF+ (one file per stream, "
                      "the calls and alarms as annotations; needs the integrations extra)."),
    click.option("--alarms-dir", "alarms_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Folder for the alarm strip PNGs (default: [alarms] dir, else 'alarms' beside the --events "
                      "file, else ~/.local/share/pedstream/alarms); the run prints where they go."),
    click.option("--web", "web", is_flag=True,
                 help="Also serve the web central station (live waveforms, alarm acknowledge/silence; the web extra; "
                      "docs/web.md). Prints its URL, and a one-time login when [web] users_file is not set."),
    click.option("--bind", "bind", default=None, metavar="HOST:PORT",
                 help="With --web: listen here (default [web] bind, 127.0.0.1:8765). A non-loopback address needs "
                      "TLS and a users file ([web] cert_file, key_file, users_file)."),
]


def _check_capture(paths: tuple[Path, ...]) -> tuple[Path, ...]:
    for path in paths:
        if path.suffix.lower() not in (".svg", ".txt"):
            raise click.BadParameter(f"expected a .svg or .txt file name, got {path}")
    return paths


def _run_options(duration_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        for opt in reversed([*_RUN_OPTIONS[:2],
                             click.option("--duration", type=float, default=None, help=duration_help),
                             *_RUN_OPTIONS[2:]]):
            fn = opt(fn)
        return fn
    return deco


@cli.command("run")
@_run_options("Stop after this many seconds (default: until Ctrl-C, or the end of a --source replay).")
@click.option("--demo", is_flag=True, help="Replay the bundled simulated records on this machine and monitor them.")
@click.option("--records", "records", multiple=True, type=click.Path(path_type=Path),
              help="Records/folders to replay (--source replay, or published on lsl/mqtt). Repeatable.")
@click.option("--workers", "workers", type=click.IntRange(min=1), default=None,
              help="--source mqtt: run N monitor worker actors on Ray (the cluster extra); streams are spread over "
                   "them and move when one dies. See the ward with `pedstream central`. (Not the DSP processes "
                   "inside one monitor: those are [stream] workers.)")
@click.option("--ray-address", "ray_address", default=None, metavar="ADDR",
              help="With --workers: join this Ray cluster (e.g. 10.0.0.5:6379) instead of starting a local runtime.")
@with_config
def run(cfg: Any, source: str, model: Path | None, duration: float | None, headless: bool, events_path: Path | None,
        publish_mqtt: bool, lsl_markers: bool, capture: tuple[Path, ...], hl7: bool, fhir_path: Path | None,
        record_dir: Path | None, alarms_dir: Path | None, demo: bool, records: tuple[Path, ...],
        workers: int | None, ray_address: str | None, web: bool, bind: str | None) -> None:
    """Monitor live streams: classify each stream's rhythm, raise alarms, show the dashboard."""
    from pedstream.monitor.assembly import RunPlan
    from pedstream.monitor.command import run_command

    if workers is not None or ray_address is not None:
        from pedstream.cluster.topics import ClusterError

        if workers is None or source != "mqtt" or demo or records:
            raise ClusterError("--workers", "needs --source mqtt and no --demo/--records (--ray-address needs "
                                            "--workers); publish streams with `pedstream replay --to mqtt`")
        local = [flag for flag, on in (("--events", events_path), ("--capture", capture), ("--publish-mqtt", publish_mqtt),
                                       ("--lsl-markers", lsl_markers), ("--hl7", hl7), ("--fhir", fhir_path),
                                       ("--record", record_dir), ("--alarms-dir", alarms_dir), ("--web", web)) if on]
        if local:
            raise ClusterError("--workers", f"{', '.join(local)} not available with workers: the workers publish "
                                            "every event on the broker; use `pedstream central --events FILE`")
        from pedstream.cluster.command import cluster_command

        cluster_command(cfg, workers=workers, ray_address=ray_address, model=model, duration=duration)
        return
    run_command(cfg, RunPlan(source=source, model=model, duration=duration, headless=headless, events_path=events_path,
                             demo=demo, records=records, publish_mqtt=publish_mqtt, lsl_markers=lsl_markers,
                             capture=capture, alarms_dir=alarms_dir, hl7=hl7, fhir_path=fhir_path,
                             record_dir=record_dir, web=web, bind=bind))


@cli.command("demo")
@_run_options("Stop after this many seconds (default: demo.duration_s, 60; Ctrl-C stops earlier).")
@with_config
def demo(cfg: Config, source: str, model: Path | None, duration: float | None, headless: bool,
         events_path: Path | None, publish_mqtt: bool, lsl_markers: bool, capture: tuple[Path, ...],
         hl7: bool, fhir_path: Path | None, record_dir: Path | None, alarms_dir: Path | None, web: bool,
         bind: str | None) -> None:
    """`pedstream run --demo` for demo.duration_s seconds (60): simulated records replayed over LSL on this machine."""
    from pedstream.monitor.assembly import RunPlan
    from pedstream.monitor.command import run_command

    run_command(cfg, RunPlan(source=source, model=model, duration=cfg.demo.duration_s if duration is None else duration,
                             headless=headless, events_path=events_path, demo=True, publish_mqtt=publish_mqtt,
                             lsl_markers=lsl_markers, capture=capture, alarms_dir=alarms_dir, hl7=hl7,
                             fhir_path=fhir_path, record_dir=record_dir, web=web, bind=bind))


@cli.command("central")
@click.option("--source", "source", type=click.Choice(["mqtt"]), default="mqtt", show_default=True,
              help="Where the workers publish (the [mqtt] broker).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: until Ctrl-C).")
@click.option("--headless", is_flag=True, help="No dashboard: print every worker's events to stdout as JSON lines.")
@click.option("--events", "events_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append every event of every worker (the whole ward) as JSON lines to this file.")
@click.option("--capture", "capture", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              callback=lambda ctx, param, v: _check_capture(v),
              help="At exit, write the final dashboard frame to this .svg or .txt file. Repeatable.")
@click.option("--web", "web", is_flag=True,
              help="Serve the web central station instead of the terminal dashboard: every stream's tile with its live "
                   "waveform (from the broker), alarm acknowledge/silence (the web extra; docs/web.md).")
@click.option("--bind", "bind", default=None, metavar="HOST:PORT",
              help="With --web: listen here (default [web] bind); a non-loopback address needs TLS and a users file.")
@with_config
def central(cfg: Any, source: str, duration: float | None, headless: bool, events_path: Path | None,
            capture: tuple[Path, ...], web: bool, bind: str | None) -> None:
    """Central station: one dashboard of every stream of every worker (pedstream run --workers N), alarms first."""
    if web:
        from pedstream.cluster.topics import ClusterError
        from pedstream.cluster.web import central_web_command

        if capture:
            raise ClusterError("--capture", "not available with --web (the terminal dashboard is not drawn)")
        central_web_command(cfg, bind=bind, duration=duration, headless=headless, events_path=events_path)
        return
    from pedstream.cluster.command import central_command

    central_command(cfg, duration=duration, headless=headless, events_path=events_path, capture=list(capture))


@cli.group("web")
def web_group() -> None:
    """The web central station's users (docs/web.md)."""


@web_group.command("adduser")
@click.argument("users_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "clinician"]), default="viewer", show_default=True,
              help="viewer: looks only; clinician: may also acknowledge and silence alarms.")
@click.option("--password-stdin", "password_stdin", is_flag=True, help="Read the password from stdin (else prompted twice).")
@with_config
def web_adduser(cfg: Any, users_file: Path, name: str, role: str, password_stdin: bool) -> None:
    """Add NAME (or change its role and password) in USERS_FILE: name:role:argon2id-hash lines, mode 0600."""
    from pedstream.web.auth import add_user

    password = (sys.stdin.readline().rstrip("\n") if password_stdin
                else click.prompt("password", hide_input=True, confirmation_prompt=True))
    new = add_user(users_file, name, role, password)
    click.echo(f"{'added' if new else 'updated'} {name} ({role}) in {users_file}", err=True)


cli.add_command(__import__("pedstream.score.command", fromlist=["score"]).score)  # pedstream score qrs ...
cli.add_command(__import__("pedstream.bench.command", fromlist=["bench"]).bench)  # pedstream bench model ...
cli.add_command(__import__("pedstream.outputs.record_command", fromlist=["record"]).record)  # pedstream record repair
cli.add_command(__import__("pedstream.transports.mqtt.command", fromlist=["mqtt"]).mqtt)  # pedstream mqtt metas


def main() -> None:
    cli(prog_name="pedstream")


if __name__ == "__main__":
    main()
