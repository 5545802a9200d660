"""pedstream.transports.mqtt.wire: byte layout, round trips, every malformed field, sequence tracking."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from pedstream.errors import PayloadError
from pedstream.transports.mqtt.wire import (
    HEADER,
    SequenceTracker,
    decode_binary,
    decode_data,
    decode_json,
    decode_meta,
    encode_binary,
    encode_json,
    encode_meta,
    payload_to_mv,
)
from pedstream.transports.units import unit_to_mv

RNG = np.random.default_rng(0)


def test_header_layout_is_byte_exact():
    values = np.array([[1, -2], [3, 32767]], dtype=np.int16)
    raw = encode_binary(values, seq=7, first_sample=1000, t=12.5)
    assert HEADER.size == 32
    assert raw[:4] == b"PSD1"
    assert raw[4] == 1 and raw[5] == 1  # version, dtype int16
    assert struct.unpack_from("<H", raw, 6)[0] == 2  # n_channels
    assert struct.unpack_from("<I", raw, 8)[0] == 7  # seq
    assert struct.unpack_from("<I", raw, 12)[0] == 2  # n_samples
    assert struct.unpack_from("<Q", raw, 16)[0] == 1000  # first_sample
    assert struct.unpack_from("<d", raw, 24)[0] == 12.5  # t
    assert raw[32:] == bytes.fromhex("0100" "feff" "0300" "ff7f")  # sample-major LE int16
    assert len(raw) == 32 + 2 * 2 * 2


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_binary_round_trip(dtype):
    n, n_ch = 49, 19
    if dtype == "int16":
        values = RNG.integers(-32768, 32768, size=(n, n_ch)).astype(np.int16)
    else:
        values = RNG.normal(size=(n, n_ch)).astype(np.float32)
    raw = encode_binary(values, seq=2**32 - 1, first_sample=2**40, t=-3.25)
    p = decode_binary(raw, n_channels=n_ch, dtype=dtype)
    assert (p.seq, p.first_sample, p.t, p.encoding) == (2**32 - 1, 2**40, -3.25, "binary")
    assert p.values.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(p.values, values)


def test_json_round_trip_float32_exact():
    values = RNG.normal(size=(5, 3)).astype(np.float32)
    raw = encode_json(values, seq=3, first_sample=15, t=1.0)
    assert json.loads(raw)["data"][0][0] == float(values[0, 0])
    p = decode_json(raw, n_channels=3)
    assert (p.seq, p.first_sample, p.t, p.encoding) == (3, 15, 1.0, "json")
    np.testing.assert_array_equal(p.values.astype(np.float32), values)


def test_decode_data_detects_encoding_and_converts_to_mv():
    meta = decode_meta(encode_meta(fs=500, channels=["I", "II"], units=["uV", "mV"], dtype="int16", scale=0.5))
    values = np.array([[1000, 2], [-1000, -4]], dtype=np.int16)
    p = decode_data(encode_binary(values, seq=0, first_sample=0, t=0.0), meta=meta)
    mv = payload_to_mv(p, meta)
    assert mv.dtype == np.float32 and mv.shape == (2, 2)
    np.testing.assert_allclose(mv, [[0.5, 1.0], [-0.5, -2.0]])  # value * scale * unit factor
    pj = decode_data(b"  " + encode_json([[1000.0, 2.0]], seq=1, first_sample=2, t=0.004), meta=meta)
    np.testing.assert_allclose(payload_to_mv(pj, meta), [[1.0, 2.0]])  # JSON: no scale


def test_meta_round_trip_and_defaults():
    m = decode_meta(encode_meta(fs=977, channels=["I", "ABL12"], units="microvolts", dtype="float32",
                                age_years=4.5, t0=10.0, patient_ward="PICU"))
    assert m.fs == 977 and m.channels == ["I", "ABL12"] and m.units_assumed is False
    np.testing.assert_allclose(m.mv_factors, [1e-3, 1e-3])
    assert m.age_years == 4.5 and m.t0 == 10.0 and m.extra == {"patient_ward": "PICU"}
    bare = decode_meta(b'{"fs": 250, "channels": ["II"]}')
    assert bare.units_assumed is True and bare.dtype == "float32" and bare.scale == 1.0
    np.testing.assert_allclose(bare.mv_factors, [1.0])


@pytest.mark.parametrize("unit,factor,assumed", [
    ("mV", 1.0, False), ("millivolts", 1.0, False), ("uV", 1e-3, False), ("\u00b5V", 1e-3, False),
    ("\u03bcV", 1e-3, False), ("microvolts", 1e-3, False), ("V", 1e3, False), ("volts", 1e3, False),
    ("nV", 1e-6, False), ("-6", 1e-3, False), ("-3", 1.0, False), ("1e-6", 1e-3, False), (-6, 1e-3, False),
    ("0.001", 1.0, False), (None, 1.0, True), ("", 1.0, True),
])
def test_units(unit, factor, assumed):
    f, a = unit_to_mv(unit)
    assert f == pytest.approx(factor) and a is assumed


@pytest.mark.parametrize("unit", ["celsius", "mmHg", "-40", "uV/cm", "-1e-6", True])
def test_units_rejected(unit):
    assert unit_to_mv(unit) is None


def _err(fn, *args, **kw) -> PayloadError:
    with pytest.raises(PayloadError) as info:
        fn(*args, **kw)
    return info.value


def _binary(values=None, **over):
    values = np.zeros((2, 3), dtype=np.int16) if values is None else values
    raw = bytearray(encode_binary(values, seq=1, first_sample=0, t=0.0))
    fields = dict(zip(["magic", "version", "dtype", "n_channels", "seq", "n_samples", "first", "t"],
                      HEADER.unpack_from(raw)))
    fields.update(over)
    raw[: HEADER.size] = HEADER.pack(*fields.values())
    return bytes(raw)


@pytest.mark.parametrize("raw,kw,field", [
    (b"PSD1\x01", {}, "header"),
    (_binary(magic=b"XXXX"), {}, "magic"),
    (_binary(version=9), {}, "version"),
    (_binary(dtype=7), {}, "dtype"),
    (_binary(), {"dtype": "float32"}, "dtype"),
    (_binary(), {"n_channels": 4}, "n_channels"),
    (_binary(n_channels=0), {}, "n_channels"),
    (_binary(n_samples=0), {}, "n_samples"),
    (_binary(t=float("nan")), {}, "t"),
    (_binary(n_samples=3), {}, "body"),
    (_binary()[:-1], {}, "body"),
    (encode_binary(np.array([[np.inf]], dtype=np.float32), seq=0, first_sample=0, t=0), {}, "body"),
])
def test_binary_errors_name_the_field(raw, kw, field):
    err = _err(decode_binary, raw, stream="bed7", **kw)
    assert err.field == field
    assert str(err).startswith(f"stream bed7: {field}: ")


GOOD_JSON = {"seq": 1, "first_sample": 10, "t": 0.5, "data": [[1.0, 2.0], [3.0, 4.0]]}


@pytest.mark.parametrize("change,field", [
    ({"seq": None}, "seq"), ({"seq": -1}, "seq"), ({"seq": 2**32}, "seq"), ({"seq": 1.5}, "seq"),
    ({"seq": True}, "seq"), ({"first_sample": -5}, "first_sample"), ({"first_sample": "0"}, "first_sample"),
    ({"t": "now"}, "t"), ({"data": []}, "data"), ({"data": [1, 2]}, "data"), ({"data": [[1.0], [1.0, 2.0]]}, "data"),
    ({"data": [[1.0, 2.0, 3.0]]}, "data"), ({"data": [[1.0, "x"]]}, "data"), ({"data": [[1.0, None]]}, "data"),
])
def test_json_errors_name_the_field(change, field):
    obj = dict(GOOD_JSON)
    for k, v in change.items():
        if v is None:
            del obj[k]
        else:
            obj[k] = v
    err = _err(decode_json, json.dumps(obj).encode(), n_channels=2, stream="s1")
    assert err.field == field, str(err)


@pytest.mark.parametrize("raw,field", [(b"{not json", "json"), (b"[1,2]", "json"), (b"\xff\xfe", "json")])
def test_json_syntax_errors(raw, field):
    assert _err(decode_json, raw).field == field


def test_missing_t_and_data():
    for key in ("t", "data"):
        obj = {k: v for k, v in GOOD_JSON.items() if k != key}
        assert _err(decode_json, json.dumps(obj)).field == key


def test_unknown_encoding():
    assert _err(decode_data, b"\x00\x01garbage").field == "encoding"


GOOD_META = {"fs": 500.0, "channels": ["I", "II"], "units": "mV", "dtype": "int16", "scale": 0.001}


@pytest.mark.parametrize("change,field", [
    ({"fs": None}, "fs"), ({"fs": 0}, "fs"), ({"fs": "fast"}, "fs"),
    ({"channels": None}, "channels"), ({"channels": []}, "channels"), ({"channels": ["I", ""]}, "channels"),
    ({"channels": ["I", "I"]}, "channels"), ({"channels": "I,II"}, "channels"),
    ({"units": ["mV"]}, "units"), ({"units": "mmHg"}, "units"), ({"units": {"I": "mV"}}, "units"),
    ({"dtype": "int32"}, "dtype"), ({"scale": 0}, "scale"), ({"scale": "x"}, "scale"),
    ({"encoding": "xml"}, "encoding"), ({"age_years": -1}, "age_years"), ({"t0": "noon"}, "t0"),
])
def test_meta_errors_name_the_field(change, field):
    obj = dict(GOOD_META)
    for k, v in change.items():
        if v is None:
            del obj[k]
        else:
            obj[k] = v
    err = _err(decode_meta, json.dumps(obj).encode(), stream="bed3")
    assert err.field == field, str(err)
    assert "bed3" in str(err)


def test_meta_not_an_object():
    assert _err(decode_meta, b"[]").field == "meta"
    assert _err(decode_meta, b"{").field == "meta"


def test_encode_rejects_bad_input():
    assert _err(encode_binary, np.zeros(3), seq=0, first_sample=0, t=0).field == "data"
    assert _err(encode_binary, np.full((1, 1), 1e6), seq=0, first_sample=0, t=0, dtype="int16").field == "data"
    assert _err(encode_binary, np.zeros((1, 1), np.float32), seq=-1, first_sample=0, t=0).field == "seq"
    assert _err(encode_json, np.zeros((0, 2)), seq=0, first_sample=0, t=0).field == "data"


# ------------------------------------------------------------------------------------ sequences
def _feed(tracker, seqs):
    out = []
    for s in seqs:
        out += tracker.push(s, s)
    return out


def test_sequence_in_order():
    t = SequenceTracker(reorder_window=4)
    assert _feed(t, range(10)) == list(range(10))
    assert (t.stats.lost, t.stats.duplicates, t.stats.reordered) == (0, 0, 0)


def test_sequence_reorder_duplicate_loss_late():
    t = SequenceTracker(reorder_window=2)
    out = _feed(t, [0, 1, 3, 2, 2, 4, 7, 8, 9, 5, 6, 10])
    assert out == [0, 1, 2, 3, 4, 7, 8, 9, 10]
    s = t.stats
    assert (s.reordered, s.duplicates, s.lost, s.late, s.delivered) == (1, 1, 2, 2, 9)


def test_sequence_without_window_drops_late():
    t = SequenceTracker(reorder_window=0)
    assert _feed(t, [5, 7, 6, 8]) == [5, 7, 8]
    assert (t.stats.lost, t.stats.late) == (1, 1)


def test_sequence_wraps_at_u32():
    t = SequenceTracker(reorder_window=2)
    seqs = [2**32 - 2, 2**32 - 1, 1, 0, 2]
    assert _feed(t, seqs) == [2**32 - 2, 2**32 - 1, 0, 1, 2]
    assert t.stats.lost == 0 and t.stats.reordered == 1


def test_sequence_flush_stale_and_reset():
    now = [0.0]
    t = SequenceTracker(reorder_window=8, clock=lambda: now[0])
    assert _feed(t, [0, 2, 3]) == [0]
    assert t.flush_stale(0.1) == []
    now[0] = 0.2
    assert t.flush_stale(0.1) == [2, 3] and t.stats.lost == 1
    assert _feed(t, [100_000, 100_001]) == [100_000, 100_001]  # publisher restarted far away
    assert t.stats.resets == 1


def test_documented_payload_spec_is_the_codec_docstring():
    """The "MQTT payload specification" block of docs/user-guide/sources.md is this module's docstring (less
    its title line)."""
    import pedstream.transports.mqtt.wire as pl

    page = (Path(__file__).resolve().parents[2] / "docs" / "user-guide" / "sources.md").read_text(encoding="utf-8")
    start = page.index("```text\n", page.index("## MQTT payload specification")) + len("```text\n")
    block = page[start:page.index("```\n", start)]
    assert block.strip("\n") == pl.__doc__.split("\n", 1)[1].strip("\n")
