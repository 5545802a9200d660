"""``pedstream bench alarm``: time to alarm and false alarms of the shipped rhythm model on simulated records.

Runs ``pedstream score episodes`` (records replayed through the live engine on record time, as fast
as the CPU allows; EC57 episode statistics) on a fixed set of SIMULATED records:

- ``quick`` (well under a minute): the three 24 s demo records shipped in
  ``pedstream/assets/demo_records`` (one AVNRT and one AVRT episode);
- full (a few minutes on a loaded 2-core machine): 6 records x 3 min written by
  ``pedstream data synth --seed 7`` (the built-in rhythm priors, no ``../shared`` needed) into a
  temporary folder.

The figures depend on the model and the ``[alarms]`` settings, not on the machine (the alarm logic
runs on record time); ``wall_s`` is the only timing and it is noisy on a shared machine. The script
``bench/bench_alarm.py`` runs the same (:func:`run`) and prints a table.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from pedstream.bench.common import machine_info
from pedstream.config import Config

__all__ = ["alarm_bench", "run", "SYNTH"]

SYNTH = {"records": 6, "minutes": 3.0, "seed": 7}  # the full run's simulated records


def _score(cfg: Config, folders: list[Path], model: Path | None) -> dict:
    """One score-episodes report over every record of ``folders`` (gross statistics)."""
    import asyncio

    from pedstream.data.loader import list_records
    from pedstream.score.episode_report import reference_for, score_run
    from pedstream.score.replay_events import replay_events
    from pedstream.transports.replay import plan_replay
    from pedstream.monitor.assembly import open_model

    paths = [p for f in folders for p in list_records(f)]
    refs = {p.name: reference_for(cfg, p) for p in paths}
    if len(refs) != len(paths):  # two folders with the same record names: keep them apart
        raise ValueError("record names must be unique across the benchmark's folders")
    session = open_model(cfg, model)
    plans = plan_replay(paths, cfg.signal)
    run_ = asyncio.run(replay_events(cfg, session, plans))
    report = score_run(cfg, run_, refs, class_names=list(session.class_names))
    report["model"] = str(session.path)
    report["model_description"] = str(session.metadata.get("description", ""))
    return report


def run(*, quick: bool, model: Path | None = None, command: str = "pedstream bench alarm") -> dict:
    """The benchmark's JSON (the ``pedstream score episodes`` report plus what ran; ``command``: what to
    write as the command that produced it)."""
    from pedstream.config import load_config
    from pedstream.monitor.assembly import demo_records_path

    cfg = load_config()
    t0 = time.perf_counter()
    demo = demo_records_path(cfg)
    with tempfile.TemporaryDirectory(prefix="pedstream-bench-alarm-") as tmp:
        if quick:
            folder, what = demo, f"{demo} (3 SIMULATED records x 24 s)"
        else:
            from pedstream.data.synth.command import synth_command

            folder = Path(tmp) / "sim"
            synth_command(cfg, out=folder, records=SYNTH["records"], minutes=SYNTH["minutes"], seed=SYNTH["seed"],
                          quiet=True)
            what = (f"{SYNTH['records']} SIMULATED records x {SYNTH['minutes']:g} min "
                    f"(pedstream data synth --seed {SYNTH['seed']}, built-in rhythm priors)")
        report = _score(cfg, [folder], model)
    report |= {"bench": "alarm", "quick": quick, "records_set": what, "wall_s": round(time.perf_counter() - t0, 1),
               "command": command + (" --quick" if quick else "")}
    return report


def alarm_bench(*, quick: bool) -> dict[str, Any]:
    """The result of :func:`run` with the machine block added."""
    result = dict(run(quick=quick))
    result.setdefault("machine", machine_info())
    return result
