"""Fuzzing the MQTT payload decoder, meta parser and sequence tracker with hypothesis (issue 10, part 4).

Bounded: a fixed number of examples each, a per-example deadline, no example database. Properties: no
exception other than :class:`PayloadError` escapes a decoder, every PayloadError renders as one short
line, the tracker delivers each pushed item at most once, holds at most ``reorder_window`` items and
never hangs."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pedstream.errors import PayloadError  # noqa: E402
from pedstream.transports.mqtt.wire import (  # noqa: E402
    HEADER,
    MAGIC,
    PayloadLimits,
    SequenceTracker,
    decode_data,
    decode_meta,
    encode_binary,
    encode_meta,
)

pytestmark = pytest.mark.timeout(60)
FUZZ = settings(max_examples=200, deadline=500, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
LIMITS = PayloadLimits(max_message_bytes=65_536)
META = decode_meta(encode_meta(fs=500.0, channels=["I", "II", "V1"], units="uV", dtype="int16", scale=0.5))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=20)
meta_keys = st.sampled_from(["fs", "channels", "units", "dtype", "scale", "encoding", "age_years", "t0",
                             "session", "version", "x"])


def _decodes_or_payload_error(fn, *args, **kw) -> None:
    try:
        fn(*args, **kw)
    except PayloadError as exc:
        text = str(exc)
        assert "\n" not in text and len(text) < 400, text


@FUZZ
@given(st.binary(max_size=2048))
def test_decode_data_random_bytes(raw):
    _decodes_or_payload_error(decode_data, raw, meta=META, stream="f", limits=LIMITS)
    _decodes_or_payload_error(decode_data, MAGIC + raw, meta=None, stream="f", limits=LIMITS)
    _decodes_or_payload_error(decode_data, b"{" + raw, meta=META, stream="f", limits=LIMITS)


@FUZZ
@given(st.integers(0, 255), st.integers(0, 3), st.integers(0, 65535), st.integers(0, 2**32 - 1),
       st.integers(0, 2**32 - 1), st.floats(allow_nan=True, allow_infinity=True), st.binary(max_size=512))
def test_decode_binary_header_fields(version, code, n_ch, seq, n, t, body):
    raw = HEADER.pack(MAGIC, version, code, n_ch, seq, n, 0, t) + body
    _decodes_or_payload_error(decode_data, raw, meta=None, stream="f", limits=LIMITS)


@FUZZ
@given(st.dictionaries(st.sampled_from(["seq", "first_sample", "t", "data", "x"]), json_values, max_size=5))
def test_decode_json_data_objects(obj):
    raw = json.dumps(obj, allow_nan=True).encode()
    _decodes_or_payload_error(decode_data, raw, meta=META, stream="f", limits=LIMITS)


@FUZZ
@given(st.dictionaries(meta_keys, json_values, max_size=9))
def test_decode_meta_objects(obj):
    raw = json.dumps(obj, allow_nan=True).encode()
    _decodes_or_payload_error(decode_meta, raw, stream="f", limits=LIMITS)


@FUZZ
@given(st.binary(max_size=1024) | st.text(max_size=512).map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_decode_meta_random_text(raw):
    _decodes_or_payload_error(decode_meta, raw, stream="f", limits=LIMITS)
    _decodes_or_payload_error(decode_meta, b"[" * len(raw) + raw, stream="f", limits=LIMITS)


@FUZZ
@given(st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 40), max_size=300), st.integers(0, 8))
def test_sequence_tracker_delivers_each_item_at_most_once(seqs, window):
    tr: SequenceTracker[int] = SequenceTracker(reorder_window=window, clock=lambda: 0.0)
    out: list[int] = []
    for i, s in enumerate(seqs):
        out += tr.push(s, i)
        assert tr.held <= window
    out += tr.flush_stale(0.0)
    assert len(out) == len(set(out))
    st_ = tr.stats
    assert st_.received == len(seqs) and st_.delivered == len(out)
    assert st_.delivered + st_.duplicates + st_.late + tr.held == st_.received


def test_memory_is_bounded_under_junk():
    """A stream of junk (maximal messages, deep nesting, huge headers) costs bounded memory."""
    rng = np.random.default_rng(0)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for k in range(200):
            junk = [rng.bytes(65_536), b"[" * 65_536, b'{"data": ' + b"[1," * 20_000 + b"1]}",
                    encode_binary(np.zeros((10, 3), np.int16), seq=k, first_sample=0, t=0)[:40]]
            for raw in junk:
                _decodes_or_payload_error(decode_data, raw, meta=META, stream="f", limits=LIMITS)
                _decodes_or_payload_error(decode_meta, raw, stream="f", limits=LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 16 * 2**20
