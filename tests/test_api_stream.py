"""The Python API over long signals and with overrides: ``classify`` and ``Monitor.feed`` give one
call per hop over the whole signal (not just the last ``[stream] ring_seconds``), in chunks through
the monitor's pipeline; ``overrides=[...]`` and ``pedstream.load_config`` apply settings as ``--set``.

Signal: the bundled 60 s MIT-BIH 203 excerpt (tests/fixtures/real, 360 Hz, MLII + V1), tiled to 300 s."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest

import pedstream
from pedstream.errors import ConfigError, ModelMismatchError

REAL = Path(__file__).resolve().parent / "fixtures" / "real"


@pytest.fixture(scope="module")
def model():
    return pedstream.load_model()


@pytest.fixture(scope="module")
def long_signal():
    rec = pedstream.read_record(REAL / "203")
    x = rec.signal[:, rec.present]
    return np.tile(x, (5, 1)), rec.fs, rec.present_channels  # 300 s


def _expected(model, seconds: float) -> tuple[float, int]:
    """First window start (after the filter warm-up, on the hop grid) and the number of windows."""
    first = math.ceil(model.config.filters.settle_s / model.hop_s - 1e-9) * model.hop_s
    return first, int((seconds - first - model.window_s) // model.hop_s) + 1


def test_classify_covers_the_whole_signal(model, long_signal):
    x, fs, names = long_signal
    seconds = x.shape[0] / fs
    first, n = _expected(model, seconds)
    calls = pedstream.classify(x, fs=fs, channels=names, model=model)
    assert abs(len(calls) - n) <= 1, (len(calls), n)  # main gave 14 calls, all in the last 20 s
    assert abs(calls[0].start_s - first) < 0.01
    assert calls[-1].start_s > seconds - model.window_s - 2 * model.hop_s
    steps = np.diff([c.start_s for c in calls])
    assert np.allclose(steps, model.hop_s, atol=2e-3)
    # chunking does not change a call: the first 30 s alone give the same first calls
    head = pedstream.classify(x[:int(30 * fs)], fs=fs, channels=names, model=model)
    for a, b in zip(head, calls):
        assert a.start_s == b.start_s and a.label == b.label and abs(a.p - b.p) < 1e-5


def test_classify_with_a_small_ring_override(long_signal):
    x, fs, names = long_signal
    x = x[:int(60 * fs)]
    small = pedstream.classify(x, fs=fs, channels=names, overrides=["stream.ring_seconds=5"])
    m = pedstream.load_model()
    assert len(small) == _expected(m, 60.0)[1]


def test_monitor_feed_is_lossless_and_follows_t0(model, long_signal):
    x, fs, names = long_signal
    first, n = _expected(model, x.shape[0] / fs)
    calls: list = []

    class Calls:
        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            return None

        def emit(self, ev):
            if ev.kind == "call":
                calls.append(ev)

    async def run():
        async with pedstream.Monitor(model=model, alarms_dir=None, sinks=[Calls()]) as mon:
            await mon.feed("bed", x, fs=fs, channels=names, t0=100.0)
            await mon.drain(timeout=60)
            return mon.summary()

    summary = asyncio.run(asyncio.wait_for(run(), 90))
    assert summary["dropped_windows"] == 0 and summary["dropped_samples"] == 0
    assert abs(len(calls) - n) <= 1
    assert summary["signal_loss"] == 0  # the pushes after the first follow t0: no timestamp gap
    assert abs(calls[0].t_signal - (100.0 + first)) < 0.05  # t_signal on the caller's clock
    assert calls[-1].t_signal > 100.0 + x.shape[0] / fs - model.window_s - 2 * model.hop_s


def test_overrides_and_load_config_are_public(model):
    assert "load_config" in pedstream.__all__
    cfg = pedstream.load_config(overrides=["stream.queue_windows=64"])
    assert cfg.stream.queue_windows == 64
    with pytest.raises(ModelMismatchError, match="filters.mains_hz"):
        pedstream.load_model(overrides=["filters.mains_hz=60"])
    with pytest.raises(ModelMismatchError, match="filters.mains_hz"):
        pedstream.load_model(config=cfg, overrides=["filters.mains_hz=60"])  # a Config and overrides
    with pytest.raises(ConfigError, match="no_such_key"):
        pedstream.load_model(config=cfg, overrides=["stream.no_such_key=1"])
    m = pedstream.load_model(config=cfg, overrides=["alarms.strips=false"])
    assert m.config.stream.queue_windows == 64 and m.config.alarms.strips is False
    rec = pedstream.read_record(REAL / "203", seconds=5, overrides=["signal.aliases.MLII=\"II\""])
    assert rec.signal.shape[0] == 1800


def test_monitor_push_of_a_recording_at_once_warns(model, long_signal):
    x, fs, names = long_signal

    async def run():
        async with pedstream.Monitor(model=model, alarms_dir=None) as mon:
            with pytest.warns(UserWarning, match="mon.feed"):
                mon.push("bed", x, fs=fs, channels=names)  # 300 s in one push: a live monitor drops the backlog
            mon.push("bed", x[:int(fs)], fs=fs, channels=names)  # a second of live signal: no warning

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second push would raise here if it warned
        asyncio.run(asyncio.wait_for(run(), 60))


def test_classify_bad_input_is_one_clear_error(model):
    from pedstream.errors import StreamError

    with pytest.raises(StreamError, match="expected numbers"):
        pedstream.classify(np.array([["a", "b"]] * 10), fs=360, channels=["II", "V1"], model=model)
    with pytest.raises(StreamError, match="NaN"):
        pedstream.classify(np.full((4000, 1), np.nan), fs=360, channels=["II"], model=model)


def test_monitor_drain_after_a_refused_chunk_returns(model, long_signal):
    x, fs, names = long_signal
    errors: list = []

    async def run():
        async with pedstream.Monitor(model=model, alarms_dir=None) as mon:
            await mon.feed("bed", x[:int(10 * fs)], fs=fs, channels=names)
            bad = x[:int(fs)].copy()
            bad[5, 0] = np.nan
            mon.push("bed", bad, fs=fs, channels=names)  # refused by the pipeline: an error event
            await mon.drain(timeout=20)  # returns: a refused chunk is not waited for
            errors.extend(e for e in mon._sub.drain() if e.kind == "error")

    asyncio.run(asyncio.wait_for(run(), 40))
    assert errors and "NaN" in errors[0].extra["message"]
