"""Causal signal processing shared by training and serving (no train/serve skew).

Imports numpy and scipy only: never torch, never ``pedstream.train`` or ``pedstream.monitor``.
"""

from pedstream.dsp.beat_features import BEAT_FEATURES, BeatFeatures, DominantModel
from pedstream.dsp.filters import FilterBank, design_band, filter_signal
from pedstream.dsp.qrs import OnlineQRSDetector
from pedstream.dsp.resample import StreamResampler
from pedstream.dsp.rhythm_features import CONTEXT_FEATURES, context_features
from pedstream.dsp.rr_rule import RRIrregularityRule
from pedstream.dsp.ringbuffer import BufferOverrunError, RingBuffer
from pedstream.dsp.windowing import (
    NORM_CLIP,
    NORM_EPS,
    NORMALIZATION,
    Windower,
    normalize_window,
    split_modalities,
    window_samples,
)

__all__ = [
    "FilterBank",
    "filter_signal",
    "design_band",
    "StreamResampler",
    "RingBuffer",
    "BufferOverrunError",
    "window_samples",
    "Windower",
    "normalize_window",
    "split_modalities",
    "NORMALIZATION",
    "NORM_EPS",
    "NORM_CLIP",
    "OnlineQRSDetector",
    "CONTEXT_FEATURES",
    "context_features",
    "RRIrregularityRule",
    "BEAT_FEATURES",
    "BeatFeatures",
    "DominantModel",
]
