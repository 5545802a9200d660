"""Channel units -> millivolts.

Accepted spellings (case-insensitive, surrounding spaces ignored):

- volts: ``V``, ``volt``, ``volts``
- millivolts: ``mV``, ``millivolt``, ``millivolts``
- microvolts: ``uV``, ``µV`` (micro sign), ``μV`` (Greek mu), ``microvolt``, ``microvolts``
- nanovolts: ``nV``, ``nanovolt``, ``nanovolts``
- power-of-ten codes written by some LSL tools: an integer string is an exponent of ten volts
  (``"-6"`` = µV, ``"-3"`` = mV, ``"0"`` = V); a decimal/scientific string is the size of one unit in
  volts (``"1e-6"`` = µV, ``"0.001"`` = mV).

No unit (``None`` or ``""``) means millivolts *assumed*.
"""

from __future__ import annotations

import math

__all__ = ["unit_to_mv", "UNIT_NAMES"]

_VOLT = {"v": 1.0, "volt": 1.0, "volts": 1.0}
_MILLI = {"mv": 1e-3, "millivolt": 1e-3, "millivolts": 1e-3}
_MICRO = {"uv": 1e-6, "\u00b5v": 1e-6, "\u03bcv": 1e-6, "microvolt": 1e-6, "microvolts": 1e-6}
_NANO = {"nv": 1e-9, "nanovolt": 1e-9, "nanovolts": 1e-9}
UNIT_NAMES: dict[str, float] = {**_VOLT, **_MILLI, **_MICRO, **_NANO}  # name -> volts per unit


def unit_to_mv(unit: str | float | int | None) -> tuple[float, bool] | None:
    """Factor that turns values in ``unit`` into millivolts, and whether mV was *assumed*.

    Returns ``(factor, assumed)``: ``(1000.0, False)`` for volts, ``(1e-3, False)`` for microvolts,
    ``(1.0, True)`` for a missing unit; ``None`` when the unit is not understood.
    """
    if unit is None:
        return 1.0, True
    if isinstance(unit, bool):
        return None
    if isinstance(unit, int):
        return 10.0 ** (unit + 3), False
    if isinstance(unit, float):
        return (unit * 1e3, False) if math.isfinite(unit) and unit > 0 else None
    text = str(unit).strip()
    if not text:
        return 1.0, True
    key = text.lower()
    if key in UNIT_NAMES:
        return UNIT_NAMES[key] * 1e3, False
    try:
        exponent = int(key)
    except ValueError:
        pass
    else:
        return (10.0 ** (exponent + 3), False) if -15 <= exponent <= 3 else None
    try:
        volts = float(key)
    except ValueError:
        return None
    if not math.isfinite(volts) or volts <= 0:
        return None
    return volts * 1e3, False
