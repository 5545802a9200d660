"""Live sources (LSL, MQTT, replay) behind one asyncio interface: see :mod:`.base`.

Only the light interface is imported here; import the transports from their modules
(``pedstream.stream.sources.lsl`` imports pylsl, ``.mqtt`` imports aiomqtt).
"""

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
]
