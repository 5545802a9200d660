"""WFDB records as live streams: in-process (:class:`ReplaySource`), over LSL or over MQTT.

Each record becomes one stream at the record's own sampling rate carrying the record's *present*
channels (mapped onto canonical names by :func:`pedstream.data.loader.open_record`, flat channels
left out) in millivolts. Chunks of ``chunk_ms`` are paced on the absolute clock, which keeps the
long-run rate exact whatever the scheduling jitter (drift compensation)::

    chunk k is due at  t_start + k * chunk_samples / fs / speed

``speed = inf`` sends as fast as possible (yielding to the event loop between chunks). Timestamps
are *signal time*: ``t_start_clock + sample_index / fs`` (so at ``speed != 1`` they run ahead of or
behind the wall clock). ``first_index`` counts samples from the start of the replay and keeps
increasing across ``loop`` passes. ``seq`` counts chunks.

LSL conventions written by :func:`replay_to_lsl` (read back by :class:`~.lsl.LSLSource`): stream
``name`` and ``source_id`` = stream id, ``type`` = ``"ECG"``, ``nominal_srate`` = record fs,
``cf_float32``; ``desc/channels/channel`` with ``label`` (canonical name), ``unit`` = ``millivolts``,
``type`` = ``ECG`` | ``IEGM``; ``desc/acquisition/manufacturer`` = ``pedstream replay``,
``desc/acquisition/record`` = record name; ``desc/subject/age`` when known.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Sequence

import numpy as np

from pedstream.errors import PedstreamError, RecordError
from pedstream.stream.sources.base import (
    Chunk,
    ChunkReceived,
    SourceBase,
    StreamAdded,
    StreamInfo,
    StreamLost,
)

__all__ = [
    "ReplayPlan",
    "ReplaySource",
    "plan_replay",
    "replay_command",
    "replay_to_lsl",
    "replay_to_mqtt",
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

    def info(self, source: str = "replay") -> StreamInfo:
        return StreamInfo(stream_id=self.stream_id, source=source, fs=self.fs,  # type: ignore[arg-type]
                          channel_names=list(self.channel_names), units=["mV"] * len(self.channel_names),
                          units_assumed=False, age_years=self.age_years,
                          meta={"record": str(self.record.path), "layout": self.record.layout,
                                "start_sample": self.start, "stop_sample": self.stop})


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


def plan_replay(paths: Sequence[str | Path], signal_cfg: Any, *, start_s: float = 0.0,
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


async def _paced_chunks(plan: ReplayPlan, *, chunk_ms: float, speed: float, loop: bool,
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
            data = np.ascontiguousarray(sig.data[:, plan.columns], dtype=np.float32)  # (n, k) mV
            for c0 in range(0, data.shape[0], chunk):
                part = data[c0:c0 + chunk]
                if realtime:
                    due = t_start + seq * chunk / fs / speed
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
    with ``StreamLost(stream_id, "end of record")``.
    """

    kind = "replay"

    def __init__(self, *, events: asyncio.Queue, records: Sequence[str | Path] = (), signal_cfg: Any = None,
                 plans: Sequence[ReplayPlan] | None = None, speed: float = 1.0, chunk_ms: float = 50.0,
                 loop: bool = False, start_s: float = 0.0, seconds: float | None = None,
                 stream_id: str | None = None, age_years: float | None = None) -> None:
        super().__init__(events=events)
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
        self.speed = float(speed)
        self.chunk_ms = float(chunk_ms)
        self.loop = bool(loop)
        self.finished = asyncio.Event()
        self.samples_sent: dict[str, int] = {}
        self._running = 0

    @classmethod
    def from_config(cls, cfg: Any, records: Sequence[str | Path], *, events: asyncio.Queue,
                    **overrides: Any) -> "ReplaySource":
        kw = dict(speed=cfg.replay.speed, chunk_ms=cfg.replay.chunk_ms, loop=cfg.replay.loop)
        kw.update(overrides)
        return cls(events=events, records=records, signal_cfg=cfg.signal, **kw)

    async def _start(self) -> None:
        self._running = len(self.plans)
        for plan in self.plans:
            self._spawn(self._play(plan), name=f"replay-{plan.stream_id}")

    async def _play(self, plan: ReplayPlan) -> None:
        sid = plan.stream_id
        self.emit(StreamAdded(plan.info()))
        t0 = time.monotonic()
        sent = 0
        try:
            async for seq, first, data in _paced_chunks(plan, chunk_ms=self.chunk_ms, speed=self.speed,
                                                        loop=self.loop):
                ts = t0 + (first + np.arange(data.shape[0], dtype=np.float64)) / plan.fs  # (n,)
                self.emit(ChunkReceived(Chunk(stream_id=sid, data=data, timestamps=ts, first_index=first,
                                              seq=seq)))
                sent = first + data.shape[0]
                self.samples_sent[sid] = sent
            self.emit(StreamLost(sid, "end of record"))
        finally:
            self._running -= 1
            if self._running == 0:
                self.finished.set()


