"""Ectopy in the live monitor (pedstream/monitor/ectopy.py and its engine wiring).

- counting (PVC/min, PAC/min over 60 s of stream time) and the pvc_run alarm on labels fed directly;
- the beat model is refused with one ModelError line when it is not a beat model / lacks its rr input;
- end to end: the real MIT-BIH 119 excerpt replayed through the engine with a tiny real ONNX beat
  model (its decision is a fixed rule on the RR features: premature beat followed by a pause -> V),
  beats land on the reference annotations, events carry the rates;
- a model that calls every beat V raises pvc_run through the engine;
- a stream without the trained channels, and a stream whose beat inference raises, get an error
  event while the other streams go on.
- the trained MIT-BIH model (models/mitdb-aami/model.onnx, when it exists) calls 119's V beats V.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pedstream.config import load_config
from pedstream.data.channels import CANONICAL_CHANNELS
from pedstream.dsp.rr import RR_FEATURES
from pedstream.dsp.windowing import NORMALIZATION
from pedstream.errors import ModelError
from pedstream.model.metadata import build_metadata, encode_metadata
from pedstream.model.runtime import ModelSession
from pedstream.monitor.alarms import AlarmTracker
from pedstream.monitor.ectopy import EctopyCounter, open_beat_model
from pedstream.monitor.engine import Engine
from pedstream.outputs.jsonlines import JsonLinesSink
from tests.support.helpers import ArraySource, StreamSpec, make_signal
from tests.support.tiny_model import build_tiny_model, open_session

ROOT = Path(__file__).resolve().parents[2]
REC119 = ROOT / "tests" / "fixtures" / "real" / "119"
TRAINED = ROOT / "models" / "mitdb-aami" / "model.onnx"
AAMI = ["N", "S", "V", "F", "Q"]
K = len(RR_FEATURES)
FS_B, T_B = 360.0, 360
SEGMENTS = {"mode": "beat", "window_s": 1.0, "rr_features": True, "rr_local_beats": 10, "rr_long_beats": 250}
TRAINED_CH = ["II", "V1", "V2", "V4", "V5"]


def build_beat_model(path: Path, cfg, *, rule: str = "premature", segments: dict | None = None,
                     rr_input: bool = True, trained: list[str] | None = TRAINED_CH) -> Path:
    """A tiny real ONNX beat model. ``rule="premature"``: V when ``-20 pre_local + 10 post_local > 2``
    (an early beat followed by a pause), else N; ``rule="all_v"``: every beat V. A small
    window-dependent term keeps the signal input in the graph."""
    rng = np.random.default_rng(0)
    w = (rng.normal(0.0, 1e-4, size=(38, 5))).astype(np.float32)
    wr = np.zeros((K, 5), np.float32)
    b = np.array([0.0, -10.0, -2.0, -10.0, -10.0], np.float32)
    if rule == "premature":
        wr[RR_FEATURES.index("pre_local"), 2] = -20.0
        wr[RR_FEATURES.index("post_local"), 2] = 10.0
    else:
        b = np.array([0.0, -10.0, 5.0, -10.0, -10.0], np.float32)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b"), numpy_helper.from_array(wr, "WR"),
             numpy_helper.from_array(np.ones((38, 4), np.float32) * 0.01, "V"),
             numpy_helper.from_array(np.array([2], dtype=np.int64), "axes_t")]
    nodes = [
        helper.make_node("Concat", ["ecg", "iegm"], ["x"], axis=1),
        helper.make_node("ReduceMax", ["x", "axes_t"], ["mx"], keepdims=0),
        helper.make_node("ReduceMin", ["x", "axes_t"], ["mn"], keepdims=0),
        helper.make_node("Mul", ["mx", "mask"], ["mxm"]),
        helper.make_node("Mul", ["mn", "mask"], ["mnm"]),
        helper.make_node("Concat", ["mxm", "mnm"], ["feat"], axis=1),
        helper.make_node("MatMul", ["feat", "W"], ["lw"]),
        helper.make_node("Add", ["lw", "b"], ["lb"]),
        helper.make_node("MatMul", ["feat", "V"], ["ev"]),
        helper.make_node("Tanh", ["ev"], ["embedding"]),
    ]
    inputs = [helper.make_tensor_value_info("ecg", TensorProto.FLOAT, ["B", 12, T_B]),
              helper.make_tensor_value_info("iegm", TensorProto.FLOAT, ["B", 7, T_B]),
              helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["B", 19])]
    if rr_input:
        inputs.append(helper.make_tensor_value_info("rr", TensorProto.FLOAT, ["B", K]))
        nodes += [helper.make_node("MatMul", ["rr", "WR"], ["lr"]), helper.make_node("Add", ["lb", "lr"], ["logits"])]
    else:
        nodes.append(helper.make_node("Identity", ["lb"], ["logits"]))
    graph = helper.make_graph(nodes, "tiny_beat", inputs,
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", 5]),
                               helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["B", 4])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    seg = dict(SEGMENTS if segments is None else segments)
    meta = build_metadata(
        model_cfg={"n_ecg": 12, "n_iegm": 7, "n_classes": 5, "fs": FS_B, "window_samples": T_B, "embed_dim": 4,
                   "arch": "tiny-beat-test", "n_rr": K if rr_input else 0},
        class_names=AAMI, channels=cfg.signal.channels, fs=FS_B, window_s=1.0, hop_s=1.0,
        filters=cfg.filters.model_dump(), normalization=NORMALIZATION, label_scheme={"name": "aami"},
        data_description="tiny rule-based beat test model", simulated=True, segments=seg,
        extra=None if trained is None else {"trained_channels": trained})
    for k, v in encode_metadata(meta).items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def cfg():
    return load_config(overrides=["alarms.smoothing_windows=1", "stream.queue_windows=10000", "stream.max_batch=16",
                                  "alarms.strips=false"])


@pytest.fixture(scope="module")
def session(tmp_path_factory, cfg):
    return open_session(build_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx", cfg), cfg, max_batch=16)


@pytest.fixture(scope="module")
def beat_paths(tmp_path_factory, cfg):
    d = tmp_path_factory.mktemp("beat")
    return {rule: build_beat_model(d / f"{rule}.onnx", cfg, rule=rule) for rule in ("premature", "all_v")}


def beat_session(cfg, path: Path):
    s, _ = open_beat_model(cfg, path)
    return s


# ---------------------------------------------------------------------------------- pure logic
def test_counter_counts_v_and_s_of_the_last_60_s():
    c = EctopyCounter()
    for t, lab in [(0.0, "V"), (10.0, "S"), (20.0, "N"), (30.0, "V"), (59.0, "V"), (65.0, "S")]:
        c.add(t, lab)
    assert c.rates() == (2, 2)  # at 65 s: V at 30 and 59 (0 has left), S at 10 and 65
    assert c.rates(now=75.0) == (2, 1)
    assert c.rates(now=200.0) == (0, 0)  # no beats at all for a minute: rates fall to 0
    assert c.total == {"V": 3, "S": 2, "N": 1}


def test_pvc_run_on_third_v_off_at_next_non_v(cfg):
    tr = AlarmTracker(class_names=["sinus"], cfg=cfg.alarms)
    out = [tr.beat(lab) for lab in "NVVNVVVVN"]
    kinds = [(i, t.kind, t.label, t.priority) for i, ts in enumerate(out) for t in ts]
    assert kinds == [(6, "alarm_on", "pvc_run", "advisory"), (8, "alarm_off", "pvc_run", "advisory")]
    assert out[6][0].detail == "3 consecutive V beats"
    assert "pvc_run" not in tr.active
    assert tr.beat("V") == [] and tr.beat("V") == []
    tr.reset_smoothing()  # a gap: the run restarts
    assert tr.beat("V") == [] and tr.beat("V") == [] and tr.beat("V")[0].kind == "alarm_on"
    assert tr.top_alarm == ("pvc_run", "advisory")


# ---------------------------------------------------------------------------------- refusals
def test_refuses_models_that_are_not_beat_models(tmp_path, cfg, beat_paths):
    rhythm = build_tiny_model(tmp_path / "rhythm.onnx", cfg)
    with pytest.raises(ModelError, match="is not a beat model") as e:
        open_beat_model(cfg, rhythm)
    assert "\n" not in str(e.value) and e.value.exit_code == 2
    no_rr = build_beat_model(tmp_path / "norr.onnx", cfg, rr_input=False)
    with pytest.raises(ModelError, match="rr_features is set but the model has no rr input"):
        open_beat_model(cfg, no_rr)
    with pytest.raises(ModelError, match="no such beat model"):
        open_beat_model(cfg, tmp_path / "missing.onnx")
    sess, spec = open_beat_model(cfg, beat_paths["premature"])
    assert sess.n_rr == K and spec.fs == FS_B and spec.window == T_B
    assert [c for c, t in zip(cfg.signal.channels, spec.trained) if t] == TRAINED_CH


# ---------------------------------------------------------------------------------- end to end
async def replay_119(cfg, session, beat, tmp_path):
    from pedstream.transports.replay import ReplaySource

    q: asyncio.Queue = asyncio.Queue()
    src = ReplaySource(events=q, records=[REC119], signal_cfg=cfg.signal, speed=float("inf"), chunk_ms=50)
    eng = Engine(cfg=cfg, session=session, sources=[src], sinks=[JsonLinesSink(tmp_path / "ev.jsonl")],
                 alarms_dir=tmp_path / "alarms", beat_session=beat)
    sub = eng.subscribe()
    async with eng:
        await sub.wait_for(lambda e: e.kind == "signal_loss", timeout=60)  # end of record
        async with asyncio.timeout(30):
            while eng.batcher.pending or eng.batcher.busy or eng.beat_batcher.pending or eng.beat_batcher.busy:
                await sub.wait_for(lambda e: e.kind in ("call", "beat"), timeout=30)
    sub.drain()
    return eng, sub.seen


def matched(beats: list, t0: float, ann, tol: float = 0.1) -> list[tuple[str, str]]:
    """(reference symbol, called label) of each beat event within ``tol`` s of an annotated beat."""
    t_ann = ann.sample / ann.fs
    keep = [i for i, s in enumerate(ann.symbol) if s in "NVSFQLRAaJejE/f"]
    out = []
    for e in beats:
        t = e.extra["beat_t"] - t0
        j = min(keep, key=lambda i: abs(t_ann[i] - t))
        if abs(t_ann[j] - t) <= tol:
            out.append((ann.symbol[j], e.label))
    return out


async def test_119_beats_classified_on_the_annotated_beats(cfg, session, beat_paths, tmp_path):
    from pedstream.data.annotations import read_annotations

    eng, seen = await replay_119(cfg, session, beat_session(cfg, beat_paths["premature"]), tmp_path)
    ann = read_annotations(REC119)
    assert eng.counts.get("error", 0) == 0
    beats = [e for e in seen if e.kind == "beat"]
    pipe = next(iter(eng.pipelines.values()))
    n_ref = sum(1 for s in ann.symbol if s in "NV")  # 65 beats in 60 s
    settle = cfg.filters.settle_s + 0.5  # beats whose window starts before the beat filter settled are skipped
    expected = sum(1 for s, t in zip(ann.symbol, ann.sample / ann.fs) if s in "NV" and t > settle) - 1  # last: no post-RR
    assert expected - 3 <= len(beats) <= expected + 1 and n_ref == 65
    pairs = matched(beats, pipe.segment_t0, ann)
    assert len(pairs) >= len(beats) - 1  # every beat event sits on a reference beat (time map right)
    v_as_v = sum(1 for s, lab in pairs if s == "V" and lab == "V") / max(1, sum(1 for s, _ in pairs if s == "V"))
    n_as_n = sum(1 for s, lab in pairs if s == "N" and lab == "N") / max(1, sum(1 for s, _ in pairs if s == "N"))
    assert v_as_v > 0.8 and n_as_n > 0.8  # the RR rule finds 119's bigeminal PVCs
    last = beats[-1].extra
    assert last["pvc_per_min"] == sum(1 for e in beats if e.label == "V") and last["pac_per_min"] == 0
    assert {"beat_t", "pre_rr_s", "post_rr_s"} <= set(last) and beats[-1].p > 0.5
    calls = [e for e in seen if e.kind == "call"]
    assert calls and all("pvc_per_min" in e.extra and "pac_per_min" in e.extra for e in calls)
    assert calls[-1].extra["pvc_per_min"] >= 10
    st = next(iter(eng.status.values()))
    assert st.ectopy == "on" and st.beats == len(beats) and eng.summary()["beats_classified"] == len(beats)
    assert not [e for e in seen if e.kind == "alarm_on" and e.label == "pvc_run"]  # bigeminy: no run of 3


async def test_all_v_model_raises_pvc_run_and_dashboard_shows_rates(cfg, session, beat_paths, tmp_path):
    from rich.console import Console

    from pedstream.outputs.dashboard import render_dashboard

    x = make_signal(fs=FS_B, seconds=12, hr=90, n_ch=2, seed=3)
    spec = StreamSpec("bed1", x, FS_B, channel_names=["II", "V1"], chunk=36)
    q: asyncio.Queue = asyncio.Queue()
    eng = Engine(cfg=cfg, session=session, sources=[ArraySource(events=q, streams=[spec], lose_at_end=True)],
                 alarms_dir=tmp_path / "alarms", beat_session=beat_session(cfg, beat_paths["all_v"]))
    sub = eng.subscribe()
    async with eng:
        on = await sub.wait_for(lambda e: e.kind == "alarm_on", timeout=60)
    assert (on.label, on.extra["priority"]) == ("pvc_run", "advisory")
    beats = [e for e in sub.seen if e.kind == "beat"]
    assert len(beats) == 3 and all(e.label == "V" for e in beats)
    assert eng.status["bed1"].alarm == ("pvc_run", "advisory")
    console = Console(record=True, width=110)
    console.print(render_dashboard(eng.snapshot()))
    text = console.export_text()
    row = next(line for line in text.splitlines() if line.startswith("bed1"))
    pvc = eng.status["bed1"].pvc_per_min
    assert "PVC/PAC" in text and pvc >= 3 and f"{pvc}/0" in row and "pvc_run" in row


class FailsOnV5(ModelSession):
    """The real beat session, failing for every batch holding a window with lead V5 present (the
    fault is injected in front of ONNX Runtime; what runs is still ORT)."""

    V5 = list(CANONICAL_CHANNELS).index("V5")
    armed = False  # off during the session's warm-up runs

    def run(self, ecg, iegm, mask, **kw):
        if self.armed and (np.asarray(mask)[:, self.V5] > 0).any():
            raise ModelError(str(self.path), "injected failure for windows with V5")
        return super().run(ecg, iegm, mask, **kw)


async def test_failing_streams_get_error_events_and_the_others_go_on(cfg, session, beat_paths, tmp_path):
    beat = FailsOnV5(path=beat_paths["premature"], providers=["CPUExecutionProvider"], runtime_cfg=cfg.runtime,
                     max_batch=16)
    beat.armed = True
    good = StreamSpec("good", make_signal(fs=FS_B, seconds=12, hr=80, n_ch=2, seed=1), FS_B,
                      channel_names=["II", "V1"], chunk=36)
    infer_fail = StreamSpec("v5", make_signal(fs=FS_B, seconds=12, hr=80, n_ch=2, seed=2), FS_B,
                            channel_names=["II", "V5"], chunk=36)
    untrained = StreamSpec("v3", make_signal(fs=FS_B, seconds=12, hr=80, n_ch=1, seed=3), FS_B,
                           channel_names=["V3"], chunk=36)
    q: asyncio.Queue = asyncio.Queue()
    eng = Engine(cfg=cfg, session=session, alarms_dir=tmp_path / "alarms", beat_session=beat,
                 sources=[ArraySource(events=q, streams=[good, infer_fail, untrained], lose_at_end=True)])
    sub = eng.subscribe()
    async with eng:
        for sid in ("good", "v5", "v3"):
            await sub.wait_for(lambda e, sid=sid: e.kind == "signal_loss" and e.stream == sid, timeout=60)
        async with asyncio.timeout(30):
            while eng.batcher.pending or eng.batcher.busy or eng.beat_batcher.pending or eng.beat_batcher.busy:
                await sub.wait_for(lambda e: e.kind in ("call", "beat"), timeout=30)
    sub.drain()
    errors = {e.stream: e.extra["message"] for e in sub.seen if e.kind == "error"}
    assert set(errors) == {"v5", "v3"}
    assert "injected failure" in errors["v5"] and "trained channels" in errors["v3"]
    beats = {sid: sum(1 for e in sub.seen if e.kind == "beat" and e.stream == sid) for sid in ("good", "v5", "v3")}
    assert beats["good"] >= 8 and beats["v5"] == 0 and beats["v3"] == 0
    calls = {sid: sum(1 for e in sub.seen if e.kind == "call" and e.stream == sid) for sid in ("good", "v5", "v3")}
    assert all(n >= 2 for n in calls.values())  # rhythm monitoring goes on everywhere
    assert eng.status["v5"].ectopy == "error" and eng.status["good"].ectopy == "on"
    assert eng.status["v5"].error is None  # the stream itself is fine


@pytest.mark.skipif(not TRAINED.is_file(), reason="models/mitdb-aami/model.onnx not shipped yet")
async def test_trained_model_calls_119_v_beats_v(cfg, session, tmp_path):
    from pedstream.data.annotations import read_annotations

    eng, seen = await replay_119(cfg, session, beat_session(cfg, TRAINED), tmp_path)
    beats = [e for e in seen if e.kind == "beat"]
    pairs = matched(beats, next(iter(eng.pipelines.values())).segment_t0, read_annotations(REC119))
    v = [lab for s, lab in pairs if s == "V"]
    assert len(v) >= 10 and sum(lab == "V" for lab in v) / len(v) > 0.7


async def test_gap_restarts_the_beat_path(cfg, session, beat_paths, tmp_path):
    fs_gap = int(6 * FS_B)  # 3 s of signal missing at 6 s
    x = make_signal(fs=FS_B, seconds=18, hr=80, n_ch=2, seed=5)
    spec = StreamSpec("bed2", x, FS_B, channel_names=["II", "V1"], chunk=36, gaps=[(fs_gap, int(3 * FS_B))])
    q: asyncio.Queue = asyncio.Queue()
    eng = Engine(cfg=cfg, session=session, alarms_dir=tmp_path / "alarms",
                 beat_session=beat_session(cfg, beat_paths["premature"]),
                 sources=[ArraySource(events=q, streams=[spec], lose_at_end=True)])
    sub = eng.subscribe()
    async with eng:
        await sub.wait_for(lambda e: e.kind == "signal_loss" and "end of data" in e.extra["reason"], timeout=60)
        async with asyncio.timeout(30):
            while eng.beat_batcher.pending or eng.beat_batcher.busy:
                await sub.wait_for(lambda e: e.kind == "beat", timeout=30)
    sub.drain()
    kinds = [e.kind for e in sub.seen if e.kind in ("signal_loss", "signal_ok")]
    assert kinds[:2] == ["signal_loss", "signal_ok"]
    beats = [e for e in sub.seen if e.kind == "beat"]
    t_gap = spec.t0 + fs_gap / FS_B
    before = [e for e in beats if e.extra["beat_t"] < t_gap]
    after = [e for e in beats if e.extra["beat_t"] > t_gap + 3.0]
    assert len(before) >= 3 and len(after) >= 5
    # no RR interval spans the gap, and no beat lies in it or within the settling time after it
    assert all(0.6 < e.extra["pre_rr_s"] < 0.9 and 0.6 < e.extra["post_rr_s"] < 0.9 for e in beats)
    assert min(e.extra["beat_t"] for e in after) >= t_gap + 3.0 + cfg.filters.settle_s
    assert eng.counts.get("error", 0) == 0


def test_cli_refuses_a_rhythm_model_as_beat_model(tmp_path, cfg):
    import subprocess
    import sys

    rhythm = build_tiny_model(tmp_path / "rhythm.onnx", cfg)
    proc = subprocess.run([sys.executable, "-m", "pedstream.cli", "run", "--source", "replay", "--records", str(REC119),
                           "--model", str(rhythm), "--set", f"stream.beat_model={rhythm}", "--headless",
                           "--duration", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "is not a beat model" in lines[0]


def test_ectopy_patterns_couplets_runs_bigeminy_trigeminy():
    from pedstream.monitor.ectopy import EctopyCounter

    c = EctopyCounter()
    seq = "NNNVVNNVVVVN" + "NV" * 4 + "NNV" * 3
    for i, lab in enumerate(seq):
        c.add(float(i), lab)
        if i == 11:
            assert c.patterns() == {"couplets": 1, "runs": 1, "pattern": None}
        if i == 11 + 8:
            assert c.patterns()["pattern"] == "bigeminy"
    assert c.patterns() == {"couplets": 1, "runs": 1, "pattern": "trigeminy"}
    assert c.patterns(now=200.0)["couplets"] == 0  # a minute later: out of the window
