"""The EDF+ files of :class:`pedstream.outputs.recording.Recorder`: one open file per stream
(:class:`StreamRecording`) and the file operations (:class:`EdfFiles`, a mixin of the recorder, run in
its thread): open with typed labels and per-kind physical ranges, write whole data records keeping
the header's record count current, mark clipping, close with the annotations."""

from __future__ import annotations

import errno
import json
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pedstream.events import StreamInfo

__all__ = ["EdfFiles", "StreamRecording", "edf_label", "ANNOTATION_SIGNALS", "CLIP_MERGE_S"]

ANNOTATION_SIGNALS = 8  # room for 8 annotations per data record (EDFlib drops what does not fit)
CLIP_MERGE_S = 5.0  # clipping less than this apart is annotated as one episode


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


class EdfFiles:
    """File operations of the recorder (it provides ``folder``, ``block_s``, ``range_mv``, ``iegm_range_mv``,
    ``open``, ``files``, ``_annotate``, ``_fault_once`` and ``_journal``)."""

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
        from pedstream.outputs.edfrepair import edf_layout, sync_record_count

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
