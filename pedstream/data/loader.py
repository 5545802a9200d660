"""Lazy, range-reading WFDB loader that maps any record onto the canonical 19-channel layout.

``open_record(path, cfg.signal)`` reads only the header and checks that the signal files exist and
are as long as the header says. ``Record.read(start, stop)`` then reads just that sample range
(``wfdb.rdrecord(sampfrom=, sampto=, physical=False)``), converts the digital values to millivolts
itself (so that WFDB's "invalid sample" value does not become NaN) and scatters the channels, by
name, onto the canonical layout. A 2.5 h, 19-channel, 977 Hz record is never loaded whole unless a
caller asks for the whole range; :meth:`Record.iter_chunks` walks it in bounded memory.

Conventions:
- units: the header's units (mV, uV/µV, V, nV; missing = mV) are converted to millivolts;
- clipping: a sample is *clipped* when its digital value reaches ``clip_fraction`` of the storage
  format's range around ``adc_zero`` (format 16: +/-32767, format 212: +/-2047). The header's
  ``adc_res`` is not trusted for this (real headers disagree with their data: iaf1_afw says 14
  bits and holds values up to 14151);
- flat channels: a mapped channel whose peak-to-peak over the whole record stays below
  ``flat_ptp_mv`` is marked absent (``present`` False, ``flat`` True). The scan runs chunk-wise on
  first use of ``present``/``flat`` and is cached on the :class:`Record`.
"""

from __future__ import annotations

import math
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator

import numpy as np

from pedstream.config import SignalConfig
from pedstream.data.annotations import Annotations, read_annotations
from pedstream.data.channels import LEIPZIG_LAYOUTS, ChannelMap, resolve_channels
from pedstream.errors import ChannelError, RecordError

__all__ = ["Record", "Signal", "open_record", "list_records", "identify_layout", "UNIT_SCALE_TO_MV"]

# bytes per sample and bit depth of the uncompressed WFDB storage formats wfdb can read
_FMT_BYTES: dict[str, float] = {"8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2,
                                "212": 1.5, "310": 4 / 3, "311": 4 / 3}
_FMT_BITS: dict[str, int] = {"8": 8, "16": 16, "24": 24, "32": 32, "61": 16, "80": 8, "160": 16,
                             "212": 12, "310": 10, "311": 10}

UNIT_SCALE_TO_MV: dict[str, float] = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "microvolt": 1e-3,
                                      "v": 1e3, "nv": 1e-6, "millivolt": 1.0, "": 1.0}

_SCAN_CHUNK = 1 << 16  # samples per chunk of the flat-channel scan (~2.5 MB for 19 int16 channels)


@contextmanager
def _quiet_wfdb() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"wfdb\..*")
        warnings.filterwarnings("ignore", message=r".*inplace keyword.*")
        yield


@dataclass(frozen=True)
class Signal:
    """A sample range of a record on the canonical layout.

    ``data``: (n, C) float32 millivolts, C = len(cfg.signal.channels) (19), absent channels 0;
    ``clipped``: (n, C) bool; ``start``: first sample index in the record; ``fs``: Hz;
    ``present``: (C,) bool (mapped and not flat).
    """

    data: np.ndarray
    clipped: np.ndarray
    start: int
    fs: float
    present: np.ndarray
    channels: tuple[str, ...]

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[0])

    @property
    def stop(self) -> int:
        return self.start + self.n_samples


def identify_layout(sig_names: list[str] | tuple[str, ...]) -> str | None:
    """Which of the six Leipzig channel layouts the names are (in order, case-insensitive), or None."""
    norm = tuple(n.strip().lower() for n in sig_names)
    for key, names in LEIPZIG_LAYOUTS.items():
        if norm == tuple(n.lower() for n in names):
            return key
    return None


def _unit_scale(unit: str | None, *, record: str, channel: str) -> float:
    key = (unit or "").strip().lower()
    if key not in UNIT_SCALE_TO_MV:
        raise RecordError(record, f"channel {channel} has units {unit!r}; expected mV, uV or V")
    return UNIT_SCALE_TO_MV[key]


