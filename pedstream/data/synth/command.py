"""``pedstream data synth``: write a folder of simulated Leipzig-format records (2 worker processes)."""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from pedstream.data.channels import LEIPZIG_LAYOUTS
from pedstream.errors import ConfigError, RecordError
from pedstream.config import Config

__all__ = ["synth_command", "build_record", "LAYOUT_CYCLE"]

# Record i gets layout LAYOUT_CYCLE[i % 6]: any six consecutive records cover all six real layouts.
LAYOUT_CYCLE: tuple[str, ...] = tuple(LEIPZIG_LAYOUTS)


def _children(seqs: dict[str, list]) -> list[str]:
    kids = [p for p in seqs if p[1:].isdigit() and int(p[1:]) < 100]
    return sorted(kids, key=lambda p: int(p[1:]))


def build_record(task: dict[str, Any]) -> dict[str, Any]:
    """Simulate and write one record (runs in a worker process). Returns a summary dict."""
    from pedstream.data.synth.episodes import real_label_stream
    from pedstream.data.synth.simulate import synthesize
    from pedstream.data.synth.subject import random_subject
    from pedstream.data.synth.writer import write_record

    index, seed = task["index"], task["seed"]
    subject = None
    row = task.get("subject_row")
    if row is not None:
        r = np.random.default_rng([seed, index, 101])
        subject = random_subject(r, index=index, age=float(row["age"]), gender=row["gender"].strip() or None,
                                 diagnosis=row["diagnosis"].strip() or None,
                                 ap_location=(row.get("ap_loacation") or "").strip())
    labels = None
    if task.get("sequence") is not None:
        labels = real_label_stream(task["sequence"], np.random.default_rng([seed, index, 202]))
    rec = synthesize(name=task["name"], layout=task["layout"], minutes=task["minutes"], seed=seed, index=index,
                     subject=subject, labels=labels, mains_hz=task["mains_hz"], nstdb=task["nstdb"])
    write_record(task["out"], rec)
    ann = rec.annotations
    lim = 32767.0 / rec.gains
    clipped = [c for k, c in enumerate(rec.channels) if np.any(np.abs(rec.signal[:, k]) >= lim[k] * 0.999)]
    return {
        "index": index, "name": rec.name, "layout": rec.layout,
        "row": rec.subject.table_row(rec.duration_s),
        "labels": list(zip(ann.symbol, ann.aux)),
        "n_beats": int(ann.beat_mask().sum()),
        "clipped": clipped, "flat": list(rec.options.flat),
    }


def synth_command(cfg: Config, *, out: Path, records: int | None = None, minutes: float | None = None,
                  seed: int | None = None, follow_real: Path | None = None, workers: int | None = None,
                  quiet: bool = False) -> list[dict[str, Any]]:
    """Write ``records`` simulated records of ``minutes`` into ``out`` (defaults from ``cfg.synth``)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pedstream.data.labels import LabelGrouping
    from pedstream.data.synth.episodes import read_real_sequences, read_real_subjects
    from pedstream.data.synth.noise import find_nstdb
    from pedstream.data.synth.subject import record_name
    from pedstream.data.synth.writer import write_folder_files

    records = cfg.synth.records if records is None else records
    minutes = cfg.synth.minutes if minutes is None else minutes
    seed = cfg.synth.seed if seed is None else seed
    problems = []
    if records < 1:
        problems.append(("--records", f"must be at least 1 (got {records})"))
    if not minutes > 0:
        problems.append(("--minutes", f"must be > 0 (got {minutes})"))
    if problems:
        raise ConfigError(problems, source="data synth")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RecordError(str(out), "--out exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)

    seqs: dict[str, list] = {}
    subj_rows: dict[str, dict[str, str]] = {}
    kids: list[str] = []
    if follow_real is not None:
        seqs = read_real_sequences(follow_real)
        subj_rows = read_real_subjects(follow_real)
        kids = _children(seqs)
        if not kids:
            raise RecordError(str(follow_real), "no children (x001..x0029) in the annotation table")
    nstdb = find_nstdb(None)
    tasks = []
    for i in range(records):
        kid = kids[i % len(kids)] if kids else None
        tasks.append({
            "index": i, "seed": int(seed), "name": record_name(i), "layout": LAYOUT_CYCLE[i % len(LAYOUT_CYCLE)],
            "minutes": float(minutes), "mains_hz": float(cfg.synth.mains_hz), "out": str(out),
            "nstdb": str(nstdb) if nstdb else None,
            "sequence": seqs[kid] if kid else None,
            "subject_row": subj_rows.get(kid) if kid else None,
        })
    n_workers = workers if workers is not None else min(2, records, os.cpu_count() or 1)
    console = Console(stderr=True, quiet=quiet)
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with Progress(TextColumn("[bold]synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console, transient=False) as progress:
        bar = progress.add_task("", total=records)
        if n_workers <= 1:
            for t in tasks:
                results.append(build_record(t))
                progress.update(bar, advance=1, description=results[-1]["name"])
        else:
            import multiprocessing as mp

            env = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
            os.environ.update({k: "1" for k in env})  # one BLAS thread per worker: the workers are the parallelism
            try:
                with ProcessPoolExecutor(max_workers=n_workers, mp_context=mp.get_context("spawn")) as pool:
                    futs = [pool.submit(build_record, t) for t in tasks]
                    for f in as_completed(futs):
                        results.append(f.result())
                        progress.update(bar, advance=1, description=results[-1]["name"])
            finally:
                for k, v in env.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
    results.sort(key=lambda r: r["index"])
    write_folder_files(out, rows=[r["row"] for r in results],
                       sequences=[(r["name"], s, a) for r in results for s, a in r["labels"]],
                       names=[r["name"] for r in results], seed=int(seed),
                       follow_real=str(follow_real) if follow_real else None,
                       noise=("real MIT-BIH nstdb bw/ma records mixed with synthetic wander, muscle and "
                              f"{cfg.synth.mains_hz:g} Hz mains noise" if nstdb else
                              f"synthetic baseline wander, muscle and {cfg.synth.mains_hz:g} Hz mains noise"))
    grouping = LabelGrouping(cfg.labels.active)
    beats = sum(r["n_beats"] for r in results)
    counts: Counter[str] = Counter()
    for r in results:
        c = grouping.counts([s for s, _ in r["labels"]], [a for _, a in r["labels"]])
        counts.update({k: v for k, v in c.items() if v})
    classes = f", {len(counts)} classes"
    layouts = len({r["layout"] for r in results})
    clipped = sum(1 for r in results if r["clipped"])
    console_out = Console(quiet=quiet)
    console_out.print(f"wrote {records} SIMULATED records x {minutes:g} min to {out} in "
                      f"{time.perf_counter() - t0:.1f} s: {beats} beats{classes}, {layouts} layouts, "
                      f"{clipped} with clipping, seed {seed}"
                      + (f", following {follow_real}" if follow_real else ""), highlight=False)
    return results

