"""Per-stream processing: warm-up, windows, chunk-size invariance, gaps, QRS heart rate, channel maps."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from pedstream.config import load_config
from pedstream.data.channels import CANONICAL_CHANNELS
from pedstream.dsp.filters import filter_signal
from pedstream.dsp.windowing import normalize_window
from pedstream.errors import StreamError
from pedstream.monitor.pipeline import StreamPipeline
from pedstream.events import Chunk, StreamInfo
from tests.support.helpers import make_signal

FS = 977.0
WIN, HOP = 2442, 1221
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "real"


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def pipeline(cfg, *, fs=FS, names=CANONICAL_CHANNELS, sid="s") -> StreamPipeline:
    info = StreamInfo(stream_id=sid, source="replay", fs=fs, channel_names=list(names), units=["mV"] * len(names))
    return StreamPipeline(info=info, cfg=cfg, fs=FS, window=WIN, hop=HOP)


def feed_all(pipe: StreamPipeline, x: np.ndarray, chunk: int, *, fs: float | None = None, skip: dict[int, int] | None = None,
             ts_jump: dict[int, float] | None = None):
    fs = fs or pipe.info.fs
    windows, transitions = [], []
    i, offset = 0, 0.0
    while i < len(x):
        n = min(chunk, len(x) - i)
        for at, k in (skip or {}).items():
            if i < at < i + n:
                n = at - i
        for at, dt in (ts_jump or {}).items():
            if i < at < i + n:
                n = at - i
            if i == at:
                offset += dt
        ts = 10.0 + offset + (i + np.arange(n)) / fs
        res = pipe.feed(Chunk(stream_id=pipe.stream_id, data=x[i:i + n], timestamps=ts, first_index=i), time.monotonic())
        windows += [(w.start, w.normalized()) for w in res.windows]
        transitions += [(k, w) for k, w in res.transitions]
        i += n
        if skip and i in skip:
            i += skip.pop(i)
    return windows, transitions


def test_windows_after_warmup_match_offline_for_any_chunk_size(cfg):
    x = make_signal(fs=FS, seconds=12, seed=3)
    offline = filter_signal(x, FS, cfg.filters)  # (n, 19)
    first = -(-int(round(cfg.filters.settle_s * FS)) // HOP) * HOP
    expected = list(range(first, len(x) - WIN + 1, HOP))
    for chunk in (7, 49, 977, 5000):
        pipe = pipeline(cfg)
        windows, transitions = feed_all(pipe, x, chunk)
        assert [s for s, _ in windows] == expected, chunk
        assert transitions == []
        for s, w in windows:
            ref = normalize_window(offline[s:s + WIN].T, np.ones(19, bool))
            np.testing.assert_allclose(w, ref, atol=2e-4)
    assert pipe.quality == "ok"


def test_warmup_quality_before_first_window(cfg):
    pipe = pipeline(cfg)
    x = make_signal(fs=FS, seconds=2, seed=1)
    windows, _ = feed_all(pipe, x, 100)
    assert windows == [] and pipe.quality == "warm-up"


def test_index_gap_gives_signal_loss_no_window_across_then_ok(cfg):
    cfg = load_config(overrides=["stream.resume_gap_s=0"])  # the full restart (no short-gap bridge)
    x = make_signal(fs=FS, seconds=20, seed=2)
    pipe = pipeline(cfg)
    gap_at, gap_len = 6000, 800
    windows, transitions = feed_all(pipe, x, 49, skip={gap_at: gap_len})
    kinds = [k for k, _ in transitions]
    assert kinds == ["signal_loss", "signal_ok"]
    assert "6000" in transitions[0][1]
    # ring indices: samples before the gap are [0, 6000), after it [6000, ...) (the skipped ones never arrive)
    starts = [s for s, _ in windows]
    assert all(s + WIN <= gap_at or s >= gap_at for s in starts)  # no window spans the gap
    after = [s for s in starts if s >= gap_at]
    assert after and after[0] >= gap_at + int(round(cfg.filters.settle_s * FS))  # filter re-settled
    assert pipe.gaps == 1 and pipe.quality == "ok"


def test_short_gap_is_bridged_without_a_filter_restart(cfg):
    """800 lost samples (0.8 s <= resume_gap_s): bridged by a line through the DSP, back one window
    after the gap (no warm-up), no window holds a bridged sample, and later windows equal the offline
    filtering of the bridged signal (the filter state was carried across)."""
    x = make_signal(fs=FS, seconds=20, seed=2)
    pipe = pipeline(cfg)
    gap_at, gap_len = 6000, 800
    windows, transitions = feed_all(pipe, x, 49, skip={gap_at: gap_len})
    assert [k for k, _ in transitions] == ["signal_loss", "signal_ok"] and pipe.bridged == 1
    starts = [s for s, _ in windows]
    bridge = range(gap_at, gap_at + gap_len)
    assert all(s + WIN <= bridge.start or s >= bridge.stop for s in starts)
    after = [s for s in starts if s >= bridge.stop]
    assert after[0] < bridge.stop + HOP + 10  # one hop grid step, not settle_s + a window
    k = np.arange(1, gap_len + 1, dtype=np.float32)[:, None] / np.float32(gap_len + 1)
    bridged = x.copy()
    bridged[bridge] = x[gap_at - 1] + (x[gap_at + gap_len] - x[gap_at - 1]) * k
    offline = filter_signal(bridged, FS, cfg.filters)
    for s, w in windows:
        np.testing.assert_allclose(w, normalize_window(offline[s:s + WIN].T, np.ones(19, bool)), atol=2e-4)


def test_long_gap_still_restarts_the_filters(cfg):
    x = make_signal(fs=FS, seconds=20, seed=2)
    pipe = pipeline(cfg)
    gap_at, gap_len = 6000, int(3 * FS)  # 3 s > resume_gap_s (2 s)
    windows, transitions = feed_all(pipe, x, 49, skip={gap_at: gap_len})
    assert [k for k, _ in transitions] == ["signal_loss", "signal_ok"] and pipe.bridged == 0
    after = [s for s, _ in windows if s >= gap_at]
    assert after[0] >= gap_at + int(round(cfg.filters.settle_s * FS))


def test_timestamp_gap_gives_signal_loss(cfg):
    x = make_signal(fs=FS, seconds=12, seed=4)
    pipe = pipeline(cfg)
    _, transitions = feed_all(pipe, x, 100, ts_jump={5000: 0.5})
    assert [k for k, _ in transitions] == ["signal_loss", "signal_ok"] and "timestamps jumped" in transitions[0][1]
    pipe2 = pipeline(cfg)
    _, transitions = feed_all(pipe2, x, 100, ts_jump={5000: 0.05})  # within the 0.1 s tolerance
    assert transitions == []


def test_stream_lost_then_back(cfg):
    x = make_signal(fs=FS, seconds=14, seed=5)
    pipe = pipeline(cfg)
    feed_all(pipe, x[:7000], 100)
    res = pipe.mark_lost("outlet vanished")
    assert [k for k, _ in res.transitions] == ["signal_loss"] and pipe.quality == "loss"
    assert pipe.mark_lost("again").transitions == []  # already in loss


def test_heart_rate_from_qrs_lead(cfg):
    for hr in (90.0, 150.0):
        pipe = pipeline(cfg)
        feed_all(pipe, make_signal(fs=FS, seconds=12, hr=hr, seed=6), 97)
        assert pipe.heart_rate == pytest.approx(hr, rel=0.03)
        assert CANONICAL_CHANNELS[pipe.qrs_channel] == "II"


def test_qrs_falls_back_to_first_present_ecg_lead(cfg):
    names = ["V1", "aVF", "CS12"]
    pipe = pipeline(cfg, names=names)
    assert CANONICAL_CHANNELS[pipe.qrs_channel] == "aVF"  # II absent: first present ECG lead in canonical order
    pipe2 = pipeline(cfg, names=["CS12", "CS34"])
    assert pipe2.qrs_channel is None and pipe2.heart_rate is None


def test_unknown_channel_names_raise_clear_stream_error(cfg):
    with pytest.raises(StreamError, match=r"stream bad.*none of the channel names \['foo', 'bar'\]"):
        pipeline(cfg, names=["foo", "bar"], sid="bad")


def test_bad_chunk_shape_is_a_stream_error(cfg):
    pipe = pipeline(cfg)
    with pytest.raises(StreamError, match="chunk shaped"):
        pipe.feed(Chunk(stream_id="s", data=np.zeros((10, 3), np.float32), timestamps=np.arange(10.0), first_index=0), 0.0)


def test_real_iaf1_afw_shape_1000hz_partial_channels(cfg):
    """The real iafdb record: 1000 Hz, II V1 aVF CS12..CS90 -> resampled to 977 Hz, masked, windowed."""
    wfdb = pytest.importorskip("wfdb")
    rec = wfdb.rdrecord(str(FIXTURES / "iaf1_afw"))
    x = rec.p_signal.astype(np.float32)  # (20000, 8) mV
    pipe = pipeline(cfg, fs=float(rec.fs), names=rec.sig_name, sid="iaf1_afw")
    windows, transitions = feed_all(pipe, x, 250)
    assert transitions == [] and len(windows) >= 10
    assert pipe.cmap.n_present == 8 and pipe.has_ecg and pipe.has_iegm
    present = [CANONICAL_CHANNELS[i] for i in np.flatnonzero(pipe.present)]
    assert present == ["II", "aVF", "V1", "CS12", "CS34", "CS56", "CS78", "CS90"]
    s, w = windows[-1]
    assert w.shape == (19, WIN) and np.isfinite(w).all()
    assert np.all(w[~pipe.present] == 0) and np.all(w[pipe.present].std(axis=1) > 0.5)
    # 20 s at 1000 Hz -> ~19540 samples at 977 Hz
    assert abs(pipe.ring.total_written - 20000 * 977 / 1000) < 2
    assert pipe.heart_rate is None or 30 < pipe.heart_rate < 250


def test_strip_onset_mark_is_where_the_evidence_began(cfg):
    """An alarm raised at the end of its second window: the strip's onset mark is the start of the
    episode's first window (``evidence``), the dashed alarm mark the raising window's end."""
    from pedstream.events import StripRequest

    pipe = pipeline(cfg)
    first = 4 * HOP  # the episode's first window starts here; the second one raised the alarm
    raised = first + HOP + WIN
    pipe.request_strip(StripRequest(onset=raised, label="vt", priority="high", t_iso="x.png", evidence=first))
    strips = []
    x = np.zeros((int(20 * FS), 19), np.float32)
    for i in range(0, len(x), 977):
        res = pipe.feed(Chunk(stream_id="s", data=x[i:i + 977], timestamps=10.0 + (i + np.arange(977)) / FS,
                              first_index=i), time.monotonic())
        strips += res.strips
    [strip] = strips
    start = raised + int(round(cfg.alarms.strip_post_s * FS)) - strip.data.shape[0]
    assert strip.onset_s == pytest.approx((first - start) / FS)
    assert strip.alarm_s == pytest.approx((raised - start) / FS)
    assert strip.alarm_s - strip.onset_s == pytest.approx((HOP + WIN) / FS)
