"""Small synthetic WFDB records in the six real Leipzig channel layouts (977 Hz, format 16).

They are written with ``wfdb.wrsamp`` exactly like a real file (explicit gains, baseline 0, mV),
so the loader under test reads real WFDB files; only the waveform is synthetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from pedstream.data.annotations import Annotations, write_annotations
from pedstream.data.channels import LEIPZIG_LAYOUTS

FS = 977
GAIN = 3200.0  # digital units per mV: format 16 clips at +/-32767 / 3200 = +/-10.24 mV (as in Leipzig)


def leipzig_waveform(n: int, n_ch: int, *, seed: int = 0) -> np.ndarray:
    """(n, n_ch) float64 mV: a 2 Hz spike train plus a small per-channel sine, distinct per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    x = np.zeros((n, n_ch))
    beats = np.arange(int(0.2 * FS), n, int(0.5 * FS))
    for k in range(n_ch):
        x[:, k] = 0.05 * (k + 1) * np.sin(2 * np.pi * (1 + 0.1 * k) * t)
        for b in beats:
            lo, hi = max(0, b - 10), min(n, b + 10)
            x[lo:hi, k] += (0.8 + 0.1 * k) * np.hanning(hi - lo)
    return x + 0.002 * rng.standard_normal((n, n_ch))


def write_record(folder: Path, name: str, sig_names: tuple[str, ...] | list[str], *, seconds: float = 4.0,
                 clip: str | None = None, flat: str | None = None, fs: int = FS, gain: float = GAIN,
                 units: str = "mV", units_per_mv: float = 1.0, seed: int = 0, beats: list[tuple[str, str]] | None = None) -> Path:
    """Write ``folder/name.hea/.dat`` (format 16) and, with ``beats``, ``name.atr``; return the path."""
    n = int(seconds * fs)
    x = leipzig_waveform(n, len(sig_names), seed=seed)
    names = list(sig_names)
    if clip is not None:
        x[:, names.index(clip)] *= 30.0  # far beyond +/-10.24 mV: the amplifier saturates
    if flat is not None:
        x[:, names.index(flat)] = 0.0005
    d = np.clip(np.round(x * units_per_mv * gain), -32767, 32767).astype(np.int32)
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=fs, units=[units] * len(names), sig_name=names, d_signal=d, fmt=["16"] * len(names),
                adc_gain=[gain] * len(names), baseline=[0] * len(names), write_dir=str(folder))
    if beats:
        step = int(0.5 * fs)
        samples = np.arange(int(0.2 * fs), n, step)[: len(beats)]
        write_annotations(folder / name, Annotations(sample=samples, symbol=[b[0] for b in beats[: len(samples)]],
                                                     aux=[b[1] for b in beats[: len(samples)]], fs=float(fs)))
    return folder / name


@pytest.fixture
def leipzig_folder(tmp_path: Path) -> Path:
    """Six records, one per real Leipzig layout; 'art' clips on V2, 'abl_uni' has a flat ABL12."""
    folder = tmp_path / "leipzig"
    beats = [("+", "(N"), ("N", ""), ("N", "N-Prex"), ("X", "AVRT"), ("X", "AVRT"), ("X", "AVRT"), ("N", "")]
    for i, (key, names) in enumerate(LEIPZIG_LAYOUTS.items()):
        write_record(folder, f"x{i + 1:03d}", names, seed=i, beats=beats,
                     clip="V2" if key == "art" else None, flat="ABL12" if key == "abl_uni" else None)
    return folder
