"""A markdown table of ``pedstream bench engine`` JSON files (one row per stream count of each file).

    .venv/bin/python bench/engine_table.py bench/results/engine_pipeline/set_*_500.json

Columns: the file's name (its setting or version), streams, sustained, windows / expected, dropped, e2e
p50 / p99 ms, the machine's CPU (% of one core, all processes), the engine's CPU per stream-second (ms, its
child processes included), the CPU of its threads (% of one core: event loop / DSP thread / inference
threads / ONNX Runtime's pool / child processes), the DSP's share of the wall time, the bottleneck the bench
named, and the machine's load average when the file's run began.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HEAD = ("| run | streams | sustained | windows / expected | dropped | e2e p50 / p99 ms | CPU % (machine) | "
        "ms CPU per stream-s | threads % loop / DSP / inference / ORT pool / children | DSP share | bottleneck | load |")


def rows(path: Path) -> list[str]:
    d = json.loads(path.read_text())
    load = (d.get("machine") or {}).get("load_avg") or (d.get("machine") or {}).get("loadavg")
    load_s = f"{load[0]:.1f}" if isinstance(load, (list, tuple)) and load else "-"
    out = []
    for r in d["results"]:
        t = r.get("thread_cpu_pct") or {}
        threads = " / ".join(f"{t.get(k, 0.0):g}" for k in ("loop", "dsp", "inference", "native", "children")) if t else "-"
        out.append(f"| {path.stem} | {r['streams']} | {'yes' if r['sustained'] else '**no**'} | "
                   f"{r['windows']} / {r['windows_expected']} | {r['dropped']} | {r['e2e_ms_p50']} / {r['e2e_ms_p99']} | "
                   f"{r.get('cpu_total_pct')} | {r.get('cpu_ms_per_stream_s')} | {threads} | {r.get('dsp_share')} | "
                   f"{r.get('bottleneck')} | {load_s} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path)
    a = ap.parse_args()
    print(HEAD)
    print("|" + "---|" * HEAD.count(" | ") + "---|")
    for f in a.files:
        print("\n".join(rows(f)))


if __name__ == "__main__":
    main()
