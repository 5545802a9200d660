"""Which windows one record gives (the plan), before any signal is read: labelled segments after the
filter warm-up, checks that the record suits the configuration (rate, required leads, beat
annotations in beat mode), the RR features of each beat window, and the per-(subject, class) cap.
Used by :mod:`pedstream.train.dataset`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pedstream.errors import RecordError

if TYPE_CHECKING:  # pragma: no cover
    from pedstream.config import Config

__all__ = ["Plan", "plan_record", "record_hashes", "subsample"]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record_hashes(record_path: Path) -> dict[str, str]:
    """SHA-256 of each existing ``.hea``/``.dat``/``.atr`` file of one record (``{"hea": hex, ...}``)."""
    out: dict[str, str] = {}
    for ext in ("hea", "dat", "atr"):
        f = record_path.with_name(record_path.name + "." + ext)
        if f.is_file():
            out[ext] = _sha256(f)
    if "hea" not in out:
        raise RecordError(str(record_path), "no .hea header file")
    return out


@dataclass
class Plan:
    path: Path
    name: str
    subject: str
    n_samples: int
    hashes: dict[str, str]
    starts: np.ndarray  # (k,) int64
    labels: np.ndarray  # (k,) int64
    rr: np.ndarray | None = None  # (k, K) float32 RR features of each window's beat


def plan_record(path: Path, cfg: "Config", grouping: Any, subject: str, window: int) -> tuple[Plan, Any]:
    from pedstream.data.loader import open_record
    from pedstream.data.segments import make_segments

    rec = open_record(path, cfg.signal)
    if abs(float(rec.fs) - float(cfg.signal.fs)) > 1e-6:
        raise RecordError(str(path), f"sampling rate is {rec.fs:g} Hz, the model expects signal.fs = {cfg.signal.fs:g} Hz")
    _check_required_leads(rec, cfg.signal, str(path))
    ann = rec.annotations()
    hashes = record_hashes(Path(path))
    beat_mode = cfg.segments.mode == "beat"
    if beat_mode and (ann is None or not ann.beat_mask().any()):
        raise RecordError(str(path), "has no beat annotations (.atr with beat symbols); beat windows need them")
    if ann is None:
        return Plan(Path(path), rec.name, subject, int(rec.n_samples), hashes,
                     np.zeros(0, np.int64), np.zeros(0, np.int64)), rec
    segs = make_segments(ann, grouping, cfg.segments, fs=rec.fs, n_samples=rec.n_samples,
                         record=rec.name, subject=subject)
    settle = int(round(cfg.filters.settle_s * rec.fs))
    keep = [s for s in segs if s.start >= settle and s.start + window <= rec.n_samples and s.label is not None]
    starts = np.asarray([s.start for s in keep], dtype=np.int64)
    labels = np.asarray([int(s.label) for s in keep], dtype=np.int64)
    order = np.argsort(starts, kind="stable")
    plan = Plan(Path(path), rec.name, subject, int(rec.n_samples), hashes, starts[order], labels[order])
    if cfg.segments.rr_features:
        plan.rr = _beat_rr(ann, plan.starts + window // 2, cfg, str(path))
    return plan, rec


def _check_required_leads(rec: Any, signal_cfg: Any, where: str) -> None:
    """Refuse a record that lacks a lead of ``signal.required`` (after aliases), naming what it has."""
    channels = signal_cfg.channels
    missing = [c for c in signal_cfg.required if not rec.present[channels.index(c)]]
    if missing:
        raise RecordError(where, f"lacks the required lead{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                                 f"(signal.required; the record has {', '.join(rec.sig_names)})")


def _beat_rr(ann: Any, centres: np.ndarray, cfg: "Config", where: str) -> np.ndarray:
    """RR features of the beats at ``centres`` from all annotated beats of the record."""
    from pedstream.dsp.rr import rr_features

    beats = np.unique(ann.sample[ann.beat_mask()])
    feats = rr_features(beats, fs=cfg.signal.fs, local_beats=cfg.segments.rr_local_beats,
                        long_beats=cfg.segments.rr_long_beats)
    pos = np.searchsorted(beats, centres)
    if centres.size and (pos.max() >= beats.size or np.any(beats[pos] != centres)):
        raise RecordError(where, "beat windows are not centred on annotated beats (segments.mode must be 'beat')")
    return feats[pos]


def subsample(plans: list[Plan], cap: int, seed: int) -> None:
    """Keep at most ``cap`` windows per (subject, class): a seeded random subset, order preserved."""
    if cap <= 0:
        return
    rng = np.random.default_rng(seed)
    by_key: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for pi, p in enumerate(plans):
        for wi, lab in enumerate(p.labels.tolist()):
            by_key.setdefault((p.subject, lab), []).append((pi, wi))
    drop: dict[int, set[int]] = {}
    for key in sorted(by_key):
        items = by_key[key]
        if len(items) <= cap:
            continue
        chosen = set(rng.choice(len(items), size=cap, replace=False).tolist())
        for j, (pi, wi) in enumerate(items):
            if j not in chosen:
                drop.setdefault(pi, set()).add(wi)
    for pi, wis in drop.items():
        keep = np.asarray([i not in wis for i in range(plans[pi].starts.size)], dtype=bool)
        plans[pi].starts = plans[pi].starts[keep]
        plans[pi].labels = plans[pi].labels[keep]
        if plans[pi].rr is not None:
            plans[pi].rr = plans[pi].rr[keep]
