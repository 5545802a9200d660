"""MQTT payloads of pedstream streams: topic layout, meta JSON, binary and JSON data encodings.

Topics
------
``<prefix>/<stream_id>/meta`` (retained, JSON) and ``<prefix>/<stream_id>/data`` (one chunk per
message), with ``prefix = "pedstream/v1"`` by default. ``stream_id`` is one MQTT topic level: 1-64
characters from ``[A-Za-z0-9_.-]``.

Meta (UTF-8 JSON object, published *retained* before the first data message)
-----------------------------------------------------------------------------
=============  ==========================  ===========================================================
key            type                        meaning
=============  ==========================  ===========================================================
``fs``         number, required            sampling rate in Hz, within ``limits.fs_min..fs_max``
                                           (default 50..10000)
``channels``   list of str, required       channel names in sample order (non-empty, unique, at most
                                           ``limits.max_channels``, default 64)
``units``      str or list of str          unit of every channel (one string applies to all):
                                           ``mV``, ``uV``/``µV``/``microvolts``, ``V``, ``nV``, or
                                           a power-of-ten code (``"-6"``, ``"1e-6"``). Absent:
                                           millivolts are *assumed* (the dashboard says so).
``dtype``      ``"int16"``|``"float32"``   sample type of *binary* data messages (default float32);
                                           must match the header's dtype code
``scale``      number > 0                  int16 only: size of one LSB in the channel's unit
                                           (with ``units = "mV"``: mV per LSB). Default 1.0.
``encoding``   ``"binary"``|``"json"``     informative; the receiver detects the encoding per
                                           message from its first byte
``age_years``  number >= 0 or null         the child's age, for age-banded heart-rate alarms
``t0``         number                      publisher clock at sample 0; a new value = a new session
``session``    str or number               publisher session id (optional); a new value tells the
                                           receiver the publisher restarted (its ``seq`` restarts)
=============  ==========================  ===========================================================

Other keys are kept and ignored. A meta that changes ``dtype``, ``channels`` or ``fs`` of a stream
starts a new *stream session* (reported once as an ``error`` event, then the stream goes on with the
new meta).

Limits (checked before parsing, :class:`PayloadLimits`, ``[mqtt]`` config)
---------------------------------------------------------------------------
Any message (meta or data) longer than ``max_message_bytes`` (default 262144) is rejected unread.
JSON is rejected before parsing when it nests deeper than ``max_json_depth`` (default 8; a meta or
data message needs 3). A data message carries at most ``max_samples`` samples (default 16384) and
``max_channels`` channels. Every rejected message is one (throttled) ``error`` event of its stream
and is counted (``rejected_messages``); no message can end the receiver.

Binary data message (all little-endian, 32-byte header, then samples)
---------------------------------------------------------------------
======  ====  =======  ==================================================================
offset  size  type     field
======  ====  =======  ==================================================================
0       4     bytes    magic ``b"PSD1"`` (0x50 0x53 0x44 0x31)
4       1     u8       version = 1
5       1     u8       dtype code: 1 = int16, 2 = float32
6       2     u16      n_channels (>= 1), must equal ``len(meta.channels)``
8       4     u32      seq: per-stream message counter, +1 per message, wraps at 2**32
12      4     u32      n_samples (>= 1)
16      8     u64      first_sample: index of the first sample since the stream began
24      8     f64      t: time of the first sample, seconds (publisher clock); sample k is
                       at ``t + k / fs``
32      ...   i16/f32  ``n_samples * n_channels`` values, sample-major (all channels of sample
                       0, then sample 1, ...), little-endian
======  ====  =======  ==================================================================

``struct`` format of the header: ``"<4sBBHIIQd"``. The message length must be exactly
``32 + n_samples * n_channels * (2 | 4)`` bytes. int16 values are multiplied by ``meta.scale``;
float32 values are already in the channel's unit.

JSON data message (UTF-8, for low-rate and interoperable publishers)
--------------------------------------------------------------------
``{"seq": 17, "first_sample": 850, "t": 1712.25, "data": [[ch0, ch1, ...], ...]}``: ``seq``
(int 0..2**32-1), ``first_sample`` (int >= 0), ``t`` (number), ``data`` (non-empty list of rows,
one row per sample, each with exactly ``len(meta.channels)`` numbers in the channel's unit; ``scale``
does not apply). A message whose first non-blank byte is ``{`` is JSON, one starting with ``PSD1``
is binary.

Sequence numbers
----------------
The receiver (:class:`SequenceTracker`) releases messages in ``seq`` order. A message with an
already-delivered or already-held ``seq`` is a *duplicate* and dropped. A message ahead of the next
expected ``seq`` is held in a reorder buffer of ``reorder_window`` messages; when the buffer is
over-full (or a held message is older than the hold limit) the lowest held message is released and
the skipped ``seq`` values are counted *lost*. A message arriving after its ``seq`` was declared lost
is *late* and dropped (counted). A restarted publisher is recognised at its first message: ``seq``
0 arriving after the stream had gone past 0, or a jump back by more than ``restart_distance``
(default ``max(64, 4 * reorder_window)``) resets the tracker (``stats.resets``) and delivers the
message; so does a jump forward by more than ``RESET_DISTANCE`` (1024; a long outage). A new meta
(another ``session`` or ``t0``) also resets it. Gaps in the samples themselves are seen by the
engine from ``first_sample``.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pedstream.errors import PayloadError
from pedstream.transports.mqtt.sequence import SeqStats, SequenceTracker
from pedstream.transports.units import unit_to_mv

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER",
    "DTYPE_CODES",
    "STREAM_ID_RE",
    "StreamMeta",
    "DataPayload",
    "encode_binary",
    "decode_binary",
    "encode_json",
    "decode_json",
    "decode_data",
    "encode_meta",
    "decode_meta",
    "payload_to_mv",
    "SequenceTracker",
    "SeqStats",
    "PayloadLimits",
    "DEFAULT_LIMITS",
    "json_depth",
    "check_stream_id",
    "topic_for",
]

MAGIC = b"PSD1"
VERSION = 1
HEADER = struct.Struct("<4sBBHIIQd")  # 32 bytes
DTYPE_CODES: dict[str, int] = {"int16": 1, "float32": 2}
_CODE_DTYPES = {v: k for k, v in DTYPE_CODES.items()}
_NP = {"int16": np.dtype("<i2"), "float32": np.dtype("<f4")}
STREAM_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_U32 = 1 << 32


@dataclass(frozen=True, slots=True)
class PayloadLimits:
    """What a receiver accepts (checked before parsing). Defaults fit any ECG/IEGM stream."""

    max_message_bytes: int = 262_144
    max_json_depth: int = 8
    max_channels: int = 64
    max_samples: int = 16_384
    fs_min: float = 50.0
    fs_max: float = 10_000.0


DEFAULT_LIMITS = PayloadLimits()

_ESCAPE_RE = re.compile(rb"\\.", re.S)
_STRING_RE = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = np.zeros(256, dtype=np.int8)
_DEPTH_STEP[list(b"[{")] = 1
_DEPTH_STEP[list(b"]}")] = -1


def json_depth(raw: bytes | str) -> int:
    """Maximum nesting depth of JSON text, without parsing it (C-speed scans; strings skipped).

    Malformed text gives some number; the parser rejects it afterwards."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    b = _STRING_RE.sub(b"", _ESCAPE_RE.sub(b"", bytes(raw)))
    b = b.translate(None, _NOT_BRACKETS)
    if not b:
        return 0
    steps = _DEPTH_STEP[np.frombuffer(b, dtype=np.uint8)].astype(np.int32)
    return int(np.cumsum(steps).max())


