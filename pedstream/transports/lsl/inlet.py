"""LSL source: every stream matching a predicate, resolved continuously, pulled without blocking.

Stream conventions read (the XDF ones; see also :func:`pedstream.transports.replay.replay_to_lsl`):

- stream id = the stream's ``source_id`` (or its ``name`` when it has none; such a stream cannot be
  recovered after its outlet restarts, liblsl needs a source_id for that);
- channel names from ``desc/channels/channel/label``; a stream without them gets ``ch1..chN`` and a
  ``StreamFailed`` saying so;
- channel units from ``desc/channels/channel/unit`` (see :mod:`.units`): converted to mV; none at all
  -> millivolts assumed (``StreamInfo.units_assumed``); an unknown unit -> ``StreamFailed`` and mV
  assumed for that channel;
- the child's age from ``desc/subject/age`` (years), when present;
- ``nominal_srate`` is the sampling rate (an irregular-rate stream, 0 Hz, is refused with a
  ``StreamFailed``); string streams are refused.

Mechanics: a :class:`pylsl.ContinuousResolver` is polled every ``resolve_interval_s``; each new
stream gets a task that opens its inlet (``recover=True``, ``max_buflen_s`` of buffer in liblsl) and
hands it to the source's one :class:`~pedstream.transports.lsl.pump.InletPump`, which pulls every inlet
with data each ``pull_interval_ms`` (``pull_chunk(timeout=0.0)`` into a preallocated numpy buffer,
never blocking the event loop; bounded pulls per pass, so a backlog such as the one LSL delivers on
connect drains over the next passes without starving the other streams). Every blocking liblsl
call (resolver results, ``open_stream``, ``info``, ``time_correction``) runs in the source's own
small thread pool (``blocking_threads``), so hundreds of inlets neither need hundreds of threads
nor queue behind the event loop's default executor. Timestamps get ``inlet.time_correction()``
added (refreshed every ``time_correction_interval_s``, all inlets in one pool call). Timestamps are
regularised (``dejitter``, default on): the inlet
monotonises them (pylsl ``proc_monotonize``) and the source puts every sample on a grid of
``1 / nominal_srate`` counted from the samples received, which follows the stream's clock slowly (at
most half a sample period per chunk). A timestamp jump while no sample is missing (a publisher's
clock step, scheduling jitter) therefore does not look like a gap; only timestamps more than
``jump_tolerance_s`` away from the grid (samples really lost, an outlet restarted) re-anchor it, and
the engine sees that jump as a gap. No data for ``lost_timeout_s`` -> ``StreamLost``; data again (liblsl
recovered the same source_id from a restarted outlet) -> ``StreamAdded`` again. No data for
``close_lost_after_s`` -> the inlet is closed (the resolver serves the outlet anew if it comes back);
a stream faster than ``max_rate_factor`` x its nominal rate is stopped (see :mod:`.pump`). ``first_index``
counts the samples received on that inlet.

Discovery (``predicate`` empty, the default): every stream on the LSL network is looked at and
served when its ``type`` is one of ``types`` (case-insensitive: ``ECG``, ``EKG``, ``EXG`` as
BrainFlow/OpenBCI announce it, ``IEGM``, ``EGM``; mne-lsl's ``PlayerLSL`` says ``ecg``) or, whatever
its type (``EEG``, ``Biosignal``...), when at least one of its channel labels maps to an ECG lead or
an IEGM channel (read from the full stream info, ``[signal] aliases`` included). Each stream seen gets
one line (``discovery``, ``on_discovery``): monitored, or ignored and why. An explicit XPath
``predicate`` serves every stream it matches, whatever its type.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from pedstream.data.channels import resolve_channels
from pedstream.errors import ChannelError
from pedstream.transports.lsl.config import ensure_lsl_configured
from pedstream.transports.lsl.pump import Feed, InletPump, StreamTooFast, _offset, close_feed
from pedstream.transports.mqtt.wire import DEFAULT_LIMITS, PayloadLimits
from pedstream.transports.base import SourceBase
from pedstream.events import StreamFailed, StreamInfo, StreamLost
from pedstream.transports.units import unit_to_mv
from pedstream.config import LSLSection

__all__ = ["LSLSource", "parse_lsl_info", "ParsedLSLInfo", "SampleGrid", "DEFAULT_TYPES", "cardiac_labels",
           "describe_lsl_stream"]

log = logging.getLogger(__name__)


DEFAULT_TYPES: tuple[str, ...] = ("ECG", "EKG", "EXG", "IEGM", "EGM")


def cardiac_labels(labels: Iterable[str], aliases: Mapping[str, str] | None = None) -> list[str]:
    """The labels that map to an ECG lead or IEGM channel (by name, as the engine maps them)."""
    out = []
    for label in labels:
        try:
            if resolve_channels([label], aliases=aliases, require_any=False).present.any():
                out.append(label)
        except ChannelError:  # pragma: no cover - one name cannot appear twice
            continue
    return out


def _labels(full: Any) -> list[str]:
    labels = []
    ch = full.desc().child("channels").child("channel")
    while not ch.empty():
        labels.append(ch.child_value("label").strip())
        ch = ch.next_sibling("channel")
    return [x for x in labels if x]


def _short(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names)})" if len(names) > n else "")


def describe_lsl_stream(info: Any) -> str:
    """``LSL stream 'name' (type 'EEG', 8 ch, 250 Hz, source_id 'x')``: how a discovery line starts."""
    rate = info.nominal_srate()
    return (f"LSL stream {info.name()!r} (type {info.type()!r}, {info.channel_count()} ch, "
            f"{f'{rate:g} Hz' if rate > 0 else 'irregular rate'}, source_id {info.source_id()!r})")


@dataclass(slots=True)
class ParsedLSLInfo:
    info: StreamInfo
    mv_factors: np.ndarray  # (n_ch,) float64
    problems: list[str]


def parse_lsl_info(full: Any) -> ParsedLSLInfo:
    """Read a :class:`pylsl.StreamInfo` *with its description* (from ``inlet.info()``)."""
    n_ch = int(full.channel_count())
    sid = full.source_id() or full.name()
    problems: list[str] = []
    labels: list[str] = []
    units: list[str] = []
    ch = full.desc().child("channels").child("channel")
    while not ch.empty():
        labels.append(ch.child_value("label").strip())
        units.append(ch.child_value("unit").strip())
        ch = ch.next_sibling("channel")
    if len(labels) != n_ch or not all(labels):
        if labels:
            problems.append(f"desc/channels has {len(labels)} channel entries (some without label) for "
                            f"{n_ch} channels; using ch1..ch{n_ch}")
        else:
            problems.append(f"no channel labels in desc/channels; using ch1..ch{n_ch}")
        labels = [f"ch{i + 1}" for i in range(n_ch)]
        units = units if len(units) == n_ch else [""] * n_ch
    factors = np.ones(n_ch, dtype=np.float64)
    assumed = False
    shown: list[str] = []
    for i, (name, unit) in enumerate(zip(labels, units)):
        conv = unit_to_mv(unit)
        if conv is None:
            problems.append(f"channel {name}: unit {unit!r} is not a voltage unit; assuming millivolts")
            assumed = True
            shown.append("mV")
            continue
        factors[i], a = conv
        assumed |= a
        shown.append(unit or "mV")
    age: float | None = None
    age_text = full.desc().child("subject").child_value("age").strip()
    if age_text:
        try:
            age = float(age_text)
        except ValueError:
            problems.append(f"desc/subject/age {age_text!r} is not a number of years; ignored")
        else:
            if not age >= 0:
                problems.append(f"desc/subject/age {age_text!r} is negative; ignored")
                age = None
    info = StreamInfo(stream_id=sid, source="lsl", fs=float(full.nominal_srate()), channel_names=labels,
                      units=shown, units_assumed=assumed, age_years=age,
                      meta={"name": full.name(), "type": full.type(), "source_id": full.source_id(),
                            "uid": full.uid(), "hostname": full.hostname(),
                            "channel_format": int(full.channel_format())})
    return ParsedLSLInfo(info=info, mv_factors=factors, problems=problems)


class SampleGrid:
    """Timestamps on a ``1 / fs`` grid counted from the samples received (see the module docstring).

    ``place(ts, first_index)`` returns the grid times of the chunk; the grid follows the measured
    times by at most ``0.5 / fs`` per chunk and is re-anchored when they differ by more than
    ``jump_tolerance_s`` (``jumps`` counts those)."""

    def __init__(self, *, fs: float, jump_tolerance_s: float = 1.0) -> None:
        self.fs = float(fs)
        self.jump_tolerance_s = float(jump_tolerance_s)
        self.anchor_t: float | None = None
        self.anchor_i = 0
        self.jumps = 0

    def place(self, ts: np.ndarray, first_index: int) -> np.ndarray:
        n = len(ts)
        idx = first_index + np.arange(n, dtype=np.float64)
        if self.anchor_t is None:
            self.anchor_t, self.anchor_i = float(ts[0]), first_index
        grid = self.anchor_t + (idx - self.anchor_i) / self.fs
        err = float(np.median(ts - grid))
        if not np.isfinite(err) or abs(err) > self.jump_tolerance_s:
            self.jumps += self.anchor_t is not None
            self.anchor_t, self.anchor_i = float(ts[0]), first_index
            return self.anchor_t + (idx - self.anchor_i) / self.fs
        step = max(-0.5 / self.fs, min(0.5 / self.fs, 0.1 * err))  # follow the clock slowly
        self.anchor_t += step
        return grid + step


class LSLSource(SourceBase):
    """Monitor every LSL stream of an ECG type or with ECG/IEGM channel labels (``predicate`` empty, see
    the module docstring), or every stream matching ``predicate`` (an XPath 1.0 predicate on the
    stream info, e.g. ``"name='bed1'"``, ``"starts-with(source_id, 'ped')"``).

    ``discovery`` maps each stream uid seen to its one-line verdict (monitored / ignored and why);
    ``on_discovery`` is called with each new line."""

    kind = "lsl"

    def __init__(self, *, events: asyncio.Queue, predicate: str = "", types: Iterable[str] = DEFAULT_TYPES,
                 aliases: Mapping[str, str] | None = None,
                 on_discovery: Callable[[str], None] | None = None, resolve_interval_s: float = 0.5,
                 forget_after_s: float = 2.0, pull_interval_ms: float = 10.0, max_chunk_samples: int = 4096,
                 lost_timeout_s: float = 3.0, time_correction_interval_s: float = 5.0,
                 open_timeout_s: float = 5.0, max_buflen_s: int = 60, dejitter: bool = True,
                 jump_tolerance_s: float = 1.0, limits: PayloadLimits = DEFAULT_LIMITS,
                 blocking_threads: int = 16, max_pulls_per_pass: int = 8, max_rate_factor: float = 2.0,
                 close_lost_after_s: float = 60.0) -> None:
        super().__init__(events=events)
        if blocking_threads < 1 or max_pulls_per_pass < 1:
            raise ValueError("blocking_threads and max_pulls_per_pass must be at least 1")
        self.blocking_threads = int(blocking_threads)
        self.max_pulls_per_pass = int(max_pulls_per_pass)
        self.max_rate_factor = float(max_rate_factor)
        self.close_lost_after_s = float(close_lost_after_s)
        self.dejitter = bool(dejitter)
        self.limits = limits
        self.jump_tolerance_s = float(jump_tolerance_s)
        self.predicate = predicate.strip()
        self.types = tuple(t.strip().upper() for t in types)
        self.aliases = dict(aliases or {})
        self.on_discovery = on_discovery
        self.discovery: dict[str, str] = {}  # uid -> "LSL stream ...: monitored/ignored: why"
        self.resolve_interval_s = float(resolve_interval_s)
        self.forget_after_s = float(forget_after_s)
        self.pull_interval_s = float(pull_interval_ms) / 1000.0
        self.max_chunk_samples = int(max_chunk_samples)
        self.lost_timeout_s = float(lost_timeout_s)
        self.time_correction_interval_s = float(time_correction_interval_s)
        self.open_timeout_s = float(open_timeout_s)
        self.max_buflen_s = int(max_buflen_s)
        self.resolved = asyncio.Event()  # set after the first resolver poll
        self._served: dict[str, str] = {}  # stream id -> uid served by a running inlet task
        self._refused: set[str] = set()  # uids refused (string stream, irregular rate...)
        self._executor: ThreadPoolExecutor | None = None  # every blocking liblsl call runs here
        self.pump: InletPump | None = None

    @classmethod
    def from_config(cls, section: LSLSection, *, events: asyncio.Queue, **overrides: Any) -> "LSLSource":
        """Build from the ``[lsl]`` config section (also applies its network settings)."""
        from pedstream.transports.lsl.config import configure_lsl_from

        configure_lsl_from(section)
        kw = dict(predicate=section.predicate, resolve_interval_s=section.resolve_interval_s,
                  forget_after_s=section.forget_after_s, pull_interval_ms=section.pull_interval_ms,
                  max_chunk_samples=section.max_chunk_samples, lost_timeout_s=section.lost_timeout_s,
                  time_correction_interval_s=section.time_correction_interval_s)
        if hasattr(section, "types"):
            kw.update(types=section.types)
        if hasattr(section, "dejitter"):
            kw.update(dejitter=section.dejitter, jump_tolerance_s=section.jump_tolerance_s)
        kw.update(overrides)
        return cls(events=events, **kw)

    async def _start(self) -> None:
        ensure_lsl_configured()
        import pylsl

        self._executor = ThreadPoolExecutor(max_workers=self.blocking_threads, thread_name_prefix="lsl")
        self._resolver = await self._call(pylsl.ContinuousResolver, pred=self.predicate or None,
                                          forget_after=self.forget_after_s)
        self.pump = InletPump(emit=self.emit, executor=self._executor, pull_interval_s=self.pull_interval_s,
                              max_chunk_samples=self.max_chunk_samples, lost_timeout_s=self.lost_timeout_s,
                              time_correction_interval_s=self.time_correction_interval_s,
                              open_timeout_s=self.open_timeout_s, parse=lambda full: parse_lsl_info(full).info,
                              max_pulls_per_pass=self.max_pulls_per_pass, max_rate_factor=self.max_rate_factor,
                              burst_s=self.max_buflen_s, close_lost_after_s=self.close_lost_after_s)
        self._spawn(self.pump.run(), name="lsl-pump")
        self._spawn(self._resolve_loop(), name=f"lsl-resolver[{self.predicate or 'all'}]")

    async def _close(self) -> None:
        self._resolver = None
        if self._executor is not None:  # a thread still blocked in liblsl (<= open_timeout_s) just ends
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """``fn(*args, **kw)`` in the source's pool of ``blocking_threads`` threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kw))

    async def _resolve_loop(self) -> None:
        while True:
            infos = await self._call(self._resolver.results)
            for info in infos:
                sid = info.source_id() or info.name()
                uid = info.uid()
                if sid in self._served or uid in self._refused:
                    continue
                self._served[sid] = uid
                self._spawn(self._inlet_task(sid, info), name=f"lsl-inlet-{sid}")
            self.resolved.set()
            await asyncio.sleep(self.resolve_interval_s)

    async def _inlet_task(self, sid: str, info: Any) -> None:
        from pylsl.util import LostError

        try:
            await self._serve(sid, info)
        except LostError:
            self.emit(StreamLost(sid, "LSL outlet lost (not recoverable: the stream has no source_id)"))
        except StreamTooFast as exc:  # hostile or broken publisher: refused until it comes back anew
            self._refused.add(info.uid())
            self._report(info, f"ignored: {exc}")
            self.emit(StreamFailed(sid, str(exc)))
        except Exception as exc:  # an inlet failure must not take the source down
            log.exception("LSL inlet %s failed", sid)
            self.emit(StreamFailed(sid, f"LSL inlet failed: {exc}"))
        finally:
            self._served.pop(sid, None)

    def _report(self, info: Any, verdict: str) -> None:
        line = f"{describe_lsl_stream(info)}: {verdict}"
        if self.discovery.get(info.uid()) == line:
            return
        self.discovery[info.uid()] = line
        log.info("%s", line)
        if self.on_discovery is not None:
            self.on_discovery(line)

    async def _serve(self, sid: str, info: Any) -> None:
        import pylsl

        typ = info.type().strip()
        by_type = bool(self.predicate) or typ.upper() in self.types
        fmt = info.channel_format()
        srate, n_ch, lim = info.nominal_srate(), info.channel_count(), self.limits
        why = ("string stream" if fmt == pylsl.cf_string
               else "irregular sampling rate (nominal_srate 0)" if srate <= 0
               else f"sampling rate {srate:g} Hz outside {lim.fs_min:g}..{lim.fs_max:g} Hz"
               if not lim.fs_min <= srate <= lim.fs_max
               else f"{n_ch} channels, over the limit of {lim.max_channels}" if n_ch > lim.max_channels
               else None)
        if why is not None:
            self._refused.add(info.uid())
            self._report(info, f"ignored: {why}")
            if by_type:  # meant to be monitored: the engine (dashboard, events) says why it is not
                self.emit(StreamFailed(sid, f"LSL stream refused: {why}"))
            return
        flags = pylsl.proc_monotonize if self.dejitter else 0
        inlet = pylsl.StreamInlet(info, max_buflen=self.max_buflen_s, recover=True, processing_flags=flags)
        feed: Feed | None = None
        try:
            if by_type:
                verdict = (f"monitored (matches [lsl] predicate {self.predicate!r})" if self.predicate
                           else f"monitored (type {typ!r})")
            else:  # another type: monitored only when its channel labels are ECG leads / IEGM channels
                full = await self._call(inlet.info, self.open_timeout_s)
                labels = _labels(full)
                cardiac = cardiac_labels(labels, self.aliases)
                if not cardiac:
                    self._refused.add(info.uid())
                    self._report(info, f"ignored: type {typ!r} is none of {', '.join(self.types)} and "
                                       + (f"none of its channel labels ({_short(labels)}) is an ECG lead or "
                                          "IEGM channel" if labels else "it has no channel labels"))
                    return
                verdict = f"monitored (type {typ!r}; channel labels {_short(cardiac)} are ECG/IEGM channels)"
            await self._call(inlet.open_stream, self.open_timeout_s)
            full = await self._call(inlet.info, self.open_timeout_s)
            self._report(info, verdict)
            parsed = parse_lsl_info(full)
            for p in parsed.problems:
                self.emit(StreamFailed(sid, p))
            offset = await self._call(_offset, inlet, 0.0)
            feed = Feed(sid=sid, inlet=inlet, info=parsed.info, factors=parsed.mv_factors.astype(np.float32),
                        buf=np.empty((self.max_chunk_samples, parsed.info.n_channels),
                                     dtype=inlet.np_dtype or np.float32),
                        grid=SampleGrid(fs=parsed.info.fs, jump_tolerance_s=self.jump_tolerance_s)
                        if self.dejitter else None, offset=offset)
            assert self.pump is not None
            try:
                await self.pump.attach(feed)  # until the feed ends: raises what ended it
            finally:
                self.pump.detach(feed)
        finally:
            if self._executor is not None:  # waits only for a pool call on this inlet, if any
                await (self._call(close_feed, feed) if feed is not None else self._call(inlet.close_stream))
