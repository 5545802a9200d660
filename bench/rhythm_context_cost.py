"""Cost of the rhythm-context layer per stream: one rhythm call = the features of one stream (ring read of
the QRS lead, decimation, RR and signal features) + its share of one batched model call.

A real StreamPipeline is fed a real excerpt (tests/fixtures/real/rhythm/vfdb421_vt, resampled to 977 Hz
by the pipeline), then StreamRhythm.features is timed on it (and, for comparison, the version-1 feature
set alone: RR + signal parts, without the version-2 RR and morphology parts, beside the served features on
the same snapshot, ``features_only_ms_per_call``); the shipped model is timed on a batch of
``--streams`` rows. CPU per stream-second = (features + batch / streams) / hop.

    .venv/bin/python bench/rhythm_context_cost.py [--streams 400]

Writes bench/results/rhythm_context/cost.json. Figures from a shared machine: see "load" in the file.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=300)
    a = ap.parse_args()
    import wfdb

    from pedstream.config import load_config
    from pedstream.model.rhythm_runtime import RhythmModel
    from pedstream.monitor.pipeline import StreamPipeline
    from pedstream.monitor.rhythm_context import StreamRhythm
    from pedstream.events import Chunk, StreamInfo

    cfg = load_config(overrides=["signal.aliases.ECG=II"])
    rec = wfdb.rdrecord(str(ROOT / "tests" / "fixtures" / "real" / "rhythm" / "vfdb421_vt"))
    x = np.nan_to_num(rec.p_signal).astype(np.float32)
    info = StreamInfo(stream_id="s", source="replay", fs=float(rec.fs), channel_names=list(rec.sig_name), units=["mV"])
    fs = cfg.signal.fs
    win = int(round(cfg.segments.window_s * fs))
    hop = int(round(cfg.segments.hop_s * fs))
    pipe = StreamPipeline(info=info, cfg=cfg, fs=fs, window=win, hop=hop)
    pipe.feed(Chunk(stream_id="s", data=x, timestamps=np.arange(len(x)) / rec.fs, first_index=0, seq=0), time.monotonic())
    model = RhythmModel.load()
    s = StreamRhythm(stream_id="s", fs=fs, cfg=cfg, classes=model.classes, context_s=model.context_s,
                     signal_s=model.signal_s)
    s.features(pipe)
    t0 = time.process_time()
    for _ in range(a.repeat):
        row = s.features(pipe)
    feat_ms = (time.process_time() - t0) / a.repeat * 1e3
    # the version-1 feature set (RR + signal parts only) on the same snapshot, timed the same way (A/B)
    from pedstream.dsp.rhythm_features import context_features, rr_context_features, signal_features

    beats, t_now, lead, t0_lead, fs_lead, ctx = s.snapshot(pipe) or (None,) * 6
    s.windows = 0
    idx = np.round((beats[(beats >= t0_lead) & (beats <= t_now)] - t0_lead) * fs_lead).astype(np.int64)
    t0 = time.process_time()
    for _ in range(a.repeat):
        rr_context_features(beats, t_now, ctx)
        signal_features(lead, fs_lead, idx)
    v1_ms = (time.process_time() - t0) / a.repeat * 1e3
    t0 = time.process_time()
    for _ in range(a.repeat):
        context_features(beats, t_now, ctx, lead, fs_lead, lead_t0=t0_lead)
    v2_ms = (time.process_time() - t0) / a.repeat * 1e3
    X = np.repeat(row[None], a.streams, axis=0)
    model.predict(X)
    t0 = time.process_time()
    for _ in range(20):
        model.predict(X)
    batch_ms = (time.process_time() - t0) / 20 * 1e3
    per_call = feat_ms + batch_ms / a.streams
    out = {"command": "python bench/rhythm_context_cost.py --streams %d" % a.streams, "streams": a.streams,
           "features_ms_per_call": round(feat_ms, 3), "features_v1_set_ms_per_call": round(v1_ms, 3),
           "features_only_ms_per_call": round(v2_ms, 3),
           "model_batch_ms": round(batch_ms, 2),
           "cpu_ms_per_stream_call": round(per_call, 3), "hop_s": cfg.segments.hop_s,
           "cpu_s_per_stream_second": round(per_call / 1e3 / cfg.segments.hop_s, 6),
           "cores_for_streams": round(per_call / 1e3 / cfg.segments.hop_s * a.streams, 3),
           "load": os.getloadavg(), "cpu_count": os.cpu_count()}
    path = ROOT / "bench" / "results" / "rhythm_context" / "cost.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1), encoding="utf-8")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