def _load_json(raw: bytes | str, *, stream: str, field_name: str, what: str, limits: PayloadLimits) -> Any:
    """``json.loads`` behind the size and depth limits; every failure is a PayloadError."""
    size = len(raw)
    if size > limits.max_message_bytes:
        raise PayloadError(stream, f"{what} is {size} bytes, over the limit of {limits.max_message_bytes}",
                           field="size")
    depth = json_depth(raw)
    if depth > limits.max_json_depth:
        raise PayloadError(stream, f"{what} nests {depth} levels deep, over the limit of {limits.max_json_depth}",
                           field="depth")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:
        reason = str(exc)[:120]
        raise PayloadError(stream, f"{what} is not valid UTF-8 JSON ({reason})", field=field_name) from exc


def check_stream_id(stream_id: str) -> str:
    if not isinstance(stream_id, str) or not STREAM_ID_RE.match(stream_id):
        raise PayloadError(str(stream_id), "must be 1-64 characters from A-Z a-z 0-9 _ . -", field="stream_id")
    return stream_id


# --------------------------------------------------------------------------------------- meta
@dataclass(slots=True)
class StreamMeta:
    """Decoded meta message. ``mv_factors`` (n_ch,) turns values in each channel's unit into mV."""

    fs: float
    channels: list[str]
    units: list[str]  # as declared ("" where none)
    units_assumed: bool
    mv_factors: np.ndarray  # (n_ch,) float64
    dtype: Literal["int16", "float32"] = "float32"
    scale: float = 1.0
    encoding: str | None = None
    age_years: float | None = None
    t0: float | None = None
    session: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def shape_key(self) -> tuple:
        """What a data message's decoding depends on: a change is a new stream session."""
        return (self.fs, tuple(self.channels), self.dtype)

    @property
    def session_key(self) -> tuple:
        """The publisher's session (``session``, ``t0``): a change means its ``seq`` restarted."""
        return (self.session, self.t0)


