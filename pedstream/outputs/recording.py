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

Every file operation (open, samples, annotations, close) runs in one daemon thread of the recorder,
in arrival order: the event loop only hands it the source events and the monitor events, so a slow
or hung disk never stalls monitoring (at most ``MAX_OPS`` operations wait; beyond, samples are
counted lost) and the run still ends (files not closed within ``STOP_TIMEOUT_S`` are left for
``pedstream record repair``). Samples are written as they arrive (one data record at a time); annotations when the file is
closed (at the end of the run, or when the stream is announced again). A gap in a stream is not
filled: EDF+C time runs on in samples, and a ``signal_loss`` annotation marks where it happened.

Crash safety (:mod:`pedstream.outputs.edfrepair`): the header's record count follows every data
record, so a file cut by SIGKILL opens in pyedflib and MNE up to its last data record; annotations
also go to a journal as they happen, and ``pedstream record repair DIR`` (run automatically when
``--record DIR`` starts) puts them back into such a file. A storage fault (full or read-only disk)
stops only that file: it is reported once (``technical_alarm`` ``recording_unwritable``), the samples
not written are counted, and a new file is started ``[record] retry_s`` later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pedstream.outputs.edffile import EdfFiles, StreamRecording, edf_label
from pedstream.events import MonitorEvent
from pedstream.events import ChunkReceived, StreamAdded, StreamInfo
from pedstream.config import Config

__all__ = ["Recorder", "StreamRecording", "edf_label"]

log = logging.getLogger(__name__)

MAX_OPS = 20_000  # source events and annotations waiting for the recorder thread (beyond: counted lost)
STOP_TIMEOUT_S = 10.0  # at exit, the files are closed within this (else left for `pedstream record repair`)


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


class Recorder(EdfFiles):
    """EDF+ recorder of every stream the engine sees (module docstring). Use :meth:`queue` as the
    sources' event queue and pass the recorder among the engine's sinks."""

    def __init__(self, folder: str | Path, *, cfg: Config) -> None:
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
        # every file operation runs in one daemon thread, in arrival order (module docstring)
        self._ops: queue.Queue = queue.Queue(maxsize=MAX_OPS)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = threading.Event()

    def queue(self) -> asyncio.Queue:
        if self._queue is None:
            self._queue = _TapQueue(self)
        return self._queue

    # -- the sink side -----------------------------------------------------------------------------
    async def __aenter__(self) -> "Recorder":
        from pedstream.outputs.edfrepair import JOURNAL_GLOB, describe, repair
        from pedstream.outputs.linewriter import LineWriter

        from pedstream.outputs.linewriter import in_daemon_thread

        self._loop = asyncio.get_running_loop()

        def prepare() -> list[str]:
            self.folder.mkdir(parents=True, exist_ok=True)
            if any(self.folder.glob(JOURNAL_GLOB)):  # a run before this one was cut short
                return describe(repair([self.folder]))
            return []

        try:
            async with asyncio.timeout(30.0):  # a hung folder must not hold the start for ever
                self.repaired = await in_daemon_thread(prepare)  # type: ignore[assignment]
            for line in self.repaired:
                log.warning("recording %s", line)
        except (OSError, TimeoutError) as exc:
            self._fault_once(f"{self.folder}: {getattr(exc, 'strerror', None) or exc or 'no answer in 30 s'}")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S_%f")
        self._journal = LineWriter(self.folder / f"journal-{stamp}.jsonl", on_fault=self._journal_fault)
        self._journal.start()
        self._thread = threading.Thread(target=self._main, name="recorder", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        from pedstream.outputs.linewriter import in_daemon_thread

        self._put(("stop",), force=True)
        done = await in_daemon_thread(self._stopped.wait, STOP_TIMEOUT_S)
        if not done:
            log.error("recording: files not closed within %g s (a hung disk?); `pedstream record repair %s` "
                      "completes them", STOP_TIMEOUT_S, self.folder)
        if self._journal is not None:
            await self._journal.close()
            if done and not self.open and self._journal.not_written == 0 and self._journal.fault is None:
                self._journal.path.unlink(missing_ok=True)  # every file closed cleanly: nothing to repair

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait until the recorder thread has handled everything given to it so far."""
        if self._thread is None:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._put(("call", lambda: loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))), force=True)
        async with asyncio.timeout(timeout):
            await fut

    def _put(self, op: tuple, *, force: bool = False) -> None:
        try:
            self._ops.put(op, block=force, timeout=5.0 if force else None)
        except queue.Full:  # the thread is stuck (a hung disk): the samples are counted, never waited for
            if op[0] == "chunk":
                self.lost_samples += int(np.shape(op[1].chunk.data)[0])
            self._fault_once(f"{self.folder}: the recorder is {MAX_OPS} operations behind (a hung disk?)")

    def _main(self) -> None:
        try:
            while True:
                op = self._ops.get()
                if op[0] == "stop":
                    for sid in list(self.open):
                        self._close(sid)
                    return
                if op[0] == "event":
                    self._observe_now(op[1])
                elif op[0] == "sink":
                    self._emit_now(op[1])
                elif op[0] == "call":
                    op[1]()
        except Exception as exc:  # never silent: the files stay repairable from the journal
            log.error("recording thread failed: %s", exc)
        finally:
            self._stopped.set()

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
        if self.on_technical is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.on_technical, MonitorEvent(stream="pedstream", kind="technical_alarm", label="recording_unwritable",
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
        if ev.kind in ("call", "alarm_on", "alarm_off", "beat", "signal_loss", "signal_ok", "error"):
            self._put(("sink", ev))

    def _emit_now(self, ev: MonitorEvent) -> None:
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
        """A source event (through :meth:`queue`): handed to the recorder thread."""
        if isinstance(ev, (StreamAdded, ChunkReceived)) and self._thread is not None:
            self._put(("event", ev))

    def _observe_now(self, ev: Any) -> None:
        sid = ev.info.stream_id if isinstance(ev, StreamAdded) else ev.chunk.stream_id
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
