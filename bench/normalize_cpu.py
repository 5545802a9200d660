"""CPU time of the batcher's window normalisation: this checkout's ``normalize_split`` (the batch's
windows gathered into kept work arrays, :class:`~pedstream.dsp.windowing.NormWork`) against another
version's batcher path (its windows stacked, then its ``normalize_split``, or its ``normalize_window``
plus the two contiguous copies where it had no ``normalize_split``), on the same batches, in
alternating rounds (outputs compared bit for bit).

    .venv/bin/python bench/normalize_cpu.py --baseline-rev 42666ce~1 --batch 8 32 --rounds 20

The baseline is ``pedstream/dsp/windowing.py`` of git revision ``--baseline-rev`` (``git show``), loaded as
a module of its own. Batches: ``(B, 19, T)`` float32 windows of the packaged model's geometry (2.5 s at
977 Hz), 12 ECG + 7 IEGM channels, random signal with flat and absent channels.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_baseline(rev: str) -> types.ModuleType:
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:pedstream/dsp/windowing.py"], check=True,
                         capture_output=True, text=True).stdout
    mod = types.ModuleType("windowing_baseline")
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    exec(compile(src, f"{rev}:windowing.py", "exec"), mod.__dict__)
    return mod


def main() -> None:
    from pedstream.dsp.windowing import NormWork, normalize_split

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-rev", default="42666ce~1")
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    old = load_baseline(a.baseline_rev)
    rng = np.random.default_rng(0)
    rows = []
    for b in a.batch:
        x = (rng.standard_normal((b, 19, 2442)) * 0.4).astype(np.float32)
        x[:, 15] = 0.0  # flat
        present = np.ones((b, 19), bool)
        present[:, 17:] = False

        windows = list(x)  # the batcher holds a batch as separate (19, T) windows
        work = NormWork()

        def base() -> tuple[np.ndarray, np.ndarray]:
            if hasattr(old, "normalize_split"):  # that version's batcher: stack, then one call
                return old.normalize_split(np.stack(windows), present, 12)
            z = old.normalize_window(np.stack(windows), present)
            return np.ascontiguousarray(z[:, :12]), np.ascontiguousarray(z[:, 12:])

        def new() -> tuple[np.ndarray, np.ndarray]:
            return normalize_split(windows, present, 12, work)  # as the batcher calls it

        same = all(np.array_equal(u.view(np.uint32), v.view(np.uint32)) for u, v in zip(base(), new()))
        t = {"base": 0.0, "new": 0.0}
        for _ in range(a.rounds):
            for name, fn in (("base", base), ("new", new)):
                c = time.process_time()
                fn()
                t[name] += time.process_time() - c
        ms = {k: 1000.0 * v / a.rounds for k, v in t.items()}
        rows.append({"batch": b, "base_ms": round(ms["base"], 3), "new_ms": round(ms["new"], 3),
                     "ratio": round(ms["new"] / ms["base"], 3), "bit_for_bit": same})
        print(json.dumps(rows[-1]))
    if a.json:
        a.json.write_text(json.dumps({"baseline_rev": a.baseline_rev, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
