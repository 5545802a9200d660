"""The rhythm-context layer in the live engine, on real excerpts (tests/fixtures/real/rhythm/README.md):
the shipped rhythm model (pedstream/assets/rhythm_model.onnx) run by ONNX Runtime, replayed records,
the engine's own QRS detector. VT, VF and asystole raise high-priority alarms; CinC AF gets af_afl
calls; a noisy recording raises "check leads" and no rhythm alarm; the per-stream context is bounded
and freed when the stream ends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pedstream.config import load_config
from pedstream.model.rhythm_runtime import RhythmModel
from pedstream.monitor.engine import Engine
from pedstream.transports.replay import ReplaySource
from tests.support.tiny_model import build_tiny_model, open_session

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "rhythm"


@pytest.fixture(scope="module")
def cfg():
    return load_config(overrides=["signal.aliases.ECG=II", "stream.queue_windows=10000", "alarms.strips=false"])


@pytest.fixture(scope="module")
def session(tmp_path_factory, cfg):
    return open_session(build_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx", cfg), cfg, max_batch=16)


@pytest.fixture(scope="module")
def rhythm_model():
    return RhythmModel.load()


async def replay(cfg, session, rhythm_model, tmp_path, record: str, *, speed: float = 40.0):
    q: asyncio.Queue = asyncio.Queue()
    src = ReplaySource(events=q, records=[FIX / record], signal_cfg=cfg.signal, speed=speed, chunk_ms=100.0)
    eng = Engine(cfg=cfg, session=session, sources=[src], alarms_dir=tmp_path / "alarms", rhythm_model=rhythm_model)
    sub = eng.subscribe()
    async with eng:
        await sub.wait_for(lambda e: e.kind == "signal_loss" and e.extra.get("reason") == "end of record",
                           timeout=60)  # the end of the record (not a gap: chunks dropped on a busy machine)
        assert not eng.rhythm.streams  # the stream's context was freed when it ended
    sub.drain()
    return eng, list(sub.seen)


def t0_of(events) -> float:
    """The source-clock time of the record's first sample (from a window call: t_signal - start / rate)."""
    c = next(e for e in events if e.kind == "call")
    return c.t_signal - c.extra["window_start"] / 977.0


def alarms_on(events, source="rhythm_context"):
    """(label, priority, record seconds) of the layer's alarm onsets."""
    t0 = t0_of(events)
    return [(e.label, e.extra["priority"], e.t_signal - t0) for e in events
            if e.kind == "alarm_on" and e.extra.get("source") == source]


async def test_vt_raises_a_high_priority_alarm(cfg, session, rhythm_model, tmp_path):
    eng, ev = await replay(cfg, session, rhythm_model, tmp_path, "vfdb421_vt")
    on = alarms_on(ev)
    assert ("vt", "high") in [(lab, prio) for lab, prio, _ in on]
    first_vt = min(t for lab, _, t in on if lab == "vt")
    assert first_vt is not None and first_vt < 15.0  # VT from 0.7 s; calls start after the filters settle
    calls = [e for e in ev if e.kind == "rhythm"]
    assert calls and all(0 < e.extra["context_s"] <= cfg.rhythm_context.context_s for e in calls)
    assert eng.rhythm.batches >= 1 and eng.rhythm.calls == len(calls)


async def test_vf_onset_raises_vf_alarm_after_sinus(cfg, session, rhythm_model, tmp_path):
    _, ev = await replay(cfg, session, rhythm_model, tmp_path, "vfdb419_vfl")
    on = alarms_on(ev)
    vf = [t for lab, prio, t in on if lab == "vf" and prio == "high"]
    assert vf and vf[0] > 37.3 - 2.5  # flutter begins at 37.3 s (t_signal: the context's end)
    assert vf[0] - 37.3 < 8.0  # time to alarm
    assert not [lab for lab, _, t in on if t is not None and t < 35.0]  # no alarm in the sinus part


