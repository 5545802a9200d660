"""Tiny labelled WFDB datasets for the training tests (real WFDB files, synthetic waveforms).

Each record is one subject: 19 canonical channels at 977 Hz (format 16), beats every ~0.5 s in runs
of one class: sinus (narrow positive QRS), pvc (wide negative QRS, a V symbol) and avrt (X:AVRT,
faster narrow beats with an early IEGM activation). The classes are separable by morphology, so a
tiny model can learn them in a few steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from pedstream.config import Config, load_config
from pedstream.data.annotations import Annotations, write_annotations

FS = 977
GAIN = 3200.0

# (symbol, aux, beat interval s, QRS half-width s, sign)
KINDS = {"sinus": ("N", "", 0.55, 0.015, 1.0), "pvc": ("V", "", 0.6, 0.05, -1.0),
         "avrt": ("X", "AVRT", 0.33, 0.015, 1.0)}

TINY_MODEL = ["model.d_model=16", "model.n_heads=2", "model.n_layers=1", "model.embed_dim=16",
              "model.stem_widths=[8, 8, 16]", "model.ff_mult=1"]


def write_subject(folder: Path, name: str, *, seconds: float = 30.0, seed: int = 0,
                  runs: tuple[str, ...] = ("sinus", "pvc", "avrt"), drop: tuple[str, ...] = (), fs: int = FS) -> Path:
    """One record whose beats come in equal-length runs of the ``runs`` classes, cycled.

    ``drop``: channel names left out of the record (absent channels); ``fs``: its sampling rate.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    names = [*Config.model_fields["signal"].default.ecg, *Config.model_fields["signal"].default.iegm]
    x = 0.02 * rng.standard_normal((n, len(names)))
    x += 0.1 * np.sin(2 * np.pi * 0.3 * np.arange(n) / FS)[:, None]  # baseline wander
    samples, symbols, auxes = [], [], []
    run_len = seconds / (2 * len(runs))
    t = 0.3
    while t < seconds - 0.3:
        kind = runs[int(t // run_len) % len(runs)]
        sym, aux, rr, hw, sign = KINDS[kind]
        s = int(t * FS)
        w = max(int(hw * FS), 2)
        lo, hi = max(0, s - w), min(n, s + w)
        shape = np.hanning(hi - lo)
        gain_ch = 0.5 + 0.05 * np.arange(len(names))
        x[lo:hi, :12] += sign * shape[:, None] * gain_ch[None, :12]
        lag = int((0.01 if kind != "avrt" else -0.03) * FS)  # atrial activation timing on the IEGM
        a0, a1 = max(0, s + lag - 5), min(n, s + lag + 5)
        x[a0:a1, 12:] += 0.8 * np.hanning(a1 - a0)[:, None]
        samples.append(s)
        symbols.append(sym)
        auxes.append(aux)
        t += rr * (1 + 0.03 * rng.standard_normal())
    folder.mkdir(parents=True, exist_ok=True)
    keep = [i for i, c in enumerate(names) if c not in drop]
    names = [names[i] for i in keep]
    d = np.clip(np.round(x[:, keep] * GAIN), -32767, 32767).astype(np.int32)
    wfdb.wrsamp(name, fs=fs, units=["mV"] * len(names), sig_name=names, d_signal=d, fmt=["16"] * len(names),
                adc_gain=[GAIN] * len(names), baseline=[0] * len(names), write_dir=str(folder),
                comments=["pedstream test record (synthetic)"])
    write_annotations(folder / name, Annotations(sample=np.asarray(samples), symbol=symbols, aux=auxes, fs=float(fs)))
    return folder / name


def write_dataset(folder: Path, *, n_subjects: int = 6, seconds: float = 30.0, seed: int = 0) -> Path:
    for i in range(n_subjects):
        write_subject(folder, f"s{i + 1:02d}", seconds=seconds, seed=seed + i)
    return folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six subjects x 30 s (about 18 windows each after the filter warm-up)."""
    return write_dataset(tmp_path_factory.mktemp("tinydata"), n_subjects=6, seconds=30.0)


def tiny_config(cache: Path, *extra: str) -> Config:
    """Default config + a tiny model + fast training, cache under ``cache``."""
    return load_config(None, [*TINY_MODEL, "train.epochs=2", "train.batch_size=16", "train.bootstrap=20",
                              "train.threads=1", f'train.cache_dir="{cache}"', "split.folds=3",
                              "split.val_fraction=0.2", *extra])