class Record:
    """One WFDB record, opened lazily (header only). Build with :func:`open_record`."""

    def __init__(self, *, path: Path, header: object, cfg: SignalConfig) -> None:
        self.path = path
        self.name = path.name
        self._h = header
        self.cfg = cfg
        self.channels: tuple[str, ...] = tuple(cfg.channels)
        self.fs = float(header.fs)  # type: ignore[attr-defined]
        self.n_samples = int(header.sig_len)  # type: ignore[attr-defined]
        self.sig_names: tuple[str, ...] = tuple(header.sig_name)  # type: ignore[attr-defined]
        self.units: tuple[str, ...] = tuple((u or "mV") for u in header.units)  # type: ignore[attr-defined]
        self.layout = identify_layout(self.sig_names)
        try:
            self.channel_map: ChannelMap = resolve_channels(
                self.sig_names, target=self.channels, aliases=cfg.aliases, extra_ok=cfg.extra_ok,
                where=f"record {self.name}")
        except ChannelError as exc:
            raise RecordError(self.name, exc.reason) from exc
        src = self.channel_map.source_index
        self._cols = np.flatnonzero(src >= 0)  # target columns that are mapped
        self._src = src[self._cols]  # the source column feeding each
        fmts = [str(f) for f in header.fmt]  # type: ignore[attr-defined]
        gains = np.asarray([float(g) if g else 200.0 for g in header.adc_gain], dtype=np.float64)
        base = np.asarray([int(b) if b is not None else 0 for b in header.baseline], dtype=np.float64)
        zero = np.asarray([int(z) if z is not None else 0 for z in header.adc_zero], dtype=np.float64)
        scale = np.asarray([_unit_scale(header.units[j], record=self.name, channel=self.sig_names[j])
                            if j in set(self._src.tolist()) else 1.0 for j in range(len(self.sig_names))])
        # per mapped target column: mV = (digital - baseline) * mv_per_unit
        self._mv_per_unit = (scale / gains)[self._src]
        self._baseline = base[self._src]
        half = np.asarray([2.0 ** (_FMT_BITS[f] - 1) for f in fmts])
        lo, hi = zero - half, zero + half - 1
        frac = cfg.clip_fraction
        self._clip_hi = (zero + frac * (hi - zero))[self._src]
        self._clip_lo = (zero - frac * (zero - lo))[self._src]
        self._wide = any(_FMT_BITS[f] > 16 for f in fmts)
        self._read_cols = sorted(set(self._src.tolist()))

    # -- description ------------------------------------------------------------------------
    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs

    @property
    def mapped(self) -> np.ndarray:
        """(C,) bool: channels found in the header by name (before the flat check)."""
        return self.channel_map.present.copy()

    @cached_property
    def _scan(self) -> tuple[np.ndarray, np.ndarray]:
        """One chunk-wise pass over the record: ((C,) peak-to-peak mV, NaN where unmapped;
        (C,) fraction of samples clipped, 0 where unmapped)."""
        lo = np.full(len(self._cols), np.inf)
        hi = np.full(len(self._cols), -np.inf)
        n_clip = np.zeros(len(self._cols), dtype=np.int64)
        for s in range(0, self.n_samples, _SCAN_CHUNK):
            d = self._read_digital(s, min(self.n_samples, s + _SCAN_CHUNK))  # (n, n_mapped)
            if d.shape[0]:
                lo = np.minimum(lo, d.min(axis=0))
                hi = np.maximum(hi, d.max(axis=0))
                n_clip += ((d >= self._clip_hi) | (d <= self._clip_lo)).sum(axis=0)
        ptp = np.full(len(self.channels), np.nan)
        ptp[self._cols] = (hi - lo) * np.abs(self._mv_per_unit)
        frac = np.zeros(len(self.channels))
        frac[self._cols] = n_clip / max(self.n_samples, 1)
        return ptp, frac

    @property
    def _ptp_mv(self) -> np.ndarray:
        return self._scan[0]

    @property
    def clipped_fraction(self) -> np.ndarray:
        """(C,) fraction of the record's samples that are clipped, per channel (whole-record scan)."""
        return self._scan[1].copy()

    @property
    def flat(self) -> np.ndarray:
        """(C,) bool: mapped channels whose whole-record peak-to-peak is below ``flat_ptp_mv``."""
        ptp = self._ptp_mv
        return np.where(np.isnan(ptp), False, ptp < self.cfg.flat_ptp_mv)

    @property
    def present(self) -> np.ndarray:
        """(C,) bool: mapped and not flat."""
        return self.channel_map.present & ~self.flat

    @property
    def ptp_mv(self) -> np.ndarray:
        """(C,) whole-record peak-to-peak in mV (NaN where the channel is not in the record)."""
        return self._ptp_mv.copy()

    def __repr__(self) -> str:
        return (f"Record({self.name!r}, fs={self.fs:g}, n_samples={self.n_samples}, layout={self.layout!r}, "
                f"mapped={self.channel_map.n_present}/{len(self.channels)})")

    # -- reading ----------------------------------------------------------------------------
    def _check_range(self, start: int, stop: int | None) -> tuple[int, int]:
        stop = self.n_samples if stop is None else int(stop)
        start = int(start)
        if not 0 <= start <= stop <= self.n_samples:
            raise RecordError(self.name, f"sample range [{start}, {stop}) is outside [0, {self.n_samples}]")
        return start, stop

    def _read_digital(self, start: int, stop: int) -> np.ndarray:
        """(stop-start, n_mapped) digital samples of the mapped channels, target column order."""
        if stop <= start or not self._read_cols:
            return np.zeros((0, len(self._cols)), dtype=np.int32)
        import wfdb

        try:
            with _quiet_wfdb():
                rec = wfdb.rdrecord(str(self.path), sampfrom=start, sampto=stop, channels=self._read_cols,
                                    physical=False, return_res=32 if self._wide else 16)
        except Exception as exc:
            raise RecordError(self.name, f"cannot read samples [{start}, {stop}): {exc}") from exc
        d = rec.d_signal  # (n, len(read_cols))
        if d is None or d.shape[0] != stop - start:
            got = 0 if d is None else d.shape[0]
            raise RecordError(self.name, f"header/data length mismatch: asked samples [{start}, {stop}), got {got}")
        pos = {c: i for i, c in enumerate(self._read_cols)}
        return d[:, [pos[c] for c in self._src.tolist()]]

    def read(self, start: int = 0, stop: int | None = None) -> Signal:
        """Samples ``[start, stop)`` as a :class:`Signal` ((n, C) float32 mV + (n, C) clipped mask)."""
        start, stop = self._check_range(start, stop)
        n = stop - start
        d = self._read_digital(start, stop)  # (n, n_mapped) int
        data = np.zeros((n, len(self.channels)), dtype=np.float32)
        clipped = np.zeros((n, len(self.channels)), dtype=bool)
        present = self.present
        if d.shape[1]:
            keep = present[self._cols]
            cols = self._cols[keep]
            dk = d[:, keep]
            data[:, cols] = ((dk - self._baseline[keep]) * self._mv_per_unit[keep]).astype(np.float32)
            clipped[:, cols] = (dk >= self._clip_hi[keep]) | (dk <= self._clip_lo[keep])
        return Signal(data=data, clipped=clipped, start=start, fs=self.fs, present=present,
                      channels=self.channels)

    def iter_chunks(self, chunk_samples: int, *, start: int = 0, stop: int | None = None) -> Iterator[Signal]:
        """Consecutive :class:`Signal` chunks of at most ``chunk_samples`` covering ``[start, stop)``."""
        if chunk_samples <= 0:
            raise RecordError(self.name, f"chunk_samples must be positive, got {chunk_samples}")
        start, stop = self._check_range(start, stop)
        for s in range(start, stop, chunk_samples):
            yield self.read(s, min(stop, s + chunk_samples))

    def annotations(self, extension: str = "atr") -> Annotations | None:
        """The record's annotations, or None when ``<record>.<extension>`` does not exist."""
        if not self.path.with_name(f"{self.name}.{extension}").is_file():
            return None
        return read_annotations(self.path, extension)


