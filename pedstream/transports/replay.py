"""WFDB records as live streams: the replay *source* (:class:`ReplaySource`, in-process) and the
paced reading shared by the transports' replay outlets (:func:`pedstream.transports.lsl.outlet.replay_to_lsl`,
:func:`pedstream.transports.mqtt.publisher.replay_to_mqtt`; ``pedstream replay`` is wired in
:func:`pedstream.monitor.command.replay_command`).

Each record becomes one stream at the record's own sampling rate carrying the record's *present*
channels (mapped onto canonical names by :func:`pedstream.data.loader.open_record`, flat channels
left out) in millivolts. Chunks of ``chunk_ms`` are paced on the absolute clock, which keeps the
long-run rate exact whatever the scheduling jitter (drift compensation)::

    chunk k is due at  t_start + k * chunk_samples / fs / speed

``speed = inf`` sends as fast as possible (yielding to the event loop between chunks). Timestamps
are *signal time*: ``t_start_clock + sample_index / fs`` (so at ``speed != 1`` they run ahead of or
behind the wall clock). ``first_index`` counts samples from the start of the replay and keeps
increasing across ``loop`` passes. ``seq`` counts chunks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Sequence

import numpy as np

from pedstream.transports.pacer import _columns
from pedstream.errors import PedstreamError, RecordError
from pedstream.events import Chunk, ChunkReceived, StreamAdded, StreamInfo, StreamLost
from pedstream.transports.base import SourceBase
from pedstream.config import Config, SignalConfig

__all__ = [
    "ReplayPlan",
    "ReplaySource",
    "paced_chunks",
    "plan_replay",
    "record_position",
    "run_all",
    "stream_id_for",
]

log = logging.getLogger(__name__)

_BLOCK_S = 10.0  # seconds read from disk at a time (in a worker thread)


def stream_id_for(name: str) -> str:
    """A valid stream id (``[A-Za-z0-9_.-]{1,64}``) from a record name."""
    sid = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)[:64]
    return sid or "stream"


@dataclass
class ReplayPlan:
    """One record to replay as one stream."""

    stream_id: str
    record: Any  # pedstream.data.loader.Record
    columns: np.ndarray  # (k,) canonical columns replayed (present channels)
    channel_names: list[str]
    channel_types: list[str]  # "ECG" | "IEGM"
    start: int  # first record sample
    stop: int  # one past the last record sample
    age_years: float | None = None

    @property
    def fs(self) -> float:
        return float(self.record.fs)

    def info(self, source: str = "replay", *, t0: float | None = None) -> StreamInfo:
        """The stream's info; ``t0``: the stream-clock time of the first sample sent (``record_t0`` in
        the meta: the engine then places the stream's calls and alarms in the record, :func:`record_position`)."""
        meta = {"record": str(self.record.path), "layout": self.record.layout, "start_sample": self.start,
                "stop_sample": self.stop}
        if t0 is not None:
            meta |= {"record_t0": float(t0), "record_fs": self.fs}
        return StreamInfo(stream_id=self.stream_id, source=source, fs=self.fs,  # type: ignore[arg-type]
                          channel_names=list(self.channel_names), units=["mV"] * len(self.channel_names),
                          units_assumed=False, age_years=self.age_years, meta=meta)


def record_position(meta: dict[str, Any] | None, t_signal: float | None) -> dict[str, Any]:
    """Where stream time ``t_signal`` lies in the replayed record: ``{"record": name, "record_s":
    seconds from the record's first sample, "record_sample": sample index at the record's own rate}``
    (a looping replay starts over at ``start_sample``); ``{}`` when ``meta`` (a replayed stream's
    :attr:`StreamInfo.meta`) has no ``record_t0`` or ``t_signal`` is unknown."""
    if not meta or t_signal is None or meta.get("record_t0") is None:
        return {}
    try:
        fs, t0 = float(meta["record_fs"]), float(meta["record_t0"])
        start, stop = int(meta["start_sample"]), int(meta["stop_sample"])
    except (KeyError, TypeError, ValueError):
        return {}
    span = stop - start
    k = (float(t_signal) - t0) * fs
    if not (fs > 0 and span > 0 and math.isfinite(k)):
        return {}
    pos = start + (k % span if k >= 0 else k)  # before the first sample (filter delay): not wrapped
    return {"record": Path(str(meta.get("record", ""))).name, "record_s": round(pos / fs, 6),
            "record_sample": int(round(pos))}


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    from pedstream.data.loader import list_records

    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = list_records(p)
            if not found:
                raise RecordError(str(p), "folder contains no WFDB records (.hea files)")
            out.extend(found)
        else:
            out.append(p)
    return out


