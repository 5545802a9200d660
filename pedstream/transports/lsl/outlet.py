"""LSL outlets: the replay outlet (:func:`replay_to_lsl`, ``pedstream replay --to lsl``) and the
event marker outlet (:class:`LSLMarkerSink`, ``pedstream run --lsl-markers``). pylsl is imported on use.

LSL conventions written by :func:`replay_to_lsl` (read back by :class:`~pedstream.transports.lsl.inlet.LSLSource`):
stream ``name`` and ``source_id`` = stream id, ``type`` = ``"ECG"``, ``nominal_srate`` = record fs,
``cf_float32``; ``desc/channels/channel`` with ``label`` (canonical name), ``unit`` = ``millivolts``,
``type`` = ``ECG`` | ``IEGM``; ``desc/acquisition/manufacturer`` = ``pedstream replay``,
``desc/acquisition/record`` = record name; ``desc/subject/age`` when known.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Sequence

from pedstream.transports.lsl.config import ensure_lsl_configured
from pedstream.transports.replay import ReplayPlan, paced_chunks, run_all
from pedstream.events import MonitorEvent

__all__ = ["LSLMarkerSink", "marker_timestamp", "replay_to_lsl"]

log = logging.getLogger(__name__)


async def replay_to_lsl(plans: Sequence[ReplayPlan], *, speed: float = 1.0, chunk_ms: float = 50.0,
                        loop: bool = False, wait_for_consumers_s: float = 0.0, linger_s: float = 0.5,
                        on_start: Callable[[ReplayPlan], None] | None = None,
                        on_t0: Callable[[ReplayPlan, float], None] | None = None) -> dict[str, int]:
    """Publish each plan as an LSL outlet (the conventions in the module docstring), paced.

    LSL delivers only samples pushed after an inlet connected: ``wait_for_consumers_s > 0`` waits
    that long for a first consumer before sending (then sends anyway). After the last chunk the
    outlet stays open ``linger_s`` so the last chunks reach the inlets (LSL has no flush). Returns samples sent per
    stream id. ``on_t0(plan, t0)``: the LSL time of the plan's first sample (sample ``k`` is stamped
    ``t0 + k / fs``; :class:`~pedstream.monitor.reference.ReferenceLabels` maps calls back to the record
    with it). Applies the safe LSL defaults if nobody configured LSL (see :mod:`pedstream.transports.lsl.config`)."""
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
        if on_t0 is not None:
            on_t0(plan, t0)
        sent = 0
        try:
            async for _seq, first, data in paced_chunks(plan, chunk_ms=chunk_ms, speed=speed, loop=loop):
                outlet.push_chunk(data, timestamp=t0 + (first + data.shape[0] - 1) / plan.fs)
                sent = first + data.shape[0]
            if linger_s > 0:
                await asyncio.sleep(linger_s)
        finally:
            del outlet
        return sent

    return await run_all(plans, one)


class LSLMarkerSink:
    """An LSL marker outlet (type ``Markers``, one string channel, irregular rate) carrying each event
    as its JSON line.

    Stamps never go backwards: each marker is stamped with the event's signal time when that is on the
    LSL clock (``clock == "lsl"``: the stream came in over LSL; a call at its window's end, an alarm at
    the end of the window that raised or cleared it), other events when pushed; a stamp earlier than
    the previous marker's is raised to it (the exact signal time stays in the JSON's ``t_signal``), so
    XDF readers and inlets see one monotonic marker stream.

    The stream's ``source_id`` is ``source_id`` (``[lsl] marker_source_id``; default the name), so a
    recorder re-finds the same outlet after a restart; its description names the source (``pedstream``,
    its version, the host), the model (``model``: the model's metadata) and the event schema version, and
    says how markers are stamped. LSL is configured with :mod:`pedstream.transports.lsl.config` (the safe
    machine-only defaults if nobody did). LSL has no flush: on exit the outlet stays open ``linger_s``
    seconds when an inlet is connected, so the last events reach it."""

    def __init__(self, *, name: str = "pedstream-events", source_id: str | None = None, linger_s: float = 0.3,
                 model: dict[str, Any] | None = None) -> None:
        self.name, self.source_id = name, source_id or name
        self.linger_s = float(linger_s)
        self.model = dict(model or {})
        self._outlet: Any = None
        self._last = float("-inf")
        self.count = 0
        self.raised = 0  # stamps raised to keep the stream monotonic

    def stream_info(self) -> Any:
        """The ``pylsl.StreamInfo`` with the metadata (class docstring)."""
        import platform

        import pylsl

        from pedstream.events import SCHEMA_VERSION

        info = pylsl.StreamInfo(self.name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, self.source_id)
        desc = info.desc()
        src = desc.append_child("source")
        src.append_child_value("name", "pedstream")
        src.append_child_value("version", _version())
        src.append_child_value("hostname", platform.node())
        model = desc.append_child("model")
        for key in ("file", "format", "method", "data_description", "class_names", "fs", "window_s", "hop_s",
                    "pedstream_version"):
            if key in self.model and self.model[key] is not None:
                value = self.model[key]
                model.append_child_value(key, ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value))
        ev = desc.append_child("events")
        ev.append_child_value("format", "pedstream monitor event, one JSON object per marker")
        ev.append_child_value("schema_version", str(SCHEMA_VERSION))
        ev.append_child_value("schema", "pedstream/schemas/events.schema.json")
        ev.append_child_value("stamping", "signal time on the LSL clock where known (call: window end), else push "
                                          "time; never earlier than the previous marker")
        return info

    async def __aenter__(self) -> "LSLMarkerSink":
        ensure_lsl_configured()
        import pylsl

        self._outlet = pylsl.StreamOutlet(self.stream_info())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._outlet is not None and self.linger_s > 0 and self._outlet.have_consumers():
            await asyncio.sleep(self.linger_s)  # LSL has no flush: let the last samples reach the inlets
        self._outlet = None

    def emit(self, event: MonitorEvent) -> None:
        if self._outlet is None:
            return
        import pylsl

        stamp = marker_timestamp(event)
        if stamp is None:
            stamp = pylsl.local_clock()
        if stamp < self._last:
            stamp = self._last
            self.raised += 1
        self._last = stamp
        self._outlet.push_sample([event.to_json()], stamp)
        self.count += 1


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("pedstream")
    except Exception:  # not installed (a source checkout)
        return "unknown"


def marker_timestamp(event: MonitorEvent) -> float | None:
    """The LSL timestamp of ``event``'s marker: its signal time on the LSL clock (a call's window end),
    or ``None`` (stamp when pushed) when the event's time is not on the LSL clock."""
    if event.clock != "lsl" or event.t_signal is None:
        return None
    end = event.extra.get("t_signal_end")
    return float(end if isinstance(end, (int, float)) else event.t_signal)
