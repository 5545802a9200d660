"""ReferenceLabels: the reference label of a call's window on a replayed bundled record (real
annotations, the configured label grouping), loops included, and the ``truth`` it adds to calls."""

from __future__ import annotations

from pathlib import Path

from pedstream.config import load_config
from pedstream.data.labels import LabelGrouping
from pedstream.data.segments import make_segments
from pedstream.stream.reference import ReferenceLabels
from pedstream.stream.replay import plan_replay
from pedstream.stream.sinks import MonitorEvent

DEMO = Path(__file__).resolve().parents[2] / "pedstream" / "assets" / "demo_records"


def test_reference_label_equals_the_training_segment_label_and_wraps_with_the_loop():
    cfg = load_config()
    plan = plan_replay([DEMO / "x002"], cfg.signal)[0]
    ref = ReferenceLabels.from_config(cfg)
    assert ref.add(plan, t0=100.0)
    grouping = LabelGrouping(cfg.labels.active)
    rec = plan.record
    segs = make_segments(rec.annotations(), grouping, cfg.segments, fs=rec.fs, n_samples=rec.n_samples,
                         record=rec.name)
    assert len(segs) >= 5 and len({s.label for s in segs}) >= 2, segs  # more than one rhythm
    span = plan.stop - plan.start
    for s in segs:  # a "drop" segment lies inside one class: the reference is that class
        t = 100.0 + (s.start - plan.start) / rec.fs
        w = (s.stop - s.start) / rec.fs
        assert ref.label("x002", t, t + w) == grouping.classes[s.label]
        assert ref.label("x002", t + span / rec.fs, t + span / rec.fs + w) == grouping.classes[s.label]  # 2nd pass
    assert ref.label("x002", 99.0, 101.0) is None  # before the replay started
    assert ref.label("other", 100.0, 102.0) is None


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
