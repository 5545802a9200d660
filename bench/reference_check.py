"""Whole-signal classification and the replays' reference labels on real MIT-BIH records.

    .venv/bin/python bench/reference_check.py --data ../shared/data/mitdb --out bench/results/reference_check.json

- ``classify``: ``pedstream.classify`` on the first 20, 60 and 300 s of record 203 (360 Hz, MLII + V1)
  and on the whole record (30 min): calls, first and last window start (one call per hop after the
  filter warm-up, whatever the length); for the whole record the peak of Python-level allocations
  during the call (``tracemalloc``: numpy buffers included, the input array not, ONNX Runtime's own
  arena not);
- ``reference``: records 201 and 203 (``(AFIB`` annotated) replayed through the engine as ``score
  episodes`` does (first 300 s): the reference label of every call with the rhythm reference (what
  replays use where a record has rhythm annotations) and with the beat labels alone (the reference
  before rhythm annotations were used), and the calls' agreement with each.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import wfdb

import pedstream
from pedstream.data.labels import LabelGrouping
from pedstream.score.replay_events import run_replay
from pedstream.monitor.reference import ReferenceLabels


def classify_lengths(model, data: Path) -> dict:
    out = {}
    for secs in (20, 60, 300):
        sig, f = wfdb.rdsamp(str(data / "203"), sampto=360 * secs)
        t = time.perf_counter()
        calls = pedstream.classify(sig, fs=f["fs"], channels=f["sig_name"], model=model)
        out[f"203_{secs}s"] = {"calls": len(calls), "first_start_s": calls[0].start_s, "last_start_s": calls[-1].start_s,
                               "wall_s": round(time.perf_counter() - t, 2)}
    sig, f = wfdb.rdsamp(str(data / "203"))  # the whole record (30 min)
    tracemalloc.start()
    t = time.perf_counter()
    calls = pedstream.classify(sig, fs=f["fs"], channels=f["sig_name"], model=model)
    wall = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out["203_whole"] = {"seconds": round(sig.shape[0] / f["fs"], 1), "calls": len(calls), "first_start_s": calls[0].start_s,
                        "last_start_s": calls[-1].start_s, "wall_s": round(wall, 2),
                        "peak_python_alloc_mb": round(peak / 2**20, 1),
                        "input_mb": round(sig.nbytes / 2**20, 1)}
    return out


def references(model, data: Path, records: list[str], seconds: float) -> dict:
    cfg = model.config
    out = {}
    for rec in records:
        run = run_replay(cfg, model.session, [data / rec], seconds=seconds)
        plan = run.plans[0]
        kinds = {"rhythm_where_annotated": ReferenceLabels.from_config(cfg),
                 "beats_only": ReferenceLabels(LabelGrouping(cfg.labels.active))}
        row = {}
        for name, ref in kinds.items():
            ref.add(plan, t0=plan.start / plan.fs)  # the replay ran on record time
            truths: Counter[str] = Counter()
            for ev in run.events.get(plan.stream_id, []):
                if ev.kind == "call":
                    ev.extra.pop("truth", None)
                    ref.emit(ev)
                    truths[str(ev.extra.get("truth"))] += 1
            agreed, compared = ref.agreement()
            row[name] = {"truth_source": ref.truth_source, "truth": dict(truths.most_common()),
                         "agreement": round(agreed / compared, 4) if compared else None, "compared": compared}
        out[rec] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mitdb"))
    ap.add_argument("--records", nargs="+", default=["201", "203"])
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--out", type=Path, default=Path("bench/results/reference_check.json"))
    args = ap.parse_args()
    model = pedstream.load_model()
    doc = {"command": "python bench/reference_check.py --data " + str(args.data), "model": str(model.path.name),
           "classify": classify_lengths(model, args.data),
           "reference": references(model, args.data, args.records, args.seconds)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
