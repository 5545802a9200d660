"""The QRS detector of this checkout, alone and through ``process_many``, against another version's
detector on MIT-BIH records: the same beats, heart rates and beat rates after every chunk, to the bit.

    git archive REV pedstream | tar -x -C /tmp/prev
    .venv/bin/python bench/qrs_vs_previous.py --previous /tmp/prev/pedstream/dsp/qrs.py \
        [--records ../shared/data/mitdb] [--minutes 10] [--chunks 49,450,1221]

Each record's first lead at 360 Hz, every record of the folder fed the same chunks in turn (so
``process_many`` runs them as one block). Prints the number of beats compared; raises on the first
difference.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--previous", type=Path, required=True, help="the other version's pedstream/dsp/qrs.py")
    ap.add_argument("--records", type=Path, default=ROOT.parent / "shared" / "data" / "mitdb")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--chunks", default="49,450,1221")
    args = ap.parse_args()
    import wfdb

    from pedstream.dsp.qrs import OnlineQRSDetector
    from pedstream.dsp.qrs_bank import process_many

    spec = importlib.util.spec_from_file_location("qrs_previous", args.previous)
    prev = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(prev)  # type: ignore[union-attr]
    heads = sorted(args.records.glob("*.hea"))
    leads = []
    for h in heads:
        rec = wfdb.rdrecord(str(h.with_suffix("")), sampto=int(360 * 60 * args.minutes))
        leads.append(rec.p_signal[:, 0].astype(np.float64))
    n = min(len(x) for x in leads)
    fs = 360.0
    beats = 0
    for chunk in (int(c) for c in args.chunks.split(",")):
        old = [prev.OnlineQRSDetector(fs=fs) for _ in leads]
        one = [OnlineQRSDetector(fs=fs) for _ in leads]
        many = [OnlineQRSDetector(fs=fs) for _ in leads]
        for s in range(0, n, chunk):
            xs = [x[s:s + chunk] for x in leads]
            a = [d.process(x) for d, x in zip(old, xs)]
            b = [d.process(x) for d, x in zip(one, xs)]
            c = process_many(many, xs)
            if not a == b == c:
                raise SystemExit(f"beats differ at sample {s} (chunks of {chunk})")
            for d1, d2, d3 in zip(old, one, many):
                since = max(0, d1.samples_seen - 2000)
                if not (d1.heart_rate() == d2.heart_rate() == d3.heart_rate()
                        and d1.beat_rates(since) == d2.beat_rates(since) == d3.beat_rates(since)):
                    raise SystemExit(f"rates differ at sample {s} (chunks of {chunk})")
            beats += sum(len(p) for p in a)
        if not [d.flush() for d in old] == [d.flush() for d in one] == [d.flush() for d in many]:
            raise SystemExit(f"flush differs (chunks of {chunk})")
    print(f"{len(leads)} records x {n / fs / 60:.1f} min x chunks {args.chunks}: {beats} beats, all equal")


if __name__ == "__main__":
    main()
