"""What the parts of a running monitor say to each other, and nothing else: the monitor's events
(:class:`MonitorEvent`, the :class:`Sink` interface), what a source delivers (:class:`StreamAdded`,
:class:`ChunkReceived`, :class:`StreamLost`, :class:`StreamFailed`; the :class:`Source` interface), the
read-only views of a running monitor (:class:`EngineSnapshot`, :class:`StreamStatus`,
:class:`EventSubscription`) and the alarm strips it hands to the strip writer. The monitor, the
transports and the outputs all import this package; it imports none of them.
"""

from pedstream.events.monitor import SCHEMA_VERSION, EventKind, MonitorEvent, Sink, event_schema
from pedstream.events.source import (
    Chunk,
    ChunkReceived,
    Source,
    SourceEvent,
    SourceKind,
    StreamAdded,
    StreamFailed,
    StreamInfo,
    StreamLost,
)
from pedstream.events.strips import ReadyStrip, StripRequest
from pedstream.events.views import EngineSnapshot, EventSubscription, SnapshotSource, StreamStatus, percentile

__all__ = [
    "SCHEMA_VERSION",
    "Chunk",
    "ChunkReceived",
    "EngineSnapshot",
    "EventKind",
    "EventSubscription",
    "MonitorEvent",
    "ReadyStrip",
    "Sink",
    "SnapshotSource",
    "Source",
    "SourceEvent",
    "SourceKind",
    "StreamAdded",
    "StreamFailed",
    "StreamInfo",
    "StreamLost",
    "StreamStatus",
    "StripRequest",
    "event_schema",
    "percentile",
]
