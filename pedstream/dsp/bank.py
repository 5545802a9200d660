"""The filter bank of many streams at once: one ``sosfilt`` call per band over all their channels.

:class:`~pedstream.dsp.filters.FilterBank` filters one stream, ``(n, channels)``, with its own
delay lines. A monitor with hundreds of streams at the same rate calls it hundreds of times per
chunk interval, and most of each call is Python and scipy overhead, not arithmetic.
:func:`filter_many` takes the banks of many streams and their next samples and, for every group
of banks with the same design (rate, channels, coefficients) and the same number of new samples,
stacks their channels into one ``(streams x channels, samples)`` block per band and filters it in
ONE ``scipy.signal.sosfilt`` call with per-row initial state (each bank's own delay lines,
gathered before and scattered back after). Groups of different sizes are separate calls, so no
stream waits for another (no padding, no added latency).

The arithmetic per row is the very same float64 cascade as :meth:`FilterBank.process` (scipy
filters each row of a block independently), so the outputs and the delay lines afterwards are
bit-for-bit equal to filtering each stream on its own (``tests/dsp/test_bank.py``); first-sample
priming, ``samples_seen`` and the float32 output are those of ``FilterBank.process``. Non-finite
input in a group falls back to the per-stream calls, so the stream at fault gets its own error.

Imports numpy and scipy only (``dsp/`` imports neither ``stream/`` nor ``train/``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from scipy import signal as sps

from pedstream.dsp.checks import all_finite
from pedstream.dsp.filters import FilterBank

__all__ = ["filter_many", "design_key"]


def design_key(bank: FilterBank) -> tuple:
    """What must be equal for two banks to be filtered in one call (cached on the bank)."""
    key = getattr(bank, "_design_key", None)
    if key is None:
        key = (bank.fs, bank.n_ecg, bank.n_iegm,
               tuple((band, sos.shape, sos.tobytes()) for band, sos in bank.sos.items()))
        bank._design_key = key  # type: ignore[attr-defined]
    return key


def filter_many(banks: Sequence[FilterBank], xs: Sequence[np.ndarray], *,
                return_errors: bool = False) -> list[np.ndarray]:
    """``[bank.process(x) for bank, x in zip(banks, xs)]``, computed a block of streams at a time.

    ``xs[i]`` is ``(n_i, banks[i].n_channels)`` (any float dtype). Returns the ``(n_i, channels)``
    float32 outputs in the same order, and leaves every bank's state as ``process`` would. A bank
    may appear only once. Errors are those of :meth:`FilterBank.process`: with ``return_errors``
    the exception takes the place of that stream's output, else the first is raised after every
    other stream was filtered (their banks have advanced either way)."""
    if len(banks) != len(xs):
        raise ValueError(f"filter_many: {len(banks)} banks but {len(xs)} inputs")
    if len({id(b) for b in banks}) != len(banks):
        raise ValueError("filter_many: a bank appears more than once (its chunks must be fed in order)")
    out: list[np.ndarray | None] = [None] * len(banks)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (bank, x) in enumerate(zip(banks, xs)):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != bank.n_channels or x.shape[0] == 0:
            out[i] = _one(bank, x)  # an error for a bad shape; an empty chunk is trivial
            continue
        groups[(design_key(bank), x.shape[0])].append(i)
    for (_, n), idx in groups.items():
        if len(idx) == 1:
            out[idx[0]] = _one(banks[idx[0]], xs[idx[0]])
            continue
        block = np.stack([np.asarray(xs[i], dtype=np.float64) for i in idx])  # (G, n, C) float64
        if not all_finite(block):  # per stream, so the one at fault raises its own error
            for i in idx:
                out[i] = _one(banks[i], xs[i])
            continue
        _filter_group([banks[i] for i in idx], block, out, idx)
    if not return_errors:
        for y in out:
            if isinstance(y, Exception):
                raise y
    return out  # type: ignore[return-value]


def _one(bank: FilterBank, x: np.ndarray) -> np.ndarray | Exception:
    try:
        return bank.process(x)
    except Exception as exc:  # noqa: BLE001 - FilterBank's StreamError, or what numpy raises
        return exc


def _filter_group(banks: list[FilterBank], block: np.ndarray, out: list, idx: list[int]) -> None:
    """Filter ``block`` (G, n, C) of G banks with one design, one sosfilt call per band."""
    g, n, c_all = block.shape
    ref = banks[0]
    y = np.empty((g, n, c_all), dtype=np.float32)
    for band, sl in ref._slices.items():
        sos = ref.sos[band]
        c = sl.stop - sl.start
        zis = []
        for k, bank in enumerate(banks):
            if bank.samples_seen == 0:  # prime on the first sample, as FilterBank.process does
                bank.zi[band] = bank._zi_unit[band][:, :, None] * block[k, 0, sl][None, None, :]
            zis.append(bank.zi[band])  # (n_sections, 2, c)
        # rows = (stream, channel); zi for axis=-1 is (n_sections, rows, 2)
        zi = np.stack(zis, axis=1).transpose(0, 1, 3, 2).reshape(sos.shape[0], g * c, 2)
        xb = np.ascontiguousarray(block[:, :, sl].transpose(0, 2, 1)).reshape(g * c, n)  # (G*c, n)
        yb, zf = sps.sosfilt(sos, xb, axis=-1, zi=zi)
        y[:, :, sl] = yb.reshape(g, c, n).transpose(0, 2, 1)
        zf = zf.reshape(sos.shape[0], g, c, 2).transpose(1, 0, 3, 2)  # (G, n_sections, 2, c)
        for k, bank in enumerate(banks):
            bank.zi[band] = np.ascontiguousarray(zf[k])
    for k, bank in enumerate(banks):
        bank.samples_seen += n
        out[idx[k]] = y[k]
