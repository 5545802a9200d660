"""Recording noise: baseline wander, muscle artefact, mains interference, electrode/catheter noise.

When the real MIT-BIH Noise Stress Test records ``bw`` (baseline wander) and ``ma`` (muscle
artefact) are available (``$PEDSTREAM_SHARED/data/nstdb`` or ``../shared/data/nstdb`` next to the
repository), random stretches of them, resampled 360 -> ``fs`` Hz with :func:`scipy.signal.resample_poly`,
are mixed into the surface leads; otherwise (a fresh clone) the same roles are played by seeded
synthetic noise. Both paths are deterministic for a given generator.
"""

from __future__ import annotations

import os
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["find_nstdb", "load_nstdb", "NoiseSource", "add_noise"]


def find_nstdb(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The nstdb folder holding ``bw`` and ``ma``, or None. ``explicit="none"`` (or the environment
    variable ``PEDSTREAM_SYNTH_NSTDB=none``) disables it."""
    cands: list[Path] = []
    if explicit is None and os.environ.get("PEDSTREAM_SYNTH_NSTDB"):
        explicit = os.environ["PEDSTREAM_SYNTH_NSTDB"]  # a folder, or "none" for synthetic noise only
    if explicit is not None:
        if str(explicit).lower() == "none":
            return None
        cands.append(Path(explicit))
    env = os.environ.get("PEDSTREAM_SHARED")
    if env:
        cands += [Path(env) / "data" / "nstdb", Path(env) / "nstdb"]
    repo = Path(__file__).resolve().parents[3]
    cands.append(repo.parent / "shared" / "data" / "nstdb")
    for c in cands:
        if (c / "bw.hea").is_file() and (c / "ma.hea").is_file():
            return c
    return None


@lru_cache(maxsize=2)
def load_nstdb(folder: str, fs: float) -> dict[str, np.ndarray]:
    """``{"bw": (m, 2), "ma": (m, 2)}`` float32 mV resampled to ``fs`` (cached per process)."""
    import wfdb
    from scipy.signal import resample_poly

    out = {}
    for name in ("bw", "ma"):
        rec = wfdb.rdrecord(str(Path(folder) / name))
        frac = Fraction(fs / rec.fs).limit_denominator(2000)
        x = rec.p_signal - rec.p_signal.mean(axis=0)
        out[name] = resample_poly(x, frac.numerator, frac.denominator, axis=0).astype(np.float32)
    return out


class NoiseSource:
    """Noise generator for one record. ``nstdb``: folder or None (synthetic only)."""

    def __init__(self, *, fs: float, rng: np.random.Generator, nstdb: Path | None) -> None:
        self.fs = fs
        self.rng = rng
        self.real = load_nstdb(str(nstdb), fs) if nstdb is not None else None

    def _real_piece(self, name: str, n: int) -> np.ndarray:
        src = self.real[name]
        if src.shape[0] <= n:
            reps = n // src.shape[0] + 1
            src = np.concatenate([src] * reps, axis=0)
        start = int(self.rng.integers(0, src.shape[0] - n))
        x = src[start:start + n].astype(np.float64)
        return self._norm(x)

    def _norm(self, x: np.ndarray) -> np.ndarray:
        sd = x[:: max(1, x.shape[0] // 20000)].std(axis=0)
        x /= sd + 1e-9
        return x

    def wander(self, n: int, k: int) -> np.ndarray:
        """(n, k) unit-RMS baseline wander: breathing + slow drifts (plus the real bw record).

        A few shared sources mixed into the k channels (electrodes share the patient's breathing).
        """
        t = np.arange(n) / self.fs
        srcs = [np.sin(2 * np.pi * self.rng.uniform(lo, hi) * t + self.rng.uniform(0, 2 * np.pi))
                for lo, hi in ((0.15, 0.45), (0.15, 0.45), (0.02, 0.12), (0.02, 0.12), (0.05, 0.2))]
        if self.real is not None:
            bw = self._real_piece("bw", n)
            srcs += [bw[:, 0] * 1.5, bw[:, 1] * 1.5]
        S = np.stack(srcs, axis=1)  # (n, n_sources)
        return self._norm(S @ self.rng.normal(0, 1.0, (S.shape[1], k)))

    def muscle(self, n: int, k: int) -> np.ndarray:
        """(n, k) unit-RMS muscle (EMG-like 20-150 Hz) noise with a slowly varying envelope."""
        from scipy.signal import butter, sosfilt

        sos = butter(2, [20.0, min(150.0, 0.45 * self.fs)], btype="bandpass", fs=self.fs, output="sos")
        m = min(k, 4)
        w = sosfilt(sos, self.rng.normal(0, 1.0, (n, m)), axis=0)
        w *= (0.6 + 0.4 * np.sin(2 * np.pi * self.rng.uniform(0.01, 0.05) * np.arange(n) / self.fs))[:, None]
        w /= w[:: max(1, n // 20000)].std() + 1e-9
        if self.real is not None:
            w = np.concatenate([0.6 * w, 0.8 * self._real_piece("ma", n)], axis=1)
        return self._norm(w @ self.rng.normal(0, 1.0, (w.shape[1], k)))

    def mains(self, n: int, k: int, hz: float) -> np.ndarray:
        """(n, k) mains interference at ``hz`` (+ 3rd harmonic), unit fundamental amplitude."""
        if hz <= 0:
            return np.zeros((n, k))
        w = 2 * np.pi * hz * np.arange(n) / self.fs
        ph = self.rng.uniform(0, 2 * np.pi, k)
        base = [np.sin(w), np.cos(w)]
        mix = [np.cos(ph), np.sin(ph)]
        if 3 * hz < self.fs / 2:
            base += [np.sin(3 * w), np.cos(3 * w)]
            mix += [0.2 * np.cos(3 * ph), 0.2 * np.sin(3 * ph)]
        x = np.stack(base, axis=1) @ np.stack(mix, axis=0)
        x *= (1.0 + 0.3 * np.sin(2 * np.pi * 0.01 * np.arange(n) / self.fs + self.rng.uniform(0, 6.3)))[:, None]
        return x


def add_noise(ecg: np.ndarray, iegm: np.ndarray, *, src: NoiseSource, mains_hz: float,
              noise_spans: list[tuple[float, float]], artefacts: list[float], level: float = 1.0) -> None:
    """Add recording noise in place. ``ecg``: (n, 12) mV; ``iegm``: (n, m) mV; times in seconds."""
    n = ecg.shape[0]
    rng = src.rng
    fs = src.fs
    ecg += src.wander(n, 12) * (rng.uniform(0.05, 0.25) * level)
    ecg += src.muscle(n, 12) * (rng.uniform(0.005, 0.03) * level)
    ecg += src.mains(n, 12, mains_hz) * (rng.uniform(0.003, 0.03, 12) * level)
    ecg += rng.normal(0, 0.004, ecg.shape)
    m = iegm.shape[1]
    if m:
        iegm += src.wander(n, m) * (rng.uniform(0.01, 0.05) * level)
        iegm += src.mains(n, m, mains_hz) * (rng.uniform(0.005, 0.06, m) * level)
        iegm += rng.normal(0, 0.012, iegm.shape)
    # noisy stretches between a pair of ~ annotations: strong muscle + motion artefact
    for t0, t1 in noise_spans:
        a, b = int(t0 * fs), min(int(t1 * fs), n)
        if b - a < 4:
            continue
        k = b - a
        env = np.sin(np.pi * np.arange(k) / k)[:, None]
        ecg[a:b] += env * (src.muscle(k, 12) * rng.uniform(0.08, 0.25) + src.wander(k, 12) * rng.uniform(0.3, 1.0))
        if m:
            iegm[a:b] += env * src.wander(k, m) * rng.uniform(0.1, 0.4)
    # Q beats: a sharp motion/contact artefact on the beat
    if artefacts:
        L = int(0.12 * fs)
        t = np.arange(L) / fs
        shape = np.exp(-0.5 * ((t - 0.05) / 0.012) ** 2) + 0.3 * np.sin(2 * np.pi * 45 * t) * np.exp(-t / 0.04)
        for ta in artefacts:
            i0 = int(ta * fs)
            a, b = max(i0, 0), min(i0 + L, n)
            if a >= b:
                continue
            ecg[a:b] += np.outer(shape[a - i0:b - i0], rng.normal(0, 0.8, 12))
            if m:
                iegm[a:b] += np.outer(shape[a - i0:b - i0], rng.normal(0, 0.5, m))
