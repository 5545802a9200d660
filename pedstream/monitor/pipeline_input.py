"""The input checks of a stream's pipeline (a mixin of :class:`~pedstream.monitor.pipeline.StreamPipeline`):
gaps in the sample index or the clock, the channel map onto the canonical layout, rail-stuck
(clipped) samples, and the straight-line bridge over a short gap (see the pipeline's module
docstring). It uses the pipeline's state (``cfg``, ``info``, ``present``, ``window``, ``ring``,
``resampler``, ``windower``, ``hop``, ``segment_start``, ``segment_t0``, ``expected_index``,
``last_ts``, ``lost``, ``state``) and its ``_run_dsp``."""

from __future__ import annotations

import functools
from collections import deque

import numpy as np

from pedstream.data.channels import CANONICAL_CHANNELS
from pedstream.events import Chunk
from pedstream.monitor.feedtypes import FeedResult, Quality

__all__ = ["InputChecks", "locked"]

N_CH = len(CANONICAL_CHANNELS)


def locked(fn):  # type: ignore[no-untyped-def]
    """The method under the pipeline's lock: the DSP thread feeds a pipeline while the event loop
    may read its heart rate (which feeds the QRS detector what it holds) or ask for a strip."""
    @functools.wraps(fn)
    def run_locked(self, *args, **kw):  # type: ignore[no-untyped-def]
        with self._lock:
            return fn(self, *args, **kw)
    return run_locked



def _col_max(a: np.ndarray, rows: int = 64) -> np.ndarray:
    """``a.max(axis=0)`` of ``(n, w)``, ``rows`` rows at a time (long contiguous loops, then the
    ``rows`` partial maxima; the same values: a maximum does not depend on the order)."""
    n, w = a.shape
    m = n - n % rows
    if m == 0:
        return a.max(axis=0)
    out = a[:m].reshape(-1, rows * w).max(axis=0).reshape(rows, w).max(axis=0)
    return out if m == n else np.maximum(out, a[m:].max(axis=0))


class InputChecks:
    """Gaps, channel map, clipping and gap bridges of one stream (see the module docstring)."""

    def _init_clipping(self) -> None:
        """The clipping state; fixed per stream: its history spans about one window of present-channel samples."""
        self._clip_limit = self.window * max(1, int(self.present.sum()))
        self._clip_hist: deque[tuple[int, int]] = deque()
        self._clip_n = 0
        self._clip_stuck = 0
        self._absmax = np.zeros(N_CH)
        self._clip_thr: np.ndarray | None = None  # the threshold of each present channel (of _clip_thr_idx)
        self._clip_thr_idx: np.ndarray | None = None
        self._prev = np.full(N_CH, np.nan)

    @property
    def quality(self) -> Quality:
        if self.state in ("loss", "warm-up"):
            return self.state
        if self._clip_n and self._clip_stuck / self._clip_n > self.cfg.stream.clipped_fraction:
            return "clipped"
        return "ok"

    def _gap_reason(self, chunk: Chunk) -> str | None:
        if self.lost:
            return "stream lost and back"
        if self.expected_index is not None and chunk.first_index != self.expected_index:
            return f"sample index jumped from {self.expected_index} to {chunk.first_index}"
        if self.last_ts is not None and chunk.timestamps.size and np.isfinite(chunk.timestamps[0]):
            dt = float(chunk.timestamps[0]) - self.last_ts - 1.0 / self.info.fs
            if abs(dt) > self.cfg.stream.gap_tolerance_s:
                return f"timestamps jumped by {dt:+.3f} s"
        return None

    def _map(self, data: np.ndarray) -> np.ndarray:
        """``self.cmap.apply(data)`` (a new ``(n, 19)`` float32 array) with the indices cached: one
        copy when the stream's first 19 columns are the canonical channels in order, else the zeros
        and the present columns scattered into them."""
        if self._in_order:
            return np.array(data[:, :N_CH], dtype=np.float32, order="C")
        mapped = np.zeros((data.shape[0], N_CH), dtype=np.float32)
        mapped[:, self._pidx] = data[:, self._src]
        return mapped

    def _update_clipping(self, raw: np.ndarray) -> None:
        """Rail-stuck samples: equal to the previous sample and at the channel's running |max|.

        The usual chunk has no sample at its channel's extreme (``|x| >= thr``): that is decided
        from the chunk's per-channel |max| (some sample is at the extreme exactly when the |max| is),
        and only a chunk with one builds the per-sample tests. The threshold is recomputed only
        when a channel's running |max| grows."""
        idx = self._pidx
        if idx.size == 0 or raw.shape[0] == 0:
            return
        full = idx.size == raw.shape[1]
        x = raw if full else raw[:, idx]  # (n, n_present) float32 (compared exactly against float64 state)
        absx = np.abs(x)
        cmax = _col_max(absx)  # (n_present,) the chunk's |max| per channel
        old = self._absmax if full else self._absmax[idx]
        thr = self._clip_thr if self._clip_thr_idx is idx else None
        if thr is None or (cmax > old).any():
            absmax = np.maximum(old, cmax)  # (n_present,) float64
            if full:
                self._absmax = absmax
            else:
                self._absmax[idx] = absmax
            thr = np.where(absmax > 0.5, 0.999 * absmax, np.inf)  # (n_present,): a column below 0.5 mV never clips
            self._clip_thr, self._clip_thr_idx = thr, idx
        s = 0
        if (cmax >= thr).any():  # only samples at the channel's extreme can be stuck there (the usual chunk has none)
            high = absx >= thr
            eq = np.empty(x.shape, dtype=bool)
            np.equal(x[0], self._prev if full else self._prev[idx], out=eq[0])
            np.equal(x[1:], x[:-1], out=eq[1:])
            s = int(np.count_nonzero(eq & high))
        if full:
            self._prev[:] = x[-1]
        else:
            self._prev[idx] = x[-1]
        n = x.size
        self._clip_hist.append((n, s))
        self._clip_n += n
        self._clip_stuck += s
        while self._clip_n - self._clip_hist[0][0] >= self._clip_limit and len(self._clip_hist) > 1:
            n0, s0 = self._clip_hist.popleft()
            self._clip_n -= n0
            self._clip_stuck -= s0

    def _bridgeable(self, chunk: Chunk) -> int:
        """Samples lost before ``chunk`` when the gap is a known, short forward jump, else 0."""
        if self.expected_index is None or self._last_mapped is None or self.segment_t0 is None:
            return 0
        missing = int(chunk.first_index) - int(self.expected_index)
        return missing if 0 < missing <= self.cfg.stream.resume_gap_s * self.info.fs else 0

    def _bridge(self, missing: int, first_new: np.ndarray, res: FeedResult, t_received: float) -> None:
        """Fill ``missing`` samples with a line from the last sample to ``first_new`` through the DSP,
        then move the window grid past the bridge (see the module docstring)."""
        k = np.arange(1, missing + 1, dtype=np.float32)[:, None] / np.float32(missing + 1)  # (missing, 1)
        line = (self._last_mapped + (first_new - self._last_mapped) * k).astype(np.float32)  # (missing, 19)
        self._run_dsp(line, res, t_received)
        # the resampler's FIR reaches delay_out_samples either side: outputs up to about twice that past
        # what is written now still mix in bridged input
        bridge_end = self.ring.total_written + 2 * int(np.ceil(self.resampler.delay_out_samples)) + 1
        steps = -(-(bridge_end - self.segment_start) // self.hop)  # first grid start at or after the bridge end
        self.windower.reset(self.segment_start + max(steps, 0) * self.hop)
        self.bridged += 1
