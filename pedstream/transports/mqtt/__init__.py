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
    "PayloadLimits": "pedstream.transports.mqtt.wire",
    "StreamMeta": "pedstream.transports.mqtt.wire",
    "DataPayload": "pedstream.transports.mqtt.wire",
    "SequenceTracker": "pedstream.transports.mqtt.wire",
    "encode_meta": "pedstream.transports.mqtt.wire",
    "decode_meta": "pedstream.transports.mqtt.wire",
    "encode_binary": "pedstream.transports.mqtt.wire",
    "encode_json": "pedstream.transports.mqtt.wire",
    "decode_data": "pedstream.transports.mqtt.wire",
    "topic_for": "pedstream.transports.mqtt.wire",
    "MQTTAuth": "pedstream.transports.mqtt.client",
    "make_client": "pedstream.transports.mqtt.client",
    "wait_backoff": "pedstream.transports.mqtt.client",
    "MQTTSource": "pedstream.transports.mqtt.source",
    "limits_from": "pedstream.transports.mqtt.source",
    "MQTTPublisher": "pedstream.transports.mqtt.publisher",
    "MQTTSink": "pedstream.transports.mqtt.publisher",
    "replay_to_mqtt": "pedstream.transports.mqtt.publisher",
    "encode_bundle": "pedstream.transports.mqtt.bundle",
    "split_bundle": "pedstream.transports.mqtt.bundle",
    "pack_bundles": "pedstream.transports.mqtt.bundle",
    "paced_many": "pedstream.transports.mqtt.pacing",
    "WillKeepers": "pedstream.transports.mqtt.wills",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