def encode_meta(*, fs: float, channels: list[str], units: str | list[str] | None = "mV",
                dtype: str = "float32", scale: float = 1.0, encoding: str = "binary",
                age_years: float | None = None, t0: float | None = None, **extra: Any) -> bytes:
    """The meta JSON (UTF-8 bytes) for a publisher."""
    obj: dict[str, Any] = {"version": VERSION, "fs": float(fs), "channels": list(channels)}
    if units is not None:
        obj["units"] = units if isinstance(units, str) else list(units)
    obj.update(dtype=dtype, scale=float(scale), encoding=encoding)
    if age_years is not None:
        obj["age_years"] = float(age_years)
    if t0 is not None:
        obj["t0"] = float(t0)
    obj.update(extra)
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def _short(v: Any, n: int = 60) -> str:
    """``repr`` cut to ``n`` characters (error messages must stay one short line)."""
    r = repr(v)
    return r if len(r) <= n else r[: n - 3] + "..."


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def decode_meta(raw: bytes | str, *, stream: str = "?", limits: PayloadLimits = DEFAULT_LIMITS) -> StreamMeta:
    """Parse and validate a meta message; :class:`PayloadError` names the bad field."""
    obj = _load_json(raw, stream=stream, field_name="meta", what="meta", limits=limits)
    if not isinstance(obj, dict):
        raise PayloadError(stream, f"meta must be a JSON object, got {type(obj).__name__}", field="meta")
    obj = dict(obj)
    fs = obj.pop("fs", None)
    if not _number(fs) or fs <= 0:
        raise PayloadError(stream, f"must be a positive number of Hz (got {_short(fs)})", field="fs")
    if not limits.fs_min <= fs <= limits.fs_max:
        raise PayloadError(stream, f"{fs:g} Hz is outside the accepted {limits.fs_min:g}..{limits.fs_max:g} Hz",
                           field="fs")
    channels = obj.pop("channels", None)
    if (not isinstance(channels, list) or not channels
            or not all(isinstance(c, str) and c.strip() for c in channels)):
        raise PayloadError(stream, f"must be a non-empty list of channel names (got {_short(channels)})",
                           field="channels")
    if len(channels) > limits.max_channels:
        raise PayloadError(stream, f"{len(channels)} channels, over the limit of {limits.max_channels}",
                           field="channels")
    if any(len(c) > 64 for c in channels):
        raise PayloadError(stream, "channel names are at most 64 characters", field="channels")
    if len(set(channels)) != len(channels):
        dup = sorted({c for c in channels if channels.count(c) > 1})
        raise PayloadError(stream, f"duplicate channel names {_short(dup)}", field="channels")
    units_raw = obj.pop("units", None)
    if units_raw is None:
        units = [""] * len(channels)
    elif isinstance(units_raw, str):
        units = [units_raw] * len(channels)
    elif isinstance(units_raw, list) and all(isinstance(u, (str, int, float)) and not isinstance(u, bool)
                                             for u in units_raw):
        units = [str(u) for u in units_raw]
        if len(units) != len(channels):
            raise PayloadError(stream, f"has {len(units)} entries for {len(channels)} channels", field="units")
    else:
        raise PayloadError(stream, f"must be a string or a list of strings (got {_short(units_raw)})", field="units")
    factors = np.empty(len(channels), dtype=np.float64)
    assumed = False
    for i, (name, unit) in enumerate(zip(channels, units)):
        conv = unit_to_mv(unit)
        if conv is None:
            raise PayloadError(stream, f"unit {_short(unit, 40)} of channel {_short(name, 40)} is not a voltage unit "
                                       "(mV, uV, V, nV or a power-of-ten code)", field="units")
        factors[i], a = conv
        assumed |= a
    dtype = obj.pop("dtype", "float32")
    if dtype not in DTYPE_CODES:
        raise PayloadError(stream, f"must be 'int16' or 'float32' (got {_short(dtype)})", field="dtype")
    scale = obj.pop("scale", 1.0)
    if not _number(scale) or scale <= 0:
        raise PayloadError(stream, f"must be a positive number (got {_short(scale)})", field="scale")
    encoding = obj.pop("encoding", None)
    if encoding not in (None, "binary", "json"):
        raise PayloadError(stream, f"must be 'binary' or 'json' (got {_short(encoding)})", field="encoding")
    age = obj.pop("age_years", None)
    if age is not None and (not _number(age) or age < 0):
        raise PayloadError(stream, f"must be a non-negative number or null (got {_short(age)})", field="age_years")
    t0 = obj.pop("t0", None)
    if t0 is not None and not _number(t0):
        raise PayloadError(stream, f"must be a number (got {_short(t0)})", field="t0")
    session = obj.pop("session", None)
    if session is not None and (isinstance(session, bool) or not isinstance(session, (str, int, float))
                                or len(str(session)) > 128):
        raise PayloadError(stream, f"must be a string or number of at most 128 characters (got {_short(session)})",
                           field="session")
    obj.pop("version", None)
    return StreamMeta(fs=float(fs), channels=list(channels), units=units, units_assumed=assumed,
                      mv_factors=factors, dtype=dtype, scale=float(scale), encoding=encoding,
                      age_years=None if age is None else float(age), t0=None if t0 is None else float(t0),
                      session=None if session is None else str(session), extra=obj)


