"""Where the engine's time goes: py-spy samples of ``pedstream bench engine`` at N streams, summed
per function (inclusive, under the event loop and in other threads) into a markdown table.

    .venv/bin/python bench/profile_engine.py --streams 400 --seconds 20 --out bench/results/engine_profile.md

py-spy (``pip install py-spy``; not a dependency of pedstream) samples the running process from outside, so the engine runs as it
does unprofiled. The table counts on-CPU samples (idle threads are not sampled); shares are of
the event loop's samples (the thread that runs ingest, DSP, batching and alarms), the rest of
threads (ONNX Runtime's calls, record reads) is listed apart.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def summarise(raw: Path, top: int) -> tuple[int, int, list[tuple[str, float]], list[tuple[str, float]]]:
    loop_incl: collections.Counter[str] = collections.Counter()
    other: collections.Counter[str] = collections.Counter()
    n_loop = n_other = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, n_s = line.rsplit(" ", 1)
        n = int(n_s)
        frames = [re.sub(r":\d+\)", ")", f) for f in stack.split(";")]
        k = next((i for i, f in enumerate(frames) if f.startswith("BaseEventLoop._run_once")), None)
        if k is None:
            if any(f.startswith("Thread._bootstrap") for f in frames):
                n_other += n
                for f in set(frames[3:]):
                    other[f] += n
            continue
        n_loop += n
        for f in set(frames[k + 1:]):
            loop_incl[f] += n
    loop_rows = [(f, 100.0 * c / max(1, n_loop)) for f, c in loop_incl.most_common(top)]
    other_rows = [(f, 100.0 * c / max(1, n_other)) for f, c in other.most_common(top // 2)]
    return n_loop, n_other, loop_rows, other_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=400)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override, as pedstream --set")
    ap.add_argument("--out", type=Path, default=Path("bench/results/engine_profile.md"))
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    exe = str(Path(sys.executable).parent / "pedstream")
    sets = [a for o in args.overrides for a in ("--set", o)]
    with tempfile.TemporaryDirectory() as tmp:
        raw, js = Path(tmp) / "raw.txt", Path(tmp) / "engine.json"
        cmd = [spy, "record", "-r", str(args.rate), "--format", "raw", "-o", str(raw), "--", exe, "bench", "engine", *sets,
               "--source", "replay", "--streams", str(args.streams), "--seconds", str(args.seconds), "--json", str(js)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import json

        result = json.loads(js.read_text())["results"][0]
        n_loop, n_other, loop_rows, other_rows = summarise(raw, args.top)
    keys = ("streams", "sustained", "realtime_ratio", "windows", "windows_expected", "dropped", "e2e_ms_p50", "e2e_ms_p99",
            "cpu_per_core_pct")
    lines = [f"# Engine profile at {args.streams} streams", "",
             f"`{' '.join(['.venv/bin/python', 'bench/profile_engine.py', *sys.argv[1:]])}`", "",
             "The run: " + ", ".join(f"{k} {result.get(k)}" for k in keys), "",
             f"## Event loop ({n_loop} samples): share of its samples per function (inclusive)", "",
             "| share | function |", "|---:|---|"]
    lines += [f"| {p:.1f} % | `{f}` |" for f, p in loop_rows]
    lines += ["", f"## Other threads ({n_other} samples: ONNX Runtime calls, record reads, watchdog)", "",
              "| share | function |", "|---:|---|"]
    lines += [f"| {p:.1f} % | `{f}` |" for f, p in other_rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
