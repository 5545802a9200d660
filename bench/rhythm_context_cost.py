"""Cost of the rhythm-context layer per stream: one rhythm call = the features of one stream (ring read of
the QRS lead, decimation, RR and signal features) + its share of one batched model call.

A real StreamPipeline is fed a real excerpt (tests/fixtures/real/rhythm/vfdb421_vt, resampled to 977 Hz
by the pipeline), then StreamRhythm.features is timed on it (and, for comparison, the version-1 feature
set alone: RR + signal parts, without the version-2 RR and morphology parts, beside the served features on
the same snapshot, ``features_only_ms_per_call``); the shipped model is timed on a batch of
``--streams`` rows. CPU per stream-second = (features + batch / streams) / hop.

With ``--baseline FILE`` (another version of pedstream/dsp/rhythm_features.py, e.g. ``git show
<commit>:pedstream/dsp/rhythm_features.py > /tmp/old_rf.py``) its ``context_features`` and the current one
are timed on the same snapshot in alternating rounds (CPU time per call, the median and the best round of
each) and their outputs compared; ``--md`` writes the table to bench/results/rhythm_context/cost.md.

    .venv/bin/python bench/rhythm_context_cost.py [--streams 400] [--baseline /tmp/old_rf.py --rounds 9 --md]

Writes bench/results/rhythm_context/cost.json. Figures from a shared machine: see "load" in the file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=300)
    ap.add_argument("--baseline", type=Path, default=None, help="another rhythm_features.py to time beside this one")
    ap.add_argument("--baseline-rev", default=None, help="the commit the baseline file was taken from (for cost.md)")
    ap.add_argument("--rounds", type=int, default=9, help="alternating A/B rounds of --repeat calls each")
    ap.add_argument("--md", action="store_true", help="also write bench/results/rhythm_context/cost.md")
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
    cmd = "python bench/rhythm_context_cost.py --streams %d" % a.streams
    if a.baseline is not None:
        cmd += " --baseline %s%s --rounds %d%s" % (a.baseline, " --baseline-rev %s" % a.baseline_rev if a.baseline_rev else "",
                                                    a.rounds, " --md" if a.md else "")
    out = {"command": cmd, "streams": a.streams,
           "features_ms_per_call": round(feat_ms, 3), "features_v1_set_ms_per_call": round(v1_ms, 3),
           "features_only_ms_per_call": round(v2_ms, 3),
           "model_batch_ms": round(batch_ms, 2),
           "cpu_ms_per_stream_call": round(per_call, 3), "hop_s": cfg.segments.hop_s,
           "cpu_s_per_stream_second": round(per_call / 1e3 / cfg.segments.hop_s, 6),
           "cores_for_streams": round(per_call / 1e3 / cfg.segments.hop_s * a.streams, 3),
           "load": os.getloadavg(), "cpu_count": os.cpu_count()}
    if a.baseline is not None:
        out["ab"] = ab_baseline(a.baseline, (beats, t_now, ctx, lead, fs_lead, t0_lead), a.repeat, a.rounds)
        out["ab"]["baseline_rev"] = a.baseline_rev
        out["load_after"] = os.getloadavg()
    path = ROOT / "bench" / "results" / "rhythm_context" / "cost.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1), encoding="utf-8")
    print(json.dumps(out, indent=1))
    if a.md:
        (path.parent / "cost.md").write_text(cost_md(out), encoding="utf-8")
    return 0


def _ms_per_call(fn: Callable[[], object], repeat: int) -> float:
    t0 = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - t0) / repeat * 1e3


def ab_baseline(path: Path, snap: tuple, repeat: int, rounds: int) -> dict:
    """``context_features`` of the baseline file and of this tree on one snapshot, alternating rounds."""
    from pedstream.dsp import rhythm_features as current

    spec = importlib.util.spec_from_file_location("baseline_rhythm_features", path)
    base = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(base)
    beats, t_now, ctx, lead, fs_lead, t0 = snap
    fns = {m: (lambda mod=mod: mod.context_features(beats, t_now, ctx, lead, fs_lead, lead_t0=t0))
           for m, mod in (("baseline", base), ("current", current))}
    same = bool(np.array_equal(fns["baseline"](), fns["current"]()))
    ms: dict[str, list[float]] = {"baseline": [], "current": []}
    for _ in range(rounds):
        for m, fn in fns.items():
            ms[m].append(_ms_per_call(fn, repeat))
    med = {m: float(np.median(v)) for m, v in ms.items()}
    return {"baseline_file": str(path), "outputs_equal": same, "rounds": rounds, "calls_per_round": repeat,
            "baseline_ms_median": round(med["baseline"], 3), "current_ms_median": round(med["current"], 3),
            "baseline_ms_best": round(min(ms["baseline"]), 3), "current_ms_best": round(min(ms["current"]), 3),
            "speedup_median": round(med["baseline"] / med["current"], 2),
            "speedup_best": round(min(ms["baseline"]) / min(ms["current"]), 2)}


def cost_md(out: dict) -> str:
    ab = out.get("ab")
    lines = ["# Rhythm-context layer: CPU per call", "",
             "Command: `.venv/bin/%s` (CPU time, `time.process_time`, on a shared %d-core machine; load average "
             "%s at the start)." % (out["command"], out["cpu_count"], ", ".join("%.2f" % v for v in out["load"])), "",
             "| per stream call | ms |", "|---|---:|",
             "| features (StreamRhythm.features: ring read, decimation, context_features) | %.3f |"
             % out["features_ms_per_call"],
             "| context_features alone | %.3f |" % out["features_only_ms_per_call"],
             "| model, share of a %d-row batch | %.3f |" % (out["streams"], out["model_batch_ms"] / out["streams"]),
             "| total | %.3f |" % out["cpu_ms_per_stream_call"], "",
             "CPU for %d streams at one call per %.2f s hop: %.3f cores." % (out["streams"], out["hop_s"],
                                                                           out["cores_for_streams"])]
    if ab:
        lines += ["", "## Before / after (same snapshot, alternating rounds)", "",
                  "Baseline: `%s`%s; %d rounds of %d calls each; outputs equal bit for bit: %s; load average at the "
                  "end %s." % (ab["baseline_file"],
                               " (`git show %s:pedstream/dsp/rhythm_features.py`)" % ab["baseline_rev"]
                               if ab.get("baseline_rev") else "",
                               ab["rounds"], ab["calls_per_round"], ab["outputs_equal"],
                               ", ".join("%.2f" % v for v in out["load_after"])), "",
                  "| context_features | median round (ms/call) | best round (ms/call) |", "|---|---:|---:|",
                  "| baseline | %.3f | %.3f |" % (ab["baseline_ms_median"], ab["baseline_ms_best"]),
                  "| current | %.3f | %.3f |" % (ab["current_ms_median"], ab["current_ms_best"]),
                  "| speed-up | %.2fx | %.2fx |" % (ab["speedup_median"], ab["speedup_best"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
