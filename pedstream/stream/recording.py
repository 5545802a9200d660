"""``pedstream run --record DIR``: every monitored stream and its calls to EDF+ files.

The :class:`Recorder` sees the monitor's input and output at the one place every transport goes
through: it is the engine's source event queue (:meth:`Recorder.queue`, handed to the LSL, MQTT and
replay sources alike, so MQTT streams are recorded too) and an engine sink (the calls, alarms,
beats and signal changes). Per stream (and per announcement: a stream that comes back with other
channels or another rate starts a new file) it writes ``DIR/<stream_id>_<UTC start>.edf``:

- EDF+C via ``pyedflib``: the stream's own channels, names and rate, in millivolts (physical range
  ``+-[record] physical_range_mv``; 16-bit), data records of ``[record] block_s`` seconds (the
  samples of the last, partial record are padded with the last value);
- annotations (EDF+ TAL, in the file itself): one per call (``call sinus p=0.93 HR 112``, lasting
  the window), per alarm onset/end (``alarm_on vt high``), per beat (``beat V``) and per signal change
  (``signal_loss <reason>``), placed at the event's ``t_signal`` relative to the stream's first
  sample (source clock), so they sit on the window they describe in EDFbrowser, MNE
  (``mne.io.read_raw_edf``) or pyedflib. The file's start time is the wall-clock time the first
  chunk arrived; the stream id is the patient code.

Samples are written as they arrive (one data record at a time); annotations when the file is
closed (at the end of the run, or when the stream is announced again). A gap in a stream is not
filled: EDF+C time runs on in samples, and a ``signal_loss`` annotation marks where it happened.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pedstream.stream.sinks import MonitorEvent
from pedstream.stream.source import ChunkReceived, StreamAdded, StreamInfo

__all__ = ["Recorder", "StreamRecording"]

log = logging.getLogger(__name__)


class _TapQueue(asyncio.Queue):
    """The engine's source event queue, showing every event to the recorder as it is queued."""

    def __init__(self, recorder: "Recorder") -> None:
        super().__init__()
        self._recorder = recorder

    def put_nowait(self, item: Any) -> None:
        self._recorder.observe(item)
        super().put_nowait(item)


@dataclass
class StreamRecording:
    """One open EDF+ file of one stream."""

    info: StreamInfo
    path: Path
    writer: Any
    spr: int  # samples per channel per data record
    t0: float | None = None  # source-clock time of the first sample
    pending: list[np.ndarray] = field(default_factory=list)
    n_pending: int = 0
    written: int = 0
    annotations: list[tuple[float, float, str]] = field(default_factory=list)
    last: np.ndarray | None = None


