"""Check (never used for training or any setting): the shipped rhythm-context model on iafdb iaf1_afw
(atrial fibrillation, 154.5 s, surface lead II at 1000 Hz, uncalibrated) through the serving filters, the
causal QRS detector and the engine's alarm logic (with its VT fast path). Expected: af_afl, no VT/VF/asystole alarm.

    .venv/bin/python bench/rhythm_context_check_iafdb.py

Writes bench/results/rhythm_context/check_iaf1_afw.json.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    import wfdb

    from pedstream.config import load_config
    from pedstream.dsp.rhythm_features import CONTEXT_FEATURES
    from pedstream.model.rhythm_runtime import RhythmModel
    from pedstream.train.rhythm_context import record_calls
    from pedstream.train.rhythm_context_data import stream_features

    cfg = load_config()
    m = RhythmModel.load()
    rec = wfdb.rdrecord(str(ROOT.parent / "shared" / "data" / "iafdb" / "iaf1_afw"), channel_names=["II"])
    x = np.nan_to_num(rec.p_signal[:, 0])
    t, feats, beats = stream_features(x, float(rec.fs), cfg, hop_s=cfg.segments.hop_s, contexts=(m.context_s,),
                                      signal_s=m.signal_s)
    X = feats[m.context_s]
    p = m.predict(X)
    calls = [m.classes[k] for k in p.argmax(1)]
    run = "vt_run_70" if cfg.rhythm_context.vt_run_corr >= 0.7 else "vt_run_50"
    runs = X[:, [CONTEXT_FEATURES.index(c) for c in (run, "vt_run_end_s", "vt_run_len_s")]]  # the VT fast path
    eps = record_calls(t, p, X[:, CONTEXT_FEATURES.index("since_last_s")],
                       X[:, CONTEXT_FEATURES.index("flat_frac")] < 0.95, cfg, hop_s=cfg.segments.hop_s, runs=runs)
    full = [c for c, tt in zip(calls, t) if tt >= m.context_s]  # calls with a full context
    out = {"command": "python bench/rhythm_context_check_iafdb.py", "record": "iafdb/iaf1_afw lead II",
           "calls": dict(Counter(calls)), "calls_full_context": dict(Counter(full)),
           "af_fraction_full_context": round(full.count("af_afl") / max(1, len(full)), 3),
           "alarms": [(e.label, round(e.raised, 1), round(e.end, 1)) for e in eps],
           "beats": int(beats.size), "seconds": round(x.size / rec.fs, 1), "model_context_s": m.context_s}
    path = ROOT / "bench" / "results" / "rhythm_context" / "check_iaf1_afw.json"
    path.write_text(json.dumps(out, indent=1), encoding="utf-8")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