def _strip(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".hea", ".dat", ".atr") else p


def _check_header_fs(hea: Path, name: str) -> None:
    """Refuse a record line whose sampling frequency is not a positive number.

    wfdb silently reads an unparseable frequency (``-977``, ``0``, ``abc``) as its 250 Hz default;
    the record line is ``name[/segments] n_sig [fs[/counter[(base)]] [n_samples ...]]``."""
    try:
        with open(hea, encoding="latin-1") as fh:
            line = next((ln for ln in fh if ln.strip() and not ln.lstrip().startswith("#")), "")
    except OSError as exc:
        raise RecordError(name, f"cannot read header {hea} ({exc.strerror or exc})") from exc
    tokens = line.split()
    if not tokens:
        raise RecordError(name, f"{hea} is empty: not a WFDB header")
    if len(tokens) < 2 or not tokens[1].isdigit():
        shown = line.strip()[:60]
        raise RecordError(name, f"{hea} is not a WFDB header (expected a record line 'NAME N_SIGNALS FS N_SAMPLES', "
                                f"got {shown!r})")
    if len(tokens) < 3:
        return  # no frequency given: the WFDB default (250 Hz) applies by the format's own rule
    text = tokens[2].split("/")[0].split("(")[0]
    try:
        fs = float(text)
    except ValueError:
        fs = float("nan")
    if not math.isfinite(fs) or fs <= 0:
        raise RecordError(name, f"sampling frequency {tokens[2]!r} in {hea.name} is not a positive number")


