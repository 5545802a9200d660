"""``pedstream score``: detectors scored against reference annotations (``score qrs``: EC57 beat by beat;
``score episodes``: rhythm alarms against reference rhythm episodes, EC57 episode statistics).

Thin click layer; the scoring rules live in :mod:`pedstream.score.qrs`. Bad input (a missing record,
a record without beat annotations, a lead the record does not have) prints one ``error: ...`` line
naming the record and exits with code 2 before anything is written; the JSON is written once, at the
end, atomically (temporary file + rename).
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from pedstream.cliutil import fail, with_config
from pedstream.fileio import write_json
from pedstream.config import Config

__all__ = ["score", "score_qrs_command", "score_episodes_command"]


@click.group("score")
def score() -> None:
    """Score detectors against reference annotations."""


@score.command("qrs")
@click.option("--data", "data", type=click.Path(path_type=Path), required=True,
              help="Folder of WFDB records with reference beat annotations (.atr).")
@click.option("--records", "records", multiple=True, metavar="ID...",
              help="Record ids in DATA (default: all; ids may follow --records separated by spaces or commas).")
@click.argument("more_records", nargs=-1, metavar="")
@click.option("--chunk", type=click.IntRange(min=1), default=360, show_default=True,
              help="Samples per chunk fed to the streaming detector (detections do not depend on it).")
@click.option("--lead", default=None,
              help="Lead to detect on, by name (default: MLII, else II, else the record's first channel).")
@click.option("--peer", type=click.Choice(["xqrs"]), default=None, help="Also score wfdb's XQRS on the same records.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the results as JSON here (at the end, atomically).")
def score_qrs(data: Path, records: tuple[str, ...], more_records: tuple[str, ...], chunk: int, lead: str | None,
              peer: str | None, json_path: Path | None) -> None:
    """EC57 beat-by-beat scoring of the streaming QRS detector: TP, FN, FP, Se, +P per record and gross.

    Match window +/- 150 ms (wfdb.processing.compare_annotations); 'EC57' columns leave out the first
    5 minutes; ventricular flutter/fibrillation episodes ([ ... ]) are not scored.
    """
    from pedstream.errors import PedstreamError

    ids = [r for v in (*records, *more_records) for r in v.replace(",", " ").split()]
    try:
        score_qrs_command(data=data, records=ids, chunk=chunk, lead=lead, peer=peer, json_path=json_path,
                          command="pedstream score qrs " + " ".join(sys.argv[3:]))
    except PedstreamError as exc:  # bad records, annotations, leads: RecordError & co. exit 2
        fail(exc)


def check_records_exist(data: Path, paths: list[Path]) -> None:
    """Refuse (one line) record names with no header in ``data``, listing the records that are there."""
    from pedstream.data.loader import list_records
    from pedstream.errors import RecordError

    missing = [p.name for p in paths if not p.with_name(p.name + ".hea").is_file()]
    if missing:
        have = [r.name for r in list_records(data)]
        shown = ", ".join(have[:30]) + (f" ... ({len(have)} in all)" if len(have) > 30 else "")
        raise RecordError(", ".join(missing), f"no such record in {data} (records there: {shown or 'none'})")


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def score_qrs_command(*, data: Path, records: list[str], chunk: int, lead: str | None, peer: str | None,
                      json_path: Path | None, command: str = "") -> dict:
    """Score every record (all checked first), print the tables, write ``json_path``; returns the report."""
    from pedstream.config import load_config
    from pedstream.data.loader import list_records
    from pedstream.errors import RecordError
    from pedstream.score.qrs import (EC57_EXCLUDE_S, EC57_WINDOW_S, PEERS, BeatScore, check_record, detect_stream,
                                     load_record_lead, match_beats, record_entry)

    cfg = load_config(None, ())
    if not Path(data).is_dir():
        raise RecordError(str(data), "is not a folder of WFDB records")
    paths = [Path(data) / r for r in records] if records else list_records(data)
    if not paths:
        raise RecordError(str(data), "holds no WFDB records (*.hea)")
    for p in paths:  # cheap pass first: a bad record fails before minutes of scoring
        check_record(p, signal_cfg=cfg.signal, lead=lead)

    runs = {"ours": {}} | ({peer: {}} if peer else {})
    tot = {k: [BeatScore(), BeatScore(), BeatScore()] for k in runs}  # whole, ec57, V
    leads: dict[str, str] = {}
    t0 = time.perf_counter()
    for p in paths:
        rl = load_record_lead(p, signal_cfg=cfg.signal, lead=lead)
        leads[rl.name] = rl.lead
        for k in runs:
            det = detect_stream(rl.signal, rl.fs, chunk=chunk) if k == "ours" else PEERS[k](rl.signal, rl.fs)
            res = match_beats(rl.ref_sample, rl.ref_symbol, det, fs=rl.fs, vf=rl.vf)
            runs[k][rl.name] = record_entry(res, fs=rl.fs, lead=rl.lead, n_samples=len(rl.signal))
            v = res.class_se("V")
            tot[k] = [tot[k][0] + res.whole, tot[k][1] + res.ec57, tot[k][2] + v]
    report: dict[str, Any] = {
        "records": runs["ours"],
        "total": tot["ours"][0].as_dict() | {"se_v": tot["ours"][2].se, "v_tp": tot["ours"][2].tp, "v_fn": tot["ours"][2].fn},
        "total_ec57": tot["ours"][1].as_dict(),
    }
    if peer:
        report["peer"] = {"name": peer, "records": runs[peer],
                          "total": tot[peer][0].as_dict() | {"se_v": tot[peer][2].se, "v_tp": tot[peer][2].tp,
                                                              "v_fn": tot[peer][2].fn},
                          "total_ec57": tot[peer][1].as_dict()}
    report |= {"detector": "pedstream.dsp.qrs.OnlineQRSDetector (streaming, flushed at the end)",
               "chunk": chunk, "window_ms": EC57_WINDOW_S * 1e3, "exclude_s": EC57_EXCLUDE_S,
               "lead": lead or "MLII|II|first", "leads": leads, "data": str(data), "commit": _commit(),
               "command": command, "seconds": round(time.perf_counter() - t0, 1)}
    _print_tables(report)
    if json_path is not None:
        write_json(Path(json_path), report, indent=2)
        click.echo(f"wrote {json_path}")
    return report


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _print_tables(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    peer = report.get("peer")
    t = Table(title=f"QRS detection, beat by beat (±{report['window_ms']:.0f} ms, chunk {report['chunk']})")
    for c in ("record", "lead", "beats", "TP", "FN", "FP", "Se %", "+P %", "Se V %", "EC57 Se %", "EC57 +P %"):
        t.add_column(c, justify="left" if c in ("record", "lead") else "right")
    if peer:
        for c in (f"{peer['name']} Se %", f"{peer['name']} +P %"):
            t.add_column(c, justify="right")
    for rid, e in report["records"].items():
        row = [rid, e["lead"], str(e["tp"] + e["fn"]), str(e["tp"]), str(e["fn"]), str(e["fp"]), _pct(e["se"]),
               _pct(e["ppv"]), _pct(e["se_v"]) if e["v_tp"] + e["v_fn"] else "-", _pct(e["ec57"]["se"]),
               _pct(e["ec57"]["ppv"])]
        if peer:
            pe = peer["records"][rid]
            row += [_pct(pe["se"]), _pct(pe["ppv"])]
        t.add_row(*row)
    tt = Table(title="gross totals")
    for c in ("detector", "scored", "TP", "FN", "FP", "Se %", "+P %", "Se V %"):
        tt.add_column(c, justify="left" if c in ("detector", "scored") else "right")
    for name, blk in [("ours", report)] + ([(peer["name"], peer)] if peer else []):
        for scope, key in (("whole records", "total"), ("EC57 (from 5 min)", "total_ec57")):
            s = blk[key]
            tt.add_row(name, scope, str(s["tp"]), str(s["fn"]), str(s["fp"]), _pct(s["se"]), _pct(s["ppv"]),
                       _pct(s["se_v"]) if "se_v" in s else "")
    con = Console(width=max(120, Console().width))
    con.print(t)
    con.print(tt)


# ------------------------------------------------------------------------------------------ episodes
@score.command("episodes")
@click.option("--data", "data", type=click.Path(path_type=Path), required=True,
              help="Folder of WFDB records with rhythm annotations ('+' with aux '(AFIB'...): MIT-BIH, Leipzig, "
                   "`pedstream data synth` output.")
@click.option("--records", "records", multiple=True, metavar="ID...",
              help="Record ids in DATA (default: all; ids may follow --records separated by spaces or commas).")
@click.argument("more_records", nargs=-1, metavar="")
@click.option("--model", "model", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Rhythm model (.onnx; default: the packaged monitor model, as `pedstream run`).")
@click.option("--rhythm-map", "rhythm_map", default="auto", show_default=True,
              help="[labels.rhythm.<name>] map of the rhythm annotations; auto: per record, the map that knows most "
                   "of its rhythm annotations.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Score only the first SECONDS of each record (default: whole records).")
@click.option("--speed", type=float, default=math.inf, show_default="inf: as fast as the CPU allows",
              help="Replay pace (1 = real time); alarms run on record time whatever the pace.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the results as JSON here (at the end, atomically).")
@click.option("--save-probs", "probs_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also save each window's class probabilities (.npz) to retune alarms without replaying "
                   "(bench/tune_alarms.py).")
@with_config
def score_episodes(cfg: Any, data: Path, records: tuple[str, ...], more_records: tuple[str, ...],
                   model: Path | None, rhythm_map: str, seconds: float | None, speed: float,
                   json_path: Path | None, probs_path: Path | None) -> None:
    """Rhythm alarms against reference rhythm episodes, as EC57 scores episodes.

    Each record is replayed through the live engine (replay source, DSP, batcher, smoothing, alarms) on
    its own clock, as fast as the CPU allows. Per alarm class: episode Se/+P, duration Se/+P, time to
    alarm (episode onset -> alarm on: median, p95), missed episodes; false alarms per monitored hour.
    """
    ids = [r for v in (*records, *more_records) for r in v.replace(",", " ").split()]
    # a domain error (no rhythm annotations, bad records, model) is one line and exit 2: with_config
    score_episodes_command(cfg, data=data, records=ids, model=model, rhythm_map=rhythm_map, seconds=seconds,
                           speed=speed, json_path=json_path, probs_path=probs_path,
                           command="pedstream score episodes " + " ".join(sys.argv[3:]))


def score_episodes_command(cfg: Config, *, data: Path, records: list[str], model: Path | None = None,
                           rhythm_map: str = "auto", seconds: float | None = None, speed: float = math.inf,
                           json_path: Path | None = None, probs_path: Path | None = None, command: str = "",
                           quiet: bool = False) -> dict:
    """Check every record (rhythm annotations), replay them all through one engine, score, print, write
    ``json_path``; returns the report (see :mod:`pedstream.score.episodes`)."""
    from pedstream.data.loader import list_records
    from pedstream.errors import RecordError
    from pedstream.score.episode_report import print_tables, reference_for, save_probs, score_run
    from pedstream.score.replay_events import replay_events
    from pedstream.transports.replay import plan_replay
    from pedstream.monitor.assembly import open_model

    if not Path(data).is_dir():
        raise RecordError(str(data), "is not a folder of WFDB records")
    paths = [Path(data) / r for r in records] if records else list_records(data)
    if not paths:
        raise RecordError(str(data), "holds no WFDB records (*.hea)")
    check_records_exist(Path(data), paths)
    refs = {p.name: reference_for(cfg, p, rhythm_map) for p in paths}  # cheap pass: fails before any replay
    session = open_model(cfg, model)
    plans = plan_replay(paths, cfg.signal, seconds=seconds)
    t0 = time.perf_counter()
    import asyncio

    run = asyncio.run(replay_events(cfg, session, plans, speed=speed, probe=probs_path is not None))
    if probs_path is not None:
        save_probs(Path(probs_path), run, class_names=list(session.class_names))
    report = score_run(cfg, run, refs, class_names=list(session.class_names))
    from pedstream.monitor.banner import is_packaged_model, model_banner

    report |= {"model": str(session.path), "model_description": str(session.metadata.get("description", "")),
               "model_banner": model_banner(session.metadata, packaged=is_packaged_model(session.path)),
               "data": str(data), "speed": "inf" if math.isinf(speed) else speed, "seconds_per_record": seconds,
               "alarms_config": cfg.alarms.model_dump(mode="json", exclude={"hr_bands"}),
               "commit": _commit(), "command": command, "wall_s": round(time.perf_counter() - t0, 1)}
    if not quiet:
        print_tables(report)
    if json_path is not None:
        write_json(Path(json_path), report, indent=2)
        if not quiet:
            click.echo(f"wrote {json_path}")
    return report
