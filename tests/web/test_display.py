"""Display rings, tile channels and waveform frames (pedstream.web.display)."""

from __future__ import annotations

import numpy as np

from pedstream.web.display import FRAME_HEADER, UNITS_PER_MV, DisplayRing, encode_frame, tile_channels


def test_tile_shows_lead_ii_and_one_iegm_channel_else_a_second_lead():
    assert tile_channels(["I", "II", "III", "CS12", "ABL12"]) == [1, 4]  # II and ABL12 (IEGM order ABL12, CS12...)
    assert tile_channels(["MLII", "V1"], {"MLII": "II"}) == [0, 1]  # MIT-BIH: MLII + V1
    assert tile_channels(["V1", "CS34"]) == [0, 1]
    assert tile_channels(["foo"]) == [0]


def test_ring_decimates_by_block_means_chunk_size_invariant():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(977 * 3, 2)).astype(np.float32)
    a = DisplayRing(stream_id="a", fs=977.0, channel_names=["II", "CS12"], display_hz=250, ring_s=10)
    b = DisplayRing(stream_id="b", fs=977.0, channel_names=["II", "CS12"], display_hz=250, ring_s=10)
    assert a.k == 4 and abs(a.fs - 244.25) < 1e-9
    a.push(x, 1.0)
    for i in range(0, len(x), 37):
        b.push(x[i:i + 37], 1.0)
    a.update(), b.update()
    got_a, got_b = a.since(None, max_s=10.0), b.since(None, max_s=10.0)
    assert got_a[0] == got_b[0] == 0 and np.allclose(got_a[1], got_b[1], atol=1e-6)
    assert np.allclose(got_a[1][0], x[:4].mean(axis=0), atol=1e-6) and len(got_a[1]) == len(x) // 4


def test_a_lagging_screen_skips_ahead_and_nothing_new_is_none():
    r = DisplayRing(stream_id="a", fs=250.0, channel_names=["II"], display_hz=250, ring_s=10)
    r.push(np.zeros((2500, 1), np.float32), 5.0)
    r.update()
    first, data, wall = r.since(0, max_s=2.0)
    assert first == 2000 and len(data) == 500 and wall == 5.0
    assert r.since(2500, max_s=2.0) is None


def test_frames_carry_int16_microvolt_steps_with_their_header():
    data = np.array([[1.0, -0.5], [0.01, 2.0]], np.float32)
    frame = encode_frame(kind=1, bed=3, first=1000, fs=244.25, wall=1234.5, data=data)
    kind, nch, bed, first, fs, wall_ms, n, _ = FRAME_HEADER.unpack_from(frame)
    assert (kind, nch, bed, first, n) == (1, 2, 3, 1000, 2) and abs(fs - 244.25) < 1e-3 and wall_ms == 1234500.0
    q = np.frombuffer(frame, "<i2", offset=FRAME_HEADER.size).reshape(n, nch)
    assert np.array_equal(q, np.rint(data * UNITS_PER_MV))
