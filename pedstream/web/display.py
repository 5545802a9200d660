"""The display side of a stream: its signal decimated for the screen, held in a ring, and the binary
frames that carry it to a browser.

The source event queue shows every chunk to :meth:`DisplayRing.push` (one ``deque.append``: nothing
is computed in the monitor's path). Decimation (block means of ``k`` samples, ``k = round(fs /
display_hz)``: 977 Hz -> 244 Hz) happens in :meth:`DisplayRing.update`, called by the web station
only for streams some screen is looking at; chunks that nobody looked at are dropped from a bounded
queue. The display signal is never used for classification.

A waveform frame (little-endian) is a 24-byte header then ``int16`` samples, interleaved per
sample, in units of 5 uV::

    u8 kind (1 = tile channels, 2 = all channels) | u8 n_channels | u16 bed number | u32 first sample
    | f32 display rate Hz | f64 wall-clock ms when the last sample reached the monitor | u16 n | u16 0
"""

from __future__ import annotations

import struct
import time
from collections import deque
from typing import Mapping, Sequence

import numpy as np

from pedstream.data.channels import ECG_CHANNELS, IEGM_CHANNELS
from pedstream.dsp.ringbuffer import RingBuffer

__all__ = ["DisplayRing", "tile_channels", "encode_frame", "FRAME_HEADER", "UNITS_PER_MV", "KIND_TILE", "KIND_ALL"]

FRAME_HEADER = struct.Struct("<BBHIfdHH")  # 24 bytes
UNITS_PER_MV = 200.0  # int16 in 5 uV steps: +-163 mV
KIND_TILE, KIND_ALL = 1, 2
_ECG_PREFERENCE = ("II", "I", "III", "aVF", "V1", "V2", "V5", "V6", "V3", "V4", "aVR", "aVL")
_IEGM_PREFERENCE = ("ABL12", "CS12", "CS34", "CS56", "CS78", "CS90", "RVA12")
_PENDING_S = 5.0  # seconds of raw signal held for a stream nobody is looking at (older chunks are dropped)


def _canonical(names: Sequence[str], aliases: Mapping[str, str]) -> list[str]:
    known = {c.lower(): c for c in (*ECG_CHANNELS, *IEGM_CHANNELS)}
    out = []
    for n in names:
        n = aliases.get(n, n)
        out.append(known.get(n.lower(), n))
    return out


def tile_channels(names: Sequence[str], aliases: Mapping[str, str] | None = None) -> list[int]:
    """The two channels of a bed tile: lead II (else the first ECG lead present in the order
    II, I, III, aVF, V1...) and one IEGM channel when present, else a second ECG lead."""
    canon = _canonical(names, aliases or {})
    ecg = [canon.index(c) for c in _ECG_PREFERENCE if c in canon]
    iegm = [canon.index(c) for c in _IEGM_PREFERENCE if c in canon]
    first = ecg[0] if ecg else 0
    rest = [i for i in (*iegm, *ecg[1:], *range(len(names))) if i != first]
    return [first, *rest[:1]]


class DisplayRing:
    """The display signal of one stream (module docstring)."""

    def __init__(self, *, stream_id: str, fs: float, channel_names: Sequence[str], display_hz: float,
                 ring_s: float, aliases: Mapping[str, str] | None = None) -> None:
        self.stream_id = stream_id
        self.channel_names = list(channel_names)
        self.labels = _canonical(self.channel_names, aliases or {})
        self.k = max(1, int(round(float(fs) / display_hz)))
        self.fs = float(fs) / self.k
        n_ch = max(1, len(self.channel_names))
        self.ring = RingBuffer(n_channels=n_ch, capacity=max(16, int(ring_s * self.fs)), name=f"display {stream_id}")
        self.tile = tile_channels(self.channel_names, aliases) if self.channel_names else [0]
        self.pending: deque[tuple[np.ndarray, float]] = deque()
        self.pending_samples = 0
        self.max_pending = int(_PENDING_S * float(fs))
        self._carry: np.ndarray | None = None
        self.dropped_chunks = 0

    def push(self, data: np.ndarray, wall: float) -> None:
        """A chunk ``(n, n_ch)`` mV that reached the monitor at ``wall`` (time.time()); the oldest
        pending chunks go beyond ``_PENDING_S`` seconds (nobody looked at them)."""
        self.pending.append((data, wall))
        self.pending_samples += len(data)
        while self.pending_samples > self.max_pending and len(self.pending) > 1:
            self.pending_samples -= len(self.pending.popleft()[0])
            self.dropped_chunks += 1
            self._carry = None

    def update(self) -> None:
        """Decimate what was pushed since the last update into the ring."""
        n_ch = self.ring.n_channels
        while self.pending:
            data, wall = self.pending.popleft()
            self.pending_samples -= len(data)
            if data.ndim != 2 or data.shape[1] != n_ch:
                continue
            if self._carry is not None and len(self._carry):
                data = np.concatenate([self._carry, data])
            m = (len(data) // self.k) * self.k
            self._carry = data[m:]
            if m:
                dec = data[:m].reshape(-1, self.k, n_ch).mean(axis=1, dtype=np.float32)
                self.ring.write(dec, np.full(len(dec), wall))

    def since(self, cursor: int | None, *, max_s: float) -> tuple[int, np.ndarray, float] | None:
        """(first index, samples (n, n_ch), arrival wall time of the last) written after ``cursor``
        (None: the last ``max_s``), at most ``max_s`` seconds (a lagging screen skips ahead); None if
        nothing is new."""
        end = self.ring.total_written
        newest = max(self.ring.oldest, end - int(max_s * self.fs))
        start = newest if cursor is None else max(int(cursor), newest)
        if end <= start:
            return None
        data, ts = self.ring.read(start, end)
        return start, data, float(ts[-1])

    def layout(self, bed: int) -> dict:
        return {"bed": bed, "stream": self.stream_id, "fs": self.fs, "channels": self.labels, "tile": self.tile}


def encode_frame(*, kind: int, bed: int, first: int, fs: float, wall: float, data: np.ndarray) -> bytes:
    """One waveform frame (module docstring) of ``data`` (n, n_ch) mV."""
    n = min(len(data), 65535)
    q = np.clip(np.rint(np.nan_to_num(data[-n:] * UNITS_PER_MV)), -32767, 32767).astype("<i2")
    return FRAME_HEADER.pack(kind, q.shape[1], bed & 0xFFFF, (first + len(data) - n) & 0xFFFFFFFF, fs,
                             wall * 1000.0, n, 0) + q.tobytes()


def now_wall() -> float:
    return time.time()