# --------------------------------------------------------------------------------------- data
@dataclass(slots=True)
class DataPayload:
    """One decoded data message. ``values`` (n_samples, n_channels): int16 or float32 (binary,
    as sent) or float64 (JSON), in the channel's unit (int16 still to be multiplied by scale)."""

    seq: int
    first_sample: int
    t: float
    values: np.ndarray  # (n, n_ch)
    encoding: Literal["binary", "json"]

    @property
    def n_samples(self) -> int:
        return int(self.values.shape[0])


def encode_binary(values: np.ndarray, *, seq: int, first_sample: int, t: float,
                  dtype: Literal["int16", "float32"] | None = None) -> bytes:
    """Binary data message. ``values`` (n, n_ch) int16 or float32 (or anything castable when
    ``dtype`` is given: floats are rounded for int16, out-of-range values raise)."""
    arr = np.asarray(values)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise PayloadError("?", f"must be a non-empty (n_samples, n_channels) array, got shape {arr.shape}",
                           field="data")
    if dtype is None:
        dtype = "int16" if arr.dtype == np.int16 else "float32"
    if dtype not in DTYPE_CODES:
        raise PayloadError("?", f"must be 'int16' or 'float32' (got {dtype!r})", field="dtype")
    if dtype == "int16" and arr.dtype != np.int16:
        rounded = np.rint(arr)
        if np.any(rounded < -32768) or np.any(rounded > 32767) or not np.all(np.isfinite(rounded)):
            raise PayloadError("?", "values do not fit int16 (choose a larger scale)", field="data")
        arr = rounded
    body = np.ascontiguousarray(arr, dtype=_NP[dtype])
    n, n_ch = body.shape
    if n_ch > 0xFFFF or n >= _U32:
        raise PayloadError("?", f"shape {body.shape} exceeds the header's u16/u32 counts", field="data")
    if not 0 <= seq < _U32:
        raise PayloadError("?", f"must be in 0..2**32-1 (got {seq})", field="seq")
    if not 0 <= first_sample < (1 << 64):
        raise PayloadError("?", f"must be in 0..2**64-1 (got {first_sample})", field="first_sample")
    header = HEADER.pack(MAGIC, VERSION, DTYPE_CODES[dtype], n_ch, seq, n, first_sample, float(t))
    return header + body.tobytes()


