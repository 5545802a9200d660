"""Score OnlineQRSDetector beat by beat on real MIT-BIH records (PhysioNet mitdb, ODC-By 1.0).

Each record's first channel (MLII) is streamed through the detector in chunks (default 32 samples,
as a live stream would deliver it), at the record's 360 Hz. Reference beats are the annotation
symbols that denote beats; a detection matches a reference beat when it lies within +/- 150 ms
(EC57 match window), one-to-one, nearest first. Reference beats inside the detector's warm-up
(the first ``learn_s`` seconds) are not scored.

    .venv/bin/python bench/qrs_mitdb.py [--data ../shared/data/mitdb] [--records 101 106 ...]
        [--minutes M] [--chunk 32] [--json bench/results/qrs_mitdb.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pedstream.dsp.qrs import OnlineQRSDetector  # noqa: E402

BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")


def match_beats(ref: np.ndarray, det: np.ndarray, tol: int) -> tuple[int, int, int, np.ndarray]:
    """One-to-one matching within +/- tol samples. Returns (tp, fn, fp, signed errors of the matches)."""
    ref = np.sort(np.asarray(ref, dtype=np.int64))
    det = np.sort(np.asarray(det, dtype=np.int64))
    used = np.zeros(len(det), dtype=bool)
    errs = []
    tp = 0
    for r in ref:
        j = np.searchsorted(det, r)
        best, best_d = -1, tol + 1
        for k in (j - 1, j, j + 1):
            if 0 <= k < len(det) and not used[k] and abs(det[k] - r) < best_d:
                best, best_d = k, abs(det[k] - r)
        if best >= 0:
            used[best] = True
            tp += 1
            errs.append(det[best] - r)
    return tp, len(ref) - tp, int((~used).sum()), np.asarray(errs)


def score_record(path: Path, *, minutes: float | None, chunk: int) -> dict:
    import wfdb

    rec = wfdb.rdrecord(str(path), channels=[0], sampto=None if minutes is None else int(minutes * 60 * 360))
    ann = wfdb.rdann(str(path), "atr", sampto=rec.sig_len)
    fs = float(rec.fs)
    x = rec.p_signal[:, 0]
    det = OnlineQRSDetector(fs=fs)
    t0 = time.perf_counter()
    peaks: list[int] = []
    for s in range(0, len(x), chunk):
        peaks.extend(det.process(x[s : s + chunk]))
    elapsed = time.perf_counter() - t0
    skip = det.learn
    ref = np.array([s for s, sym in zip(ann.sample, ann.symbol) if sym in BEAT_SYMBOLS and s >= skip])
    dets = np.array([p for p in peaks if p >= skip - int(0.15 * fs)])
    tp, fn, fp, errs = match_beats(ref, dets, int(round(0.15 * fs)))
    return {
        "record": path.name,
        "fs": fs,
        "seconds": len(x) / fs,
        "ref_beats": int(len(ref)),
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "se": tp / max(1, tp + fn),
        "ppv": tp / max(1, tp + fp),
        "median_abs_err_ms": float(np.median(np.abs(errs)) / fs * 1e3) if len(errs) else float("nan"),
        "x_realtime": (len(x) / fs) / elapsed,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mitdb")
    ap.add_argument("--records", nargs="*", default=["101", "106", "108", "112", "115", "116", "118", "119", "122", "205", "209", "215", "220", "230"])
    ap.add_argument("--minutes", type=float, default=None, help="score only the first M minutes (default: whole records)")
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "qrs_mitdb.json")
    args = ap.parse_args()
    if not (args.data / f"{args.records[0]}.hea").is_file():
        sys.exit(f"error: MIT-BIH records not found in {args.data} (need {args.records[0]}.hea)")
    rows = []
    print(f"{'record':>6} {'beats':>6} {'TP':>6} {'FN':>5} {'FP':>5} {'Se':>7} {'PPV':>7} {'|err| ms':>8} {'x RT':>6}")
    for r in args.records:
        row = score_record(args.data / r, minutes=args.minutes, chunk=args.chunk)
        rows.append(row)
        print(f"{r:>6} {row['ref_beats']:>6} {row['tp']:>6} {row['fn']:>5} {row['fp']:>5} {row['se']:>7.4f} {row['ppv']:>7.4f} {row['median_abs_err_ms']:>8.1f} {row['x_realtime']:>6.0f}")
    tp = sum(r["tp"] for r in rows)
    fn = sum(r["fn"] for r in rows)
    fp = sum(r["fp"] for r in rows)
    gross = {"tp": tp, "fn": fn, "fp": fp, "se": tp / max(1, tp + fn), "ppv": tp / max(1, tp + fp)}
    print(f"{'gross':>6} {tp + fn:>6} {tp:>6} {fn:>5} {fp:>5} {gross['se']:>7.4f} {gross['ppv']:>7.4f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"window_ms": 150, "chunk": args.chunk, "minutes": args.minutes, "records": rows, "gross": gross}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
