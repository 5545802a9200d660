"""Ectopy in the live monitor: each detected beat classified by a beat model (AAMI N/S/V/F/Q).

Off by default (``[stream] beat_model = ""``). When a beat model is loaded, every stream gets a
:class:`BeatStream` beside its rhythm pipeline, fed the same channel-mapped samples::

    chunk (n, 19) --StreamResampler--> beat-model fs --FilterBank(model's filters)--> RingBuffer
    rhythm QRS detector R peaks --(time map)--> beat-model clock --RRFeatures--> (beat, rr) pairs
    beat ready = its next beat detected (post-RR) and its window's last sample arrived
      --> window centred on the beat --normalize_window--> WindowItem(x, mask, rr) -> beat batcher

Beat clock: the stream's QRS detector reports R peaks as sample indices ``r`` of the rhythm
resampler's output since the segment began. Output sample ``m`` of a
:class:`~pedstream.dsp.resample.StreamResampler` represents the input instant ``output_time(m)``
(its group delay removed), so a beat maps to ``b = round((t_r(r) + delay_b) * fs_b)`` on the beat
resampler's output (round half to even, ``numpy.round``): both resamplers restart together at a
segment start, so they share the segment's first input sample as time zero. The different filter
delays of the two banks (a few ms at QRS frequencies) are not compensated.

Feature beat models (``segments.features`` in the metadata, e.g. the gradient-boosting model of
``pedstream.train.beat_export``): the stream's :class:`~pedstream.dsp.beat_features.BeatFeatures`
turns each ready beat's filtered lead II window and RR features into the beat's feature vector (the
running dominant-beat template is per stream), passed as the model's ``rr`` input.

Window: ``window_samples`` samples starting at ``b - window_samples // 2`` (as in training).
Beats whose window starts before the beat filter bank settled (``settle_s`` of the model's
filters) are not classified (their RR intervals still count). Channels the model was not trained
on (``metadata["trained_channels"]``) are masked (absent).

:class:`EctopyCounter`: per stream PVC/min and PAC/min, the V and S beats of the last 60 s of the
stream's clock (source timestamps), kept across gaps. The PVC-run alarm (``pvc_run``: 3 or more
consecutive V beats) lives in :class:`pedstream.monitor.alarms.AlarmTracker`.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from pedstream.data.channels import CANONICAL_CHANNELS
from pedstream.dsp.filters import FilterBank, FilterCutoffWarning
from pedstream.dsp.resample import StreamResampler
from pedstream.dsp.ringbuffer import RingBuffer
from pedstream.dsp.rr import RR_FEATURES, RRFeatures
from pedstream.dsp.windowing import NORMALIZATION, normalize_window
from pedstream.errors import ModelError, StreamError
from pedstream.config import Config

__all__ = ["BeatInfo", "BeatModelSpec", "BeatStream", "EctopyCounter", "open_beat_model", "PVC", "PAC"]

PVC, PAC = "V", "S"  # AAMI classes counted as PVC (ventricular) and PAC (supraventricular premature)
N_CH = len(CANONICAL_CHANNELS)


@dataclass(frozen=True, slots=True)
class BeatModelSpec:
    """What a beat model's metadata says the engine must reproduce (checked on construction)."""

    fs: float
    window: int  # samples per beat window at ``fs``
    filters: Any  # FilterConfig
    rr_features: bool
    rr_local_beats: int
    rr_long_beats: int
    trained: np.ndarray  # (19,) bool: channels present in training
    class_names: tuple[str, ...]
    features: str = ""  # a feature beat model: segments.features (pedstream.dsp.beat_features version)
    adapt: bool = False  # its features include the dominant-beat ones (BeatFeatures(adapt=True))

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], *, channels: list[str], n_rr: int | None = None,
                      path: str = "beat model") -> "BeatModelSpec":
        """Check ``meta`` (decoded ONNX metadata) as a beat model for an engine whose canonical
        channel order is ``channels``; ``n_rr`` is the session's rr width (``None``: read ``inputs``).
        Raises :class:`ModelError` (one line) when it is not a usable beat model."""
        from pedstream.config import FilterConfig
        from pedstream.model.runtime import compare_metadata

        seg = meta.get("segments") if isinstance(meta.get("segments"), Mapping) else {}
        mode = seg.get("mode", "rhythm")
        if mode != "beat":
            raise ModelError(path, f"is not a beat model (segments.mode = {mode!r}, expected 'beat'); "
                                   "[stream] beat_model takes a model trained with segments.mode = \"beat\"")
        compare_metadata(meta, {"channels": list(channels), "normalization": NORMALIZATION}, path=path)
        if n_rr is None:
            rr_in = (meta.get("inputs") or {}).get("rr")
            n_rr = int(rr_in[-1]) if rr_in else 0
        rr_features = bool(seg.get("rr_features", False))
        features, adapt = str(seg.get("features") or ""), bool(seg.get("adapt", False))
        if features:
            from pedstream.dsp.beat_features import FEATURE_VERSION, feature_names

            if features != FEATURE_VERSION:
                raise ModelError(path, f"segments.features {features!r}: this engine computes {FEATURE_VERSION!r}")
            if n_rr != len(feature_names(adapt)):
                raise ModelError(path, f"a {features} model takes rr (B, {len(feature_names(adapt))}), not (B, {n_rr})")
        elif rr_features and n_rr != len(RR_FEATURES):
            raise ModelError(path, f"segments.rr_features is set but the model has "
                                   f"{'no rr input' if not n_rr else f'an rr input of {n_rr}'} "
                                   f"(expected rr (B, {len(RR_FEATURES)}))")
        if n_rr and not rr_features:
            raise ModelError(path, "the model takes an rr input but segments.rr_features is not set")
        classes = tuple(str(c) for c in meta.get("class_names", []))
        missing = [c for c in (PVC, PAC) if c not in classes]
        if missing:
            raise ModelError(path, f"class_names {list(classes)} lack {missing} (the AAMI V = PVC and S = PAC classes)")
        try:
            fs = float(meta["fs"])
            window = int(meta["window_samples"])
            filters = FilterConfig(**dict(meta["filters"]))
        except Exception as exc:  # KeyError, TypeError, pydantic ValidationError
            raise ModelError(path, f"metadata fs/window_samples/filters unusable: {exc}") from exc
        if not (np.isfinite(fs) and fs > 0) or window < 2:
            raise ModelError(path, f"metadata fs={fs!r} / window_samples={window!r} are not usable")
        names = list(CANONICAL_CHANNELS)
        trained_names = meta.get("trained_channels")
        if trained_names is None:
            trained = np.ones(N_CH, dtype=bool)
        else:
            unknown = [c for c in trained_names if c not in names]
            if unknown or not trained_names:
                raise ModelError(path, f"trained_channels {trained_names!r}: {unknown or 'empty'} not canonical channels")
            trained = np.isin(np.asarray(names), np.asarray(list(trained_names), dtype=object))
        return cls(fs=fs, window=window, filters=filters, rr_features=rr_features,
                   rr_local_beats=int(seg.get("rr_local_beats", 10)), rr_long_beats=int(seg.get("rr_long_beats", 250)),
                   trained=trained, class_names=classes, features=features, adapt=adapt)

    @classmethod
    def from_session(cls, session: Any, *, channels: list[str]) -> "BeatModelSpec":
        return cls.from_metadata(dict(session.metadata), channels=channels, n_rr=int(getattr(session, "n_rr", 0)),
                                 path=str(getattr(session, "path", "beat model")))


