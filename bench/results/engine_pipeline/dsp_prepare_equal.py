"""Equality check of the engine's DSP between two versions: a fixed, varied workload through
``pedstream.monitor.bank.feed_round`` and through ``StreamPipeline.feed`` of the ``pedstream`` in the
folder given (a ``git archive`` of a version), printed as one JSON line with a SHA-256 digest of every
output and the counts behind it.

The workload: the bundled record ``x001`` three times over (977 Hz, 19 channels, leads at their
rails) as 21 streams: channels in canonical order; 15 of them permuted plus an unknown column;
an extra column after the 19; at 1000 Hz and at 360 Hz (resampled); 12 ECG leads only, scaled
down; float64 chunks. 1000 rounds of random chunk sizes (1 to 1000 samples, some streams idle in a
round); 1 % of chunks after a short gap (bridged), 0.5 % after a long one (restart), 1.5 % with a
NaN, 1 % missing a column, 1 % with a timestamp jump; merged chunks' arrival times
(``Arrivals``) for 30 %. Digested: every window's samples, start, mask, arrival and signal times,
heart rate and beat rates; every result's transitions, beats and errors (type and message); after
every chunk each stream's quality, clipping history and counts, running |max| and previous
sample, ring position, gaps, bridges, windows made and heart rate.

    python bench/results/engine_pipeline/dsp_prepare_equal.py /tmp/prep/before
"""
import collections
import hashlib
import json
import sys

sys.path.insert(0, sys.argv[1])

import numpy as np  # noqa: E402

from pedstream.bench.engine import replay_plans  # noqa: E402
from pedstream.config import load_config  # noqa: E402
from pedstream.data.channels import CANONICAL_CHANNELS  # noqa: E402
from pedstream.dsp.windowing import WindowGeometry  # noqa: E402
from pedstream.events import Chunk, StreamInfo  # noqa: E402
from pedstream.monitor.bank import feed_round  # noqa: E402
from pedstream.monitor.feedtypes import Arrivals  # noqa: E402
from pedstream.monitor.pipeline import StreamPipeline  # noqa: E402


def resample_like(x: np.ndarray, fs: float) -> np.ndarray:
    """Rows of ``x`` taken at another rate (a signal at that rate, not a faithful resampling)."""
    idx = (np.arange(int(len(x) * fs / 977.0)) * 977.0 / fs).astype(int)
    return np.ascontiguousarray(x[idx])


def main() -> None:
    import pedstream

    cfg = load_config(overrides=["alarms.strips=false"])
    geo = WindowGeometry.from_seconds(cfg.signal.fs, cfg.segments.window_s, cfg.segments.hop_s)
    plan = replay_plans(cfg, 1)[0]
    rec = np.concatenate([plan.record.read().data[:, plan.columns].astype(np.float32)] * 3)
    rng = np.random.default_rng(42)
    names = list(CANONICAL_CHANNELS)
    perm = rng.permutation(19)[:15]
    streams = [
        ("inorder", 977.0, names, rec),
        ("perm", 977.0, [names[k] for k in perm] + ["junk1"],
         np.concatenate([rec[:, perm], rng.standard_normal((len(rec), 1)).astype(np.float32)], axis=1)),
        ("extra", 977.0, names + ["junk2"], np.concatenate([rec, rec[:, :1]], axis=1)),
        ("r1000", 1000.0, names, resample_like(rec, 1000.0)),
        ("r360", 360.0, names[:12], resample_like(rec[:, :12], 360.0)),
        ("ecgonly", 977.0, names[:12], np.ascontiguousarray(rec[:, :12] * 0.4)),
        ("f64", 977.0, names, rec.astype(np.float64) * 1.0001),
    ]
    report = {"pedstream": str(pedstream.__file__)}
    for mode in ("feed_round", "feed"):
        digest = hashlib.sha256()

        def put(*a: object) -> None:
            digest.update(repr(a).encode())

        pipes, datas, pos, offs = [], [], [], []
        for sid, fs, ch, x in streams:
            for rep in range(3):
                info = StreamInfo(stream_id=f"{sid}{rep}", source="replay", fs=fs, channel_names=ch, units=["mV"] * len(ch))
                pipes.append(StreamPipeline(info=info, cfg=cfg, fs=geo.fs, window=geo.window, hop=geo.hop))
                datas.append(x)
                pos.append(0)
                offs.append(0)
        crng = np.random.default_rng(7)
        t = 0.0
        stuck = 0
        errors: collections.Counter = collections.Counter()
        for step in range(1000):
            items = []
            for i, p in enumerate(pipes):
                x = datas[i]
                if pos[i] >= len(x) or crng.random() < 0.2:
                    continue
                n = int(crng.choice([1, 13, 49, 300, 489, 1000]))
                a, b = pos[i], min(len(x), pos[i] + n)
                r = crng.random()
                if r < 0.01:
                    offs[i] += 5  # short gap: bridged
                elif r < 0.015:
                    offs[i] += 10_000  # long gap: restart
                first = a + offs[i]
                d = x[a:b].copy()
                ts = np.arange(first, first + b - a) / p.info.fs
                if 0.015 <= r < 0.03:
                    d[len(d) // 2, 0] = np.nan
                elif 0.03 <= r < 0.04:
                    d = d[:, :-1]
                elif 0.04 <= r < 0.05:
                    ts = ts + 0.5
                pos[i] = b
                t += 0.001
                arr = t if crng.random() < 0.7 else Arrivals(ends=(first + (b - a) // 2 + 1, first + b - a), times=(t, t + 0.0005))
                items.append((p, Chunk(stream_id=p.stream_id, data=d, timestamps=ts, first_index=first, seq=step), arr))
            if mode == "feed_round":
                res = feed_round(items)
            else:
                res = []
                for p, c, arr in items:
                    try:
                        res.append((p, p.feed(c, arr)))
                    except Exception as exc:  # noqa: BLE001
                        res.append((p, exc))
            for p, r in res:
                if isinstance(r, Exception):
                    put(p.stream_id, "error", type(r).__name__, str(r))
                    errors["chunk shaped wrong" if "shaped" in str(r) else str(r).split(": ", 1)[-1]] += 1
                    continue
                for w in r.windows:
                    put(p.stream_id, w.start, w.x.dtype.str, w.x.shape, w.x.tobytes(), w.mask.tobytes(), w.t_received,
                        w.t_signal, json.dumps(w.meta, sort_keys=True, default=str))
                put(p.stream_id, r.transitions, len(r.beats), r.ectopy_error)
                stuck += p._clip_hist[-1][1] if p._clip_hist else 0
                put(p.stream_id, p.quality, p._clip_n, p._clip_stuck, list(p._clip_hist), p._absmax.tobytes(),
                    p._prev.tobytes(), p.ring.total_written, p.gaps, p.bridged, p.windows_made, p.heart_rate)
        report[mode] = {"sha256": digest.hexdigest(), "windows": sum(p.windows_made for p in pipes),
                        "stuck_samples_counted": stuck, "gaps": sum(p.gaps for p in pipes),
                        "bridged": sum(p.bridged for p in pipes), "errors": dict(sorted(errors.items()))}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