def _age(rec: Any, given: float | None, tables: dict[Path, dict[str, Any]]) -> float | None:
    """``given``, else the record's age from the subject table in its folder (cached per folder)."""
    if given is not None:
        return given
    from pedstream.data.subjects import folder_subjects

    folder = Path(rec.path).parent
    if folder not in tables:
        tables[folder] = folder_subjects(folder)
    info = tables[folder].get(rec.name)
    return None if info is None else float(info.age)


def plan_replay(paths: Sequence[str | Path], signal_cfg: SignalConfig, *, start_s: float = 0.0,
                seconds: float | None = None, stream_id: str | None = None,
                age_years: float | None = None) -> list[ReplayPlan]:
    """Open the records (headers only) and decide what each stream sends.

    ``paths``: records (with or without ``.hea``) or folders of records. ``stream_id``: the id of
    the only stream, or with several records a prefix (``<id>-<record>``). ``age_years``: the
    child's age for every stream; when None, each record's age comes from the subject table beside
    it (``*subject-info*.csv``, as in the Leipzig database and ``pedstream data synth``), if any. Raises
    :class:`~pedstream.errors.RecordError` for unreadable records, a start beyond the end, or a
    record without a present channel.
    """
    from pedstream.data.loader import open_record

    if start_s < 0:
        raise RecordError(",".join(map(str, paths)), f"--start must be >= 0 s (got {start_s})")
    if seconds is not None and seconds <= 0:
        raise RecordError(",".join(map(str, paths)), f"--seconds must be > 0 (got {seconds})")
    records = [open_record(p, signal_cfg) for p in _expand(paths)]
    tables: dict[Path, dict[str, Any]] = {}
    ecg = set(signal_cfg.ecg)
    plans: list[ReplayPlan] = []
    used: set[str] = set()
    for rec in records:
        if stream_id is None:
            sid = stream_id_for(rec.name)
        elif len(records) == 1:
            sid = stream_id_for(stream_id)
        else:
            sid = stream_id_for(f"{stream_id}-{rec.name}")
        base, k = sid, 2
        while sid in used:
            sid, k = f"{base}.{k}", k + 1
        used.add(sid)
        cols = np.flatnonzero(np.asarray(rec.present, dtype=bool))
        if cols.size == 0:
            raise RecordError(rec.name, "no present channel to replay (all unmapped or flat)")
        start = int(round(start_s * rec.fs))
        stop = rec.n_samples if seconds is None else min(rec.n_samples, start + int(round(seconds * rec.fs)))
        if start >= rec.n_samples:
            raise RecordError(rec.name, f"--start {start_s} s is beyond the record's {rec.duration_s:.1f} s")
        names = [rec.channels[i] for i in cols]
        plans.append(ReplayPlan(stream_id=sid, record=rec, columns=cols, channel_names=names,
                                channel_types=["ECG" if n in ecg else "IEGM" for n in names],
                                start=start, stop=stop, age_years=_age(rec, age_years, tables)))
    return plans


