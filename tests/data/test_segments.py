"""Segment construction: rhythm mode (drop / majority, min_beats) and beat mode."""

from __future__ import annotations

import numpy as np

from pedstream.config import SegmentConfig, load_config
from pedstream.data.annotations import Annotations
from pedstream.data.labels import LabelGrouping
from pedstream.data.segments import Segment, make_segments, segment_arrays

FS = 100.0  # a round rate keeps the arithmetic readable: window 2 s = 200 samples, hop 1 s = 100


def _grouping() -> LabelGrouping:
    return LabelGrouping.from_config(load_config())


def _ann() -> Annotations:
    """Beats every 0.5 s: sinus 0-9.5 s, AVRT 10-19.5 s, with rhythm/noise marks that never count."""
    samples = list(range(0, 2000, 50))
    symbols = ["N"] * 20 + ["X"] * 20
    aux = [""] * 20 + ["AVRT"] * 20
    marks = [(0, "+", "(N"), (1000, "+", "(AVRT"), (1510, "~", ""), (1520, "Q", "")]
    pairs = sorted([(s, y, a) for s, y, a in zip(samples, symbols, aux)] + marks, key=lambda t: t[0])
    return Annotations(sample=[p[0] for p in pairs], symbol=[p[1] for p in pairs], aux=[p[2] for p in pairs], fs=FS)


def test_rhythm_drop_keeps_pure_windows_only():
    g = _grouping()
    cfg = SegmentConfig(mode="rhythm", window_s=2.0, hop_s=1.0, mixed="drop", min_beats=2)
    segs = make_segments(_ann(), g, cfg, fs=FS, n_samples=2000, record="x001", subject="001")
    sinus, avrt = g.classes.index("sinus"), g.classes.index("avrt")
    starts = [s.start for s in segs]
    # windows [800,1000) is pure sinus; [900,1100) spans both classes and is dropped; [1000,1200) pure AVRT
    assert 800 in starts and 900 not in starts and 1000 in starts
    assert all(s.stop - s.start == 200 for s in segs)
    assert {s.label for s in segs if s.stop <= 1000} == {sinus}
    assert {s.label for s in segs if s.start >= 1000} == {avrt}
    assert segs[0] == Segment("x001", "001", 0, 200, sinus)
    assert len(segs) == 18  # 19 grid positions (0..1800) minus the mixed one


def test_rhythm_majority_labels_mixed_windows():
    g = _grouping()
    cfg = SegmentConfig(mode="rhythm", window_s=2.0, hop_s=0.5, mixed="majority", min_beats=2)
    segs = {s.start: s.label for s in make_segments(_ann(), g, cfg, fs=FS, n_samples=2000, record="r")}
    sinus, avrt = g.classes.index("sinus"), g.classes.index("avrt")
    assert segs[850] == sinus  # beats 850..1000: 3 sinus (850, 900, 950), 1 AVRT (1000)
    assert 900 not in segs  # 2 sinus + 2 AVRT: a tie is dropped
    assert segs[950] == avrt  # 1 sinus, 3 AVRT
    drop = make_segments(_ann(), g, cfg.model_copy(update={"mixed": "drop"}), fs=FS, n_samples=2000, record="r")
    assert len(segs) > len(drop) and {850, 950}.isdisjoint({s.start for s in drop})


def test_rhythm_priority_labels_ectopy_and_drops_other_mixtures():
    g = _grouping()
    ann = _ann()
    # a PVC at 4 s inside the sinus run: every window holding it becomes a "pvc" window
    i = ann.sample.tolist().index(400)
    ann.symbol[i] = "V"
    cfg = SegmentConfig(mode="rhythm", window_s=2.0, hop_s=1.0, mixed="priority", min_beats=2)
    segs = {s.start: s.label for s in make_segments(ann, g, cfg, fs=FS, n_samples=2000, record="r")}
    sinus, avrt, pvc = (g.classes.index(c) for c in ("sinus", "avrt", "pvc"))
    assert segs[300] == pvc and segs[400] == pvc  # [300,500) and [400,600) contain the PVC
    assert segs[0] == sinus and segs[500] == sinus and segs[1000] == avrt
    assert 900 not in segs  # sinus -> AVRT onset: no priority class, dropped as in "drop"
    # the scheme orders the priority: a window with a PVC and a PAC is a "pvc" window
    ann.symbol[i + 1] = "A"
    segs = {s.start: s.label for s in make_segments(ann, g, cfg, fs=FS, n_samples=2000, record="r")}
    assert segs[300] == pvc and segs[400] == pvc
    assert g.priority_indices[:2] == (g.classes.index("vt"), pvc)


def test_window_priority_must_name_classes():
    import pytest

    from pedstream.errors import ConfigError

    with pytest.raises(ConfigError, match="window_priority"):
        load_config(overrides=['labels.schemes.leipzig.window_priority=["pvc", "nope"]'])


def test_min_beats_and_gaps():
    g = _grouping()
    ann = Annotations(sample=[100, 150, 1000], symbol=["N", "N", "N"], aux=["", "", ""], fs=FS)
    cfg = SegmentConfig(mode="rhythm", window_s=2.0, hop_s=1.0, min_beats=2)
    segs = make_segments(ann, g, cfg, fs=FS, n_samples=1500, record="r")
    assert [s.start for s in segs] == [0, 100]  # the window holding only the beat at 1000 has too few beats
    assert make_segments(ann, g, cfg.model_copy(update={"min_beats": 3}), fs=FS, n_samples=1500, record="r") == []


def test_beat_mode_centres_windows_and_drops_edges():
    g = _grouping()
    cfg = SegmentConfig(mode="beat", window_s=2.0)
    segs = make_segments(_ann(), g, cfg, fs=FS, n_samples=2000, record="r", subject="s")
    # beats at 0, 50 (too close to the start) and 1950 (too close to the end) are dropped; Q is ignored
    assert [s.start + 100 for s in segs] == list(range(100, 1901, 50))
    assert all(s.n_samples == 200 and s.subject == "s" for s in segs)
    assert segs[-1].label == g.classes.index("avrt")
    arr = segment_arrays(segs)
    assert arr["start"].dtype == np.int64 and arr["label"].shape == (len(segs),)


def test_window_longer_than_record_and_no_beats():
    g = _grouping()
    cfg = SegmentConfig(window_s=30.0)
    assert make_segments(_ann(), g, cfg, fs=FS, n_samples=2000, record="r") == []
    empty = Annotations(sample=[5], symbol=["+"], aux=["(N"], fs=FS)
    assert make_segments(empty, g, SegmentConfig(window_s=1.0, hop_s=0.5), fs=FS, n_samples=2000, record="r") == []
