"""The monitor: live sources -> per-stream DSP -> batched ONNX inference -> calls, alarms -> outputs.

A running monitor is assembled in one place, :mod:`pedstream.monitor.assembly` (a
:class:`~pedstream.monitor.assembly.RunPlan` -> sources, engine, sinks); the commands are in
:mod:`pedstream.monitor.command`. The engine (:mod:`.engine`) with its ingest (:mod:`.ingest`), per-stream
pipelines (:mod:`.pipeline`, :mod:`.bank`, :mod:`.workers`), inference (:mod:`.batcher`), alarms
(:mod:`.alarms`), rhythm context (:mod:`.rhythm_context`), beats (:mod:`.ectopy`, :mod:`.adapt`) and
watchdogs live here; what talks to the outside is in :mod:`pedstream.transports`, what writes and shows
results in :mod:`pedstream.outputs`, and what they all exchange in :mod:`pedstream.events`.

Light imports only (no pylsl, no aiomqtt, no onnxruntime, no torch at import time): the transports'
and outputs' sinks are exported here lazily.
"""

from pedstream._lazy import lazy_exports

from pedstream.monitor.adapt import BeatLabels, LabelError, PatientAdapter
from pedstream.monitor.alarms import AlarmTracker, AlarmTransition, RhythmCall, hr_limits_for_age
from pedstream.monitor.batcher import BatchResult, InferenceBatcher, WindowItem
from pedstream.monitor.ectopy import BeatModelSpec, BeatStream, EctopyCounter, open_beat_model
from pedstream.monitor.banner import model_banner
from pedstream.monitor.engine import Engine, EngineSnapshot, EventSubscription, StreamStatus
from pedstream.monitor.pipeline import FeedResult, StreamPipeline
from pedstream.events import MonitorEvent
from pedstream.outputs.jsonlines import JsonLinesSink
from pedstream.outputs.strips import save_strip

_LAZY = {
    "LSLMarkerSink": "pedstream.transports.lsl.outlet",
    "MQTTSink": "pedstream.transports.mqtt.publisher",
    "HL7Sink": "pedstream.outputs.hl7sink",  # hospital outputs (docs/integrations.md)
    "FHIRSink": "pedstream.outputs.integrations",
    "Recorder": "pedstream.outputs.recording",
    "Outputs": "pedstream.outputs.lifecycle",
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
