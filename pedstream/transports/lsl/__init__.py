"""LSL transport: discovery configuration (:mod:`.config`, applied before any other LSL call), the
inlet source (:mod:`.inlet`, its pulls done by one pump for all inlets: :mod:`.pump`), and the
outlets for replay and event markers (:mod:`.outlet`).

Lazy: pylsl is imported only when a name that needs it is used.
"""

from __future__ import annotations

from pedstream._lazy import lazy_exports

_LAZY = {
    "configure_lsl": "pedstream.stream.lsl.config",
    "configure_lsl_from": "pedstream.stream.lsl.config",
    "ensure_lsl_configured": "pedstream.stream.lsl.config",
    "render_lsl_config": "pedstream.stream.lsl.config",
    "LSLSource": "pedstream.stream.lsl.inlet",
    "SampleGrid": "pedstream.stream.lsl.inlet",
    "LSLMarkerSink": "pedstream.stream.lsl.outlet",
    "replay_to_lsl": "pedstream.stream.lsl.outlet",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
