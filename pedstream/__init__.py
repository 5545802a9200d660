"""pedstream: real-time pediatric arrhythmia monitoring (12-lead ECG + intracardiac electrograms)."""

__version__ = "0.1.0"
__all__ = ["__version__"]
