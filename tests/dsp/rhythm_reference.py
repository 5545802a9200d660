"""Inputs of the frozen rhythm-feature reference (tests/fixtures/rhythm_features_ref.npz) and its writer.

The reference holds the outputs of :func:`pedstream.dsp.rhythm_features.context_features_multi` as it was before
its kernels were rewritten for cost (the implementation the shipped rhythm model was trained on), on random,
edge-case and real (tests/fixtures/real) inputs; tests/dsp/test_rhythm_features.py checks that the current code
still gives them bit for bit. Written once with that implementation:

    git show 7d4b19b:pedstream/dsp/rhythm_features.py > /tmp/old_rf.py
    .venv/bin/python -m tests.dsp.rhythm_reference /tmp/old_rf.py
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

FIX = Path(__file__).resolve().parents[1] / "fixtures"
REF = FIX / "rhythm_features_ref.npz"


def _random_case(rng: np.random.Generator) -> tuple:
    """(beats, t_now, contexts, lead, fs, lead_t0): noise, a sine (VF-like), flat, or beats drawn into low noise."""
    fs = float(rng.choice([122.125, 125.0, 100.0]))
    kind = int(rng.integers(0, 5))
    n = int(8 * fs) if rng.random() < 0.8 else int(rng.integers(10, int(8 * fs)))
    t = np.arange(n) / fs
    x = (rng.normal(size=n) * 0.3, 0.5 * np.sin(2 * np.pi * rng.uniform(2, 8) * t), np.zeros(n),
         0.01 * rng.normal(size=n), 0.01 * rng.normal(size=n))[kind]
    nb, mean_rr = int(rng.integers(0, 120)), rng.uniform(0.3, 1.3)
    rr = rng.uniform(0.6, 1.4, nb) * mean_rr if kind != 4 else np.round(
        mean_rr + rng.choice([0.0, -0.3, 0.3], nb, p=[0.8, 0.1, 0.1]), 3)
    t_now = float(rng.uniform(5, 120))
    b = (t_now - rng.uniform(0, 3) - np.cumsum(rr))[::-1]
    t0 = t_now - n / fs
    for tb in b[b >= t0] if kind >= 3 else []:
        w = np.hanning(7) if rng.random() < 0.7 else -np.sin(np.linspace(0, 2 * np.pi, 19)) * np.hanning(19)
        i = int(round((tb - t0) * fs)) - w.size // 2
        k = np.arange(w.size)
        ok = (i + k >= 0) & (i + k < n)
        x[i + k[ok]] += w[ok] * rng.uniform(0.5, 1.5)
    contexts = (30.0, 60.0) if rng.random() < 0.3 else (30.0,)
    return b, t_now, contexts, x.astype(np.float16).astype(np.float64), fs, t0


def _edge_cases(rng: np.random.Generator) -> list[tuple]:
    """No beats, one, two, beats at the context's and the lead's edges, a short lead, no lead, a flat lead."""
    fs, now = 122.125, 40.0
    x = rng.normal(size=977).astype(np.float16).astype(np.float64)
    t0 = now - 977 / fs
    reg = now - 0.8 * np.arange(60)[::-1]
    return [(np.zeros(0), now, (30.0,), x, fs, t0), (np.array([35.0]), now, (30.0,), x, fs, t0),
            (np.array([39.0, 39.5]), now, (30.0,), x, fs, t0),
            (np.array([now - 30.0, now - 29.0, t0, t0 + 0.5, now - 0.4, now]), now, (30.0,), x, fs, t0),
            (np.append(reg, now + np.array([0.3, 0.9])), now, (30.0, 60.0), x, fs, t0),
            (reg, now, (30.0,), x[:200], fs, now - 200 / fs), (reg, now, (30.0,), None, fs, None),
            (reg, now, (30.0,), np.zeros(977), fs, t0), (reg, now, (30.0,), np.full(977, 0.25), fs, t0)]


def _real_cases() -> list[tuple]:
    """The QRS lead and beats of real records (serving filters, causal detector, decimated), at a few instants."""
    from pedstream.config import load_config
    from pedstream.data.rhythm_sources import read_lead
    from pedstream.dsp.filters import FilterBank
    from pedstream.dsp.qrs import OnlineQRSDetector
    from pedstream.dsp.resample import StreamResampler
    from pedstream.dsp.rhythm_features import decimation_step

    cfg, out = load_config(), []
    for rec, ends, to_fs in (("203", (30.0, 50.0), None), ("rhythm/vfdb421_vt", (10.0, 20.0), 977.0),
                             ("rhythm/vfdb419_vfl", (45.0,), None), ("rhythm/vfdb607_asys", (15.0,), None)):
        x, fs = read_lead(FIX / "real" / rec)
        if to_fs:  # the serving rate
            x, fs = StreamResampler(fs_in=fs, fs_out=to_fs, n_channels=1).process(x[:, None])[:, 0], to_fs
        y = FilterBank(fs=fs, cfg=cfg.filters, n_ecg=1, n_iegm=0).process(x[:, None])[:, 0].astype(np.float32)
        step = decimation_step(fs)
        for end_s in ends:
            end = min(y.size, int(end_s * fs))
            beats = np.asarray(OnlineQRSDetector(fs=fs).process(y[:end]), dtype=np.float64) / fs
            a = max(0, end - int(8 * fs))
            out.append((beats, end / fs, (30.0,), y[a:end:step].astype(np.float64), fs / step, a / fs))
    return out


def cases() -> list[tuple]:
    rng = np.random.default_rng(20261207)
    return [_random_case(rng) for _ in range(40)] + _edge_cases(rng) + _real_cases()


def pack(cs: list[tuple], outputs: list[np.ndarray] | None = None) -> dict[str, np.ndarray]:
    d: dict[str, np.ndarray] = {}
    for k, (b, t_now, ctx, x, fs, t0) in enumerate(cs):
        d[f"b{k}"] = b
        d[f"m{k}"] = np.array([t_now, fs, np.nan if t0 is None else t0] + list(ctx))
        if x is not None:
            d[f"x{k}"] = x.astype(np.float16) if np.array_equal(x.astype(np.float16), x) else x.astype(np.float32)
        if outputs is not None:
            d[f"y{k}"] = outputs[k]
    return d


def unpack(d: dict) -> list[tuple]:
    """[(beats, t_now, contexts, lead, fs, lead_t0, reference outputs (contexts, features))]."""
    out = []
    for k in range(sum(1 for key in d if key.startswith("m"))):
        m = d[f"m{k}"]
        x = d[f"x{k}"].astype(np.float64) if f"x{k}" in d else None
        out.append((d[f"b{k}"], float(m[0]), tuple(float(c) for c in m[3:]), x, float(m[1]),
                    None if np.isnan(m[2]) else float(m[2]), d[f"y{k}"]))
    return out


def write(old_module: str) -> None:
    spec = importlib.util.spec_from_file_location("old_rhythm_features", old_module)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    cs = [c for c in unpack(pack(cases(), [np.zeros(0)] * 999))]
    ys = [np.stack([v for v in old.context_features_multi(b, t, ctx, x, fs, t0).values()])
          for b, t, ctx, x, fs, t0, _ in cs]
    np.savez_compressed(REF, **pack([c[:6] for c in cs], ys))


if __name__ == "__main__":
    write(sys.argv[1])
