"""Real model inputs from WFDB records, prepared exactly as the engine prepares them (no torch).

Record -> canonical 19 channels (by name) -> causal resampling to ``signal.fs`` -> the causal filter
bank -> windows of ``window_s`` -> per-window z-score (``window_zscore``). Used by
``pedstream export --data`` for the parity check and by the tests (with the bundled real excerpts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from pedstream.errors import ModelError
from pedstream.config import Config

__all__ = ["record_windows"]


def record_windows(paths: Sequence[str | Path], cfg: Config, *, n: int = 8, max_seconds: float = 30.0,
                   skip_s: float | None = None) -> dict[str, np.ndarray]:
    """Up to ``n`` real windows from ``paths`` (WFDB records, without extension).

    ``cfg`` is the full :class:`pedstream.config.Config`. The first ``skip_s`` seconds (default: the
    filters' settling time) of each record are skipped; at most ``max_seconds`` are read per record.
    Windows are taken every ``segments.hop_s`` and spread over the records in turn.
    Returns ``{"ecg": (N,12,T), "iegm": (N,7,T), "mask": (N,19)}`` float32.
    """
    from pedstream.data.loader import open_record
    from pedstream.dsp.filters import filter_signal
    from pedstream.dsp.resample import StreamResampler
    from pedstream.dsp.windowing import normalize_window, window_samples

    fs = float(cfg.signal.fs)
    t = window_samples(cfg.segments.window_s, fs)
    hop = window_samples(cfg.segments.hop_s, fs)
    n_ecg = len(cfg.signal.ecg)
    skip = cfg.filters.settle_s if skip_s is None else skip_s
    per_record: list[list[tuple[np.ndarray, np.ndarray]]] = []
    for path in paths:
        rec = open_record(path, cfg.signal)
        stop = min(rec.n_samples, int(round(max_seconds * rec.fs)))
        sig = rec.read(0, stop)
        x = sig.data  # (n, 19) mV at rec.fs
        if abs(rec.fs - fs) > 1e-9:
            x = StreamResampler(fs_in=rec.fs, fs_out=fs, n_channels=x.shape[1]).process(x)  # (m, 19)
        y = filter_signal(x, fs, cfg.filters, n_ecg=n_ecg, n_iegm=x.shape[1] - n_ecg)  # (m, 19)
        present = np.asarray(sig.present, dtype=bool)  # (19,)
        wins = []
        for s in range(int(round(skip * fs)), y.shape[0] - t + 1, hop):
            w = normalize_window(y[s: s + t].T, present)  # (19, T)
            wins.append((w, present.astype(np.float32)))
        per_record.append(wins)
    chosen: list[tuple[np.ndarray, np.ndarray]] = []
    i = 0
    while len(chosen) < n and any(i < len(w) for w in per_record):
        for wins in per_record:
            if i < len(wins) and len(chosen) < n:
                chosen.append(wins[i])
        i += 1
    if not chosen:
        raise ModelError("samples", f"no complete {cfg.segments.window_s} s window after {skip} s of settling "
                                    f"in {[str(p) for p in paths]}")
    x = np.stack([w for w, _ in chosen])  # (N, 19, T)
    mask = np.stack([m for _, m in chosen])  # (N, 19)
    return {"ecg": np.ascontiguousarray(x[:, :n_ecg]), "iegm": np.ascontiguousarray(x[:, n_ecg:]), "mask": mask}
