"""pedstream: real-time pediatric arrhythmia monitoring (12-lead ECG + intracardiac electrograms).

The Python API (README "Python API") is re-exported here lazily, so ``import pedstream`` stays light
(no onnxruntime, torch, pylsl or matplotlib until a call needs them)::

    import pedstream
    model = pedstream.load_model()                      # the packaged monitor model and its metadata
    calls = pedstream.classify(x, fs=500, channels=["I", "II", "V1"])   # one WindowCall per window
    rhythm = pedstream.classify_rhythm(x, fs=500, channels=["I", "II", "V1"])  # rhythm-context calls
"""

from pedstream._lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {name: "pedstream.api" for name in
         ("Model", "WindowCall", "RecordData", "Monitor", "load_model", "classify", "read_record", "plot_strip",
          "demo_records")}
_LAZY["MonitorEvent"] = "pedstream.events"
_LAZY["classify_rhythm"] = _LAZY["RhythmCall"] = "pedstream.api_rhythm"  # rhythm-context calls
_LAZY["load_config"] = "pedstream.config"  # a Config from a TOML path and "section.key=value" overrides

__all__ = ["__version__", *_LAZY]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
