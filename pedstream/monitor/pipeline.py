"""Per-stream processing: channel mapping, resampling, the training filter bank, windows, QRS, gaps.

One :class:`StreamPipeline` per live stream. ``feed(chunk, t_received)`` takes a source
:class:`~pedstream.events.Chunk` (``(n, n_src)`` float32 mV at the stream's rate) and
returns a :class:`FeedResult`: the windows that became ready (``(19, T)`` float32 filtered, ``raw``:
the batcher normalises them exactly as in training, :meth:`WindowItem.normalized`, + ``(19,)`` mask)
and any state changes (``signal_loss`` / ``signal_ok``).

Data path (all causal, chunk-size invariant)::

    chunk (n, n_src) --resolve_channels--> (n, 19) --StreamResampler--> (k, 19) at the model fs
      --FilterBank--> RingBuffer (filtered, 19 ch) --Windower(window, hop)--> window (normalize_window
                                                            in the batcher's thread, off the event loop)
                                \\--> OnlineQRSDetector on the heart-rate lead -> heart rate
      (n, 19) --> BeatStream (with a beat model: pedstream.monitor.ectopy) <-- the detector's R peaks

Warm-up: after a (re)start the filter bank settles for ``settle_samples``; no window starting
before that is classified (the dashboard shows "warm-up").

Gaps: a chunk whose ``first_index`` is not the expected one, or whose first timestamp is more than
``gap_tolerance_s`` away from where it should be, starts a new segment: the DSP state restarts, the
stream is in ``signal_loss`` until a full clean window (after warm-up) exists again, then
``signal_ok``. Windows never span a gap because the window grid restarts with the segment.

Short gaps: when the samples lost are known (a forward jump of ``first_index``) and cover at most
``[stream] resume_gap_s``, the DSP is not restarted. The missing samples are bridged by a straight
line from the last sample before the gap to the first one after it, fed through the whole path
(resampler, filters, QRS detector, beat path) so every state and sample clock stays continuous, and
the window grid moves past the bridge: the first window after the gap starts after its last
bridged sample, so no classified window contains an invented sample. The stream is back to
``signal_ok`` one window after the gap instead of a filter warm-up plus a window. (The QRS detector
sees no beat in the bridge, so the RR interval across it is long.)
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from pedstream.config import Config
from pedstream.data.channels import CANONICAL_CHANNELS, ECG_CHANNELS, resolve_channels
from pedstream.dsp.checks import all_finite
from pedstream.dsp.filters import FilterBank
from pedstream.dsp.resample import StreamResampler
from pedstream.dsp.ringbuffer import RingBuffer
from pedstream.dsp.windowing import Windower
from pedstream.errors import ChannelError, StreamError
from pedstream.monitor.batcher import WindowItem
from pedstream.monitor.feedtypes import Arrivals, FeedResult, Quality, Staged
from pedstream.monitor.pipeline_beats import BeatTrack
from pedstream.monitor.pipeline_input import InputChecks, locked as _locked
from pedstream.events import ReadyStrip, StripRequest
from pedstream.events import Chunk, StreamInfo

__all__ = ["ring_capacity", "Quality", "Arrivals", "FeedResult", "Staged", "StripRequest", "ReadyStrip", "StreamPipeline", "stream_channels",
           "stream_clock"]

N_CH = len(CANONICAL_CHANNELS)
N_ECG = len(ECG_CHANNELS)


def stream_channels(info: StreamInfo, cfg: Config):  # type: ignore[no-untyped-def]
    """The stream's ChannelMap onto the canonical layout; :class:`StreamError` (from the
    ``ChannelError``) when no channel name is known or the rate is not a positive number."""
    try:
        cmap = resolve_channels(info.channel_names, aliases=cfg.signal.aliases, extra_ok=cfg.signal.extra_ok,
                                where=f"stream {info.stream_id}")
    except ChannelError as exc:
        raise StreamError(info.stream_id, exc.reason) from exc
    if not np.isfinite(info.fs) or info.fs <= 0:
        raise StreamError(info.stream_id, f"sampling rate {info.fs!r} Hz is not a positive number")
    return cmap


def ring_capacity(cfg: Config, fs: float, window: int, hop: int, at_least: int = 0) -> int:
    """Samples of the filtered signal a stream keeps (model rate): what its next windows need (a
    window and two hops), ``[stream] ring_seconds`` if longer, with alarm strips on a strip
    (``strip_seconds``) and two windows, and ``at_least`` (what a reader of the ring needs: the rhythm
    layer's lead). A chunk longer than that grows the ring (no window is lost)."""
    strip_need = int(np.ceil(cfg.alarms.strip_seconds * fs)) + 2 * window if cfg.alarms.strips else 0
    return max(int(cfg.stream.ring_seconds * fs), strip_need, window + 2 * hop, int(at_least))


class StreamPipeline(InputChecks, BeatTrack):
    """All per-stream state. Raises :class:`pedstream.errors.StreamError` (from ``ChannelError``)
    at construction when none of the stream's channel names is known. ``ring_at_least``: samples the
    ring keeps at least (:func:`ring_capacity`). The input checks (gaps, channel map, clipping, gap
    bridges) are :class:`~pedstream.monitor.pipeline_input.InputChecks`, the QRS detector's side
    (heart rate, beat rates, the beat path) :class:`~pedstream.monitor.pipeline_beats.BeatTrack`."""

    def __init__(self, *, info: StreamInfo, cfg: Config, fs: float, window: int, hop: int, ring_at_least: int = 0) -> None:
        self.info = info
        self.stream_id = info.stream_id
        self.cfg = cfg
        self._lock = threading.RLock()
        self.fs = float(fs)
        self.window = int(window)
        self.hop = int(hop)
        where = f"stream {info.stream_id}"
        self.cmap = stream_channels(info, cfg)
        self.present = self.cmap.present.copy()  # (19,) bool
        self._pidx = np.flatnonzero(self.present)  # canonical columns present
        self._src = self.cmap.source_index[self._pidx]  # the source column of each
        # every canonical channel present, source column k holding channel k: mapping is a copy
        self._in_order = self._pidx.size == N_CH and bool(np.array_equal(self._src, np.arange(N_CH)))
        self.mask = self.present.astype(np.float32)  # (19,) float32
        self.has_ecg = bool(self.present[:N_ECG].any())
        self.has_iegm = bool(self.present[N_ECG:].any())
        self.qrs_channel = self._pick_qrs_channel(cfg.stream.qrs_lead)
        self.resampler = StreamResampler(fs_in=info.fs, fs_out=self.fs, n_channels=N_CH, name=where)
        self.filters = FilterBank(fs=self.fs, cfg=cfg.filters, name=where)
        self.ring = RingBuffer(n_channels=N_CH, capacity=ring_capacity(cfg, self.fs, self.window, self.hop, ring_at_least),
                               name=where)
        self.windower = Windower(window=self.window, hop=self.hop, start=self._first_start(0))
        self.qrs = self._new_qrs()
        self._qrs_pending: list[np.ndarray] = []  # filtered QRS lead not yet fed to the detector
        self._qrs_pending_n = 0
        self._rate_cursor = -1  # ring index of the last beat whose rate went out with a window
        self.segment_start = 0  # ring index where the current clean segment began
        self.segment_t0: float | None = None  # source timestamp of the segment's first sample
        self.expected_index: int | None = None
        self.last_ts: float | None = None
        self.state: Quality = "warm-up"
        self.lost = False
        self.windows_made = 0
        self.gaps = 0
        self._init_clipping()
        self._strips: list[StripRequest] = []
        self._strip_total = int(round(cfg.alarms.strip_seconds * self.fs))  # strip length, samples
        self._strip_post = int(round(cfg.alarms.strip_post_s * self.fs))  # samples after the onset
        self.ectopy: Any = None  # a pedstream.monitor.ectopy.BeatStream when a beat model is loaded
        self._last_mapped: np.ndarray | None = None  # (19,) the last mapped sample (for a gap bridge)
        self.bridged = 0  # short gaps bridged without a restart

    # -- helpers ----------------------------------------------------------------------------------
    def _first_start(self, segment_start: int) -> int:
        """First window start of a segment: on the segment's hop grid, after the filter settles."""
        k = -(-self.filters.settle_samples // self.hop)  # ceil(settle / hop)
        return segment_start + k * self.hop

    def _restart_segment(self) -> None:
        """Restart the DSP after a gap: the next sample begins a new clean segment."""
        self.resampler.reset()
        self.filters.reset()
        self.qrs = self._new_qrs()
        self._qrs_pending, self._qrs_pending_n = [], 0
        if self.ectopy is not None:
            self.ectopy.reset()
        self.segment_start = self.ring.total_written
        self.segment_t0 = None
        self.windower.reset(self._first_start(self.segment_start))
        self._clip_hist.clear()
        self._clip_n = self._clip_stuck = 0
        self._prev[:] = np.nan

    @_locked
    def mark_lost(self, reason: str) -> FeedResult:
        """The source lost the stream: enter ``signal_loss`` (the next data starts a new segment)."""
        res = FeedResult()
        if self.state != "loss":
            res.transitions.append(("signal_loss", reason))
        self.state = "loss"
        self.lost = True
        return res

    @_locked
    def request_strip(self, req: StripRequest) -> None:
        self._strips.append(req)

    # -- the data path (the input checks: pedstream.monitor.pipeline_input) -----------------------
    @_locked
    def feed(self, chunk: Chunk, t_received: float) -> FeedResult:
        """Process one chunk; ``t_received`` is the monotonic time it arrived."""
        staged = self.prepare(chunk, t_received)
        return self.complete(staged, None if staged.y is None or not len(staged.y) else self.filters.process(staged.y))

    @_locked
    def prepare(self, chunk: Chunk, t_received: float | Arrivals) -> Staged:
        """First half of :meth:`feed`: checks, gaps, channel mapping, clipping and resampling. The
        returned ``staged.y`` (k, 19) still has to go through this stream's filter bank (alone, or
        with other streams' in one call: :func:`pedstream.dsp.bank.filter_many`), then :meth:`complete`.
        ``t_received``: when the chunk arrived, or its parts' :class:`Arrivals` for a merged chunk
        (each window then carries the arrival of the part holding its last sample)."""
        arrivals = t_received if isinstance(t_received, Arrivals) else None
        if arrivals is not None:
            t_received = arrivals.first
        res = FeedResult()
        data = np.asarray(chunk.data)
        if data.ndim != 2 or data.shape[1] != self.info.n_channels:
            raise StreamError(self.stream_id, f"chunk shaped {data.shape}, expected (n, {self.info.n_channels}) "
                                              f"for channels {self.info.channel_names}")
        n = data.shape[0]
        if n == 0:
            return Staged(res=res, t_received=t_received)
        if not all_finite(data):
            raise StreamError(self.stream_id, "chunk contains NaN/inf samples")
        reason = self._gap_reason(chunk)
        if reason is not None:
            self.gaps += 1
            if self.state != "loss":
                res.transitions.append(("signal_loss", reason))
            self.state = "loss"
            self.lost = False
            missing = self._bridgeable(chunk)
            if missing:
                self._bridge(missing, self.cmap.apply(data[:1])[0], res, t_received)
            else:
                self._restart_segment()
        self.expected_index = chunk.first_index + n
        if chunk.timestamps.size:
            self.last_ts = float(chunk.timestamps[-1])
            if self.segment_t0 is None:
                self.segment_t0 = float(chunk.timestamps[0])
        mapped = self._map(data)  # (n, 19) float32 mV: self.cmap.apply(data), a new array
        self._update_clipping(mapped)
        self._last_mapped = mapped[-1].copy()
        y, ts = self._resample(mapped)
        return Staged(res=res, t_received=t_received, mapped=mapped, y=y, ts=ts, end_index=self.expected_index,
                      arrivals=arrivals)

    @_locked
    def complete(self, staged: Staged, filt: np.ndarray | None) -> FeedResult:
        """Second half of :meth:`feed`: ``filt`` is ``staged.y`` through this stream's filter bank
        (None when ``staged.y`` is empty); ring, QRS, beat path, windows, strips."""
        res, due = self.cut_windows(staged, filt)
        if due is None:
            return res
        for item, end in due:
            self.rate_meta(item, end)
        self.finish(res)
        return res

    def cut_windows(self, staged: Staged, filt: np.ndarray | None) -> tuple[FeedResult, list | None]:
        """:meth:`complete` up to the heart rates: ring, beat path, the windows cut. Returns the result
        and ``(window, ring end)`` of each window, whose ``meta`` :meth:`rate_meta` fills in that order
        (each with the QRS detector fed up to that window's end), then :meth:`finish`; None: nothing
        more to do. :func:`pedstream.monitor.bank.feed_round` runs these steps for a group of streams
        with their QRS detectors together (under the group's locks)."""
        res, t_received, mapped = staged.res, staged.t_received, staged.mapped
        if mapped is None:
            return res, None
        if filt is None or not len(filt):
            self._ectopy(res, mapped, [], t_received)
            return res, None
        self._store(filt, staged.ts, mapped, res, t_received)
        due: list[tuple[WindowItem, int]] = []
        for start in self.windower.update(self.ring.total_written):
            if start < self.ring.oldest:  # fell out of the ring (huge chunk): skip, never block
                continue
            x, wts = self.ring.read_channels_first(start, start + self.window)  # (19, T) float32 filtered (normalised
            # by the batcher, off the loop), (T,) source-clock seconds
            t_sig = float(wts[0]) if wts is not None and len(wts) and np.isfinite(wts[0]) else None
            t_rec = t_received if staged.arrivals is None else staged.arrivals.at(self._input_index(start + self.window, staged))
            item = WindowItem(stream_id=self.stream_id, start=start, x=x, mask=self.mask, raw=True,
                              t_received=t_rec, t_signal=t_sig, meta=None)
            res.windows.append(item)
            due.append((item, start + self.window))
            self.windows_made += 1
            if self.state == "loss":
                res.transitions.append(("signal_ok", f"clean window from sample {start}"))
            self.state = "ok"
        return res, due

    def finish(self, res: FeedResult, *, qrs_done: bool = False) -> None:
        """The end of :meth:`complete`: the staged QRS lead fed once it holds a hop (after the windows:
        each read the rate at its own end; ``qrs_done``: the caller fed it), the strips that are ready."""
        if not qrs_done:
            lead = self.qrs_due_final()
            if lead is not None:
                self.qrs.process(lead)
        res.strips = self._ready_strips()

    def samples_to_window(self) -> int:
        """Source samples still to come before the next window is complete (at least 1): the engine
        may let a stream's chunks wait until then (``[stream] dsp_defer_s``) without delaying a call."""
        more_out = self.windower.next_start + self.window - self.ring.total_written
        if more_out <= 0:
            return 1
        r = self.resampler
        return max(1, r.n_in_for(r.samples_out + more_out) - r.samples_in)

    def _input_index(self, ring_end: int, staged: Staged) -> int:
        """The stream index of the source sample that completed ring samples up to ``ring_end``
        (exclusive), for a window cut from the chunk ``staged`` just fed."""
        r = self.resampler
        m_end = r.samples_out - (self.ring.total_written - ring_end)  # resampler outputs needed
        return staged.end_index - (r.samples_in - r.n_in_for(m_end)) - 1

    def _resample(self, mapped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mapped samples (n, 19) -> ((k, 19) at self.fs, (k,) source-clock seconds)."""
        y = self.resampler.process(mapped, copy=False)  # (k, 19) at self.fs (mapped itself at equal rates: neither is changed)
        first_out = self.resampler.samples_out - y.shape[0]
        ts = self.resampler.output_times(first_out, y.shape[0], self.segment_t0 or 0.0)
        return y, ts

    def _store(self, filt: np.ndarray, ts: np.ndarray, mapped: np.ndarray, res: FeedResult, t_received: float) -> None:
        """Filtered samples (k, 19) into the ring, the QRS detector and the beat path.

        The QRS detector is fed at most once a hop (its lead is staged until then, or until the
        heart rate is read; :meth:`complete` flushes it after cutting the windows), which gives the same detections as feeding every chunk (it is
        chunk-size invariant) at a fraction of the calls; with a beat path it is fed every chunk
        (the beat path needs the R peaks as they come)."""
        if filt.shape[0] + self.window > self.ring.capacity:  # a chunk longer than the ring: grow it, lose no window
            self._grow_ring(filt.shape[0] + self.window + self.hop)
        self.ring.write(filt, ts)
        if self.qrs is None:
            self._ectopy(res, mapped, [], t_received)
            return
        self._qrs_pending.append(filt[:, self.qrs_channel])
        self._qrs_pending_n += filt.shape[0]
        if self.ectopy is not None:
            self._ectopy(res, mapped, self._qrs_flush(), t_received)

    def _grow_ring(self, capacity: int) -> None:
        """The ring with room for ``capacity`` samples, holding what it held (same absolute indices)."""
        old = self.ring
        new = RingBuffer(n_channels=old.n_channels, capacity=int(capacity), dtype=old.dtype, name=old.name)
        data, ts = old.read(old.oldest, old.total_written)
        new.total_written = old.oldest
        new.write(data, ts)
        self.ring = new

    def _run_dsp(self, mapped: np.ndarray, res: FeedResult, t_received: float) -> bool:
        """Mapped samples ``(n, 19)`` through resampler, filters, ring, QRS and the beat path;
        False when the resampler produced no output sample yet."""
        y, ts = self._resample(mapped)
        if y.shape[0] == 0:
            self._ectopy(res, mapped, [], t_received)
            return False
        self._store(self.filters.process(y), ts, mapped, res, t_received)
        return True

    def _ready_strips(self, *, force: bool = False) -> list[ReadyStrip]:
        if not self._strips:  # the usual case, every chunk
            return []
        out: list[ReadyStrip] = []
        keep: list[StripRequest] = []
        for req in self._strips:
            end = req.onset + self._strip_post
            if end > self.ring.total_written and not force:
                keep.append(req)
                continue
            end = min(end, self.ring.total_written)
            start = max(end - self._strip_total, self.ring.oldest)
            data, _ = self.ring.read(start, end)
            mark = req.onset if req.evidence is None else max(req.evidence, start)
            out.append(ReadyStrip(request=req, data=data, onset_s=(mark - start) / self.fs,
                                  alarm_s=None if req.evidence is None else (req.onset - start) / self.fs))
        self._strips = keep
        return out

    @_locked
    def flush_strips(self) -> list[ReadyStrip]:
        """Strips still waiting for post-onset data, cut with what there is (at shutdown)."""
        return self._ready_strips(force=True)


def stream_clock(pipe: StreamPipeline) -> str:
    """Whose clock the stream's timestamps are on: the stream's ``meta["clock"]`` if it says, else its source kind."""
    meta = pipe.info.meta if isinstance(pipe.info.meta, dict) else {}
    return str(meta.get("clock") or pipe.info.source)