def decode_binary(raw: bytes, *, n_channels: int | None = None, dtype: str | None = None,
                  stream: str = "?", limits: PayloadLimits = DEFAULT_LIMITS) -> DataPayload:
    """Decode a binary message; ``n_channels``/``dtype`` (from the meta) are checked when given."""
    if len(raw) > limits.max_message_bytes:
        raise PayloadError(stream, f"message is {len(raw)} bytes, over the limit of {limits.max_message_bytes}",
                           field="size")
    if len(raw) < HEADER.size:
        raise PayloadError(stream, f"message is {len(raw)} bytes, shorter than the {HEADER.size}-byte header",
                           field="header")
    magic, version, code, n_ch, seq, n, first, t = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise PayloadError(stream, f"expected {MAGIC!r}, got {magic!r}", field="magic")
    if version != VERSION:
        raise PayloadError(stream, f"unsupported version {version} (this receiver reads {VERSION})",
                           field="version")
    if code not in _CODE_DTYPES:
        raise PayloadError(stream, f"unknown dtype code {code} (1 = int16, 2 = float32)", field="dtype")
    kind = _CODE_DTYPES[code]
    if dtype is not None and kind != dtype:
        raise PayloadError(stream, f"header says {kind}, meta says {dtype}", field="dtype")
    if n_ch < 1 or (n_channels is not None and n_ch != n_channels):
        want = ">= 1" if n_channels is None else str(n_channels)
        raise PayloadError(stream, f"header says {n_ch}, expected {want}", field="n_channels")
    if n_ch > limits.max_channels:
        raise PayloadError(stream, f"{n_ch} channels, over the limit of {limits.max_channels}", field="n_channels")
    if n < 1:
        raise PayloadError(stream, "must be >= 1", field="n_samples")
    if n > limits.max_samples:
        raise PayloadError(stream, f"{n} samples, over the limit of {limits.max_samples}", field="n_samples")
    if not math.isfinite(t):
        raise PayloadError(stream, f"must be finite (got {t})", field="t")
    npd = _NP[kind]
    expected = HEADER.size + n * n_ch * npd.itemsize
    if len(raw) != expected:
        raise PayloadError(stream, f"message is {len(raw)} bytes, header announces {expected} "
                                   f"({n} samples x {n_ch} channels x {npd.itemsize} bytes + {HEADER.size})",
                           field="body")
    values = np.frombuffer(raw, dtype=npd, offset=HEADER.size).reshape(n, n_ch)
    if kind == "float32" and not np.all(np.isfinite(values)):
        raise PayloadError(stream, "contains NaN or infinite samples", field="body")
    return DataPayload(seq=seq, first_sample=first, t=t, values=values, encoding="binary")