def open_beat_model(cfg: Config, path: str | Path) -> tuple[Any, BeatModelSpec]:
    """Open ``path`` as the beat model (ONNX Runtime) and check it: ``(session, spec)``.

    Refused with one :class:`ModelError` line (exit 2): a missing file, a model whose
    ``segments.mode`` is not ``"beat"``, one that lacks the ``rr`` input its ``segments.rr_features``
    calls for, one with other channel order / normalisation than the engine, or without V and S classes.
    """
    from pedstream.model.runtime import ModelSession, read_metadata

    p = Path(path)
    if not p.is_file():
        raise ModelError(str(p), "no such beat model file ([stream] beat_model)")
    channels = list(cfg.signal.channels)
    BeatModelSpec.from_metadata(read_metadata(p), channels=channels, path=str(p))  # refuse before building a session
    session = ModelSession(path=p, runtime_cfg=cfg.runtime, max_batch=cfg.stream.max_batch)
    return session, BeatModelSpec.from_session(session, channels=channels)


@dataclass(slots=True)
class BeatInfo:
    """Rides on a beat's :class:`~pedstream.monitor.batcher.WindowItem` (``meta``)."""

    t: float  # stream-clock time of the beat (source timestamps), seconds
    rhythm_index: int  # the beat's sample index in the rhythm pipeline's ring (alarm strips)
    pre_rr: float  # seconds
    post_rr: float