async def test_asystole_raises_high_priority_alarm(cfg, session, rhythm_model, tmp_path):
    _, ev = await replay(cfg, session, rhythm_model, tmp_path, "vfdb607_asys")
    asys = [t for lab, prio, t in alarms_on(ev) if lab == "asystole" and prio == "high"]
    assert asys and asys[0] >= 23.5 - 2.5


async def test_cinc_af_recording_is_called_af(cfg, session, rhythm_model, tmp_path):
    _, ev = await replay(cfg, session, rhythm_model, tmp_path, "A00009")
    calls = [e.label for e in ev if e.kind == "rhythm"]
    assert calls and calls.count("af_afl") / len(calls) >= 0.6
    assert "af_afl" in [lab for lab, _, _ in alarms_on(ev)]


async def test_noisy_recording_raises_check_leads_not_rhythm_alarms(cfg, session, rhythm_model, tmp_path):
    _, ev = await replay(cfg, session, rhythm_model, tmp_path, "A00056")
    tech = [e for e in ev if e.kind == "technical_alarm" and e.label == "check_leads"]
    assert tech and tech[0].extra["state"] == "on" and tech[0].extra["priority"] == "advisory"
    t_on = tech[0].t_signal - t0_of(ev)
    assert not [lab for lab, _, t in alarms_on(ev) if t is not None and t >= t_on]


def test_context_is_bounded(cfg, rhythm_model):
    from pedstream.monitor.rhythm_context import RhythmLayer

    layer = RhythmLayer(model=rhythm_model, cfg=cfg, on_results=lambda r: None)
    s = layer.add_stream("x", 977.0)
    s.beats.extend(float(i) for i in range(10 * cfg.rhythm_context.max_beats))
    assert len(s.beats) == cfg.rhythm_context.max_beats
    layer.remove_stream("x")
    assert "x" not in layer.streams


