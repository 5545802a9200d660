"""The streaming engine: live sources -> per-stream DSP -> batched ONNX inference -> calls, alarms, sinks.

Light imports only (no pylsl, no aiomqtt, no onnxruntime, no torch at import time): the transports
live in :mod:`pedstream.stream.lsl` and :mod:`pedstream.stream.mqtt` (their sinks are exported here
lazily), the replay source in :mod:`pedstream.stream.replay`, the source event types in
:mod:`pedstream.stream.source`, the model runtime in :mod:`pedstream.model.runtime`.
"""

from pedstream._lazy import lazy_exports

from pedstream.stream.adapt import BeatLabels, LabelError, PatientAdapter
from pedstream.stream.alarms import AlarmTracker, AlarmTransition, RhythmCall, hr_limits_for_age, save_strip
from pedstream.stream.batcher import BatchResult, InferenceBatcher, WindowItem
from pedstream.stream.ectopy import BeatModelSpec, BeatStream, EctopyCounter, open_beat_model
from pedstream.stream.banner import model_banner
from pedstream.stream.engine import Engine, EngineSnapshot, EventSubscription, StreamStatus
from pedstream.stream.pipeline import FeedResult, StreamPipeline
from pedstream.stream.sinks import JsonLinesSink, MonitorEvent

_LAZY = {
    "LSLMarkerSink": "pedstream.stream.lsl.outlet",
    "MQTTSink": "pedstream.stream.mqtt.publisher",
    "HL7Sink": "pedstream.stream.hl7sink",  # hospital outputs (docs/integrations.md)
    "FHIRSink": "pedstream.stream.integrations",
    "Recorder": "pedstream.stream.recording",
    "Outputs": "pedstream.stream.lifecycle",
}

__all__ = [
    "AlarmTracker",
    "AlarmTransition",
    "BatchResult",
    "BeatLabels",
    "BeatModelSpec",
    "BeatStream",
    "EctopyCounter",
    "Engine",
    "EngineSnapshot",
    "EventSubscription",
    "FHIRSink",
    "FeedResult",
    "HL7Sink",
    "InferenceBatcher",
    "JsonLinesSink",
    "LSLMarkerSink",
    "LabelError",
    "MQTTSink",
    "MonitorEvent",
    "Outputs",
    "PatientAdapter",
    "Recorder",
    "RhythmCall",
    "StreamPipeline",
    "StreamStatus",
    "WindowItem",
    "hr_limits_for_age",
    "model_banner",
    "open_beat_model",
    "save_strip",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