async def _run_all(plans: Sequence[ReplayPlan], one: Callable[[ReplayPlan], Awaitable[int]]) -> dict[str, int]:
    async with asyncio.TaskGroup() as tg:
        tasks = {p.stream_id: tg.create_task(one(p), name=f"replay-{p.stream_id}") for p in plans}
    return {sid: t.result() for sid, t in tasks.items()}


async def replay_to_lsl(plans: Sequence[ReplayPlan], *, speed: float = 1.0, chunk_ms: float = 50.0,
                        loop: bool = False, wait_for_consumers_s: float = 0.0, linger_s: float = 0.5,
                        on_start: Callable[[ReplayPlan], None] | None = None) -> dict[str, int]:
    """Publish each plan as an LSL outlet (conventions in the module docstring), paced.

    LSL delivers only samples pushed after an inlet connected: ``wait_for_consumers_s > 0`` waits
    that long for a first consumer before sending (then sends anyway). After the last chunk the
    outlet stays open ``linger_s`` so the last chunks reach the inlets (LSL has no flush). Returns samples sent per
    stream id. Applies the safe LSL defaults if nobody configured LSL (see lslconfig)."""
    from pedstream.stream.lslconfig import ensure_lsl_configured

    ensure_lsl_configured()
    import pylsl

    async def one(plan: ReplayPlan) -> int:
        info = pylsl.StreamInfo(name=plan.stream_id, type="ECG", channel_count=len(plan.channel_names),
                                nominal_srate=plan.fs, channel_format=pylsl.cf_float32, source_id=plan.stream_id)
        chans = info.desc().append_child("channels")
        for name, kind in zip(plan.channel_names, plan.channel_types):
            ch = chans.append_child("channel")
            ch.append_child_value("label", name)
            ch.append_child_value("unit", "millivolts")
            ch.append_child_value("type", kind)
        acq = info.desc().append_child("acquisition")
        acq.append_child_value("manufacturer", "pedstream replay")
        acq.append_child_value("record", plan.record.name)
        if plan.age_years is not None:
            info.desc().append_child("subject").append_child_value("age", f"{plan.age_years:g}")
        outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=60)
        if wait_for_consumers_s > 0:
            if not await asyncio.to_thread(outlet.wait_for_consumers, wait_for_consumers_s):
                log.warning("LSL %s: no consumer after %.1f s; sending anyway", plan.stream_id,
                            wait_for_consumers_s)
        if on_start is not None:
            on_start(plan)
        t0 = pylsl.local_clock()
        sent = 0
        try:
            async for _seq, first, data in _paced_chunks(plan, chunk_ms=chunk_ms, speed=speed, loop=loop):
                outlet.push_chunk(data, timestamp=t0 + (first + data.shape[0] - 1) / plan.fs)
                sent = first + data.shape[0]
            if linger_s > 0:
                await asyncio.sleep(linger_s)
        finally:
            del outlet
        return sent

    return await _run_all(plans, one)