def open_record(path: str | os.PathLike[str], cfg: SignalConfig) -> Record:
    """Open ``path`` (with or without ``.hea``): parse the header and check the signal files.

    Raises :class:`RecordError` naming the record for: missing header, unparseable header,
    multi-segment or compressed/unknown formats, missing signal file, signal file shorter than the
    header says, units that are not voltages, and records without any known channel.
    """
    import wfdb

    p = _strip(path)
    name = p.name
    hea = p.with_name(f"{name}.hea")
    if not hea.is_file():
        raise RecordError(name, f"header file {hea} does not exist")
    _check_header_fs(hea, name)
    try:
        with _quiet_wfdb():
            h = wfdb.rdheader(str(p))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecordError(name, f"{hea} is not a valid WFDB header ({first})") from exc
    if getattr(h, "n_seg", None):
        raise RecordError(name, "multi-segment records are not supported")
    if not h.n_sig or not h.sig_name:
        raise RecordError(name, "the header lists no signals")
    if len(h.sig_name) != h.n_sig:
        raise RecordError(name, f"the header announces {h.n_sig} signals but describes {len(h.sig_name)}")
    if not h.fs or float(h.fs) <= 0:
        raise RecordError(name, f"sampling frequency {h.fs!r} is not positive")
    fmts = [str(f) for f in h.fmt]
    for f, s in zip(fmts, h.sig_name):
        if f not in _FMT_BYTES:
            kind = "compressed (FLAC)" if f in ("508", "516", "524") else "unknown"
            raise RecordError(name, f"channel {s} uses {kind} WFDB storage format {f!r} "
                                    f"(supported: {', '.join(sorted(_FMT_BYTES, key=int))})")
    spf = [int(x or 1) for x in (h.samps_per_frame or [1] * h.n_sig)]
    if any(x != 1 for x in spf):
        raise RecordError(name, "multi-frequency records (samples per frame > 1) are not supported")
    # per signal file: how many bytes the header promises
    files: dict[str, tuple[str, int, int]] = {}
    for f, fn, off in zip(fmts, h.file_name, h.byte_offset or [None] * h.n_sig):
        fmt0, n, off0 = files.get(fn, (f, 0, int(off or 0)))
        if fmt0 != f:
            raise RecordError(name, f"signal file {fn} mixes formats {fmt0} and {f}")
        files[fn] = (f, n + 1, off0)
    for fn, (f, nch, off) in files.items():
        dat = p.with_name(fn)
        if not dat.is_file():
            raise RecordError(name, f"signal file {dat} does not exist")
        size = dat.stat().st_size
        if not h.sig_len:
            h.sig_len = int((size - off) / (_FMT_BYTES[f] * nch))
            continue
        need = off + int(np.ceil(h.sig_len * nch * _FMT_BYTES[f]))
        if size < need:
            have = int((size - off) // (_FMT_BYTES[f] * nch))
            raise RecordError(name, f"header/data length mismatch: {fn} has {size} bytes, the header's "
                                    f"{h.sig_len} samples x {nch} channels (format {f}) need {need} "
                                    f"(only {have} samples present)")
    return Record(path=p, header=h, cfg=cfg)


def list_records(folder: str | os.PathLike[str]) -> list[Path]:
    """Sorted record paths (no extension) in ``folder``: from its ``RECORDS`` file, else ``*.hea``."""
    d = Path(folder)
    if not d.is_dir():
        raise RecordError(str(d), "is not a folder")
    index = d / "RECORDS"
    if index.is_file():
        names = [ln.strip() for ln in index.read_text(encoding="utf-8").splitlines() if ln.strip()]
        return sorted((d / n for n in names), key=lambda q: q.name)
    return sorted((h.with_suffix("") for h in d.glob("*.hea")), key=lambda q: q.name)
