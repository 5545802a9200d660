"""LSL transport: discovery configuration (:mod:`.config`, applied before any other LSL call), the
inlet source (:mod:`.inlet`, its pulls done by one pump for all inlets: :mod:`.pump`), and the
outlets for replay and event markers (:mod:`.outlet`).

Lazy: pylsl is imported only when a name that needs it is used.
"""

from __future__ import annotations

from pedstream._lazy import lazy_exports

_LAZY = {
    "configure_lsl": "pedstream.transports.lsl.config",
    "configure_lsl_from": "pedstream.transports.lsl.config",
    "ensure_lsl_configured": "pedstream.transports.lsl.config",
    "render_lsl_config": "pedstream.transports.lsl.config",
    "LSLSource": "pedstream.transports.lsl.inlet",
    "SampleGrid": "pedstream.transports.lsl.inlet",
    "LSLMarkerSink": "pedstream.transports.lsl.outlet",
    "replay_to_lsl": "pedstream.transports.lsl.outlet",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
