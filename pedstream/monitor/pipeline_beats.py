"""The QRS detector's side of a stream's pipeline (a mixin of
:class:`~pedstream.monitor.pipeline.StreamPipeline`): the detector on the heart-rate lead, fed at
most once a hop from a staged lead (chunk-size invariant, so the same detections as feeding every
chunk), the heart rate and beat-by-beat rates read at a window's end, and the beat path
(:mod:`pedstream.monitor.ectopy`) fed the detector's R peaks. It uses the pipeline's state (``fs``,
``hop``, ``present``, ``ring``, ``segment_start``, ``segment_t0``, ``ectopy``, ``qrs``,
``_qrs_pending``, ``_qrs_pending_n``, ``_rate_cursor``)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from pedstream.data.channels import CANONICAL_CHANNELS, ECG_CHANNELS
from pedstream.errors import PedstreamError
from pedstream.monitor.batcher import WindowItem
from pedstream.monitor.feedtypes import FeedResult
from pedstream.monitor.pipeline_input import locked as _locked

__all__ = ["BeatTrack"]

N_ECG = len(ECG_CHANNELS)


_QRS_PROTO: dict[float, Any] = {}


def _fresh_qrs(fs: float):  # type: ignore[no-untyped-def]
    """A new QRS detector at ``fs``: a copy of one designed once per rate, reset (its filter
    design is read-only and shared; every state it updates is made anew by ``reset``), the same as
    ``OnlineQRSDetector(fs=fs)`` without designing its filters for every stream and every gap."""
    proto = _QRS_PROTO.get(fs)
    if proto is None:
        from pedstream.dsp.qrs import OnlineQRSDetector

        proto = _QRS_PROTO[fs] = OnlineQRSDetector(fs=fs)
    det = copy.copy(proto)
    det.reset()
    return det


class BeatTrack:
    """The QRS detector, heart rate, beat rates and beat path of one stream (see the module docstring)."""

    def _pick_qrs_channel(self, lead: str) -> int | None:
        names = list(CANONICAL_CHANNELS)
        if lead in names and self.present[names.index(lead)]:
            return names.index(lead)
        ecg = np.flatnonzero(self.present[:N_ECG])
        return int(ecg[0]) if ecg.size else None

    def _new_qrs(self):  # type: ignore[no-untyped-def]
        if self.qrs_channel is None:
            return None
        return _fresh_qrs(self.fs)

    @_locked
    def beat_rates_at(self, ring_end: int) -> list[tuple[int, float]]:
        """``(ring index, bpm)`` of each beat detected in the filtered signal up to ``ring_end`` and not
        handed out before: the rate as it stood at that beat (for the beat-by-beat rate alarms)."""
        if self.qrs is None:
            return []
        self._qrs_flush(ring_end)
        off = self.segment_start
        out = [(off + b, hr) for b, hr in self.qrs.beat_rates(self._rate_cursor - off) if np.isfinite(hr) and hr > 0]
        if out:
            self._rate_cursor = out[-1][0]
        return out

    @property
    def heart_rate(self) -> float | None:
        return self.heart_rate_at(None)

    @_locked
    def heart_rate_at(self, ring_end: int | None) -> float | None:
        """The heart rate once the QRS detector has seen the filtered signal up to ring index
        ``ring_end`` (exclusive; None: all of it). A window's rate is read at its end, so it does not
        depend on how the chunks were cut or merged."""
        if self.qrs is None:
            return None
        self._qrs_flush(ring_end)
        hr = self.qrs.heart_rate()
        if hr is None or not np.isfinite(hr) or hr <= 0:
            return None
        return float(hr)

    def rate_meta(self, item: WindowItem, ring_end: int) -> None:
        """A window's heart rate and beat rates, read at its end (``ring_end``)."""
        item.meta = {"hr": self.heart_rate_at(ring_end), "rates": self.beat_rates_at(ring_end)}

    def qrs_due(self, ring_end: int | None = None) -> np.ndarray | None:
        """The staged QRS lead up to ring index ``ring_end`` (exclusive; None: all of it), taken from
        the stage; the caller feeds it to the detector (``_qrs_flush`` does it in one)."""
        if not self._qrs_pending or self.qrs is None:
            return None
        lead = self._qrs_pending[0] if len(self._qrs_pending) == 1 else np.concatenate(self._qrs_pending)
        k = len(lead) if ring_end is None else ring_end - (self.ring.total_written - self._qrs_pending_n)
        if k <= 0:
            self._qrs_pending = [lead]
            return None
        if k >= len(lead):
            self._qrs_pending, self._qrs_pending_n = [], 0
            return lead
        self._qrs_pending, self._qrs_pending_n = [lead[k:]], len(lead) - k
        return lead[:k]

    def qrs_due_final(self) -> np.ndarray | None:
        """After the windows: the staged QRS lead when it holds a hop (:meth:`finish` feeds it), else None."""
        return self.qrs_due() if self._qrs_pending_n >= self.hop else None

    def _qrs_flush(self, ring_end: int | None = None) -> list[int]:
        """Feed the staged QRS lead to the detector (up to ring index ``ring_end``, exclusive, or all
        of it); its new R peaks."""
        lead = self.qrs_due(ring_end)
        return [] if lead is None else self.qrs.process(lead)

    def _ectopy(self, res: FeedResult, mapped: np.ndarray, peaks: list[int], t_received: float) -> None:
        """The beat path (if on): same mapped samples, the detector's new R peaks (segment-relative)."""
        if self.ectopy is None:
            return
        try:
            res.beats = self.ectopy.process(mapped, peaks, t0=self.segment_t0 or 0.0,
                                            rhythm_segment_start=self.segment_start, t_received=t_received)
        except (PedstreamError, ValueError) as exc:  # this stream's beat path stops, its rhythm goes on
            res.ectopy_error = f"beat model: {exc}"
            self.ectopy = None
