"""pedstream.monitor.bank: a round of many streams through feed_round (one filter call per band for
all of them) is bit-for-bit StreamPipeline.feed per chunk; take_chunk merges only what the pipeline
would have seen as one continuous signal."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from pedstream.config import load_config
from pedstream.data.channels import CANONICAL_CHANNELS
from pedstream.monitor.bank import feed_round, take_chunk
from pedstream.monitor.feedtypes import Arrivals
from pedstream.monitor.pipeline import StreamPipeline
from pedstream.events import Chunk, ChunkReceived, StreamInfo, StreamLost
from tests.support.helpers import make_signal

FS = 977.0
WIN, HOP = 2442, 1221


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def _pipe(cfg, sid, fs, names):
    info = StreamInfo(stream_id=sid, source="replay", fs=fs, channel_names=list(names), units=["mV"] * len(names))
    return StreamPipeline(info=info, cfg=cfg, fs=FS, window=WIN, hop=HOP)


def _streams(cfg):
    """(id, fs, channel names, signal, sample index -> samples skipped there) of a varied ward."""
    ecg3 = ["I", "II", "V1"]
    out = []
    for k in range(7):
        fs = 500.0 if k == 5 else FS  # one resampled stream
        names = ecg3 if k == 3 else list(CANONICAL_CHANNELS)
        x = make_signal(fs=fs, seconds=14, hr=90 + 10 * k, n_ch=len(names), seed=k)
        skip = {6000: 300} if k == 2 else ({7000: 5000} if k == 4 else {})  # bridged / restarted gaps
        out.append((f"s{k}", fs, names, x, skip))
    return out


def _chunks(rng, x, fs, skip):
    """The stream's chunks in order: sizes vary (the same size for many, so streams batch)."""
    i, out = 0, []
    while i < len(x):
        n = min(int(rng.choice([49, 49, 49, 7, 130])), len(x) - i)
        for at in skip:
            if i < at < i + n:
                n = at - i
        out.append(Chunk(stream_id="", data=x[i:i + n], timestamps=10.0 + (i + np.arange(n)) / fs, first_index=i))
        i += n
        i += skip.get(i, 0)
    return out


def _summary(res):
    return ([(w.start, w.x.tobytes(), w.t_signal, w.mask.tobytes(), w.meta) for w in res.windows], list(res.transitions))


def test_feed_round_is_feed_per_chunk_bit_for_bit(cfg):
    rng = np.random.default_rng(3)
    streams = _streams(cfg)
    alone = {sid: _pipe(cfg, sid, fs, names) for sid, fs, names, _, _ in streams}
    banked = {sid: _pipe(cfg, sid, fs, names) for sid, fs, names, _, _ in streams}
    todo = {sid: deque(_chunks(rng, x, fs, skip)) for sid, fs, _, x, skip in streams}
    got: dict[str, list] = {sid: [] for sid in alone}
    want: dict[str, list] = {sid: [] for sid in alone}
    rounds = 0
    while any(todo.values()):
        items = []
        for sid, q in todo.items():
            if q and rng.random() < 0.85:  # some streams are quiet in a round
                c = q.popleft()
                c.stream_id = sid
                items.append((banked[sid], c, float(rounds)))
                want[sid].append(_summary(alone[sid].feed(c, float(rounds))))
        for pipe, res in feed_round(items):
            assert not isinstance(res, Exception), res
            got[pipe.stream_id].append(_summary(res))
        rounds += 1
        if rounds % 25 == 0:  # the heart rate (the QRS detector is fed per hop) is read as the engine does
            for sid in alone:
                assert alone[sid].heart_rate == banked[sid].heart_rate
    n_windows = 0
    for sid in alone:
        assert got[sid] == want[sid], sid
        n_windows += sum(len(w) for w, _ in got[sid])
        a, b = alone[sid], banked[sid]
        assert (a.heart_rate, a.quality, a.gaps, a.bridged, a.ring.total_written) == \
               (b.heart_rate, b.quality, b.gaps, b.bridged, b.ring.total_written)
        assert np.array_equal(a.ring.latest(len(a.ring))[0], b.ring.latest(len(b.ring))[0])
    assert n_windows >= 40
    assert banked["s2"].bridged == 1 and banked["s4"].gaps == 1 and banked["s4"].bridged == 0
    assert banked["s0"].heart_rate is not None


