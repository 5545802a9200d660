"""MQTT transport: the wire format (:mod:`.wire`, numpy only; several streams' data in one message:
:mod:`.bundle`), the one client construction path and reconnect probe (:mod:`.client`), the source
(:mod:`.source`) and the one publisher class used by ``pedstream replay --to mqtt`` and by the
``--publish-mqtt`` event sink (:mod:`.publisher`; one pacing task for every replayed stream:
:mod:`.pacing`; per-stream Last Wills beside one data connection: :mod:`.wills`).

Lazy: aiomqtt is imported only when a name that needs it is used.
"""

from __future__ import annotations

from pedstream._lazy import lazy_exports

_LAZY = {
    "PayloadLimits": "pedstream.stream.mqtt.wire",
    "StreamMeta": "pedstream.stream.mqtt.wire",
    "DataPayload": "pedstream.stream.mqtt.wire",
    "SequenceTracker": "pedstream.stream.mqtt.wire",
    "encode_meta": "pedstream.stream.mqtt.wire",
    "decode_meta": "pedstream.stream.mqtt.wire",
    "encode_binary": "pedstream.stream.mqtt.wire",
    "encode_json": "pedstream.stream.mqtt.wire",
    "decode_data": "pedstream.stream.mqtt.wire",
    "topic_for": "pedstream.stream.mqtt.wire",
    "MQTTAuth": "pedstream.stream.mqtt.client",
    "make_client": "pedstream.stream.mqtt.client",
    "wait_backoff": "pedstream.stream.mqtt.client",
    "MQTTSource": "pedstream.stream.mqtt.source",
    "limits_from": "pedstream.stream.mqtt.source",
    "MQTTPublisher": "pedstream.stream.mqtt.publisher",
    "MQTTSink": "pedstream.stream.mqtt.publisher",
    "replay_to_mqtt": "pedstream.stream.mqtt.publisher",
    "encode_bundle": "pedstream.stream.mqtt.bundle",
    "split_bundle": "pedstream.stream.mqtt.bundle",
    "pack_bundles": "pedstream.stream.mqtt.bundle",
    "paced_many": "pedstream.stream.mqtt.pacing",
    "WillKeepers": "pedstream.stream.mqtt.wills",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
