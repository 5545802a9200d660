"""Bundle messages: the data messages of several streams in one MQTT message.

A publisher of many streams (a central-station gateway, ``pedstream replay --to mqtt`` with
``[replay] mqtt_bundle_bytes``, the MQTT benchmark's publisher) may put the data messages that are
due at the same moment into one MQTT message, so the per-message cost of MQTT (a packet, a broker
delivery, a read and a callback in every process) is paid once per bundle instead of once per stream
and chunk. Chunk size and latency are unchanged: a bundle holds each stream's own chunk.

Topic ``<prefix>/<bundle_id>/bundle`` (``bundle_id``: stream-id rules; it names the publisher in
error events, it is not a stream and has no meta). Every stream in a bundle still needs its
retained meta on ``<prefix>/<stream_id>/meta``.

Layout (little-endian)
----------------------
======  ====  =====  =================================================================
offset  size  type   field
======  ====  =====  =================================================================
0       4     bytes  magic ``b"PSB1"``
4       1     u8     version = 1
5       1     u8     reserved, 0
6       2     u16    n_frames >= 1
8       ...          n_frames frames, each: u8 ``id_len`` (1..64), ``id_len`` bytes of stream id
                     (``[A-Za-z0-9_.-]``), u32 ``frame_len`` (>= 1), ``frame_len`` bytes: one
                     complete data message of that stream (binary ``PSD1`` or JSON, see
                     :mod:`pedstream.transports.mqtt.wire`)
======  ====  =====  =================================================================

The message ends exactly after the last frame. Receiver rules (every byte is hostile): the whole
message is at most ``max_message_bytes``; ``n_frames`` is at most the receiver's ``max_frames``
(the source's ``max_streams``); the frame table is walked and bounds-checked *before* any frame is
handled, and a bundle whose structure is wrong is rejected whole (one error event naming the bundle
id, counted); each frame is then handled exactly as a data message of its stream (meta, ingest
budget, limits, sequence tracking), so a bad frame is that stream's error only.
"""

from __future__ import annotations

import struct
from typing import Iterable

from pedstream.errors import PayloadError
from pedstream.transports.mqtt.wire import STREAM_ID_RE

__all__ = ["BUNDLE_MAGIC", "BUNDLE_VERSION", "BUNDLE_HEADER", "encode_bundle", "split_bundle", "pack_bundles"]

BUNDLE_MAGIC = b"PSB1"
BUNDLE_VERSION = 1
BUNDLE_HEADER = struct.Struct("<4sBBH")  # 8 bytes
_LEN = struct.Struct("<I")
_MAX_FRAMES = 0xFFFF


def _frame_head(stream_id: str, n: int) -> bytes:
    sid = stream_id.encode("ascii")
    return bytes((len(sid),)) + sid + _LEN.pack(n)


def encode_bundle(frames: Iterable[tuple[str, bytes]]) -> bytes:
    """One bundle of ``(stream_id, data message)`` frames."""
    parts: list[bytes] = []
    n = 0
    for sid, msg in frames:
        if not isinstance(sid, str) or not STREAM_ID_RE.match(sid):
            raise PayloadError(str(sid), "must be 1-64 characters from A-Z a-z 0-9 _ . -", field="stream_id")
        if not msg:
            raise PayloadError(sid, "a frame holds one non-empty data message", field="frame")
        parts.append(_frame_head(sid, len(msg)))
        parts.append(msg)
        n += 1
    if not 1 <= n <= _MAX_FRAMES:
        raise PayloadError("bundle", f"must hold 1..{_MAX_FRAMES} frames (got {n})", field="n_frames")
    return BUNDLE_HEADER.pack(BUNDLE_MAGIC, BUNDLE_VERSION, 0, n) + b"".join(parts)


def pack_bundles(frames: Iterable[tuple[str, bytes]], max_bytes: int) -> list[bytes]:
    """Frames packed into as few bundles of at most ``max_bytes`` as their order allows (a frame
    larger than that goes alone in its own bundle)."""
    out: list[bytes] = []
    cur: list[tuple[str, bytes]] = []
    size = BUNDLE_HEADER.size
    for sid, msg in frames:
        add = 1 + len(sid) + _LEN.size + len(msg)
        if cur and (size + add > max_bytes or len(cur) >= _MAX_FRAMES):
            out.append(encode_bundle(cur))
            cur, size = [], BUNDLE_HEADER.size
        cur.append((sid, msg))
        size += add
    if cur:
        out.append(encode_bundle(cur))
    return out


def split_bundle(raw: bytes, *, max_message_bytes: int, max_frames: int,
                 bundle: str = "?") -> list[tuple[str, bytes]]:
    """The ``(stream_id, frame)`` pairs of a bundle, after checking its whole structure;
    :class:`PayloadError` (naming ``bundle``) if anything about it is wrong."""
    size = len(raw)
    if size > max_message_bytes:
        raise PayloadError(bundle, f"bundle is {size} bytes, over the limit of {max_message_bytes}", field="size")
    if size < BUNDLE_HEADER.size:
        raise PayloadError(bundle, f"bundle is {size} bytes, shorter than its {BUNDLE_HEADER.size}-byte header",
                           field="header")
    magic, version, _, n = BUNDLE_HEADER.unpack_from(raw)
    if magic != BUNDLE_MAGIC:
        raise PayloadError(bundle, f"expected {BUNDLE_MAGIC!r}, got {bytes(magic)!r}", field="magic")
    if version != BUNDLE_VERSION:
        raise PayloadError(bundle, f"unsupported bundle version {version} (this receiver reads {BUNDLE_VERSION})",
                           field="version")
    if n < 1 or n > max_frames:
        raise PayloadError(bundle, f"{n} frames, expected 1..{max_frames}", field="n_frames")
    spans: list[tuple[str, int, int]] = []
    pos = BUNDLE_HEADER.size
    for k in range(n):
        if pos >= size:
            raise PayloadError(bundle, f"frame {k} of {n} starts past the end ({size} bytes)", field="frame")
        id_len = raw[pos]
        id_end = pos + 1 + id_len
        if not 1 <= id_len <= 64 or id_end + _LEN.size > size:
            raise PayloadError(bundle, f"frame {k}: stream id of {id_len} bytes does not fit", field="frame")
        try:
            sid = bytes(raw[pos + 1:id_end]).decode("ascii")
        except UnicodeDecodeError:
            sid = ""
        if not STREAM_ID_RE.match(sid):
            raise PayloadError(bundle, f"frame {k}: stream id is not 1-64 characters from A-Z a-z 0-9 _ . -",
                               field="stream_id")
        (flen,) = _LEN.unpack_from(raw, id_end)
        start = id_end + _LEN.size
        if flen < 1 or start + flen > size:
            raise PayloadError(bundle, f"frame {k} ({sid}): {flen} bytes announced, {size - start} left",
                               field="frame")
        spans.append((sid, start, start + flen))
        pos = start + flen
    if pos != size:
        raise PayloadError(bundle, f"{size - pos} bytes after the last of {n} frames", field="body")
    return [(sid, bytes(raw[a:b])) for sid, a, b in spans]