async def paced_chunks(plan: ReplayPlan, *, chunk_ms: float, speed: float, loop: bool,
                        ) -> AsyncIterator[tuple[int, int, np.ndarray]]:
    """Yield ``(seq, first_index, data (n, k) float32 mV)`` on the replay schedule."""
    fs = plan.fs
    chunk = max(1, int(round(chunk_ms * fs / 1000.0)))
    block = chunk * max(1, int(_BLOCK_S * fs) // chunk)
    realtime = math.isfinite(speed)
    t_start = time.monotonic()
    seq = 0
    index = 0
    while True:
        for b0 in range(plan.start, plan.stop, block):
            b1 = min(plan.stop, b0 + block)
            sig = await asyncio.to_thread(plan.record.read, b0, b1)
            data = _columns(sig.data, plan.columns)  # (n, k) float32 mV
            for c0 in range(0, data.shape[0], chunk):
                part = data[c0:c0 + chunk]
                if realtime:  # by sample index: a short last chunk must not push later chunks back
                    due = t_start + index / fs / speed
                    delay = due - time.monotonic()
                    await asyncio.sleep(delay if delay > 0 else 0)
                else:
                    await asyncio.sleep(0)
                yield seq, index, part
                seq += 1
                index += part.shape[0]
        if not loop:
            return


class ReplaySource(SourceBase):
    """Replay records as in-process streams (the embedded default and the test source).

    ``finished`` is set once every (non-looping) stream has sent its last chunk; each stream ends
    with ``StreamLost(stream_id, "end of record")``. ``reference``: a
    :class:`~pedstream.monitor.reference.ReferenceLabels` given each stream's clock and record.

    ``record_clock``: timestamps are the record's own time (``sample / fs``, 0 at the record's first
    sample) instead of starting at the monotonic clock, so events carry record time (episode scoring).
    ``throttle``: ``await throttle(stream_id, final)`` before each chunk is sent (``final`` False) and
    before the end of the record is reported (``final`` True: the consumer may finish what it holds
    first); with ``speed = inf`` it makes the replay lossless (as fast as the consumer takes it, never
    faster: no queue overflows) and its end deterministic. ``offsets``: each stream starts this many
    seconds after the source (finite speed without throttle only).

    At a finite speed without a throttle one task paces every stream
    (:func:`pedstream.transports.pacer.pace_all`); otherwise each stream has its own task.
    """

    kind = "replay"

    def __init__(self, *, events: asyncio.Queue, records: Sequence[str | Path] = (), signal_cfg: Any = None,
                 plans: Sequence[ReplayPlan] | None = None, speed: float = 1.0, chunk_ms: float = 50.0,
                 loop: bool = False, start_s: float = 0.0, seconds: float | None = None,
                 stream_id: str | None = None, age_years: float | None = None, reference: Any = None,
                 record_clock: bool = False, throttle: Callable[[str, bool], Awaitable[None]] | None = None,
                 offsets: Sequence[float] | None = None, wake_ms: float = 0.0) -> None:
        super().__init__(events=events)
        self.record_clock = bool(record_clock)
        self.throttle = throttle
        self.reference = reference  # a ReferenceLabels told each stream's clock (the "truth" of its calls)
        if plans is None:
            if signal_cfg is None:
                from pedstream.config import SignalConfig

                signal_cfg = SignalConfig()
            plans = plan_replay(records, signal_cfg, start_s=start_s, seconds=seconds, stream_id=stream_id,
                                age_years=age_years)
        if not plans:
            raise RecordError("replay", "no records to replay")
        if not speed > 0:
            raise RecordError("replay", f"speed must be > 0 (got {speed})")
        self.plans = list(plans)
        if offsets is not None and (len(offsets) != len(self.plans) or not all(0 <= float(o) < 3600 for o in offsets)):
            raise RecordError("replay", f"offsets: one start offset (0-3600 s) per stream expected, got {len(offsets)} "
                                        f"for {len(self.plans)} streams")
        self.offsets = None if offsets is None else [float(o) for o in offsets]
        self.speed = float(speed)
        self.chunk_ms = float(chunk_ms)
        if not 0 <= wake_ms <= 1000:
            raise RecordError("replay", f"wake_ms must be 0-1000 (got {wake_ms})")
        self.wake_ms = float(wake_ms)
        self.loop = bool(loop)
        self.finished = asyncio.Event()
        self.samples_sent: dict[str, int] = {}
        self._running = 0

    @classmethod
    def from_config(cls, cfg: Config, records: Sequence[str | Path], *, events: asyncio.Queue,
                    **overrides: Any) -> "ReplaySource":
        kw = dict(speed=cfg.replay.speed, chunk_ms=cfg.replay.chunk_ms, loop=cfg.replay.loop, wake_ms=cfg.replay.wake_ms)
        kw.update(overrides)
        return cls(events=events, records=records, signal_cfg=cfg.signal, **kw)

    async def _start(self) -> None:
        self._running = len(self.plans)
        if math.isfinite(self.speed) and self.throttle is None:  # one task paces them all
            self._spawn(self._pace(), name="replay-pacer")
            return
        for plan in self.plans:
            self._spawn(self._play(plan), name=f"replay-{plan.stream_id}")

    async def _pace(self) -> None:
        """Every stream from one task (:func:`pedstream.transports.pacer.pace_all`); each starts
        ``offsets[k]`` seconds after the source (a ward's monitors do not connect in the same instant)."""
        from pedstream.transports.pacer import pace_all

        now = time.monotonic()
        starts = [now + (self.offsets[k] if self.offsets is not None else 0.0) for k in range(len(self.plans))]
        t0s: dict[str, float] = {}
        fs_of = {plan.stream_id: plan.fs for plan in self.plans}
        for plan, t_start in zip(self.plans, starts):
            t0s[plan.stream_id] = plan.start / plan.fs if self.record_clock else t_start
            self.emit(StreamAdded(plan.info(t0=t0s[plan.stream_id])))
            if self.reference is not None:
                await asyncio.to_thread(self.reference.add, plan, t0=t0s[plan.stream_id])

        steps: dict[tuple[int, float], np.ndarray] = {}  # (n, fs) -> arange(n) / fs, shared by the streams

        def send(plan: ReplayPlan, seq: int, first: int, data: np.ndarray) -> None:
            sid, n = plan.stream_id, data.shape[0]
            fs = fs_of[sid]
            step = steps.get((n, fs))
            if step is None:
                step = steps[(n, fs)] = np.arange(n, dtype=np.float64) / fs
            ts = (t0s[sid] + first / fs) + step  # (n,) the stream's clock, by sample index
            self.emit(ChunkReceived(Chunk(stream_id=sid, data=data, timestamps=ts, first_index=first, seq=seq)))
            self.samples_sent[sid] = first + n

        def done(plan: ReplayPlan, error: str | None) -> None:
            if error is not None:
                log.warning("replay %s: %s", plan.stream_id, error)
                self.emit_error(plan.stream_id, error)
            self.emit(StreamLost(plan.stream_id, "end of record" if error is None else "record unreadable"))
            self._one_ended()

        await pace_all(self.plans, chunk_ms=self.chunk_ms, speed=self.speed, loop=self.loop, send=send, done=done,
                       t_starts=starts, wake_s=self.wake_ms / 1000.0)

    async def _play(self, plan: ReplayPlan) -> None:
        sid = plan.stream_id
        t0 = plan.start / plan.fs if self.record_clock else time.monotonic()
        self.emit(StreamAdded(plan.info(t0=t0)))
        if self.reference is not None:
            await asyncio.to_thread(self.reference.add, plan, t0=t0)
        sent = 0
        try:
            async for seq, first, data in paced_chunks(plan, chunk_ms=self.chunk_ms, speed=self.speed,
                                                        loop=self.loop):
                if self.throttle is not None:
                    await self.throttle(sid, False)
                ts = t0 + (first + np.arange(data.shape[0], dtype=np.float64)) / plan.fs  # (n,)
                self.emit(ChunkReceived(Chunk(stream_id=sid, data=data, timestamps=ts, first_index=first,
                                              seq=seq)))
                sent = first + data.shape[0]
                self.samples_sent[sid] = sent
            if self.throttle is not None:
                await self.throttle(sid, True)
            self.emit(StreamLost(sid, "end of record"))
        finally:
            self._one_ended()

    def _one_ended(self) -> None:
        """A stream's replay is over; ``finished`` once every stream's is."""
        self._running -= 1
        if self._running == 0:
            self.finished.set()


async def run_all(plans: Sequence[ReplayPlan], one: Callable[[ReplayPlan], Awaitable[int]]) -> dict[str, int]:
    """Run ``one(plan)`` for every plan in one task group; samples sent per stream id. A
    :class:`~pedstream.errors.PedstreamError` in any of them is raised as itself (one clear error
    line, not a traceback of the task group)."""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = {p.stream_id: tg.create_task(one(p), name=f"replay-{p.stream_id}") for p in plans}
    except BaseExceptionGroup as eg:
        first_err = next((e for e in _leaves(eg) if isinstance(e, PedstreamError)), None)
        if first_err is not None:
            raise first_err from None
        raise
    return {sid: t.result() for sid, t in tasks.items()}


def _leaves(eg: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for e in eg.exceptions:
        out += _leaves(e) if isinstance(e, BaseExceptionGroup) else [e]
    return out
