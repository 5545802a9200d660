"""ReferenceLabels: the reference label of a call's window on a replayed record, loops included, and
the ``truth`` / ``truth_source`` it adds to calls. Rhythm annotations are the reference where a record
has them (mapped as ``score episodes`` maps them: the real MIT-BIH 203 excerpt, ``(AFIB`` almost
throughout, whose beats are mostly ``N``); the beat-label grouping only where there are none."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from pedstream.config import load_config
from pedstream.data.annotations import read_annotations, write_annotations
from pedstream.data.labels import LabelGrouping
from pedstream.data.rhythm import labels_at
from pedstream.data.segments import make_segments
from pedstream.data.rhythm import reference_for
from pedstream.monitor.reference import ReferenceLabels
from pedstream.transports.replay import plan_replay
from pedstream.events import MonitorEvent

DEMO = Path(__file__).resolve().parents[2] / "pedstream" / "assets" / "demo_records"
REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"


def _without_rhythm(tmp_path: Path, record: Path) -> Path:
    """A copy of ``record`` whose annotation file keeps its beats and drops its rhythm (``+``) marks."""
    for ext in (".hea", ".dat"):
        shutil.copy(record.with_suffix(ext), tmp_path / (record.name + ext))
    ann = read_annotations(record)
    keep = [i for i, sym in enumerate(ann.symbol) if sym != "+"]
    write_annotations(tmp_path / record.name, replace(ann, sample=ann.sample[keep], symbol=[ann.symbol[i] for i in keep],
                                                      aux=[ann.aux[i] for i in keep]))
    return tmp_path / record.name


def test_beat_reference_equals_the_training_segment_label_and_wraps_with_the_loop(tmp_path):
    cfg = load_config()
    plan = plan_replay([_without_rhythm(tmp_path, DEMO / "x002")], cfg.signal)[0]
    ref = ReferenceLabels.from_config(cfg)
    assert ref.add(plan, t0=100.0)
    assert ref.tracks["x002"].source == "beats" and ref.truth_source == "beats"
    grouping = LabelGrouping(cfg.labels.active)
    rec = plan.record
    segs = make_segments(rec.annotations(), grouping, cfg.segments, fs=rec.fs, n_samples=rec.n_samples,
                         record=rec.name)
    assert len(segs) >= 5 and len({s.label for s in segs}) >= 2, segs  # more than one class
    span = plan.stop - plan.start
    for s in segs:  # a "drop" segment lies inside one class: the reference is that class
        t = 100.0 + (s.start - plan.start) / rec.fs
        w = (s.stop - s.start) / rec.fs
        assert ref.label("x002", t, t + w) == grouping.classes[s.label]
        assert ref.label("x002", t + span / rec.fs, t + span / rec.fs + w) == grouping.classes[s.label]  # 2nd pass
    assert ref.label("x002", 99.0, 101.0) is None  # before the replay started
    assert ref.label("other", 100.0, 102.0) is None


def test_rhythm_annotations_are_the_reference_where_a_record_has_them():
    cfg = load_config()
    plan = plan_replay([REAL / "203"], cfg.signal)[0]
    ref = ReferenceLabels.from_config(cfg)
    assert ref.add(plan, t0=50.0)
    tr = ref.tracks["203"]
    assert tr.source == "rhythm" and ref.truth_source == "rhythm" and ref.summary()["streams"] == {"203": "rhythm"}
    _, episodes = reference_for(cfg, REAL / "203")  # what score episodes compares calls with
    window, fs = 2.5, plan.fs
    starts = np.arange(2.5, 57.0, 1.25)
    got = [ref.label("203", 50.0 + t, 50.0 + t + window) for t in starts]
    want = labels_at(episodes, np.round((starts + window / 2) * fs).astype(int))
    assert got == want
    assert got.count("af_afl") >= 0.9 * len(got) and "sinus" not in got  # the beats say sinus (92 N of 102 beats)
    assert ref.label("203", 50.0 + 45.8, 50.0 + 48.3) == "vt"  # (VT 46.4-47.7 s: the window's centre is in it
    # the beats alone would have said sinus: main's reference
    beats_only = ReferenceLabels(LabelGrouping(cfg.labels.active))
    beats_only.add(plan, t0=50.0)
    assert beats_only.tracks["203"].source == "beats" and beats_only.label("203", 60.0, 62.5) == "sinus"
    ev = MonitorEvent(stream="203", kind="call", label="af_afl", p=0.9, t_signal=60.0, extra={"t_signal_end": 62.5})
    ref.emit(ev)
    assert ev.to_dict()["truth"] == "af_afl" and ev.to_dict()["truth_source"] == "rhythm"
    assert ref.agreement() == (1, 1)


def test_rhythm_reference_wraps_with_the_loop():
    cfg = load_config()
    plan = plan_replay([DEMO / "x002"], cfg.signal)[0]  # (N from 0.3 s, (/V from 19.8 s
    ref = ReferenceLabels.from_config(cfg)
    ref.add(plan, t0=0.0)
    span_s = (plan.stop - plan.start) / plan.fs
    assert ref.tracks["x002"].source == "rhythm"
    for k in (0, 1, 2):
        assert ref.label("x002", k * span_s + 5.0, k * span_s + 7.5) == "sinus"
        assert ref.label("x002", k * span_s + 20.5, k * span_s + 23.0) == "ventricular_paced"


def test_truth_is_added_to_calls_and_agreement_counted():
    cfg = load_config()
    plan = plan_replay([DEMO / "x002"], cfg.signal)[0]
    ref = ReferenceLabels.from_config(cfg)
    ref.add(plan, t0=0.0)
    truth = ref.label("x002", 10.0, 12.5)
    assert truth is not None
    other = next(c for c in ref.classes if c != truth)
    evs = [MonitorEvent(stream="x002", kind="call", label=lab, p=0.9, t_signal=10.0, extra={"t_signal_end": 12.5})
           for lab in (truth, truth, other)]
    for ev in evs:
        ref.emit(ev)
    assert [e.extra["truth"] for e in evs] == [truth] * 3 and evs[0].to_dict()["truth"] == truth
    assert ref.tracks["x002"].agreement == 2 / 3 and ref.agreement() == (2, 3)
    alarm = MonitorEvent(stream="x002", kind="alarm_on", label="vt", t_signal=10.0, extra={"t_signal_end": 12.5})
    ref.emit(alarm)
    assert "truth" not in alarm.extra
