"""An alarm strip on its way from the monitor to the strip writer: what to draw (:class:`StripRequest`)
and, once the post-onset part has arrived, the samples (:class:`ReadyStrip`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["StripRequest", "ReadyStrip"]


@dataclass(slots=True)
class StripRequest:
    """A pending alarm strip: ``onset`` (ring index at the model fs: the end of the window that raised
    the alarm; the strip ends ``strip_post_s`` after it), ``evidence`` (ring index where the episode's
    evidence began: the start of its first window; the strip's onset mark) and what to title it."""

    onset: int
    label: str
    priority: str
    t_iso: str
    evidence: int | None = None
    hr: float | None = None  # the rate the alarm carried (rate alarms: the one that triggered it)


@dataclass(slots=True)
class ReadyStrip:
    request: StripRequest
    data: np.ndarray  # (T, 19) float32 filtered mV
    onset_s: float  # onset mark (the evidence start, else the alarm) from the strip's start, seconds
    alarm_s: float | None = None  # where the alarm was raised (the end of its window), seconds
