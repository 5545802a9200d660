"""``pedstream run --record DIR``: every monitored stream and its calls to EDF+ files.

The :class:`Recorder` sees the monitor's input and output at the one place every transport goes
through: it is the engine's source event queue (:meth:`Recorder.queue`, handed to the LSL, MQTT and
replay sources alike, so MQTT streams are recorded too) and an engine sink (the calls, alarms,
beats and signal changes). Per stream (and per announcement: a stream that comes back with other
channels or another rate starts a new file) it writes ``DIR/<stream_id>_<UTC start>.edf``:

- EDF+C via ``pyedflib``: the stream's own channels and rate, in millivolts (physical range
  ``+-[record] physical_range_mv``; 16-bit), data records of ``[record] block_s`` seconds (the
  samples of the last, partial record are padded with the last value). Labels follow the EDF+
  convention "type space name" (``ECG II``, ``ECG CS12``), so readers type them as ECG (MNE with
  ``infer_types=True``); the transducer field says ``surface ECG electrode`` or ``intracardiac
  electrode`` (IEGM). Samples beyond the physical range are clipped *and marked*: an annotation
  ``clipped <channels> (beyond +-N mV)`` lasting the clipped episode;
- annotations (EDF+ TAL, in the file itself): one per call (``call sinus p=0.93 HR 112``, lasting
  the window), per alarm onset/end (``alarm_on vt high``), per beat (``beat V``) and per signal change
  (``signal_loss <reason>``), placed at the event's ``t_signal`` relative to the stream's first
  sample (source clock), so they sit on the window they describe in EDFbrowser, MNE
  (``mne.io.read_raw_edf``) or pyedflib. The file's start time is the wall-clock time the first
  chunk arrived; the stream id is the patient code.

Samples are written as they arrive (one data record at a time); annotations when the file is
closed (at the end of the run, or when the stream is announced again). A gap in a stream is not
filled: EDF+C time runs on in samples, and a ``signal_loss`` annotation marks where it happened.

Crash safety (:mod:`pedstream.stream.edfrepair`): the header's record count follows every data
record, so a file cut by SIGKILL opens in pyedflib and MNE up to its last data record; annotations
also go to a journal as they happen, and ``pedstream record repair DIR`` (run automatically when
``--record DIR`` starts) puts them back into such a file. A storage fault (full or read-only disk)
stops only that file: it is reported once (``technical_alarm`` ``recording_unwritable``), the samples
not written are counted, and a new file is started ``[record] retry_s`` later.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import re
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pedstream.stream.sinks import MonitorEvent
from pedstream.stream.source import ChunkReceived, StreamAdded, StreamInfo

__all__ = ["Recorder", "StreamRecording", "edf_label"]

log = logging.getLogger(__name__)

ANNOTATION_SIGNALS = 8  # room for 8 annotations per data record (EDFlib drops what does not fit)
CLIP_MERGE_S = 5.0  # clipping less than this apart is annotated as one episode


class _Skip(Exception):
    """A chunk of a stream waiting to retry its file (counted, not a new fault)."""


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
    layout: Any = None  # EdfLayout once the header is on disk
    clip_from: float | None = None  # file seconds of the open clipped episode
    clip_to: float = 0.0
    clip_channels: set = field(default_factory=set)
    limits: np.ndarray | None = None  # the physical range of each channel (+-mV)


class Recorder:
    """EDF+ recorder of every stream the engine sees (module docstring). Use :meth:`queue` as the
    sources' event queue and pass the recorder among the engine's sinks."""

    def __init__(self, folder: str | Path, *, cfg: Any) -> None:
        import pyedflib  # noqa: F401  (fail at start when the integrations extra is missing)

        self.folder = Path(folder)
        self.cfg = cfg
        self.block_s = float(cfg.record.block_s)
        self.range_mv = float(cfg.record.physical_range_mv)
        self.iegm_range_mv = float(getattr(cfg.record, "iegm_range_mv", self.range_mv))
        self.window_s = float(cfg.segments.window_s)
        self.open: dict[str, StreamRecording] = {}
        self.files: list[Path] = []
        self._queue: _TapQueue | None = None
        self.retry_s = float(getattr(cfg.record, "retry_s", 5.0))
        self.on_technical: Any = None  # set by the outputs layer: receives technical_alarm events
        self.fault: str | None = None
        self.lost_samples = 0  # samples not recorded because of storage faults
        self._failed: dict[str, tuple[float, StreamInfo]] = {}  # stream -> (monotonic time of the fault, its info)
        self._journal: Any = None
        self.repaired: list[str] = []

    def queue(self) -> asyncio.Queue:
        if self._queue is None:
            self._queue = _TapQueue(self)
        return self._queue

    # -- the sink side -----------------------------------------------------------------------------
    async def __aenter__(self) -> "Recorder":
        from pedstream.stream.edfrepair import JOURNAL_GLOB, describe, repair
        from pedstream.stream.linewriter import LineWriter

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if any(self.folder.glob(JOURNAL_GLOB)):  # a run before this one was cut short
                self.repaired = describe(await asyncio.to_thread(repair, [self.folder]))
                for line in self.repaired:
                    log.warning("recording %s", line)
        except OSError as exc:
            self._fault_once(f"{self.folder}: {exc.strerror or exc}")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S_%f")
        self._journal = LineWriter(self.folder / f"journal-{stamp}.jsonl", on_fault=self._journal_fault)
        self._journal.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for sid in list(self.open):
            self._close(sid)
        if self._journal is not None:
            await self._journal.close()
            if not self.open and self._journal.not_written == 0 and self._journal.fault is None:
                self._journal.path.unlink(missing_ok=True)  # every file closed cleanly: nothing to repair

    def report(self) -> dict[str, Any]:
        """The outputs layer's row: samples not recorded."""
        return {"output": "recording", "path": str(self.folder), "written": len(self.files),
                "not_written": self.lost_samples, "fault": self.fault}

    def _fault_once(self, message: str) -> None:
        if self.fault is None:
            self.fault = message
            log.error("recording: %s; monitoring goes on, a new file is tried every %g s", message, self.retry_s)
            self._technical("on", message)

    def _technical(self, state: str, message: str) -> None:
        if self.on_technical is not None:
            self.on_technical(MonitorEvent(stream="pedstream", kind="technical_alarm", label="recording_unwritable",
                                           extra={"state": state, "output": "recording", "message": message}))

    def _journal_fault(self, message: str | None) -> None:
        """The journal (annotations kept for a repair) cannot be written: said once; the files go on."""
        if message is not None:
            log.error("recording journal: %s (a crash now would lose the annotations of the open files)", message)
            self._technical("on", f"recording journal: {message}")
        else:
            self._technical("off", "recording journal written again")

    def _annotate(self, rec: StreamRecording, onset: float, dur: float, text: str) -> None:
        rec.annotations.append((onset, dur, text[:80]))
        if self._journal is not None:
            self._journal.write(json.dumps({"file": rec.path.name, "onset": round(onset, 6), "duration": dur,
                                            "text": text[:80]}))

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
        self._annotate(rec, onset, dur, text)

    # -- the source side ----------------------------------------------------------------------------
    def observe(self, ev: Any) -> None:
        sid = getattr(ev, "stream_id", None) or getattr(getattr(ev, "info", None), "stream_id", "?")
        try:
            if isinstance(ev, StreamAdded):
                self._failed.pop(ev.info.stream_id, None)
                self._start(ev.info)
            elif isinstance(ev, ChunkReceived):
                self._retry(ev.chunk)
                self._samples(ev.chunk)
        except _Skip:
            return
        except Exception as exc:  # recording must never stop monitoring
            rec = self.open.get(sid)
            if isinstance(ev, ChunkReceived):
                self.lost_samples += int(np.shape(ev.chunk.data)[0]) + (rec.n_pending if rec is not None else 0)
            self._fault_once(f"{rec.path if rec is not None else self.folder}: "
                             f"{exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}")
            if rec is not None:
                self._failed[sid] = (time.monotonic(), rec.info)
            self._close(sid, failed=True)

    def _retry(self, chunk: Any) -> None:
        """A stream whose file failed: a new file after ``retry_s`` (its samples until then are counted lost)."""
        failed = self._failed.get(chunk.stream_id)
        if failed is None:
            return
        t_fail, info = failed
        if time.monotonic() - t_fail < self.retry_s:
            self.lost_samples += int(np.shape(chunk.data)[0])
            raise _Skip
        del self._failed[chunk.stream_id]
        self._start(info)
        if self.fault is not None:
            log.warning("recording %s: writing again (%s)", chunk.stream_id, self.open[chunk.stream_id].path)
            self.fault = None
            self._technical("off", f"recording again in {self.folder}")

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
        with warnings.catch_warnings():  # pyedflib warns on any record length it did not choose
            warnings.simplefilter("ignore")
            writer.setDatarecordDuration(spr / info.fs)
        writer.setSignalHeaders([{
            "label": edf_label(name), "dimension": "mV", "sample_frequency": info.fs,
            "physical_max": self._range(name), "physical_min": -self._range(name),
            "digital_max": 32767, "digital_min": -32768, "transducer": _transducer(name), "prefilter": "",
        } for name in info.channel_names])
        # EDFlib stores one annotation per annotation signal and data record: room for several a record
        writer.set_number_of_annotation_signals(ANNOTATION_SIGNALS)
        writer.setPatientCode(safe[:80])
        writer.setEquipment(f"pedstream_{info.source}")
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
        limits = self._limits(rec)
        self._mark_clipping(rec, data, limits)
        rec.pending.append(np.clip(data, -limits, limits))
        rec.n_pending += data.shape[0]
        if rec.n_pending >= rec.spr:
            buf = np.concatenate(rec.pending)
            n_full = buf.shape[0] // rec.spr * rec.spr
            self._write(rec, buf[:n_full])
            rest = buf[n_full:]
            rec.pending, rec.n_pending = ([rest], rest.shape[0]) if rest.shape[0] else ([], 0)

    def _range(self, name: str) -> float:
        """The physical range (+-mV) of a channel: ``[record] physical_range_mv``, IEGM ``iegm_range_mv``."""
        return max(self.range_mv, self.iegm_range_mv) if _is_iegm(name) else self.range_mv

    def _limits(self, rec: StreamRecording) -> np.ndarray:
        if rec.limits is None:
            rec.limits = np.array([self._range(n) for n in rec.info.channel_names])
        return rec.limits

    def _mark_clipping(self, rec: StreamRecording, data: np.ndarray, limits: np.ndarray) -> None:
        """Annotate each episode of samples beyond the physical range (they are clipped in the file);
        clipping less than ``CLIP_MERGE_S`` apart is one episode."""
        fs = rec.info.fs
        t_chunk = (rec.written + rec.n_pending) / fs
        over = np.abs(data) > limits
        rows = np.flatnonzero(over.any(axis=1))
        if rows.size:
            if rec.clip_from is not None and t_chunk + rows[0] / fs - rec.clip_to >= CLIP_MERGE_S:
                self._end_clipping(rec)
            if rec.clip_from is None:
                rec.clip_from = t_chunk + rows[0] / fs
            rec.clip_to = t_chunk + (rows[-1] + 1) / fs
            rec.clip_channels |= {rec.info.channel_names[c] for c in np.flatnonzero(over.any(axis=0))}
        elif rec.clip_from is not None and t_chunk - rec.clip_to >= CLIP_MERGE_S:
            self._end_clipping(rec)

    def _end_clipping(self, rec: StreamRecording) -> None:
        if rec.clip_from is None:
            return
        names = sorted(rec.clip_channels)
        ranges = sorted({self._range(n) for n in names})
        self._annotate(rec, rec.clip_from, round(rec.clip_to - rec.clip_from, 6),
                       f"clipped {','.join(names)} (beyond +-{'/'.join(f'{r:g}' for r in ranges)} mV)")
        rec.clip_from, rec.clip_channels = None, set()

    def _write(self, rec: StreamRecording, block: np.ndarray) -> None:
        from pedstream.stream.edfrepair import edf_layout, sync_record_count

        for i in range(0, block.shape[0], rec.spr):
            part = block[i:i + rec.spr]
            err = rec.writer.writeSamples([np.ascontiguousarray(part[:, c]) for c in range(part.shape[1])])
            if err:  # EDFlib reports a failed write by its return code
                raise OSError(f"EDF write failed (code {err})")
        rec.written += block.shape[0]
        rec.last = block[-1]
        if rec.layout is None:
            rec.layout = edf_layout(rec.path)
        on_disk = sync_record_count(rec.path, rec.layout)  # readable up to here after a crash
        if on_disk < rec.written // rec.spr:  # EDFlib does not always report a failed write: the size does
            raise OSError(errno.ENOSPC, f"{rec.written // rec.spr - on_disk} data record(s) not on disk "
                                        "(disk full?)")

    def _close(self, sid: str, *, failed: bool = False) -> None:
        rec = self.open.pop(sid, None)
        if rec is None:
            return
        try:
            if not failed:
                self._end_clipping(rec)
                if rec.n_pending:  # pad the last data record with the last value
                    buf = np.concatenate(rec.pending)
                    pad = np.repeat(buf[-1:], rec.spr - buf.shape[0], axis=0)
                    self._write(rec, np.concatenate([buf, pad]))
                    rec.pending, rec.n_pending = [], 0
                elif rec.written == 0:  # EDF needs at least one data record
                    self._write(rec, np.zeros((rec.spr, len(rec.info.channel_names))))
                for onset, dur, text in rec.annotations:
                    rec.writer.writeAnnotation(onset, dur, text)
        except Exception as exc:  # a storage fault at close: the journal keeps the annotations for repair
            failed = True
            self._fault_once(f"{rec.path}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}")
        finally:
            try:
                rec.writer.close()
            except Exception as exc:
                failed = True
                self._fault_once(f"{rec.path}: {exc}")
        if not failed and self._journal is not None:
            self._journal.write(json.dumps({"file": rec.path.name, "closed": True}))


def _is_iegm(name: str) -> bool:
    from pedstream.data.channels import IEGM_CHANNELS

    return str(name).upper() in {c.upper() for c in IEGM_CHANNELS}


def edf_label(name: str) -> str:
    """The EDF+ label of a channel: "type space name" (``ECG II``), at most 16 characters."""
    return f"ECG {name}"[:16]


def _transducer(name: str) -> str:
    return "intracardiac electrode (IEGM)" if _is_iegm(name) else "surface ECG electrode"
