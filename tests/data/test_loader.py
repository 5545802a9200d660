"""The WFDB loader on real WFDB files: six Leipzig layouts, clipping, flat channels, bad records,
range reads, and the real MIT-BIH / iafdb excerpts through the same code path."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import wfdb

from pedstream.config import SignalConfig, load_config
from pedstream.data.channels import CANONICAL_CHANNELS, LEIPZIG_LAYOUTS
from pedstream.data.labels import LabelGrouping
from pedstream.data.loader import identify_layout, list_records, open_record
from pedstream.errors import RecordError

from .conftest import FS, GAIN, leipzig_waveform, write_record

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "real"
IDX = {c: i for i, c in enumerate(CANONICAL_CHANNELS)}


@pytest.fixture(scope="module")
def sig() -> SignalConfig:
    return load_config().signal


@pytest.mark.parametrize("layout", list(LEIPZIG_LAYOUTS))
def test_six_layouts_resolved_by_name(tmp_path, sig, layout):
    names = LEIPZIG_LAYOUTS[layout]
    path = write_record(tmp_path, "r", names, seconds=2.0, seed=3)
    rec = open_record(path, sig)
    assert rec.layout == layout
    assert rec.fs == FS and rec.n_samples == 2 * FS
    s = rec.read()
    assert s.data.shape == (2 * FS, 19) and s.data.dtype == np.float32
    # every canonical channel in the file lands in its canonical column, by name, whatever its index
    expected = leipzig_waveform(2 * FS, len(names), seed=3)
    for col, name in enumerate(names):
        if name in IDX:
            np.testing.assert_allclose(s.data[:, IDX[name]], expected[:, col], atol=0.6 / GAIN)
    present = {c for c in CANONICAL_CHANNELS if rec.present[IDX[c]]}
    assert present == set(names) & set(CANONICAL_CHANNELS)
    absent = [IDX[c] for c in CANONICAL_CHANNELS if c not in names]
    assert not s.data[:, absent].any()
    assert set(rec.channel_map.ignored) == set(names) - set(CANONICAL_CHANNELS)  # ART, ABL_uni: no error


def test_layout_specifics(tmp_path, sig):
    r = open_record(write_record(tmp_path, "last", LEIPZIG_LAYOUTS["rva_last"], seconds=1), sig)
    assert r.sig_names[-1] == "RVA12" and r.channel_map.source_index[IDX["RVA12"]] == 18
    r = open_record(write_record(tmp_path, "noabl", LEIPZIG_LAYOUTS["no_abl"], seconds=1), sig)
    assert not r.present[IDX["ABL12"]] and r.present[IDX["CS90"]]
    r = open_record(write_record(tmp_path, "nocs", LEIPZIG_LAYOUTS["abl_rva"], seconds=1), sig)
    assert not r.present[[IDX[c] for c in ("CS12", "CS34", "CS56", "CS78", "CS90")]].any()
    assert r.present.sum() == 14
    assert identify_layout(["I", "II"]) is None


def test_clipping_marks_only_saturated_samples(tmp_path, sig):
    rec = open_record(write_record(tmp_path, "clip", LEIPZIG_LAYOUTS["art"], seconds=3, clip="V2"), sig)
    s = rec.read()
    v2 = IDX["V2"]
    assert s.clipped[:, v2].any()
    np.testing.assert_allclose(np.abs(s.data[s.clipped[:, v2], v2]), 32767 / GAIN, rtol=1e-3)  # 10.24 mV rail
    assert not np.delete(s.clipped, v2, axis=1).any()
    assert (np.abs(s.data[~s.clipped[:, v2], v2]) < 32767 * 0.999 / GAIN).all()


def test_wfdb_invalid_value_is_a_clipped_rail_not_nan(tmp_path, sig):
    d = np.zeros((977, 12), dtype=np.int32)
    d[100:110, 1] = -32768  # the lowest format-16 value (WFDB's "invalid sample")
    d[:, :] += np.arange(977)[:, None] % 50
    d[100:110, 1] = -32768
    wfdb.wrsamp("inv", fs=977, units=["mV"] * 12, sig_name=list(LEIPZIG_LAYOUTS["full"][:12]), d_signal=d,
                fmt=["16"] * 12, adc_gain=[GAIN] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    s = open_record(tmp_path / "inv", sig).read()
    assert np.isfinite(s.data).all()
    assert s.clipped[100:110, 1].all() and s.clipped.sum() == 10


def test_flat_channel_is_absent(tmp_path, sig):
    rec = open_record(write_record(tmp_path, "flat", LEIPZIG_LAYOUTS["abl_uni"], seconds=2, flat="ABL12"), sig)
    k = IDX["ABL12"]
    assert rec.mapped[k] and rec.flat[k] and not rec.present[k]
    assert rec.flat.sum() == 1 and rec.present.sum() == 18
    assert rec.ptp_mv[k] < sig.flat_ptp_mv
    assert not rec.read().data[:, k].any()


def test_units_are_converted_to_millivolts(tmp_path, sig):
    a = open_record(write_record(tmp_path, "mv", LEIPZIG_LAYOUTS["abl_rva"], seconds=1, seed=1), sig).read()
    b = open_record(write_record(tmp_path, "uv", LEIPZIG_LAYOUTS["abl_rva"], seconds=1, seed=1, units="uV",
                                 units_per_mv=1000.0, gain=GAIN / 1000), sig).read()
    np.testing.assert_allclose(a.data, b.data, atol=1e-3)


def test_range_read_equals_slice_of_whole_and_chunks(tmp_path, sig):
    rec = open_record(write_record(tmp_path, "r", LEIPZIG_LAYOUTS["full"], seconds=6, clip="V1"), sig)
    whole = rec.read()
    part = rec.read(1000, 2500)
    assert part.start == 1000 and part.stop == 2500
    np.testing.assert_array_equal(part.data, whole.data[1000:2500])
    np.testing.assert_array_equal(part.clipped, whole.clipped[1000:2500])
    chunks = list(rec.iter_chunks(977))
    assert [c.start for c in chunks] == list(range(0, rec.n_samples, 977))
    np.testing.assert_array_equal(np.concatenate([c.data for c in chunks]), whole.data)
    with pytest.raises(RecordError, match=r"record r: sample range \[0, 99999\) is outside"):
        rec.read(0, 99999)


def test_range_read_does_not_load_the_record(tmp_path, sig):
    """A 1 s read from a 10 min, 19-channel record allocates a few hundred kB, not the 22 MB file."""
    n = 600 * FS
    names = list(LEIPZIG_LAYOUTS["full"])
    rng = np.random.default_rng(0)
    d = rng.integers(-3000, 3000, size=(n, 19), dtype=np.int16)
    wfdb.wrsamp("big", fs=FS, units=["mV"] * 19, sig_name=names, d_signal=d, fmt=["16"] * 19,
                adc_gain=[GAIN] * 19, baseline=[0] * 19, write_dir=str(tmp_path))
    assert (tmp_path / "big.dat").stat().st_size == n * 19 * 2
    rec = open_record(tmp_path / "big", sig)
    tracemalloc.start()
    assert rec.present.all()  # the whole-record flat scan runs chunk-wise, well below the file size
    _, scan_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    s = rec.read(300 * FS, 301 * FS)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2_000_000, peak
    assert scan_peak < 12_000_000, scan_peak
    np.testing.assert_allclose(s.data, d[300 * FS: 301 * FS] / GAIN, atol=1e-6)


def test_bad_records_fail_with_one_line(tmp_path, sig):
    path = write_record(tmp_path, "x9", LEIPZIG_LAYOUTS["full"], seconds=1)
    with pytest.raises(RecordError, match=r"^record nope: header file .*nope.hea does not exist$"):
        open_record(tmp_path / "nope", sig)
    dat = tmp_path / "x9.dat"
    raw = dat.read_bytes()
    dat.write_bytes(raw[: len(raw) // 2])  # truncated
    with pytest.raises(RecordError, match=r"record x9: header/data length mismatch: x9.dat has \d+ bytes"):
        open_record(path, sig)
    dat.unlink()
    with pytest.raises(RecordError, match=r"record x9: signal file .*x9.dat does not exist"):
        open_record(path, sig)
    (tmp_path / "bad.hea").write_text("bad x 977\n")
    with pytest.raises(RecordError, match=r"record bad: .*bad.hea is not a WFDB header \(expected a record line"):
        open_record(tmp_path / "bad", sig)
    (tmp_path / "empty.hea").write_text("")  # regression: was "list index out of range"
    with pytest.raises(RecordError, match=r"record empty: .*empty.hea is empty: not a WFDB header"):
        open_record(tmp_path / "empty", sig)
    (tmp_path / "text.hea").write_text("not a header at all\n")  # regression: was "sampling frequency 'header' ..."
    with pytest.raises(RecordError, match=r"record text: .*text.hea is not a WFDB header"):
        open_record(tmp_path / "text", sig)
    (tmp_path / "b2.hea").write_text("b2 2 977 10\nb2.dat 16 200 16 0 0 0 0 I\n")
    with pytest.raises(RecordError, match="record b2: the header announces 2 signals but describes 1"):
        open_record(tmp_path / "b2", sig)
    (tmp_path / "f.hea").write_text("f 1 977 10\nf.dat 999 200 16 0 0 0 0 I\n")
    (tmp_path / "f.dat").write_bytes(b"\0" * 40)
    with pytest.raises(RecordError, match=r"record f: .*(unknown|format)"):
        open_record(tmp_path / "f", sig)
    (tmp_path / "p.hea").write_text("p 1 977 10\np.dat 16 200/mmHg 16 0 0 0 0 ART\n")
    (tmp_path / "p.dat").write_bytes(b"\0" * 20)
    with pytest.raises(RecordError, match=r"record p: none of the channel names \['ART'\]"):
        open_record(tmp_path / "p", sig)
    (tmp_path / "q.hea").write_text("q 1 977 10\nq.dat 16 200/mmHg 16 0 0 0 0 II\n")
    (tmp_path / "q.dat").write_bytes(b"\0" * 20)
    with pytest.raises(RecordError, match=r"record q: channel II has units 'mmHg'"):
        open_record(tmp_path / "q", sig)


def test_list_records(tmp_path, leipzig_folder):
    recs = list_records(leipzig_folder)
    assert [r.name for r in recs] == [f"x{i:03d}" for i in range(1, 7)]
    (leipzig_folder / "RECORDS").write_text("x003\nx001\n")
    assert [r.name for r in list_records(leipzig_folder)] == ["x001", "x003"]
    with pytest.raises(RecordError, match="is not a folder"):
        list_records(tmp_path / "missing")


def test_annotations_of_record(leipzig_folder, sig):
    rec = open_record(leipzig_folder / "x001", sig)
    ann = rec.annotations()
    assert ("X", "AVRT") in ann.pairs()
    assert open_record(write_record(leipzig_folder.parent, "noann", LEIPZIG_LAYOUTS["full"], seconds=1),
                       sig).annotations() is None


def test_real_mitdb_and_iafdb_through_the_same_loader():
    cfg = load_config(overrides=["labels.scheme=aami"])
    grouping = LabelGrouping.from_config(cfg)
    mit = open_record(FIXTURES / "119", cfg.signal)
    assert mit.fs == 360 and mit.n_samples == 21600 and mit.layout is None
    assert mit.present[IDX["II"]] and mit.present[IDX["V1"]] and mit.present.sum() == 2  # MLII -> II alias
    s = mit.read(0, 3600)
    raw = wfdb.rdrecord(str(FIXTURES / "119"), sampto=3600)  # wfdb's own physical conversion
    np.testing.assert_allclose(s.data[:, IDX["II"]], raw.p_signal[:, 0], atol=1e-6)
    ann = mit.annotations()
    counts = grouping.counts(ann.symbol, ann.aux)
    assert set(counts) == {"N", "S", "V", "F", "Q"}
    assert counts["N"] > 40 and counts["V"] > 0 and sum(counts.values()) == int(ann.beat_mask().sum())

    iaf = open_record(FIXTURES / "iaf1_afw", cfg.signal)
    assert iaf.fs == 1000 and iaf.n_samples == 20000
    got = {c for c in CANONICAL_CHANNELS if iaf.present[IDX[c]]}
    assert got == {"II", "V1", "aVF", "CS12", "CS34", "CS56", "CS78", "CS90"}
    x = iaf.read(5000, 6000)
    raw = wfdb.rdrecord(str(FIXTURES / "iaf1_afw"), sampfrom=5000, sampto=6000)
    np.testing.assert_allclose(x.data[:, IDX["CS12"]], raw.p_signal[:, 3], atol=1e-6)
    assert not x.clipped.any()
    assert iaf.annotations() is None


@pytest.mark.parametrize("fs_text", ["-977", "0", "0/1000", "abc", "nan", "-1(0)"])
def test_non_positive_sampling_frequency_is_refused_with_one_line(tmp_path, sig, fs_text):
    """Issue 10: wfdb read ``fs = -977`` as its 250 Hz default and the record was used (exit 0)."""
    (tmp_path / "n.hea").write_text(f"n 1 {fs_text} 10\nn.dat 16 200/mV 16 0 0 0 0 II\n")
    (tmp_path / "n.dat").write_bytes(b"\0" * 20)
    with pytest.raises(RecordError, match=r"^record n: sampling frequency '.*' in n.hea is not a positive number$") as ei:
        open_record(tmp_path / "n", sig)
    assert ei.value.exit_code == 2 and "\n" not in str(ei.value)
