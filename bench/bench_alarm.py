"""Alarm benchmark: time to alarm and false alarms of the shipped rhythm model on simulated records.

Runs ``pedstream score episodes`` (records replayed through the live engine on record time, as fast
as the CPU allows; EC57 episode statistics) on a fixed set of SIMULATED records:

- ``--quick`` (well under a minute): the three 24 s demo records shipped in
  ``pedstream/assets/demo_records`` (one AVNRT and one AVRT episode);
- full (a few minutes on a loaded 2-core machine): 6 records x 3 min written by
  ``pedstream data synth --seed 7`` (the built-in rhythm priors, no ``../shared`` needed) into a
  temporary folder.

The figures depend on the model and the ``[alarms]`` settings, not on the machine (the alarm logic
runs on record time); ``wall_s`` is the only timing and it is noisy on a shared machine.

    .venv/bin/python bench/bench_alarm.py [--quick] [--json bench/results/alarm.json]

The benchmark itself is :mod:`pedstream.bench.alarm` (``pedstream bench alarm`` runs the same); this
script prints its table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pedstream.bench.alarm import run

__all__ = ["main"]


def _summary(report: dict) -> str:
    rows = []
    for name, c in report["classes"].items():
        if c["episodes"] or c["alarms"]:
            med, p95 = c["time_to_alarm_s_median"], c["time_to_alarm_s_p95"]
            rows.append(f"  {name:8s} episodes {c['episodes']:3d}  Se {_pct(c['episode_se'])}  +P {_pct(c['episode_ppv'])}"
                        f"  time to alarm median {_s(med)} s, p95 {_s(p95)} s  false {c['false_alarms']}")
    fa = report["false_alarms_per_hour"]
    rows.append(f"  false alarms {report['false_alarms']} in {report['monitored_h']:.2f} h monitored "
                f"({'-' if fa is None else f'{fa:.2f}'}/h); {report['wall_s']} s wall")
    return "\n".join(rows)


def _pct(v: float | None) -> str:
    return "   -  " if v is None else f"{100 * v:5.1f}%"


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the three 24 s demo records only (< 1 min)")
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    ap.add_argument("--model", type=Path, default=None, help="rhythm model (default: the packaged demo model)")
    args = ap.parse_args(argv)
    from pedstream.errors import PedstreamError

    try:
        report = run(quick=args.quick, model=args.model, command="bench/bench_alarm.py")
    except PedstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"alarm benchmark ({report['records_set']}):")
    print(_summary(report))
    if args.json is not None:
        from pedstream.fileio import write_json

        write_json(args.json, report, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