@pytest.mark.parametrize("batch", [True, False])
def test_feed_round_feeds_the_qrs_detectors_together_as_feed_does(cfg, monkeypatch, batch):
    """A ward served as the engine serves it (starts spread over a hop, two streams at a time close
    enough for their windows to end in one tick, 50 ms chunks merged until
    they complete a window, like the deferred DSP): each window's heart rate and beat rates, every
    detector's beats and state are those of StreamPipeline.feed, with the QRS detectors of a round
    fed together (their front ends on one block), and without (``QRS_BATCH`` off)."""
    from pedstream.dsp import qrs_bank
    from pedstream.monitor import bank

    monkeypatch.setattr(bank, "QRS_BATCH", batch)
    blocks = []
    real = qrs_bank._sub_many
    monkeypatch.setattr(qrs_bank, "_sub_many", lambda dets, x: blocks.append(x.shape) or real(dets, x))
    n_streams = 6
    x = make_signal(fs=FS, seconds=16, hr=75, n_ch=19, seed=7)
    alone = [_pipe(cfg, f"b{k}", FS, CANONICAL_CHANNELS) for k in range(n_streams)]
    banked = [_pipe(cfg, f"b{k}", FS, CANONICAL_CHANNELS) for k in range(n_streams)]
    offsets = [(k % 3) * HOP // 3 + (k // 3) * 7 for k in range(n_streams)]  # pairs whose windows end in one tick
    fed = [0] * n_streams
    for t in range(49, len(x) + HOP, 49):
        items = []
        for k in range(n_streams):
            avail = min(len(x), max(0, t - offsets[k]))
            if avail > fed[k] and (avail - fed[k] >= banked[k].samples_to_window() or avail - fed[k] >= 489):
                c = Chunk(stream_id=f"b{k}", data=x[fed[k]:avail], timestamps=(fed[k] + np.arange(avail - fed[k])) / FS,
                          first_index=fed[k])
                items.append((banked[k], c, float(t)))
                want = _summary(alone[k].feed(c, float(t)))
                fed[k] = avail
                items[-1] = (*items[-1], want)
        for (pipe, res), (_, _, _, want) in zip(feed_round([i[:3] for i in items]), items):
            assert not isinstance(res, Exception), res
            assert _summary(res) == want
    windows_with_beats = 0
    for a, b in zip(alone, banked):
        assert list(a.qrs.beats) == list(b.qrs.beats) and a.qrs.n_beats == b.qrs.n_beats > 10
        assert (a.qrs.samples_seen, a.qrs.spki, a.qrs.npki) == (b.qrs.samples_seen, b.qrs.spki, b.qrs.npki)
        assert a.heart_rate == b.heart_rate is not None
        windows_with_beats += a.windows_made
    assert windows_with_beats >= 50
    if batch:  # the detectors did run together: blocks of several streams, hop-long
        assert max(g for g, _ in blocks) == 2 and {n for _, n in blocks} >= {977, 244}
    else:
        assert not blocks


def test_feed_round_one_bad_stream_fails_alone(cfg):
    good, bad = _pipe(cfg, "good", FS, CANONICAL_CHANNELS), _pipe(cfg, "bad", FS, CANONICAL_CHANNELS)
    x = make_signal(fs=FS, seconds=1, seed=1)
    y = x.copy()
    y[10, 2] = np.nan
    out = feed_round([(good, Chunk(stream_id="good", data=x, timestamps=np.arange(977) / FS, first_index=0), 0.0),
                      (bad, Chunk(stream_id="bad", data=y, timestamps=np.arange(977) / FS, first_index=0), 0.0)])
    assert not isinstance(out[0][1], Exception) and good.ring.total_written == 977
    assert isinstance(out[1][1], Exception) and "NaN/inf" in str(out[1][1])


def _q(*chunks):
    return deque((ChunkReceived(c), float(k)) for k, c in enumerate(chunks))


def _c(first, n, *, t0=None, width=3, fill=1.0):
    t0 = first / FS if t0 is None else t0
    return Chunk(stream_id="a", data=np.full((n, width), fill, np.float32), timestamps=t0 + np.arange(n) / FS,
                 first_index=first)


def test_take_chunk_merges_contiguous_up_to_the_limit_and_cuts():
    parts = [_c(0, 49), _c(49, 49), _c(98, 49)]
    q = _q(*parts)
    ev, t, whole = take_chunk(q, 120, fs=FS, gap_tolerance_s=0.1)
    assert (ev.chunk.first_index, ev.chunk.data.shape[0], whole) == (0, 120, 2)
    assert t == Arrivals(ends=(49, 98, 120), times=(0.0, 1.0, 2.0))  # each part's arrival, the last one cut
    assert np.array_equal(ev.chunk.timestamps, np.concatenate([p.timestamps for p in parts])[:120])
    rest, t_rest = q[0]
    assert len(q) == 1 and rest.chunk.first_index == 120 and rest.chunk.data.shape[0] == 27 and t_rest == 2.0
    q = _q(_c(0, 300))  # one long chunk: cut, the rest stays first in the queue
    ev, _, whole = take_chunk(q, 120, fs=FS, gap_tolerance_s=0.1)
    assert ev.chunk.data.shape[0] == 120 and whole == 0 and q[0][0].chunk.first_index == 120


@pytest.mark.parametrize("second", [
    _c(60, 49),  # a sample-index jump: the pipeline must see the gap
    _c(49, 49, t0=49 / FS + 0.5),  # a timestamp jump
    _c(49, 49, width=4),  # another width
    _c(49, 49, fill=np.nan),  # bad data: its own error, not its neighbour's
])
def test_take_chunk_never_merges_across_what_the_pipeline_checks(second):
    q = _q(_c(0, 49), second)
    q.append((StreamLost("a", "x"), 9.0))
    ev, _, whole = take_chunk(q, 1000, fs=FS, gap_tolerance_s=0.1)
    assert ev.chunk.data.shape[0] == 49 and whole == 1 and len(q) == 2 and q[0][0].chunk is second


@pytest.mark.parametrize("fs", [FS, 500.0])  # as sent, and through the resampler
def test_merged_chunks_give_each_window_the_arrival_of_its_last_sample(cfg, fs):
    """The engine merges a stream's queued chunks (take_chunk) before its DSP runs: each window must
    still carry the arrival time of the chunk that held its last sample, as when fed one by one."""
    x = make_signal(fs=fs, seconds=12, seed=5)
    chunks = [Chunk(stream_id="m", data=x[i:i + 49], timestamps=(i + np.arange(len(x[i:i + 49]))) / fs, first_index=i)
              for i in range(0, len(x), 49)]
    one, merged = _pipe(cfg, "m", fs, CANONICAL_CHANNELS), _pipe(cfg, "m", fs, CANONICAL_CHANNELS)
    want = [(w.start, w.x.tobytes(), w.t_received) for k, c in enumerate(chunks) for w in one.feed(c, float(k)).windows]
    q = deque((ChunkReceived(c), float(k)) for k, c in enumerate(chunks))
    got = []
    while q:
        ev, t, _ = take_chunk(q, 700, fs=fs, gap_tolerance_s=0.1)
        got += [(w.start, w.x.tobytes(), w.t_received) for w in merged.feed(ev.chunk, t).windows]
    assert len(want) >= 6 and got == want


@pytest.mark.parametrize("fs", [FS, 500.0, 1000.0])
def test_samples_to_window_is_exact(cfg, fs):
    """samples_to_window() source samples complete the next window: one fewer does not."""
    x = make_signal(fs=fs, seconds=12, seed=6)
    pipe, i = _pipe(cfg, "w", fs, CANONICAL_CHANNELS), 0
    for _ in range(4):
        need = pipe.samples_to_window()
        if need > 1:
            assert not pipe.feed(Chunk(stream_id="w", data=x[i:i + need - 1], timestamps=(i + np.arange(need - 1)) / fs,
                                       first_index=i), 0.0).windows
            i += need - 1
        res = pipe.feed(Chunk(stream_id="w", data=x[i:i + 1], timestamps=np.array([i / fs]), first_index=i), 0.0)
        i += 1
        assert len(res.windows) == 1