def test_engine_with_rhythm_layer_stays_torch_and_sklearn_free() -> None:
    import subprocess
    import sys

    code = ("import sys; from pedstream.monitor.engine import Engine; from pedstream.model.rhythm_runtime import RhythmModel; "
            "RhythmModel.load(); print('torch' in sys.modules, 'sklearn' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["False", "False"], r.stderr


async def test_short_mitdb_vt_run_raises_vt_by_the_fast_path(session, rhythm_model, tmp_path):
    """MIT-BIH 203 (first 60 s, tests/fixtures/real/203): a (VT run of a few beats annotated at 46.4 s. With the
    VT fast path on ([rhythm_context] vt_run_beats = 3) the beats raise a high-priority vt alarm within a few
    seconds of it, none before it."""
    fast = load_config(overrides=["signal.aliases.ECG=II", "stream.queue_windows=10000", "alarms.strips=false",
                                  "rhythm_context.vt_run_beats=3"])
    q: asyncio.Queue = asyncio.Queue()
    src = ReplaySource(events=q, records=[FIX.parent / "203"], signal_cfg=fast.signal, speed=40.0, chunk_ms=100.0)
    eng = Engine(cfg=fast, session=session, sources=[src], alarms_dir=tmp_path / "alarms", rhythm_model=rhythm_model)
    sub = eng.subscribe()
    async with eng:
        await sub.wait_for(lambda e: e.kind == "signal_loss", timeout=60)
    sub.drain()
    vt = [t for lab, prio, t in alarms_on(list(sub.seen)) if lab == "vt" and prio == "high"]
    assert vt and 46.4 <= vt[0] <= 46.4 + 5.0


async def test_features_in_a_process_give_the_calls_of_the_thread(cfg, session, rhythm_model, tmp_path):
    """[rhythm_context] feature_processes = 1: the features computed in a spawned process (a thread until
    it has started) are the same calls (labels and probabilities, bit for bit) as in the engine's thread
    alone (feature_processes = 0), and the VT alarm is raised."""
    thread_cfg = cfg.model_copy(deep=True)
    thread_cfg.rhythm_context.feature_processes = 0
    procs = cfg.model_copy(deep=True)
    procs.rhythm_context.feature_processes = 1
    _, ev_thread = await replay(thread_cfg, session, rhythm_model, tmp_path / "t", "vfdb421_vt", speed=12.0)
    eng, ev_proc = await replay(procs, session, rhythm_model, tmp_path / "p", "vfdb421_vt", speed=12.0)
    assert eng.rhythm.processes == 1 and eng.rhythm.process_batches > 0

    def calls(events):
        return {e.t_signal - t0_of(events): (e.label, e.extra["probs"]) for e in events if e.kind == "rhythm"}

    thread, proc = calls(ev_thread), calls(ev_proc)
    assert len(proc) >= 0.8 * len(thread) >= 8  # (a row still in flight when the stream ends is not a call)
    for t, call in proc.items():
        match = [v for k, v in thread.items() if abs(k - t) < 1e-6]
        assert match == [call], t
    assert ("vt", "high") in [(lab, prio) for lab, prio, _ in alarms_on(ev_proc)]


def test_a_call_is_made_at_its_window_end_whatever_signal_followed(cfg, session):
    """StreamRhythm.snapshot(pipe, end): the lead and t_now stop at the window's end, no beat is after it,
    so a DSP round that ran past the window's end changes the call only by beats the detector decided
    late (its report delay, ~0.28 s, or a search-back: at most its cap, 2.5 s, before t_now)."""
    import numpy as np

    from pedstream.events import Chunk
    from pedstream.monitor.pipeline import StreamPipeline
    from pedstream.monitor.rhythm_context import StreamRhythm, ring_need
    from pedstream.transports.replay import plan_replay

    plan = plan_replay([FIX / "vfdb421_vt"], cfg.signal)[0]
    x = plan.record.read(plan.start, plan.stop).data[:, plan.columns].astype(np.float32)
    geo = session.geometry  # the ring runs at the model's rate (977 Hz), the record at 250 Hz
    end = int(20 * geo.fs)  # a ring index
    n_in = int(np.ceil(end * plan.fs / geo.fs)) + 25  # input samples that take the ring past ``end``

    def fed(upto: int) -> tuple[StreamPipeline, StreamRhythm]:
        pipe = StreamPipeline(info=plan.info(t0=0.0), cfg=cfg, fs=geo.fs, window=geo.window, hop=geo.hop,
                              ring_at_least=ring_need(cfg, geo.fs, geo.hop))
        for c0 in range(0, upto, 37):
            c1 = min(upto, c0 + 37)
            pipe.feed(Chunk(stream_id=plan.stream_id, data=x[c0:c1], timestamps=np.arange(c0, c1) / plan.fs,
                            first_index=c0), 0.0)
        return pipe, StreamRhythm(stream_id=plan.stream_id, fs=geo.fs, cfg=cfg, classes=["sinus", "vt"],
                                  context_s=30.0, signal_s=8.0)

    (pa, ra), (pb, rb) = fed(n_in + 100), fed(n_in)
    assert pa.ring.total_written > pb.ring.total_written >= end
    a, b = ra.snapshot(pa, end), rb.snapshot(pb, end)
    assert a[1] == b[1] == end / geo.fs and a[3] == b[3]
    assert np.array_equal(a[2], b[2]) and len(a[2]) / a[4] > 7.9  # the same lead, bit for bit, all 8 s of it
    assert (a[0] <= a[1]).all() and len(b[0]) >= 10
    assert set(b[0]) <= set(a[0]) and all(t > a[1] - 2.8 for t in set(a[0]) - set(b[0]))
    ring_end = ra.snapshot(pa)  # without ``end``: at the ring's end
    assert ring_end[1] == pa.ring.total_written / geo.fs