async def replay_to_mqtt(plans: Sequence[ReplayPlan], *, host: str = "127.0.0.1", port: int = 1883,
                         prefix: str = "pedstream/v1", speed: float = 1.0, chunk_ms: float = 50.0,
                         loop: bool = False, encoding: str = "binary", dtype: str = "int16",
                         int16_scale_mv: float = 0.001, timeout_s: float = 5.0,
                         on_start: Callable[[ReplayPlan], None] | None = None, auth: Any = None,
                         reconnect: bool = True, reconnect_max_s: float = 5.0,
                         probe_interval_s: float = 0.25) -> dict[str, int]:
    """Publish each plan on MQTT: retained meta, then paced data messages (binary or JSON).
    int16 samples are ``round(mV / int16_scale_mv)``, clipped to the int16 range.

    One MQTT client per stream, each with a Last Will that clears its retained meta if the process
    dies; a normal end (or Ctrl-C) clears the metas itself. With ``reconnect`` a lost broker does not
    end the replay: data is dropped (counted) while disconnected and the meta is republished on
    reconnect (see :class:`~pedstream.stream.sources.mqtt.MQTTPublisher`).
    Returns samples sent per stream id."""
    from pedstream.stream.payload import encode_binary, encode_json, encode_meta
    from pedstream.stream.sources.mqtt import MQTTPublisher

    if encoding not in ("binary", "json"):
        raise RecordError("replay", f"encoding must be binary or json (got {encoding!r})")

    async def one(plan: ReplayPlan) -> int:
        async with MQTTPublisher(host=host, port=port, prefix=prefix, timeout_s=timeout_s, auth=auth,
                                 reconnect=reconnect, reconnect_max_s=reconnect_max_s,
                                 probe_interval_s=probe_interval_s, will_stream=plan.stream_id) as pub:
            t0 = time.time()
            await pub.publish_meta(plan.stream_id, encode_meta(
                fs=plan.fs, channels=plan.channel_names, units="mV", dtype=dtype,
                scale=int16_scale_mv if dtype == "int16" else 1.0, encoding=encoding, age_years=plan.age_years,
                t0=t0, session=uuid.uuid4().hex[:12], record=plan.record.name))
            if on_start is not None:
                on_start(plan)
            sent = 0
            async for seq, first, data in _paced_chunks(plan, chunk_ms=chunk_ms, speed=speed, loop=loop):
                t = t0 + first / plan.fs
                if encoding == "json":
                    payload = encode_json(data, seq=seq % (1 << 32), first_sample=first, t=t)
                elif dtype == "int16":
                    q = np.clip(np.rint(data / int16_scale_mv), -32768, 32767).astype(np.int16)
                    payload = encode_binary(q, seq=seq % (1 << 32), first_sample=first, t=t)
                else:
                    payload = encode_binary(data, seq=seq % (1 << 32), first_sample=first, t=t, dtype="float32")
                await pub.publish_data(plan.stream_id, payload)
                sent = first + data.shape[0]
            if pub.dropped:
                log.warning("MQTT %s: %d message(s) not sent while the broker was unreachable",
                            plan.stream_id, pub.dropped)
            return sent

    try:
        return await _run_all(plans, one)
    except BaseExceptionGroup as eg:  # one clear error line, not a traceback of the task group
        first_err = next((e for e in _leaves(eg) if isinstance(e, PedstreamError)), None)
        if first_err is not None:
            raise first_err from None
        raise


def _leaves(eg: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for e in eg.exceptions:
        out += _leaves(e) if isinstance(e, BaseExceptionGroup) else [e]
    return out


def replay_command(cfg: Any, *, records: list[Path], to: str, speed: float | None = None, loop: bool | None = None,
                   start_s: float = 0.0, seconds: float | None = None, stream_id: str | None = None,
                   encoding: str | None = None, chunk_ms: float | None = None,
                   age_years: float | None = None) -> dict[str, int]:
    """``pedstream replay``: publish until the records end (or Ctrl-C with ``--loop``)."""
    import click

    speed = cfg.replay.speed if speed is None else speed
    if not speed > 0:
        raise RecordError("replay", f"--speed must be > 0 (got {speed})")
    loop = cfg.replay.loop if loop is None else loop
    chunk_ms = cfg.replay.chunk_ms if chunk_ms is None else chunk_ms
    encoding = cfg.replay.encoding if encoding is None else encoding
    plans = plan_replay(records, cfg.signal, start_s=start_s, seconds=seconds, stream_id=stream_id,
                        age_years=age_years)

    def started(plan: ReplayPlan) -> None:
        click.echo(f"{to}: {plan.stream_id} <- {plan.record.name} ({plan.fs:g} Hz, "
                   f"{len(plan.channel_names)} channels: {' '.join(plan.channel_names)}, "
                   f"{(plan.stop - plan.start) / plan.fs:.1f} s{', looping' if loop else ''})", err=True)

    t0 = time.monotonic()
    if to == "lsl":
        from pedstream.stream.lslconfig import configure_lsl_from

        configure_lsl_from(cfg.lsl)
        sent = asyncio.run(replay_to_lsl(plans, speed=speed, chunk_ms=chunk_ms, loop=loop, on_start=started))
    elif to == "mqtt":
        from pedstream.stream.sources.mqtt import MQTTAuth

        m = cfg.mqtt
        sent = asyncio.run(replay_to_mqtt(plans, host=m.host, port=m.port, prefix=m.topic_prefix, speed=speed,
                                          chunk_ms=chunk_ms, loop=loop, encoding=encoding, dtype=cfg.replay.dtype,
                                          int16_scale_mv=cfg.replay.int16_scale_mv, timeout_s=m.timeout_s,
                                          on_start=started, auth=MQTTAuth.from_section(m),
                                          reconnect_max_s=min(m.reconnect_max_s, 5.0),
                                          probe_interval_s=m.probe_interval_s))
    else:
        raise RecordError("replay", f"--to must be lsl or mqtt (got {to!r})")
    wall = time.monotonic() - t0
    for sid, n in sent.items():
        click.echo(f"{sid}: {n} samples sent in {wall:.2f} s", err=True)
    return sent
