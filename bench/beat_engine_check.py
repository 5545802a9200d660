"""The feature beat model through the live engine, against the same model offline (train/serve check).

For each chosen CV fold of bench/beat_cv.py, the fold's model (the chosen variant fitted on the other
20 DS1 records, as in the CV) is exported to ONNX; each held-out record is fed through the monitor
(``pedstream.Monitor(beat_model=...)``: the engine's QRS detector, its own filters and per-stream
features) and its ``beat`` events are matched to the reference beats (150 ms). Scored beside the
offline CV predictions of the same records (reference beat positions, same model): SVEB/VEB Se, +P, F1;
a call with no reference beat within 150 ms is a false positive, a reference beat with no call a miss.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/beat_engine_check.py [--folds 8 9]

Writes bench/results/beat_cv/engine_check.json and engine_check.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "beat_cv"


def stats(ref_y: np.ndarray, called: np.ndarray, extra_calls: list[int]) -> dict:
    """``called`` (n_ref,) class called for each reference beat (-1: missed); ``extra_calls``: classes of
    calls on no reference beat."""
    out = {}
    for name, k in (("SVEB", 1), ("VEB", 2)):
        tp = int(np.sum((ref_y == k) & (called == k)))
        se = tp / max(int(np.sum(ref_y == k)), 1)
        n_called = int(np.sum(called == k)) + sum(1 for c in extra_calls if c == k)
        ppv = tp / max(n_called, 1)
        out[name] = {"Se": se, "+P": ppv, "F1": 2 * se * ppv / (se + ppv) if se + ppv else 0.0}
    return out


def engine_calls(model: Path, rec_path: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(times s, class index) of every beat event of the record fed through the monitor."""
    from pedstream.train.beat_data import engine_beat_events

    events, t0, _ = engine_beat_events(rec_path, model)
    t = np.asarray([e.extra["beat_t"] - t0 for e in events])
    return t, np.asarray([classes.index(e.label) for e in events])


def main(argv: list[str] | None = None) -> int:
    from bench.beat_cv import run_variant
    from pedstream.train.beat_data import beat_config, build_tables, default_cache
    from pedstream.train.beat_export import build_metadata, export_onnx
    from pedstream.train.beat_gbm import CLASSES, VARIANTS, fit, record_folds

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mitdb"))
    ap.add_argument("--folds", type=int, nargs="*", default=[8, 9])
    ap.add_argument("--cv", default=str(OUT / "cv.json"), help="the CV whose choice and positions to check")
    a = ap.parse_args(argv)
    cvdoc = json.loads(Path(a.cv).read_text())
    v = VARIANTS[cvdoc["chosen"]["variant"]]
    positions = cvdoc.get("positions", "reference")
    tables = build_tables(a.data, positions=positions)
    names = [t.record for t in tables]
    cv = run_variant(v, tables, int(cvdoc["folds"]), default_cache() / "beat_cv", positions)
    rows, t_start = {}, time.time()
    for k in a.folds:
        test = record_folds(names, int(cvdoc["folds"]))[k]
        train = [t for t in tables if t.record not in test]
        x, y = np.concatenate([t.x for t in train]), np.concatenate([t.y for t in train])
        clf = fit(v, x, y)
        n = x.shape[1]
        meta = build_metadata(variant=v, cfg=beat_config(), feature_scale=x.std(axis=0)[:n], beats={}, records=[t.record for t in train],
                              adapt_settings={"method": "knn", "k": 1, "mix": 0.8, "n_half": 10.0})
        with tempfile.TemporaryDirectory() as d:
            path = export_onnx(clf, Path(d) / "fold.onnx", meta)
            for name in test:
                i = names.index(name)
                tab = tables[i]
                t_call, c_call = engine_calls(path, Path(a.data) / name, list(CLASSES))
                called = np.full(tab.y.size, -1)
                used = np.zeros(t_call.size, dtype=bool)
                for j, t in enumerate(tab.t):
                    m = int(np.argmin(np.abs(t_call - t))) if t_call.size else -1
                    if m >= 0 and abs(t_call[m] - t) <= 0.15 and not used[m]:
                        called[j], used[m] = c_call[m], True
                offline = cv["proba"][cv["record"] == i].argmax(axis=1)
                rows[name] = {"reference_beats": int(tab.y.size), "engine_beats": int(t_call.size),
                              "missed": int(np.sum(called < 0)), "extra_calls": int(np.sum(~used)),
                              "engine": stats(tab.y, called, c_call[~used].tolist()),
                              "offline_cv": stats(tab.y, offline, []),
                              "support": {"S": int(np.sum(tab.y == 1)), "V": int(np.sum(tab.y == 2))}}
                print(name, json.dumps(rows[name]), f"{time.time() - t_start:.0f} s", flush=True)
    cmd = "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/beat_engine_check.py" + (
        " --folds " + " ".join(map(str, a.folds)) if a.folds != [8, 9] else "") + (
        f" --cv {Path(a.cv).resolve().relative_to(ROOT)}" if Path(a.cv).resolve() != OUT / "cv.json" else "")
    doc = {"command": cmd, "variant": v.name, "positions": positions, "records": rows, "seconds": time.time() - t_start,
           "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = Path(a.cv).parent
    (out / "engine_check.json").write_text(json.dumps(doc, indent=1) + "\n")
    md = ["# The beat model through the engine vs offline (same fold model)", "", f"Made with `{cmd}` ({doc['written']}).", "",
          "Engine: the record fed through pedstream.Monitor (its QRS detector, filters and per-stream features); "
          f"offline: the CV prediction from the {positions} beat positions. Both from the CV fold model that never saw the record.", "",
          "| record | S / V beats | engine beats (ref) | missed / extra | SVEB F1 engine | SVEB F1 offline | VEB F1 engine | VEB F1 offline |",
          "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        md.append(f"| {name} | {r['support']['S']} / {r['support']['V']} | {r['engine_beats']} ({r['reference_beats']}) | "
                  f"{r['missed']} / {r['extra_calls']} | {r['engine']['SVEB']['F1']:.3f} | {r['offline_cv']['SVEB']['F1']:.3f} | "
                  f"{r['engine']['VEB']['F1']:.3f} | {r['offline_cv']['VEB']['F1']:.3f} |")
    (out / "engine_check.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