class Recorder:
    """EDF+ recorder of every stream the engine sees (module docstring). Use :meth:`queue` as the
    sources' event queue and pass the recorder among the engine's sinks."""

    def __init__(self, folder: str | Path, *, cfg: Any) -> None:
        import pyedflib  # noqa: F401  (fail at start when the integrations extra is missing)

        self.folder = Path(folder)
        self.cfg = cfg
        self.block_s = float(cfg.record.block_s)
        self.range_mv = float(cfg.record.physical_range_mv)
        self.window_s = float(cfg.segments.window_s)
        self.open: dict[str, StreamRecording] = {}
        self.files: list[Path] = []
        self._queue: _TapQueue | None = None

    def queue(self) -> asyncio.Queue:
        if self._queue is None:
            self._queue = _TapQueue(self)
        return self._queue

    # -- the sink side -----------------------------------------------------------------------------
    async def __aenter__(self) -> "Recorder":
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for sid in list(self.open):
            self._close(sid)

    def emit(self, ev: MonitorEvent) -> None:
        rec = self.open.get(ev.stream)
        if rec is None or ev.t_signal is None or rec.t0 is None:
            return
        onset = max(0.0, float(ev.t_signal) - rec.t0)
        if ev.kind == "call":
            text, dur = f"call {ev.label} p={ev.p:.2f}" + (f" HR {ev.hr:.0f}" if ev.hr is not None else ""), self.window_s
        elif ev.kind in ("alarm_on", "alarm_off"):
            text, dur = f"{ev.kind} {ev.label} {ev.extra.get('priority', '')}".strip(), -1.0
        elif ev.kind == "beat":
            text, dur = f"beat {ev.label}", -1.0
        elif ev.kind in ("signal_loss", "signal_ok", "error"):
            text, dur = f"{ev.kind} {ev.extra.get('reason') or ev.extra.get('message') or ''}".strip(), -1.0
        else:
            return
        rec.annotations.append((onset, dur, text[:80]))

    # -- the source side ----------------------------------------------------------------------------
    def observe(self, ev: Any) -> None:
        try:
            if isinstance(ev, StreamAdded):
                self._start(ev.info)
            elif isinstance(ev, ChunkReceived):
                self._samples(ev.chunk)
        except Exception as exc:  # recording must never stop monitoring
            sid = getattr(ev, "stream_id", "?")
            log.warning("recording %s: %s (this stream's recording stops)", sid, exc)
            self._close(sid, failed=True)

    def _start(self, info: StreamInfo) -> None:
        import pyedflib

        old = self.open.get(info.stream_id)
        if old is not None:
            if old.info.fs == info.fs and list(old.info.channel_names) == list(info.channel_names):
                return  # the same stream back: keep writing the same file
            self._close(info.stream_id)
        stamp = datetime.now(timezone.utc)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", info.stream_id)
        path = self.folder / f"{safe}_{stamp.strftime('%Y%m%dT%H%M%S')}.edf"
        k = 2
        while path.exists() or path in self.files:
            path = self.folder / f"{safe}_{stamp.strftime('%Y%m%dT%H%M%S')}_{k}.edf"
            k += 1
        spr = max(1, int(round(info.fs * self.block_s)))
        n = len(info.channel_names)
        writer = pyedflib.EdfWriter(str(path), n, file_type=pyedflib.FILETYPE_EDFPLUS)
        writer.setDatarecordDuration(spr / info.fs)
        writer.setSignalHeaders([{
            "label": str(name)[:16], "dimension": "mV", "sample_frequency": info.fs,
            "physical_max": self.range_mv, "physical_min": -self.range_mv,
            "digital_max": 32767, "digital_min": -32768, "transducer": "", "prefilter": "",
        } for name in info.channel_names])
        writer.setPatientCode(safe[:80])
        writer.setEquipment(f"pedstream ({info.source})")
        writer.setStartdatetime(stamp.replace(tzinfo=None))
        self.open[info.stream_id] = StreamRecording(info=info, path=path, writer=writer, spr=spr)
        self.files.append(path)

    def _samples(self, chunk: Any) -> None:
        rec = self.open.get(chunk.stream_id)
        if rec is None:
            return
        data = np.asarray(chunk.data, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != len(rec.info.channel_names) or data.shape[0] == 0:
            return  # the engine reports bad chunks; nothing to record
        if rec.t0 is None:
            rec.t0 = float(chunk.timestamps[0]) if len(chunk.timestamps) else 0.0
        rec.pending.append(np.clip(data, -self.range_mv, self.range_mv))
        rec.n_pending += data.shape[0]
        if rec.n_pending >= rec.spr:
            buf = np.concatenate(rec.pending)
            n_full = buf.shape[0] // rec.spr * rec.spr
            self._write(rec, buf[:n_full])
            rest = buf[n_full:]
            rec.pending, rec.n_pending = ([rest], rest.shape[0]) if rest.shape[0] else ([], 0)

    def _write(self, rec: StreamRecording, block: np.ndarray) -> None:
        for i in range(0, block.shape[0], rec.spr):
            part = block[i:i + rec.spr]
            rec.writer.writeSamples([np.ascontiguousarray(part[:, c]) for c in range(part.shape[1])])
        rec.written += block.shape[0]
        rec.last = block[-1]

    def _close(self, sid: str, *, failed: bool = False) -> None:
        rec = self.open.pop(sid, None)
        if rec is None:
            return
        try:
            if not failed:
                if rec.n_pending:  # pad the last data record with the last value
                    buf = np.concatenate(rec.pending)
                    pad = np.repeat(buf[-1:], rec.spr - buf.shape[0], axis=0)
                    self._write(rec, np.concatenate([buf, pad]))
                    rec.pending, rec.n_pending = [], 0
                elif rec.written == 0:  # EDF needs at least one data record
                    self._write(rec, np.zeros((rec.spr, len(rec.info.channel_names))))
                for onset, dur, text in rec.annotations:
                    rec.writer.writeAnnotation(onset, dur, text)
        finally:
            rec.writer.close()
