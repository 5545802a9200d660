"""Few-shot adaptation from clinician labels: only the labelled stream changes, labels persist, bad labels
change nothing. Real beats: the MIT-BIH 208 and 220 excerpts of tests/fixtures/real/aami."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pedstream.monitor.adapt import AdaptSettings, BeatLabels, LabelError, PatientAdapter

AAMI = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "aami"
CLASSES = ("N", "S", "V", "F")
P_POP = np.asarray([0.85, 0.05, 0.05, 0.05])  # a population model that calls every beat N


@pytest.fixture(scope="module")
def tables():
    from pedstream.train.beat_data import beat_config, record_table

    cfg = beat_config()
    return {name: record_table(AAMI / name, cfg, adapt=True) for name in ("208", "220")}


def _labels(tables):
    x = np.concatenate([t.x for t in tables.values()])
    return BeatLabels(classes=CLASSES, scale=x.std(axis=0), settings=AdaptSettings(k=3, mix=0.9))


def _observe(bl, sid, tab):
    for t, f in zip(tab.t, tab.x):
        bl.observe(sid, float(t), f)


def test_labelled_v_beats_teach_this_patients_ventricular_beat(tables):
    tab = tables["208"]
    first = np.flatnonzero(tab.t < 30.0)
    lab = np.concatenate([first[tab.y[first] == 2][:5], first[tab.y[first] == 0][:5]])
    later = tab.t >= 30.0
    ad = PatientAdapter(classes=CLASSES, scale=tab.x.std(axis=0), settings=AdaptSettings(k=3, mix=0.9))
    before = ad.adapt(np.tile(P_POP, (later.sum(), 1)), tab.x[later]).argmax(1)
    ad.set_labels(tab.x[lab], tab.y[lab])
    after = ad.adapt(np.tile(P_POP, (later.sum(), 1)), tab.x[later]).argmax(1)
    v = tab.y[later] == 2
    assert not np.any(before == 2)
    assert np.mean(after[v] == 2) > 0.8 and np.mean(after[tab.y[later] == 0] == 0) > 0.8


def test_labels_change_only_that_stream_and_persist(tables, tmp_path):
    bl = _labels(tables)
    bl.folder = tmp_path
    bl.add_stream("bed1", patient="p-208")
    bl.add_stream("bed2")
    _observe(bl, "bed1", tables["208"])
    _observe(bl, "bed2", tables["220"])
    tab = tables["208"]
    vs, ns = tab.t[tab.y == 2][:8], tab.t[tab.y == 0][:8]
    new = bl.label("bed1", [(float(t) + 0.02, "V") for t in vs] + [(float(t), "N") for t in ns], who="dr.a")
    assert [e["label"] for e in new] == ["V"] * 8 + ["N"] * 8
    assert bl.n_labels("bed1") == 16 and bl.n_labels("bed2") == 0
    other = tables["220"].x[10]
    np.testing.assert_array_equal(bl.adjust("bed2", other, P_POP), P_POP)  # bed2 untouched
    assert bl.adjust("bed1", tab.x[tab.y == 2][-1], P_POP).argmax() == 2
    doc = json.loads((tmp_path / "p-208.json").read_text())
    assert doc["patient"] == "p-208" and {e["who"] for e in doc["labels"]} == {"dr.a"}
    assert all(e["when"] and e["label"] in "VN" and len(e["features"]) == tab.x.shape[1] for e in doc["labels"])
    assert not (tmp_path / "bed2.json").exists()
    # a restart of the monitor: the patient's labels come back (and only to that patient)
    again = _labels(tables)
    again.folder = tmp_path
    again.add_stream("bedX", patient="p-208")
    again.add_stream("bed2")
    assert again.n_labels("bedX") == 16 and again.n_labels("bed2") == 0
    # reversible: undo the newest, then all; the file keeps them marked undone
    assert again.undo("bedX", who="dr.b") == 1 and again.n_labels("bedX") == 15
    assert again.undo("bedX", list(range(1, 16)), who="dr.b") == 15 and again.n_labels("bedX") == 0
    np.testing.assert_array_equal(again.adjust("bedX", tab.x[tab.y == 2][-1], P_POP), P_POP)
    kept = json.loads((tmp_path / "p-208.json").read_text())["labels"]
    assert len(kept) == 16 and all(e["undone"] and e["undone_by"] == "dr.b" for e in kept)


@pytest.mark.parametrize("stream, labels, words", [
    ("bed1", [(1.0, "X")], "not a class"),
    ("bed1", [(1.0, "V"), (1e6, "V")], "no classified beat"),
    ("bed9", [(1.0, "V")], "no such stream"),
    ("bed1", [("soon", "V")], "not a number"),
])
def test_a_wrong_label_is_one_clear_error_and_changes_nothing(tables, tmp_path, stream, labels, words):
    bl = _labels(tables)
    bl.folder = tmp_path
    bl.add_stream("bed1")
    _observe(bl, "bed1", tables["208"])
    t_beat = float(tables["208"].t[5])
    labels = [(t_beat if t == 1.0 else t, c) for t, c in labels]
    with pytest.raises(LabelError, match=words) as err:
        bl.label(stream, labels, who="dr.a")
    assert "\n" not in str(err.value)
    assert bl.n_labels("bed1") == 0 and not (tmp_path / "bed1.json").exists()
    with pytest.raises(LabelError, match="patient id"):
        bl.add_stream("bed3", patient="../etc/passwd")


def test_labels_queued_from_a_file_apply_to_that_patients_beats_when_the_stream_runs(tables, tmp_path):
    """``pedstream label STREAM --beats FILE`` queues labels; the stream applies each to its beat at that
    time (or marks it unmatched), adapting that stream only; the file keeps who/when/what."""
    from pedstream.monitor.adapt import queue_labels, read_label_file

    tab = tables["208"]
    vs, ns = tab.t[tab.y == 2][:6], tab.t[tab.y == 0][:6]
    f = tmp_path / "beats.csv"
    f.write_text("t_signal,label\n" + "".join(f"{t + 0.03:.3f},V\n" for t in vs) + "".join(f"{t:.3f} N\n" for t in ns)
                 + "# a comment\n3.0001,V\n")  # 3.0001 s: no beat of 208 within 0.15 s there
    labels = read_label_file(f)
    gap = [t for t, _ in labels if np.min(np.abs(tab.t - t)) > 0.15]
    assert len(labels) == 13 and gap == [3.0001]
    queue_labels(tmp_path, "p-208", labels, classes=CLASSES, who="dr.q")
    doc = json.loads((tmp_path / "p-208.json").read_text())
    assert all(e["pending"] and e["who"] == "dr.q" and e["when"] for e in doc["labels"])
    bl = _labels(tables)
    bl.folder = tmp_path
    bl.add_stream("bed1", patient="p-208")
    bl.add_stream("bed2")
    assert bl.n_labels("bed1") == 0  # nothing applied before the beats exist
    resolved = []
    for t, x in zip(tab.t, tab.x):
        resolved += bl.observe("bed1", float(t), x)
    _observe(bl, "bed2", tables["220"])
    assert len(resolved) == 13 and sum(bool(e.get("unmatched")) for e in resolved) == 1
    assert bl.n_labels("bed1") == 12 and bl.n_labels("bed2") == 0
    assert bl.adjust("bed1", tab.x[tab.y == 2][-1], P_POP).argmax() == 2
    np.testing.assert_array_equal(bl.adjust("bed2", tables["220"].x[3], P_POP), P_POP)
    kept = json.loads((tmp_path / "p-208.json").read_text())["labels"]
    assert sum(1 for e in kept if e["features"]) == 12 and not any(e["pending"] for e in kept)
    again = _labels(tables)  # a restart: the applied labels come back
    again.folder = tmp_path
    again.add_stream("bedX", patient="p-208")
    assert again.n_labels("bedX") == 12


@pytest.mark.parametrize("text, words", [("12.5,PVC\n", "not a class"), ("12.5\n", "line 1"),
                                         ("soon,V\n", "line 1"), ("1.0,V\nnan,V\n", "line 2")])
def test_a_wrong_label_file_is_one_clear_error_and_writes_nothing(tmp_path, text, words):
    from pedstream.monitor.adapt import queue_labels, read_label_file

    f = tmp_path / "beats.csv"
    f.write_text(text)
    with pytest.raises(LabelError, match=words) as err:
        queue_labels(tmp_path / "labels", "bed1", read_label_file(f), classes=CLASSES, who="dr.a")
    assert "\n" not in str(err.value) and not (tmp_path / "labels").exists()


def test_label_cli_queues_labels_and_refuses_a_wrong_file_whole(tmp_path):
    from click.testing import CliRunner

    from pedstream.cli import cli

    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("412.35,S\n415.02 V\n")
    bad.write_text("412.35,S\n415.02,PVC\n")
    r = CliRunner().invoke(cli, ["label", "bed1", "--beats", str(bad), "--labels-dir", str(tmp_path / "l"), "--who", "dr.c"])
    assert r.exit_code != 0 and "not a class" in r.output and not (tmp_path / "l").exists()
    r = CliRunner().invoke(cli, ["label", "bed1", "--beats", str(good), "--labels-dir", str(tmp_path / "l"), "--who", "dr.c"])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "l" / "bed1.json").read_text())
    assert [(e["t_signal"], e["label"], e["who"], e["pending"]) for e in doc["labels"]] == [
        (412.35, "S", "dr.c", True), (415.02, "V", "dr.c", True)]
    r = CliRunner().invoke(cli, ["eval", "--data", str(tmp_path)])
    assert r.exit_code != 0 and "--run is required" in r.output


def _n_and_v_labels(tab, n_n=8, n_v=0):
    first = np.flatnonzero(tab.t < 30.0)
    return np.concatenate([first[tab.y[first] == 0][:n_n], first[tab.y[first] == 2][:n_v]])


def test_labels_of_one_class_leave_the_population_probability_of_the_others_alone(tables):
    """classes="labelled": labels holding only N beats redistribute nothing (the N mass stays N); a beat the
    population calls S stays S. classes="all" (the mixing over every class) pulls it to N."""
    tab = tables["208"]
    lab = _n_and_v_labels(tab)
    later = tab.t >= 30.0
    p_s = np.tile([0.30, 0.60, 0.05, 0.05], (int(later.sum()), 1))
    kept = PatientAdapter(classes=CLASSES, scale=tab.x.std(axis=0), settings=AdaptSettings(k=1, mix=0.8, classes="labelled"))
    kept.set_labels(tab.x[lab], tab.y[lab])
    np.testing.assert_allclose(kept.adapt(p_s, tab.x[later]), p_s)
    pulled = PatientAdapter(classes=CLASSES, scale=tab.x.std(axis=0), settings=AdaptSettings(k=1, mix=0.8))
    pulled.set_labels(tab.x[lab], tab.y[lab])
    assert np.all(pulled.adapt(p_s, tab.x[later]).argmax(1) == 0)


@pytest.mark.parametrize("settings", [AdaptSettings(k=1, n_half=2.0, classes="labelled"),
                                      AdaptSettings(k=3, n_half=2.0, combine="product", classes="labelled"),
                                      AdaptSettings(method="nearest", tau=2.0, n_half=2.0, classes="labelled"),
                                      AdaptSettings(method="prototype", n_half=2.0, classes="labelled"),
                                      AdaptSettings(method="linear", mix=0.8, n_half=2.0, classes="labelled",
                                                    features="rr+tpl", l2=1.0)])
def test_labelled_classes_share_only_their_own_mass_and_still_teach_v(tables, settings):
    tab = tables["208"]
    lab = _n_and_v_labels(tab, n_n=5, n_v=5)
    later = tab.t >= 30.0
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=int(later.sum()))
    p[:, 0] += 2.0  # the population calls every beat N
    p /= p.sum(axis=1, keepdims=True)
    ad = PatientAdapter(classes=CLASSES, scale=tab.x.std(axis=0), settings=settings)
    ad.set_labels(tab.x[lab], tab.y[lab])
    assert ad.linear_fitted() == (settings.method == "linear")  # five labels of each class are enough to fit
    q = ad.adapt(p, tab.x[later])
    np.testing.assert_allclose(q[:, [1, 3]], p[:, [1, 3]])  # S and F: no label, untouched
    np.testing.assert_allclose(q[:, [0, 2]].sum(1), p[:, [0, 2]].sum(1))  # N + V mass kept
    v = tab.y[later] == 2
    assert np.mean(q[v].argmax(1) == 2) > 0.8 and np.mean(q[tab.y[later] == 0].argmax(1) == 0) > 0.8


def test_nearest_votes_by_each_labelled_class_nearest_beat():
    x = np.asarray([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 0.2], [3.0, 0.4]])
    y = [0, 0, 2, 2, 2]  # three V labels, two N: the vote does not count them
    ad = PatientAdapter(classes=CLASSES, scale=np.ones(2), settings=AdaptSettings(method="nearest", tau=0.5))
    ad.set_labels(x, y)
    beats = np.asarray([[1.0, 0.0], [2.5, 0.0]])
    d_n = np.asarray([1.0, 2.5])  # nearest N label of each beat
    d_v = np.asarray([2.0, 0.5])
    e = np.exp(-np.stack([d_n, d_v], 1) / 0.5)
    want = np.zeros((2, 4))
    want[:, [0, 2]] = e / e.sum(1, keepdims=True)
    np.testing.assert_allclose(ad.local(beats), want)


def test_adapt_settings_come_from_the_model_metadata_and_a_wrong_one_is_one_error():
    from types import SimpleNamespace

    from pedstream.errors import ModelError
    from pedstream.monitor.adapt import beat_labels_for

    meta = {"segments": {"features": "beat-features-4"}, "feature_scale": [1.0, 2.0], "class_names": list(CLASSES),
            "adapt_settings": {"method": "nearest", "k": 1, "mix": 0.8, "n_half": 10.0, "tau": 2.0, "classes": "labelled"}}
    bl = beat_labels_for(SimpleNamespace(metadata=meta), folder="unused")
    assert bl.settings == AdaptSettings(method="nearest", k=1, mix=0.8, tau=2.0, classes="labelled")
    old = dict(meta, adapt_settings={"method": "knn", "k": 1, "mix": 0.8, "n_half": 10.0, "combine": "mean"})
    assert beat_labels_for(SimpleNamespace(metadata=old), folder="unused").settings.classes == "all"  # older models
    for wrong in ({"method": "svm"}, {"classes": "some"}, {"mix": 2.0}):
        with pytest.raises(ModelError, match="adapt_settings") as err:
            beat_labels_for(SimpleNamespace(metadata=dict(meta, adapt_settings=wrong), path="m.onnx"), folder="unused")
        assert "\n" not in str(err.value)


def test_the_engines_labels_with_labelled_classes_need_two_classes_to_change_a_call(tables, tmp_path):
    """BeatLabels (the engine's path) with the shipped model's kind of settings: N labels alone leave every
    call as the population made it; adding V labels then teaches this stream's ventricular beat."""
    x = np.concatenate([t.x for t in tables.values()])
    bl = BeatLabels(classes=CLASSES, scale=x.std(axis=0), folder=tmp_path,
                    settings=AdaptSettings(method="knn", k=1, mix=0.8, n_half=2.0, classes="labelled"))
    bl.add_stream("bed1")
    tab = tables["208"]
    _observe(bl, "bed1", tab)
    v_beat = tab.x[tab.y == 2][-1]
    bl.label("bed1", [(float(t), "N") for t in tab.t[tab.y == 0][:8]], who="dr.a")
    np.testing.assert_allclose(bl.adjust("bed1", v_beat, P_POP), P_POP)
    bl.label("bed1", [(float(t), "V") for t in tab.t[tab.y == 2][:8]], who="dr.a")
    q = bl.adjust("bed1", v_beat, P_POP)
    assert q.argmax() == 2 and q[1] == pytest.approx(P_POP[1]) and q[3] == pytest.approx(P_POP[3])


def test_weight_by_class_moves_a_vote_for_a_class_with_few_labels_less():
    x = np.asarray([[0.0, 0.0], [0.0, 0.1], [0.1, 0.0], [0.1, 0.1], [5.0, 5.0]])
    y = [0, 0, 0, 0, 2]  # four N labels, one V
    beats = np.asarray([[5.0, 4.9], [0.05, 0.05]])  # nearest: the V label, an N label
    p = np.asarray([[0.7, 0.1, 0.1, 0.1], [0.4, 0.1, 0.4, 0.1]])
    by_n = PatientAdapter(classes=CLASSES, scale=np.ones(2), settings=AdaptSettings(k=1, n_half=2.0, classes="labelled"))
    by_c = PatientAdapter(classes=CLASSES, scale=np.ones(2),
                          settings=AdaptSettings(k=1, n_half=2.0, classes="labelled", weight_by="class"))
    for ad in (by_n, by_c):
        ad.set_labels(x, y)
    np.testing.assert_allclose(by_c.class_weights(), [0.8 * 4 / 6, 0.0, 0.8 * 1 / 3, 0.0])
    q_n, q_c = by_n.adapt(p, beats), by_c.adapt(p, beats)
    mass = p[:, [0, 2]].sum(1)
    w_v, w_n, w_all = 0.8 / 3, 0.8 * 4 / 6, 0.8 * 5 / 7
    np.testing.assert_allclose(q_c[0, 2], (1 - w_v) * p[0, 2] + w_v * mass[0])
    np.testing.assert_allclose(q_c[1, 0], (1 - w_n) * p[1, 0] + w_n * mass[1])
    np.testing.assert_allclose(q_n[0, 2], (1 - w_all) * p[0, 2] + w_all * mass[0])
    assert q_c[0].argmax() == 0 and q_n[0].argmax() == 2  # one V label: not enough to turn this beat by class count
    np.testing.assert_allclose(q_c[:, [1, 3]], p[:, [1, 3]])


def test_a_beat_premature_for_this_patients_labelled_normal_beats_is_called_s_without_any_s_label(tables):
    """premature > 0: with N labels only (the first 30 s of the 220 excerpt), the later S beats, premature
    against this patient's labelled normal RR, are called S and its N beats stay N; premature=0 calls none S.
    A beat called V stays V; with fewer than PREMATURE_MIN_N labelled N beats the rule is off."""
    from pedstream.monitor.adapt import PREMATURE_MIN_N

    tab = tables["220"]
    lab = _n_and_v_labels(tab, n_n=30)
    later = tab.t >= 30.0
    p = np.tile(P_POP, (int(later.sum()), 1))
    off = PatientAdapter(classes=CLASSES, scale=tab.x.std(axis=0), settings=AdaptSettings(k=1, classes="labelled"))
    off.set_labels(tab.x[lab], tab.y[lab])
    assert not np.any(off.adapt(p, tab.x[later]).argmax(1) == 1)
    on = PatientAdapter(classes=CLASSES, scale=tab.x.std(axis=0),
                        settings=AdaptSettings(k=1, classes="labelled", premature=0.65, premature_margin=0.8))
    on.set_labels(tab.x[lab], tab.y[lab])
    q = on.adapt(p, tab.x[later])
    s, n = tab.y[later] == 1, tab.y[later] == 0
    assert s.sum() >= 10 and np.mean(q[s].argmax(1) == 1) > 0.7 and np.all(q[n].argmax(1) == 0)
    np.testing.assert_allclose(q.sum(1), 1.0)
    p_v = np.tile([0.1, 0.1, 0.7, 0.1], (int(later.sum()), 1))
    np.testing.assert_allclose(on.adapt(p_v, tab.x[later]), p_v)  # only beats called N move
    few = PatientAdapter(classes=CLASSES, scale=tab.x.std(axis=0), settings=on.settings)
    few.set_labels(tab.x[lab[: PREMATURE_MIN_N - 1]], tab.y[lab[: PREMATURE_MIN_N - 1]])
    assert not np.any(few.adapt(p, tab.x[later]).argmax(1) == 1)


def test_the_prematurity_limit_follows_an_irregular_patients_own_normal_rr(tables):
    """The 208 excerpt's labelled N beats are irregular: the margin on their 1 % quantile keeps its later N
    beats N, where the limit from the median alone would call some of them S."""
    tab = tables["208"]
    lab = _n_and_v_labels(tab, n_n=30)
    later = (tab.t >= 30.0) & (tab.y == 0)
    p = np.tile(P_POP, (int(later.sum()), 1))
    guarded = PatientAdapter(classes=CLASSES, scale=tab.x.std(axis=0),
                             settings=AdaptSettings(k=1, classes="labelled", premature=0.9, premature_margin=0.8))
    guarded.set_labels(tab.x[lab], tab.y[lab])
    assert np.all(guarded.adapt(p, tab.x[later]).argmax(1) == 0)
    median_only = PatientAdapter(classes=CLASSES, scale=tab.x.std(axis=0),
                                 settings=AdaptSettings(k=1, classes="labelled", premature=0.9, premature_margin=1.0))
    median_only.set_labels(tab.x[lab], tab.y[lab])
    assert np.any(median_only.adapt(p, tab.x[later]).argmax(1) == 1)


@pytest.mark.parametrize("fields", [{"premature": 1.0}, {"premature": -0.1}, {"premature_margin": 0.0}])
def test_a_wrong_prematurity_setting_is_refused(fields):
    with pytest.raises(ValueError, match="premature"):
        AdaptSettings(**fields)


def test_the_prematurity_rule_adapts_only_the_stream_whose_normal_beats_are_labelled(tables):
    """Two streams of the same 220 excerpt: N labels on bed1 make its premature beats S; bed2, unlabelled,
    keeps the population call of every beat."""
    tab = tables["220"]
    bl = BeatLabels(classes=CLASSES, scale=tab.x.std(axis=0),
                    settings=AdaptSettings(k=1, classes="labelled", premature=0.65, premature_margin=0.8))
    for sid in ("bed1", "bed2"):
        bl.add_stream(sid)
        _observe(bl, sid, tab)
    first_n = tab.t[(tab.t < 30.0) & (tab.y == 0)]
    bl.label("bed1", [(float(t), "N") for t in first_n], who="dr.a")
    s_beats = tab.x[tab.y == 1]
    calls = {sid: [int(bl.adjust(sid, f, P_POP).argmax()) for f in s_beats] for sid in ("bed1", "bed2")}
    assert np.mean(np.asarray(calls["bed1"]) == 1) > 0.7 and calls["bed2"] == [0] * len(s_beats)
