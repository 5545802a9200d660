"""The QRS detectors of many streams at once: their signal front end on one ``(streams, samples)`` block.

:class:`~pedstream.dsp.qrs.OnlineQRSDetector` runs one lead. A monitor with hundreds of streams
calls it hundreds of times per hop, and most of a call is Python and numpy/scipy overhead on short
arrays, not arithmetic. :func:`process_many` takes the detectors of many streams and their next
samples and, for every group of detectors with the same design and the same number of new samples,
computes the front end of all of them together: one 2-D ``sosfilt`` (each detector's band-pass
delay line as its row's initial state), the five-point derivative, the squaring, the quantised
moving-window integration and the peak-candidate search on the block. What stays per stream is what
depends on each stream's history: the ring writes, and the decisions on the few candidates a second
(thresholds, T-wave rule, search-back, R-peak location), which are the detector's own methods.

Bit for bit the detector's own computation (``tests/dsp/test_qrs_bank.py`` compares it with
:meth:`OnlineQRSDetector.process` on real records and random chunkings):

* ``sosfilt`` filters each row of a block independently with the same float64 cascade;
* the derivative: :func:`pedstream.dsp.qrs.derivative`, the same elementwise sums in the same order
  on each row (after its detector's last four band-passed samples);
* the squaring, the quantisation, the int64 running sum and the candidate search (a running
  maximum and comparisons) are exact.

A group of one, a chunk shorter than eight samples, input that is not finite or a detector that was
flushed go through :meth:`OnlineQRSDetector.process` (so errors are the detector's own).

Imports numpy and scipy only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from scipy import signal as sps
from scipy.ndimage import maximum_filter1d

from pedstream.dsp.checks import all_finite
from pedstream.dsp.qrs import _Q_SCALE, _SQ_MAX, OnlineQRSDetector, derivative

__all__ = ["process_many", "design_key"]

_MIN_BLOCK = 8  # shorter chunks go through the detector's own process (a block costs more than it saves)


def design_key(det: OnlineQRSDetector) -> tuple:
    """What must be equal for two detectors' front ends to run on one block (cached on the detector)."""
    key = getattr(det, "_design_key", None)
    if key is None:
        key = (det.fs, det._sos.tobytes(), det._der_b.tobytes(), det.integration, det.lookahead, det._max_sub)
        det._design_key = key  # type: ignore[attr-defined]
    return key


def process_many(dets: Sequence[OnlineQRSDetector], leads: Sequence[np.ndarray], *,
                 return_errors: bool = False) -> list[list[int]]:
    """``[det.process(x) for det, x in zip(dets, leads)]``, the front ends of a group computed together.

    Returns each detector's new R peaks in the same order and leaves every detector as ``process``
    would. A detector may appear only once. With ``return_errors`` an exception takes the place of
    that stream's result, else the first is raised after every other stream was processed."""
    if len(dets) != len(leads):
        raise ValueError(f"process_many: {len(dets)} detectors but {len(leads)} inputs")
    if len({id(d) for d in dets}) != len(dets):
        raise ValueError("process_many: a detector appears more than once (its chunks must be fed in order)")
    out: list = [None] * len(dets)
    groups: dict[tuple, list[int]] = defaultdict(list)
    xs: list[np.ndarray | None] = [None] * len(dets)
    for i, (det, x) in enumerate(zip(dets, leads)):
        x = np.asarray(x)
        if x.ndim == 2 and 1 in x.shape:
            x = x.reshape(-1)
        if x.ndim != 1 or det._flushed or len(x) < _MIN_BLOCK:
            out[i] = _one(det, leads[i])  # its own error, or a chunk too short to be worth a block
            continue
        xs[i] = x
        groups[(design_key(det), len(x))].append(i)
    for (_, n), idx in groups.items():
        if len(idx) == 1:
            out[idx[0]] = _one(dets[idx[0]], leads[idx[0]])
            continue
        block = np.stack([xs[i] for i in idx]).astype(np.float64, copy=False)  # (G, n)
        if not all_finite(block):  # per stream, so the one at fault raises its own error
            for i in idx:
                out[i] = _one(dets[i], leads[i])
            continue
        group = [dets[i] for i in idx]
        found: list[list[int]] = [[] for _ in idx]
        step = group[0]._max_sub
        for s in range(0, n, step):
            sub = block[:, s:s + step]
            if sub.shape[1] < _MIN_BLOCK:
                for k, det in enumerate(group):
                    found[k].extend(det._process_sub(np.ascontiguousarray(sub[k])))
            else:
                for k, peaks in enumerate(_sub_many(group, sub)):
                    found[k].extend(peaks)
        for k, i in enumerate(idx):
            out[i] = found[k]
    if not return_errors:
        for r in out:
            if isinstance(r, Exception):
                raise r
    return out


