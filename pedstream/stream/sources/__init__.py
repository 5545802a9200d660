"""Live sources (LSL, MQTT, replay) behind one asyncio interface: see :mod:`.base`.

The interface is imported eagerly; the transports load on first access (``LSLSource`` imports
pylsl, ``MQTTSource``/``MQTTPublisher`` aiomqtt), so importing this package stays light.
"""

from __future__ import annotations

from pedstream._lazy import lazy_exports
from pedstream.stream.sources.base import (
    Chunk,
    ChunkReceived,
    Source,
    SourceBase,
    SourceEvent,
    StreamAdded,
    StreamError,
    StreamErrorEvent,
    StreamInfo,
    StreamLost,
)

_LAZY = {
    "LSLSource": "pedstream.stream.sources.lsl",
    "MQTTSource": "pedstream.stream.sources.mqtt",
    "MQTTPublisher": "pedstream.stream.sources.mqtt",
    "ReplaySource": "pedstream.stream.sources.replay",
    "plan_replay": "pedstream.stream.sources.replay",
    "replay_to_lsl": "pedstream.stream.sources.replay",
    "replay_to_mqtt": "pedstream.stream.sources.replay",
}

__all__ = [
    "Chunk",
    "ChunkReceived",
    "Source",
    "SourceBase",
    "SourceEvent",
    "StreamAdded",
    "StreamError",
    "StreamErrorEvent",
    "StreamInfo",
    "StreamLost",
    *_LAZY,
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