def encode_json(values: np.ndarray, *, seq: int, first_sample: int, t: float) -> bytes:
    """JSON data message; ``values`` (n, n_ch) in the channel's unit."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise PayloadError("?", f"must be a non-empty (n_samples, n_channels) array, got shape {arr.shape}",
                           field="data")
    obj = {"seq": int(seq), "first_sample": int(first_sample), "t": float(t), "data": arr.tolist()}
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _int_field(obj: dict, name: str, lo: int, hi: int, stream: str) -> int:
    if name not in obj:
        raise PayloadError(stream, "is missing", field=name)
    v = obj[name]
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise PayloadError(stream, f"must be an integer in {lo}..{hi} (got {_short(v)})", field=name)
    return v


def decode_json(raw: bytes | str, *, n_channels: int | None = None, stream: str = "?",
                limits: PayloadLimits = DEFAULT_LIMITS) -> DataPayload:
    obj = _load_json(raw, stream=stream, field_name="json", what="message", limits=limits)
    if not isinstance(obj, dict):
        raise PayloadError(stream, f"must be a JSON object, got {type(obj).__name__}", field="json")
    seq = _int_field(obj, "seq", 0, _U32 - 1, stream)
    first = _int_field(obj, "first_sample", 0, (1 << 64) - 1, stream)
    if "t" not in obj:
        raise PayloadError(stream, "is missing", field="t")
    t = obj["t"]
    if not _number(t):
        raise PayloadError(stream, f"must be a finite number of seconds (got {_short(t)})", field="t")
    if "data" not in obj:
        raise PayloadError(stream, "is missing", field="data")
    data = obj["data"]
    if not isinstance(data, list) or not data or not all(isinstance(r, list) for r in data):
        raise PayloadError(stream, "must be a non-empty list of rows (one list of channel values per sample)",
                           field="data")
    if len(data) > limits.max_samples:
        raise PayloadError(stream, f"{len(data)} samples, over the limit of {limits.max_samples}", field="data")
    widths = {len(r) for r in data}
    if len(widths) != 1:
        raise PayloadError(stream, f"rows have different lengths {sorted(widths)}", field="data")
    width = widths.pop()
    if width < 1 or width > limits.max_channels or (n_channels is not None and width != n_channels):
        want = ">= 1" if n_channels is None else str(n_channels)
        raise PayloadError(stream, f"rows have {width} values, expected {want} (one per channel)", field="data")
    if not all(_number(v) for r in data for v in r):
        raise PayloadError(stream, "values must be finite numbers", field="data")
    values = np.asarray(data, dtype=np.float64)  # (n, n_ch)
    return DataPayload(seq=seq, first_sample=first, t=float(t), values=values, encoding="json")


def decode_data(raw: bytes, *, meta: StreamMeta | None = None, stream: str = "?",
                limits: PayloadLimits = DEFAULT_LIMITS) -> DataPayload:
    """Decode either encoding (detected from the first bytes)."""
    n_ch = meta.n_channels if meta is not None else None
    if len(raw) > limits.max_message_bytes:
        raise PayloadError(stream, f"message is {len(raw)} bytes, over the limit of {limits.max_message_bytes}",
                           field="size")
    if raw[:4] == MAGIC:
        return decode_binary(raw, n_channels=n_ch, dtype=meta.dtype if meta is not None else None,
                             stream=stream, limits=limits)
    if raw[:64].lstrip()[:1] == b"{":
        return decode_json(raw, n_channels=n_ch, stream=stream, limits=limits)
    raise PayloadError(stream, f"neither binary (starts with {MAGIC!r}) nor JSON (starts with '{{'): "
                               f"first bytes {bytes(raw[:4])!r}", field="encoding")


def payload_to_mv(payload: DataPayload, meta: StreamMeta) -> np.ndarray:
    """(n, n_ch) float32 millivolts."""
    factors = meta.mv_factors
    if payload.encoding == "binary" and payload.values.dtype == np.int16:
        factors = factors * meta.scale
    return (payload.values.astype(np.float64) * factors).astype(np.float32)


def topic_for(prefix: str, stream_id: str, kind: str) -> str:
    """``<prefix>/<stream_id>/<kind>`` with kind ``meta`` | ``data`` (| ``rhythm``: the monitor's events)."""
    return f"{prefix.rstrip('/')}/{stream_id}/{kind}"
