"""``pedstream bench``: benchmarks of this machine (model, engine, ingest, alarm).

The measuring code is here, inside the package, so ``pedstream bench`` works wherever pedstream is
installed (the repository's ``bench/`` folder is not importable from an installed console script);
``bench/`` keeps the scripts that reproduce published results (they import the package; nothing in the
package imports them) and the results. Submodules are imported by the commands that need
them (``pedstream bench model`` imports no MQTT or LSL code).
"""

__all__ = ["alarm", "command", "common", "engine", "ingest", "model", "mosquitto", "parity", "publish"]