def _one(det: OnlineQRSDetector, x: np.ndarray) -> list[int] | Exception:
    try:
        return det.process(x)
    except Exception as exc:  # noqa: BLE001 - the detector's StreamError, or what numpy raises
        return exc


def _sub_many(dets: list[OnlineQRSDetector], x: np.ndarray) -> list[list[int]]:
    """:meth:`OnlineQRSDetector._process_sub` of each detector on its row of ``x`` (G, n), n >= 8."""
    ref = dets[0]
    g, n = x.shape
    w, la = ref.integration, ref.lookahead
    # band-pass: one sosfilt, each row with its own delay line (primed on its first sample)
    zi = np.empty((ref._sos.shape[0], g, 2))
    for k, det in enumerate(dets):
        if det.samples_seen == 0:
            det._zi_bp = det._sos_zi * x[k, 0]
        zi[:, k, :] = det._zi_bp
    bp, zf = sps.sosfilt(ref._sos, x, axis=-1, zi=zi)
    # five-point derivative: each row after its detector's last four band-passed samples
    xx = np.empty((g, n + 4))
    for k, det in enumerate(dets):
        xx[k, :4] = det._zi_der
    xx[:, 4:] = bp
    d = derivative(ref._der_b, xx)
    sq = np.minimum(d * d, _SQ_MAX)  # (mV/s)^2
    q = np.rint(sq * _Q_SCALE).astype(np.int64)
    # integration: the exact int64 running sum, lagged by the window (history from each detector)
    csum = np.fromiter((det._csum for det in dets), dtype=np.int64, count=g)
    c = csum[:, None] + np.cumsum(q, axis=1)
    back = np.empty((g, w), dtype=np.int64)
    for k, det in enumerate(dets):
        h = det._csum_hist
        back[k] = h.rows(h.total_written - w, h.total_written)[:, 0]
    c_lag = np.concatenate([back, c], axis=1)[:, :n]
    mwi = (c - c_lag) / (w * _Q_SCALE)
    hist = np.stack([x, sq, mwi], axis=2)  # (G, n, 3)
    steady = []  # rows whose candidates are searched on the block
    for k, det in enumerate(dets):
        det._zi_bp = np.ascontiguousarray(zf[:, k, :])
        det._zi_der = xx[k, n:].copy()
        det._csum_hist.write(c[k][:, None])
        det._csum = int(c[k, -1])
        det._hist.write(hist[k])
        det.samples_seen += n
        if det._learned and det._next_check == det.samples_seen - n - la:
            steady.append(k)
    cands: dict[int, list[tuple[int, float]]] = {}
    if steady:
        # _candidates(end - la, end) of each: the maxima of mwi over +/- la, from the history before
        # the sub-chunk (2 la + 1 samples) and the sub-chunk's own
        m = np.empty((len(steady), 2 * la + 1 + n))
        for r, k in enumerate(steady):
            det = dets[k]
            end = det.samples_seen
            m[r, :2 * la + 1] = det._hist.rows(end - n - 2 * la - 1, end - n)[:, 2]
        m[:, 2 * la + 1:] = mwi[steady]
        win_max = maximum_filter1d(m[:, 1:], 2 * la + 1, axis=1, mode="nearest")[:, la:la + n]
        centre = m[:, 1 + la:1 + la + n]
        prev = m[:, la:la + n]
        rows, cols = np.nonzero((centre >= win_max) & (centre > prev) & (centre > 0))
        for k in steady:
            cands[k] = []
        for r, col, v in zip(rows.tolist(), cols.tolist(), centre[rows, cols].tolist()):
            k = steady[r]
            cands[k].append((dets[k]._next_check + col, v))
        for k in steady:
            dets[k]._next_check = dets[k].samples_seen - la
    return [det._advance(cands.get(k)) for k, det in enumerate(dets)]
