"""The Leipzig-format simulator: file format, determinism, annotation conventions, physiology."""

from __future__ import annotations

import csv
import filecmp
from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy.signal import butter, sosfiltfilt

from pedstream.config import load_config
from pedstream.data.annotations import read_annotations
from pedstream.data.channels import ECG_CHANNELS, LEIPZIG_LAYOUTS
from pedstream.data.labels import LabelGrouping
from pedstream.data.synth import (
    LAYOUT_CYCLE,
    RecordOptions,
    random_label_stream,
    random_subject,
    simulate_record,
    synth_command,
    synthesize,
)
from pedstream.data.synth.rhythm import schedule_labels
from pedstream.data.synth.simulate import DIAGNOSIS_CYCLE
from pedstream.errors import ConfigError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "leipzig_mini"
FS = 977.0


@pytest.fixture(autouse=True)
def _synthetic_noise(monkeypatch):
    monkeypatch.setenv("PEDSTREAM_SYNTH_NSTDB", "none")  # tests never depend on ../shared


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth6")
    mp = pytest.MonkeyPatch()
    mp.setenv("PEDSTREAM_SYNTH_NSTDB", "none")
    try:
        res = synth_command(load_config(), out=out, records=6, minutes=0.3, seed=5, workers=1, quiet=True)
    finally:
        mp.undo()
    return out, res


