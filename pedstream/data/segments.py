"""Labelled windows ("segments") from a record's beat annotations.

Two modes (``[segments]`` in ``config.toml``):

- ``rhythm``: windows of ``window_s`` seconds placed every ``hop_s`` seconds from sample 0, kept
  only when they hold at least ``min_beats`` labelled beats. A window whose beats all share one
  class gets that class (so kept windows lie inside runs of one class); a window with beats of
  several classes is dropped (``mixed = "drop"``), gets the class with the most beats
  (``mixed = "majority"``; a tie is dropped), or gets the first class of the scheme's
  ``window_priority`` list that it contains (``mixed = "priority"``: a premature beat
  inside a sinus run labels the window ``pvc``, as a monitor reports ectopy; a mixed window with no
  priority class, such as the onset of a tachycardia, is dropped).
- ``beat``: one window of ``window_s`` seconds centred on each labelled beat (start = beat -
  window // 2), dropped when it runs off the record.

Only beat annotations count (rhythm ``+``, quality ``~``, comments... never do), and only those the
grouping labels (ignored pairs such as ``Q`` are skipped). Positions are samples at the record's
``fs``; ``stop`` is exclusive, ``stop - start`` = ``round(window_s * fs)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pedstream.config import SegmentConfig
from pedstream.data.annotations import Annotations
from pedstream.data.labels import LabelGrouping
from pedstream.dsp.windowing import window_samples
from pedstream.errors import ConfigError

__all__ = ["Segment", "make_segments", "segment_arrays"]


@dataclass(frozen=True)
class Segment:
    """One labelled window: samples ``[start, stop)`` of ``record`` (at its fs), class index ``label``."""

    record: str
    subject: str
    start: int
    stop: int
    label: int

    @property
    def n_samples(self) -> int:
        return self.stop - self.start


def _labelled_beats(ann: Annotations, grouping: LabelGrouping) -> tuple[np.ndarray, np.ndarray]:
    """(samples (m,) int64, labels (m,) int64) of the beats the grouping labels."""
    beat = ann.beat_mask()
    lab = grouping.labels(ann.symbol, ann.aux)
    keep = beat & (lab >= 0)
    return ann.sample[keep], lab[keep]


def make_segments(ann: Annotations, grouping: LabelGrouping, cfg: SegmentConfig, *, fs: float, n_samples: int,
                  record: str, subject: str = "") -> list[Segment]:
    """Segments of one record, in start order. See the module docstring for the two modes."""
    win = window_samples(cfg.window_s, fs)
    if win > n_samples:
        return []
    samples, labels = _labelled_beats(ann, grouping)
    if samples.size == 0:
        return []
    subject = subject or record
    if cfg.mode == "beat":
        starts = samples - win // 2
        ok = (starts >= 0) & (starts + win <= n_samples)
        return [Segment(record, subject, int(s), int(s) + win, int(k)) for s, k in zip(starts[ok], labels[ok])]

    hop = window_samples(cfg.hop_s, fs)
    if hop < 1:
        raise ConfigError([("segments.hop_s", f"{cfg.hop_s} s is less than one sample at {fs} Hz")])
    starts = np.arange(0, n_samples - win + 1, hop, dtype=np.int64)  # (w,)
    n_cls = grouping.n_classes
    # cum[k, i] = beats of class k among the first i labelled beats -> per-window class counts
    onehot = np.zeros((n_cls, samples.size + 1), dtype=np.int64)
    onehot[labels, np.arange(1, samples.size + 1)] = 1
    cum = np.cumsum(onehot, axis=1)  # (C, m+1)
    i0 = np.searchsorted(samples, starts, side="left")
    i1 = np.searchsorted(samples, starts + win, side="left")
    counts = cum[:, i1] - cum[:, i0]  # (C, w)
    total = counts.sum(axis=0)
    best = counts.argmax(axis=0)
    top = counts.max(axis=0)
    n_with = (counts > 0).sum(axis=0)
    ok = total >= cfg.min_beats
    if cfg.mixed == "drop":
        ok &= n_with == 1
    elif cfg.mixed == "priority":
        mixed = n_with > 1
        taken = np.zeros_like(mixed)
        for k in grouping.priority_indices:  # first listed class present wins
            hit = mixed & ~taken & (counts[k] > 0)
            best = np.where(hit, k, best)
            taken |= hit
        ok &= ~mixed | taken
    else:  # majority: the most frequent class, ties dropped
        second = np.sort(counts, axis=0)[-2] if n_cls > 1 else np.zeros_like(top)
        ok &= top > second
    return [Segment(record, subject, int(s), int(s) + win, int(k)) for s, k in zip(starts[ok], best[ok])]


def segment_arrays(segments: list[Segment]) -> dict[str, np.ndarray]:
    """Column arrays (record, subject: object; start, stop, label: int64) for splitting and indexing."""
    return {
        "record": np.asarray([s.record for s in segments], dtype=object),
        "subject": np.asarray([s.subject for s in segments], dtype=object),
        "start": np.asarray([s.start for s in segments], dtype=np.int64),
        "stop": np.asarray([s.stop for s in segments], dtype=np.int64),
        "label": np.asarray([s.label for s in segments], dtype=np.int64),
    }
