"""The gradient-boosting beat model exported to ONNX and run by the engine's beat path.

A small real model: HistGradientBoosting fitted on the beat features of the real MIT-BIH 208 and 220
excerpts (tests/fixtures/real/aami), exported by pedstream.train.beat_export, opened by the engine's
open_beat_model, and the real 119 excerpt replayed through the engine: the engine computes the
features of its detector's beats (per-stream template) and the model calls 119's ventricular beats V.
The shipped model (models/mitdb-beats/model.onnx, when present) is checked the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pedstream.dsp.beat_features import feature_names
from pedstream.errors import ModelError
from pedstream.monitor.ectopy import open_beat_model
from tests.monitor.test_ectopy import REC119, cfg, matched, replay_119, session  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]
AAMI_FIX = ROOT / "tests" / "fixtures" / "real" / "aami"
SHIPPED = ROOT / "models" / "mitdb-beats" / "model.onnx"


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    from pedstream.train.beat_data import beat_config, record_table
    from pedstream.train.beat_export import build_metadata, export_onnx
    from pedstream.train.beat_gbm import VARIANTS, fit

    bc = beat_config()
    tabs = [record_table(AAMI_FIX / n, bc, adapt=True) for n in ("208", "220")]
    x, y = np.concatenate([t.x for t in tabs]), np.concatenate([t.y for t in tabs])
    v = VARIANTS["HGB, part 2 (adapted), sqrt weights"]
    v = type(v)(v.name, v.features, v.model, v.weights, {"max_iter": 30, "min_samples_leaf": 5})
    clf = fit(v, x, y)
    meta = build_metadata(variant=v, cfg=bc, feature_scale=x.std(axis=0), beats={"N": 1}, records=["208", "220"],
                          adapt_settings={"method": "knn", "k": 3, "mix": 0.8, "n_half": 10.0})
    path = export_onnx(clf, tmp_path_factory.mktemp("gbm") / "beats.onnx", meta)
    return path, clf, x[:, : len(feature_names(True))]  # the columns the engine computes


def test_export_matches_scikit_learn_and_the_engine_accepts_it(small_model, cfg):  # noqa: F811
    path, clf, x = small_model
    sess, spec = open_beat_model(cfg, path)
    assert spec.features and spec.adapt and sess.n_rr == len(feature_names(True))
    assert spec.class_names == ("N", "S", "V", "F")
    t = spec.window
    logits, emb = sess.run(np.zeros((8, 12, t), np.float32), np.zeros((8, 7, t), np.float32),
                           np.ones((8, 19), np.float32), rr=x[:8].astype(np.float32))
    np.testing.assert_allclose(np.exp(logits), clf.predict_proba(x[:8]), atol=1e-5)


def test_a_feature_model_of_another_feature_version_is_refused(small_model, cfg, tmp_path):  # noqa: F811
    import onnx

    path, _, _ = small_model
    m = onnx.load(str(path))
    for p in m.metadata_props:
        if p.key == "segments":
            p.value = p.value.replace("beat-features-", "beat-features-old-")
    onnx.save(m, str(tmp_path / "old.onnx"))
    with pytest.raises(ModelError, match="this engine computes"):
        open_beat_model(cfg, tmp_path / "old.onnx")


async def _v_calls(cfg, session, path, tmp_path):  # noqa: F811
    from pedstream.data.annotations import read_annotations

    beat, _ = open_beat_model(cfg, path)
    eng, seen = await replay_119(cfg, session, beat, tmp_path)
    assert eng.counts.get("error", 0) == 0
    beats = [e for e in seen if e.kind == "beat"]
    pairs = matched(beats, next(iter(eng.pipelines.values())).segment_t0, read_annotations(REC119))
    assert len(pairs) >= len(beats) - 1 and len(beats) > 50
    return [lab for s, lab in pairs if s == "V"], [lab for s, lab in pairs if s == "N"]


async def test_engine_computes_the_features_and_calls_119s_pvcs(small_model, cfg, session, tmp_path):  # noqa: F811
    v, n = await _v_calls(cfg, session, small_model[0], tmp_path)
    assert len(v) >= 10 and sum(lab == "V" for lab in v) / len(v) > 0.7
    assert sum(lab != "V" for lab in n) / len(n) > 0.8  # (two minutes of training beats: N vs F is rough)


@pytest.mark.skipif(not SHIPPED.is_file(), reason="models/mitdb-beats/model.onnx not built")
async def test_shipped_model_calls_119s_pvcs(cfg, session, tmp_path):  # noqa: F811
    v, n = await _v_calls(cfg, session, SHIPPED, tmp_path)
    assert len(v) >= 10 and sum(lab == "V" for lab in v) / len(v) > 0.7
    assert sum(lab == "N" for lab in n) / len(n) > 0.7


async def _beats_done(mon, timeout: float = 60.0) -> None:
    await mon.drain(timeout=timeout)
    eng = mon.engine
    while eng.beat_batcher.pending or eng.beat_batcher.busy:
        await mon.wait_for(lambda e: e.kind == "beat", timeout=timeout)


async def test_monitor_label_beats_adapts_only_that_stream(small_model, tmp_path):
    """Monitor.label_beats through the running engine: bed1 (208) labelled, bed2 (220) never; the
    labels file names the clinician; wrong labels are one error and change nothing."""
    from pedstream.api import Monitor, read_record
    from pedstream.monitor.adapt import LabelError

    from tests.support.helpers import events_validator

    recs = {sid: read_record(AAMI_FIX / name) for sid, name in (("bed1", "208"), ("bed2", "220"))}
    beats: list = []
    marks: list = []  # beat_label events
    async with Monitor(beat_model=small_model[0], labels_dir=tmp_path / "labels",
                       overrides=["alarms.strips=false", "stream.queue_windows=10000"]) as mon:
        mon.engine.add_listener(lambda e: beats.append(e) if e.kind == "beat" else None)
        mon.engine.add_listener(lambda e: marks.append(e) if e.kind == "beat_label" else None)
        for sid, rd in recs.items():
            ch = [c for c, p in zip(rd.channels, rd.present) if p]
            await mon.feed(sid, rd.signal[:, rd.present], fs=rd.fs, channels=ch)
        await _beats_done(mon)
        first = {sid: [e for e in beats if e.stream == sid] for sid in recs}
        assert len(first["bed1"]) > 50 and len(first["bed2"]) > 50
        assert not any("labels" in e.extra for e in beats)
        ann = recs["bed1"].annotations
        t_ann = ann.sample / ann.fs
        t0 = mon.engine.pipelines["bed1"].segment_t0

        def truth(e):
            j = int(np.argmin(np.abs(t_ann - (e.extra["beat_t"] - t0))))
            return ann.symbol[j]

        pick = [e for e in first["bed1"] if truth(e) == "V"][:8] + [e for e in first["bed1"] if truth(e) == "N"][:8]
        with pytest.raises(LabelError, match="not a class"):
            mon.label_beats("bed1", [(pick[0].extra["beat_t"], "V"), (pick[1].extra["beat_t"], "PVC")])
        with pytest.raises(LabelError, match="no such stream"):
            mon.label_beats("bed7", [(pick[0].extra["beat_t"], "V")])
        with pytest.raises(LabelError, match="no classified beat"):
            mon.label_beats("bed1", [(pick[0].extra["beat_t"] + 0.4, "V")])
        assert mon.engine.beat_labels.n_labels("bed1") == 0 and not (tmp_path / "labels").exists() and not marks
        new = mon.label_beats("bed1", [(e.extra["beat_t"], truth(e)) for e in pick], who="dr.test")
        assert len(new) == 16
        assert [(m.stream, m.extra["label_state"], m.extra["who"], m.extra["label_id"]) for m in marks] == [
            ("bed1", "applied", "dr.test", i) for i in range(1, 17)]
        assert mon.undo_beat_labels("bed1", who="dr.undo") == 1 and mon.engine.beat_labels.n_labels("bed1") == 15
        assert marks[-1].extra["label_state"] == "undone" and marks[-1].extra["who"] == "dr.undo"
        mon.label_beats("bed1", [(pick[-1].extra["beat_t"], truth(pick[-1]))], who="dr.test")  # back to 16
        n_before = len(beats)
        for sid, rd in recs.items():  # the same patients go on (the clock continues)
            ch = [c for c, p in zip(rd.channels, rd.present) if p]
            await mon.feed(sid, rd.signal[:, rd.present], fs=rd.fs, channels=ch)
        await _beats_done(mon)
    later = beats[n_before:]
    assert {e.extra.get("labels") for e in later if e.stream == "bed1"} == {16}
    assert all({"couplets", "runs", "pattern"} <= set(e.extra) for e in beats)
    check = events_validator()
    for e in beats + marks:
        check.validate(e.to_dict())
    assert all("labels" not in e.extra for e in later if e.stream == "bed2")
    doc = (tmp_path / "labels" / "bed1.json").read_text()
    assert "dr.test" in doc and not (tmp_path / "labels" / "bed2.json").exists()


def test_engine_beat_positions_label_the_reference_beats(small_model):
    """The beats the live engine classifies in the real 208 excerpt, used as training positions: each
    within 150 ms of a reference beat takes its class, and the classes are those of the reference."""
    from pedstream.train.beat_data import beat_config, engine_beats, record_table

    pos = engine_beats(AAMI_FIX / "208", small_model[0])
    ref = record_table(AAMI_FIX / "208", beat_config())
    tab = record_table(AAMI_FIX / "208", beat_config(), beats=pos)
    assert 90 <= pos.size <= ref.y.size and np.all(np.diff(pos) > 0)
    assert np.mean(tab.y >= 0) > 0.97
    d = np.abs(pos[:, None] - ref.sample[None, :]).min(axis=1)
    assert np.median(d) <= 10  # samples at 360 Hz
    assert np.bincount(tab.y[tab.y >= 0], minlength=5)[2] >= 25  # the excerpt's 30 V beats, nearly all


async def test_labels_queued_from_a_file_apply_when_the_stream_runs(small_model, tmp_path):
    """``pedstream label bed1 --beats FILE`` before the monitor runs: the stream applies each queued label
    to its beat at that time (a ``beat_label`` event, state applied) and its later calls are adapted; a
    label at a time with no beat is reported unmatched; the other stream never sees them."""
    from pedstream.api import Monitor, read_record
    from pedstream.monitor.adapt import label_command

    t0 = 1000.0
    recs = {sid: read_record(AAMI_FIX / name) for sid, name in (("bed1", "208"), ("bed2", "220"))}
    ann = recs["bed1"].annotations
    t_ann = t0 + ann.sample / ann.fs
    sym = np.asarray(ann.symbol)
    late = t_ann > t0 + 5.0  # after the beat filters settled
    pick = list(t_ann[late & (sym == "V")][:6]) + list(t_ann[late & (sym == "N")][:6])
    f = tmp_path / "beats.csv"
    k = int(np.flatnonzero((np.diff(t_ann) > 0.7) & (t_ann[:-1] > t0 + 10.0))[0])
    t_gap = (t_ann[k] + t_ann[k + 1]) / 2  # no beat within 0.35 s
    f.write_text("".join(f"{t:.3f},{c}\n" for t, c in zip(pick, ["V"] * 6 + ["N"] * 6)) + f"{t_gap:.3f},V\n")
    label_command(stream="bed1", beats_file=f, who="dr.file", labels_dir=tmp_path / "labels")
    marks: list = []
    beats: list = []
    async with Monitor(beat_model=small_model[0], labels_dir=tmp_path / "labels",
                       overrides=["alarms.strips=false", "stream.queue_windows=10000"]) as mon:
        mon.engine.add_listener(lambda e: marks.append(e) if e.kind == "beat_label" else None)
        mon.engine.add_listener(lambda e: beats.append(e) if e.kind == "beat" else None)
        for sid, rd in recs.items():
            ch = [c for c, p in zip(rd.channels, rd.present) if p]
            await mon.feed(sid, rd.signal[:, rd.present], fs=rd.fs, channels=ch, t0=t0)
        await _beats_done(mon)
        n = mon.engine.beat_labels.n_labels("bed1")
        assert mon.engine.beat_labels.n_labels("bed2") == 0
    applied = [m for m in marks if m.extra["label_state"] == "applied"]
    assert {m.stream for m in marks} == {"bed1"} and len(applied) == n >= 10
    assert all(m.extra["who"] == "dr.file" for m in marks)
    assert [m.t_signal for m in marks if m.extra["label_state"] == "unmatched"] == [pytest.approx(t_gap, abs=1e-3)]
    last = max(m.t_signal for m in applied)
    assert {e.extra.get("labels") for e in beats if e.stream == "bed1" and e.t_signal > last + 0.2} == {n}
    assert all("labels" not in e.extra for e in beats if e.stream == "bed2")