# ------------------------------------------------------------------------------------------ format
def test_format_matches_leipzig(six):
    out, _ = six
    names = (out / "RECORDS").read_text().split()
    assert names == ["x001", "x002", "x003", "x004", "x005", "x006"]
    layouts = set()
    for i, name in enumerate(names):
        h = wfdb.rdheader(str(out / name))
        assert h.fs == 977
        assert set(h.fmt) == {"16"}
        assert set(h.units) == {"mV"}
        assert tuple(h.sig_name) == LEIPZIG_LAYOUTS[LAYOUT_CYCLE[i]]
        assert all(g in (3200.0, 1600.0, 640.0) for g in h.adc_gain)
        assert h.sig_len == int(round(0.3 * 60 * FS))
        layouts.add(LAYOUT_CYCLE[i])
        assert (out / f"{name}.atr").is_file()
    assert layouts == set(LEIPZIG_LAYOUTS)
    assert "SIMULATED" in (out / "README.txt").read_text()
    with (out / "children-subject-info.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["subject_id", "file_name", "gender", "age", "diagnosis", "ap_loacation", "ecg_duration"]
    for r in rows:
        assert 5 <= float(r["age"]) <= 18 and r["gender"] in ("M", "F")
        assert r["diagnosis"] in ("AVRT", "AVNRT", "AVRT-WPW", "AVRT-PJRT")
        assert bool(r["ap_loacation"]) == (r["diagnosis"] != "AVNRT")
        assert r["ecg_duration"] == "0:0:18"
    head = (out / "processed_segments_with_aux.csv").read_bytes()[:3]
    assert head == b"\xef\xbb\xbf"  # BOM like the real table


def test_annotation_conventions(six):
    out, _ = six
    allowed_x = {"AVRT", "AVNRT", "VT", "AFIB", "AFL", "EAT", "IVR", "avnrt", "avrt", "AVNRT+BII"}
    seen = set()
    for name in (out / "RECORDS").read_text().split():
        ann = read_annotations(out / name)
        assert ann.fs == FS
        assert np.all(np.diff(ann.sample) > 0)
        assert ann.symbol[0] == "+"  # every record opens with the rhythm in force
        for s, a in zip(ann.symbol, ann.aux):
            seen.add(s)
            if s == "X":
                assert a in allowed_x
            elif s == "+":
                assert a.startswith("(") and len(a) > 1
            elif s == "/":
                assert a in ("/A", "/V")
            elif s == "N":
                assert a in ("", "N-Prex")
            elif s == "A":
                assert a in ("", "A-Prex")
    assert {"+", "N"} <= seen and seen & {"X", "/"}


def test_deterministic_per_seed(tmp_path, cfg):
    kw = dict(records=2, minutes=0.25, workers=1, quiet=True)
    synth_command(cfg, out=tmp_path / "a", seed=3, **kw)
    synth_command(cfg, out=tmp_path / "b", seed=3, **kw)
    synth_command(cfg, out=tmp_path / "c", seed=4, **kw)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert mismatch == [] and errors == [] and len(match) == len(files)
    assert not filecmp.cmp(tmp_path / "a" / "x001.dat", tmp_path / "c" / "x001.dat", shallow=False)


def test_bad_arguments(tmp_path, cfg):
    with pytest.raises(ConfigError, match="--records"):
        synth_command(cfg, out=tmp_path, records=0, minutes=1, quiet=True)
    with pytest.raises(ConfigError, match="layout"):
        simulate_record(layout="nope", minutes=0.1, seed=0)


# --------------------------------------------------------------------------------------- physiology
def _hp(x: np.ndarray, f: float = 30.0) -> np.ndarray:
    return sosfiltfilt(butter(2, f, btype="highpass", fs=FS, output="sos"), x, axis=0)


def _run(labels, *, diagnosis="AVRT", ap="left lateral", seconds=20, **kw):
    subj = random_subject(np.random.default_rng(7), index=0, age=11, diagnosis=diagnosis, ap_location=ap)
    return synthesize(minutes=seconds / 60, seed=11, subject=subj, labels=labels, nstdb=None,
                      options=RecordOptions(noise_level=0.3), **kw)


def _qrs_onsets(rec) -> list[int]:
    """QRS onset per annotated beat, found on the ECG's spatial velocity before the R peak."""
    ecg = rec.signal[:, :12]
    vel = np.abs(np.diff(sosfiltfilt(butter(2, [1, 40], btype="bandpass", fs=FS, output="sos"), ecg, axis=0),
                         axis=0)).sum(axis=1)
    out = []
    ann = rec.annotations
    for s, sym in zip(ann.sample, ann.symbol):
        if sym in ("+", "~") or s < 200 or s > len(vel) - 200:
            continue
        w = vel[s - 120:s + 20]
        above = np.flatnonzero(w > 0.25 * w.max())
        out.append(int(s - 120 + above[0]))
    return out


def _cs_atrial_times(rec, onsets):
    """Per beat, the time (ms from QRS onset) of the largest deflection on each CS pair (= local A)."""
    cs = ["CS12", "CS34", "CS56", "CS78", "CS90"]
    x = _hp(rec.signal[:, [rec.channels.index(c) for c in cs]])
    times = []
    for k in range(2, len(onsets) - 2):
        o = onsets[k]
        a, b = o - int(0.03 * FS), o + int(0.85 * (onsets[k + 1] - o))  # this beat's VA window
        times.append((np.argmax(np.abs(x[a:b]), axis=0) + a - o) / FS * 1000)
    return np.array(times)  # (beats, 5) ms


def test_avnrt_va_near_zero_and_concentric():
    rec = _run([("+", "(AVNRT")] + [("X", "AVNRT")] * 200, diagnosis="AVNRT", ap="")
    t = _cs_atrial_times(rec, _qrs_onsets(rec))
    va = np.median(t.min(axis=1))
    assert -30 < va < 30, va
    assert int(np.argmin(np.median(t, axis=0))) == 4  # CS90 (proximal) first: concentric
    assert np.all(np.diff(np.median(t, axis=0)) < 0)  # proximal -> distal


def test_avrt_left_lateral_va_over_70_and_eccentric():
    rec = _run([("+", "(AVRT")] + [("X", "AVRT")] * 200, diagnosis="AVRT", ap="left lateral")
    t = _cs_atrial_times(rec, _qrs_onsets(rec))
    va = np.median(t.min(axis=1))
    assert va > 70, va
    assert int(np.argmin(np.median(t, axis=0))) == 0  # CS12 (distal) first: eccentric


def _qrs_width_ms(rec) -> float:
    ecg = sosfiltfilt(butter(2, [1, 40], btype="bandpass", fs=FS, output="sos"), rec.signal[:, :12], axis=0)
    vel = np.abs(np.diff(ecg, axis=0)).sum(axis=1)
    widths = []
    for o in _qrs_onsets(rec)[2:-2]:
        w = vel[o:o + int(0.2 * FS)]
        above = np.flatnonzero(w > 0.25 * w.max())
        widths.append((above[-1] - above[0]) / FS * 1000)
    return float(np.median(widths))


def test_vt_wider_than_sinus():
    sinus = _run([("+", "(N")] + [("N", "")] * 100)
    vt = _run([("+", "(VT")] + [("X", "VT")] * 200)
    assert _qrs_width_ms(vt) > _qrs_width_ms(sinus) + 30


def test_pacing_spikes_present_only_when_paced():
    def spikes(rec):
        d = np.abs(np.diff(rec.signal[:, :12], axis=0)).max(axis=1)
        return int(np.sum((d[1:] > 0.4) & (d[1:] >= d[:-1])))

    vp = _run([("+", "(/V")] + [("/", "/V")] * 100)
    ap = _run([("+", "(/A")] + [("/", "/A")] * 100)
    sinus = _run([("+", "(N")] + [("N", "")] * 100)
    for rec, sym in ((vp, "/V"), (ap, "/A")):
        n_paced = sum(1 for a in rec.annotations.aux if a == sym)
        assert spikes(rec) >= 0.9 * n_paced
    assert spikes(sinus) == 0


def test_clipping_and_flat_channel_where_configured():
    rec = _run([("N", "")] * 50, seconds=20)
    assert not np.any(np.abs(rec.signal[:, 7]) >= 10.2)
    opts = RecordOptions(clip_leads=("V2",), flat=("ABL12",), noise_level=0.3)
    subj = random_subject(np.random.default_rng(7), index=0, diagnosis="AVRT")
    clipped = synthesize(minutes=2, seed=11, subject=subj, labels=[("N", "")], nstdb=None, options=opts)
    v2 = clipped.signal[:, ECG_CHANNELS.index("V2")]
    assert np.any(np.abs(v2) >= 32767 / 3200 - 1e-9)
    assert np.ptp(clipped.signal[:, clipped.channels.index("ABL12")]) == 0.0


# -------------------------------------------------------------------------------- label sources
def test_follow_real_plays_the_real_sequence_in_order(tmp_path, cfg):
    with (FIXTURE / "processed_segments_with_aux.csv").open(encoding="utf-8-sig") as fh:
        seq = [(r["label_symbol"], r["dataset_aux_string"]) for r in csv.DictReader(fh)]
    synth_command(cfg, out=tmp_path, records=1, minutes=1.0, seed=2, follow_real=FIXTURE, workers=1, quiet=True)
    ann = read_annotations(tmp_path / "x001")
    got = list(zip(ann.symbol, ann.aux))
    if got[0][0] == "+":  # the marker of the episode the random offset falls into
        got = got[1:]
    assert len(got) > len(seq)  # a 1-minute record loops the 140-label excerpt
    loop = seq * (len(got) // len(seq) + 3)
    starts = [i for i in range(len(seq)) if loop[i:i + len(got)] == got]
    assert starts, "the simulated labels are not a contiguous run of the real sequence"
    rows = list(csv.DictReader((tmp_path / "children-subject-info.csv").read_text().splitlines()))
    assert (rows[0]["age"], rows[0]["gender"], rows[0]["diagnosis"], rows[0]["ap_loacation"]) == \
        ("6.1", "F", "AVRT", "left anterolateral")


def test_random_generator_covers_eight_classes_in_six_short_records(cfg):
    grouping = LabelGrouping(cfg.labels.schemes["leipzig"])
    for seed in (0, 1, 2):
        counts: dict[str, int] = {}
        for i in range(6):
            subj = random_subject(np.random.default_rng([seed, i]), index=i, diagnosis=DIAGNOSIS_CYCLE[i])
            rng = np.random.default_rng([seed, i, 1])
            sched = schedule_labels(random_label_stream(subj, rng, max_episode_beats=60),
                                    subject=subj, rng=rng, duration=120.0)
            c = grouping.counts([a[1] for a in sched.annotations], [a[2] for a in sched.annotations])
            for k, v in c.items():
                counts[k] = counts.get(k, 0) + v
        assert sum(1 for v in counts.values() if v) >= 8, (seed, counts)


def test_simulate_record_api_shapes():
    sig, chans, ann = simulate_record(layout="art", minutes=0.2, seed=0, nstdb=None)
    assert sig.shape == (int(round(12 * FS)), len(LEIPZIG_LAYOUTS["art"]))
    assert chans == LEIPZIG_LAYOUTS["art"]
    art = sig[:, chans.index("ART")]
    assert 2.0 < np.median(art) < 6.0  # 40-120 mmHg at 0.05 mV/mmHg
    assert len(ann) > 5 and ann.fs == FS