class BeatStream:
    """Per-stream beat path (see the module docstring). ``process`` takes the channel-mapped chunk
    and the rhythm detector's new R peaks; returns the beat windows that became ready.

    Raises :class:`StreamError` at construction when the stream has none of the channels the model
    was trained on."""

    def __init__(self, *, stream_id: str, spec: BeatModelSpec, fs_in: float, rhythm_time: Callable[[int], Any],
                 present: np.ndarray, ring_seconds: float = 20.0) -> None:
        self.stream_id = stream_id
        self.spec = spec
        self.fs = spec.fs
        self.window = spec.window
        self.half = spec.window // 2
        self.present = np.asarray(present, dtype=bool) & spec.trained  # (19,)
        if not self.present.any():
            trained = [c for c, t in zip(CANONICAL_CHANNELS, spec.trained) if t]
            raise StreamError(stream_id, f"beat model: none of its trained channels {trained} is present; "
                                         "ectopy is off for this stream")
        self.mask = self.present.astype(np.float32)
        where = f"stream {stream_id} beat model"
        self.resampler = StreamResampler(fs_in=fs_in, fs_out=self.fs, n_channels=N_CH, name=where)
        # the rhythm resampler's output_time (same input, same restarts): detector index -> seconds
        self._rhythm_time = rhythm_time
        with warnings.catch_warnings():  # a low-pass clipped at 360 Hz: training clipped it the same way
            warnings.simplefilter("ignore", FilterCutoffWarning)
            self.filters = FilterBank(fs=self.fs, cfg=spec.filters, name=where)
        capacity = int(np.ceil(max(ring_seconds, 10.0) * self.fs)) + 2 * self.window
        self.ring = RingBuffer(n_channels=N_CH, capacity=capacity, name=where)
        self.rr = RRFeatures(fs=self.fs, local_beats=spec.rr_local_beats, long_beats=spec.rr_long_beats)
        self.beat_features = None  # a feature model: the per-beat features of this stream (causal state)
        if spec.features:
            from pedstream.dsp.beat_features import BeatFeatures

            self._lead = CANONICAL_CHANNELS.index("II")
            if not self.present[self._lead]:
                raise StreamError(stream_id, "beat model: its features are computed on lead II, absent here; "
                                             "ectopy is off for this stream")
            self.beat_features = BeatFeatures(fs=self.fs, adapt=spec.adapt)
        self.beats_seen = 0
        self.skipped = 0  # beats not classified (before the filter settled, or out of the ring)
        self.reset()

    def reset(self) -> None:
        """A gap: the next sample starts a new segment (DSP state, RR history and pending beats go)."""
        self.resampler.reset()
        self.filters.reset()
        self.rr.reset()
        if self.beat_features is not None:
            self.beat_features.reset()
        self.segment_start = self.ring.total_written  # ring index of the segment's first sample
        self._last_b = -1
        self._last_rix = 0  # rhythm ring index of the newest beat (its features come with the next one)
        self._pending: deque[tuple[int, np.ndarray, int]] = deque()  # (b, rr features, rhythm ring index)

    def to_beat_clock(self, r: int) -> int:
        """Rhythm-detector index ``r`` (segment-relative, rhythm rate) -> beat-model sample (segment-relative)."""
        t = float(self._rhythm_time(int(r)))  # input-clock seconds from the segment start
        return int(np.round((t + self.resampler.delay_s) * self.fs))

    def process(self, mapped: np.ndarray, beats: list[int], *, t0: float, rhythm_segment_start: int,
                t_received: float) -> list[Any]:
        """``mapped`` (n, 19) mV at the stream rate; ``beats`` the rhythm detector's new R peaks
        (segment-relative, rhythm rate); ``t0`` the segment's first source timestamp. Returns the
        ready :class:`~pedstream.monitor.batcher.WindowItem` list (``rr``, ``meta`` = :class:`BeatInfo`)."""
        from pedstream.monitor.batcher import WindowItem

        y = self.resampler.process(mapped)
        if y.shape[0]:
            first = self.resampler.samples_out - y.shape[0]
            ts = t0 + np.asarray(self.resampler.output_time(np.arange(first, first + y.shape[0])), dtype=np.float64)
            self.ring.write(self.filters.process(y), ts)
        for r in beats:
            b = self.to_beat_clock(r)
            if b <= self._last_b:  # cannot happen for beats >= 1 sample apart at both rates; never feed RR backwards
                continue
            self._last_b = b
            self.beats_seen += 1
            for bb, feat in self.rr.push(b):  # the previous beat, now that its post-RR exists
                self._pending.append((bb, feat, self._last_rix))
            self._last_rix = rhythm_segment_start + int(r)
        out = []
        settle = self.segment_start + self.filters.settle_samples
        while self._pending:
            b, feat, rix = self._pending[0]
            start = self.segment_start + b - self.half
            if start + self.window > self.ring.total_written:
                break  # window not complete yet (the queue is in beat order)
            self._pending.popleft()
            if start < settle or start < self.ring.oldest:
                self.skipped += 1
                continue
            win, wts = self.ring.read(start, start + self.window)  # (T, 19)
            x = normalize_window(win.T, self.present)  # (19, T) float32
            if self.beat_features is not None:
                feat = self.beat_features.push(win[:, self._lead], feat)
            info = BeatInfo(t=float(wts[self.half]), rhythm_index=rix, pre_rr=float(feat[0]), post_rr=float(feat[1]))
            out.append(WindowItem(stream_id=self.stream_id, start=start + self.half, x=x, mask=self.mask,
                                  t_received=t_received, rr=feat if self.spec.rr_features else None, meta=info))
        return out


