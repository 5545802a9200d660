"""RR-interval context of each beat: the rhythm features inter-patient beat classifiers live on.

Supraventricular ectopy is a matter of timing more than of shape: an S beat comes early (short pre-RR)
and is followed by a compensatory pause (long post-RR), relative to *this* patient's usual rhythm.
For beat ``i`` at sample ``r[i]`` (intervals in seconds):

=============  =====================================================================================
``pre_rr``     ``r[i] - r[i-1]``
``post_rr``    ``r[i+1] - r[i]`` (so a beat's features exist once the next beat has been seen)
``local_rr``   mean of the last ``local_beats`` intervals ending at beat ``i`` (``pre_rr`` included)
``long_rr``    mean of the last ``long_beats`` intervals ending at beat ``i`` (the patient's baseline)
``pre_local``  ``log(pre_rr / local_rr)``; ``post_local`` ``log(post_rr / local_rr)``
``pre_long``   ``log(pre_rr / long_rr)``; ``post_pre``  ``log(post_rr / pre_rr)``
=============  =====================================================================================

Intervals are clipped to ``[min_rr_s, max_rr_s]`` (0.15-3 s) before use, so a missed or doubled beat
moves the features a bounded amount. The first beat of a stream has no ``pre_rr``: it takes its
``post_rr``. Only past beats and the one next beat are used: causal with a one-beat delay.

The one implementation, :class:`RRFeatures`, is fed R-peak sample indices one at a time; training
computes the features of annotated beats with :func:`rr_features`, which is that same object fed the
whole list, and the live engine feeds it the beats of its QRS detector, so both sides compute the
features identically (no train/serve skew). Hand-written because no library computes these
streaming beat-interval statistics; the arithmetic is a few running sums.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

__all__ = ["RR_FEATURES", "RRFeatures", "rr_features"]

RR_FEATURES: tuple[str, ...] = ("pre_rr", "post_rr", "local_rr", "long_rr", "pre_local", "post_local", "pre_long",
                                "post_pre")


class RRFeatures:
    """Streaming RR features. ``push(r)`` -> ``[(beat_sample, features (K,) float32)]`` for the beat before.

    ``fs`` in Hz; ``local_beats``/``long_beats`` intervals in the local and long means. ``push`` takes
    R-peak sample indices in increasing order; a beat's features come out when the next beat is
    pushed (``post_rr`` needs it). :meth:`reset` forgets everything (a gap in the signal).
    """

    def __init__(self, *, fs: float, local_beats: int = 10, long_beats: int = 250, min_rr_s: float = 0.15,
                 max_rr_s: float = 3.0) -> None:
        if not (np.isfinite(fs) and fs > 0):
            raise ValueError(f"fs must be a positive number of Hz, got {fs!r}")
        if local_beats < 1 or long_beats < local_beats:
            raise ValueError(f"need 1 <= local_beats <= long_beats, got {local_beats}, {long_beats}")
        if not 0 < min_rr_s < max_rr_s:
            raise ValueError(f"need 0 < min_rr_s < max_rr_s, got {min_rr_s}, {max_rr_s}")
        self.fs = float(fs)
        self.local_beats, self.long_beats = int(local_beats), int(long_beats)
        self.min_rr, self.max_rr = float(min_rr_s), float(max_rr_s)
        self.n_features = len(RR_FEATURES)
        self.reset()

    def reset(self) -> None:
        self._beats: deque[int] = deque(maxlen=2)  # the previous two beats
        self._rr: deque[float] = deque(maxlen=self.long_beats)  # intervals up to the newest beat, seconds
        self._long_sum = 0.0

    def _interval(self, a: int, b: int) -> float:
        return min(max((b - a) / self.fs, self.min_rr), self.max_rr)

    def push(self, r: int) -> list[tuple[int, np.ndarray]]:
        """Add the R peak at sample ``r``; returns the features of the beat before it (if any)."""
        r = int(r)
        if self._beats and r <= self._beats[-1]:
            raise ValueError(f"beats must increase: {r} after {self._beats[-1]}")
        out: list[tuple[int, np.ndarray]] = []
        if self._beats:
            post = self._interval(self._beats[-1], r)
            prev = self._beats[-1]
            pre = self._interval(self._beats[0], prev) if len(self._beats) == 2 else post
            out.append((prev, self._features(pre, post)))
            self._add_interval(post)
        self._beats.append(r)
        return out

    def flush(self) -> list[tuple[int, np.ndarray]]:
        """End of stream: the features of the newest beat with ``post_rr = pre_rr`` (no next beat
        will come); a lone beat gets 1 s intervals. Idempotent (the beat is then forgotten)."""
        if not self._beats:
            return []
        last = self._beats[-1]
        pre = self._interval(self._beats[0], last) if len(self._beats) == 2 else 1.0
        if not self._rr:
            self._add_interval(pre)
        feat = self._features(pre, pre)
        self._beats.clear()
        return [(last, feat)]

    def _add_interval(self, rr: float) -> None:
        if len(self._rr) == self._rr.maxlen:
            self._long_sum -= self._rr[0]
        self._rr.append(rr)
        self._long_sum += rr

    def _features(self, pre: float, post: float) -> np.ndarray:
        # intervals ending at the beat: those stored so far (its pre_rr is the newest one)
        if self._rr:
            n_local = min(self.local_beats, len(self._rr))
            local = sum(self._rr[-k] for k in range(1, n_local + 1)) / n_local
            long = self._long_sum / len(self._rr)
        else:
            local = long = pre
        return np.asarray([pre, post, local, long, math.log(pre / local), math.log(post / local),
                           math.log(pre / long), math.log(post / pre)], dtype=np.float32)


def rr_features(beats: np.ndarray, *, fs: float, local_beats: int = 10, long_beats: int = 250) -> np.ndarray:
    """``(n, K)`` float32 RR features of every beat in ``beats`` (strictly increasing sample indices).

    The same code as the streaming path: a fresh :class:`RRFeatures` is pushed every beat, then
    flushed (the last beat takes ``post_rr = pre_rr``; the live engine waits for the next beat).
    """
    b = np.asarray(beats, dtype=np.int64).reshape(-1)
    f = RRFeatures(fs=fs, local_beats=local_beats, long_beats=long_beats)
    rows = [feat for r in b.tolist() for _, feat in f.push(r)] + [feat for _, feat in f.flush()]
    return np.stack(rows) if rows else np.zeros((0, len(RR_FEATURES)), dtype=np.float32)