class EctopyCounter:
    """PVC/min and PAC/min: V and S beats within the last ``window_s`` (60) seconds of stream time; and
    the ventricular patterns of the same span (:meth:`patterns`): couplets (exactly two V beats in a row),
    runs (three or more), and whether the newest beats are in bigeminy (N V repeated, 3 cycles or more)
    or trigeminy (N N V, 3 cycles or more)."""

    def __init__(self, *, window_s: float = 60.0) -> None:
        self.window_s = float(window_s)
        self._v: deque[float] = deque()
        self._s: deque[float] = deque()
        self._newest: float | None = None
        self.total: dict[str, int] = {}
        self._recent: deque[str] = deque(maxlen=9)  # the newest labels (bigeminy / trigeminy)
        self._v_run = 0  # V beats in a row up to the newest beat
        self._couplets: deque[float] = deque()  # when each couplet / run ended or reached 3 beats
        self._runs: deque[float] = deque()

    def add(self, t: float, label: str) -> None:
        """A classified beat at stream time ``t`` (seconds). A clock that runs backwards (a source
        restarted without timestamps) starts the count afresh."""
        if self._newest is not None and t < self._newest - self.window_s:
            for q in (self._v, self._s, self._couplets, self._runs):
                q.clear()
            self._recent.clear()
            self._v_run = 0
        self._newest = t if self._newest is None else max(self._newest, t)
        self.total[label] = self.total.get(label, 0) + 1
        if label == PVC:
            self._v.append(t)
            self._v_run += 1
            if self._v_run == 3:
                self._runs.append(t)
        else:
            if label == PAC:
                self._s.append(t)
            if self._v_run == 2:
                self._couplets.append(t)
            self._v_run = 0
        self._recent.append(label)

    def rates(self, now: float | None = None) -> tuple[int, int]:
        """``(pvc_per_min, pac_per_min)`` at stream time ``now`` (default: the newest beat)."""
        now = self._newest if now is None else now
        if now is None:
            return 0, 0
        for q in (self._v, self._s):
            while q and q[0] <= now - self.window_s:
                q.popleft()
        return (sum(1 for t in self._v if t <= now), sum(1 for t in self._s if t <= now))

    def patterns(self, now: float | None = None) -> dict[str, int | str | None]:
        """``couplets`` and ``runs`` of V beats in the last ``window_s`` at ``now``; ``pattern``:
        ``"bigeminy"``, ``"trigeminy"`` or ``None`` for the newest beats."""
        now = self._newest if now is None else now
        if now is not None:
            for q in (self._couplets, self._runs):
                while q and q[0] <= now - self.window_s:
                    q.popleft()
        r = "".join("V" if x == PVC else "n" for x in self._recent)
        pattern = ("bigeminy" if r[-6:] in ("nV" * 3, "Vn" * 3) else
                   "trigeminy" if r[-9:] in ("nnV" * 3, "nVn" * 3, "Vnn" * 3) else None)
        return {"couplets": len(self._couplets), "runs": len(self._runs), "pattern": pattern}
