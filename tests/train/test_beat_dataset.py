"""Beat windows of real MIT-BIH signal (configs/mitdb-aami.toml): RR features aligned with the beats,
required leads, paced-record exclusion, and one clear error for records a beat model cannot use."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

from pedstream.config import load_config
from pedstream.data.annotations import read_annotations
from pedstream.dsp.rr import RR_FEATURES, rr_features
from pedstream.errors import RecordError
from pedstream.train.dataset import build_windows

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / "tests" / "fixtures" / "real"
CONFIG = REPO / "configs" / "mitdb-aami.toml"


def _cfg(tmp_path: Path, *sets: str):
    return load_config(CONFIG, [f'train.cache_dir="{tmp_path / "cache"}"', *sets])


def _folder(tmp_path: Path, *names: str) -> Path:
    d = tmp_path / "mitdb"
    d.mkdir(exist_ok=True)
    for name in names:
        for ext in ("hea", "dat", "atr"):
            shutil.copy(REAL / f"{name}.{ext}", d / f"{name}.{ext}")
    return d


def test_mitdb_config_extends_the_default():
    cfg = load_config(CONFIG)
    assert cfg.signal.fs == 360.0 and cfg.labels.scheme == "aami" and cfg.segments.mode == "beat"
    assert cfg.segments.rr_features and cfg.train.exclude_records == ["102", "104", "107", "217"]
    assert "leipzig" in cfg.labels.schemes  # the rest comes from the packaged default


def test_beat_windows_carry_the_rr_features_of_their_beat(tmp_path):
    cfg = _cfg(tmp_path)
    ws = build_windows(_folder(tmp_path, "119"), cfg)
    assert ws.rr is not None and ws.rr.shape == (len(ws), len(RR_FEATURES))
    ann = read_annotations(REAL / "119")
    beats = np.unique(ann.sample[ann.beat_mask()])
    want = rr_features(beats, fs=360.0)
    centre = ws.starts + ws.window // 2
    np.testing.assert_array_equal(ws.rr, want[np.searchsorted(beats, centre)])
    counts = dict(zip(ws.classes, ws.class_counts().tolist()))
    assert counts["V"] > 10 and counts["N"] > 10  # 119 has uniform PVCs (bigeminy)
    # PVCs come early: their pre-RR is shorter than their local mean RR
    v = ws.labels == ws.classes.index("V")
    assert np.median(ws.rr[v, RR_FEATURES.index("pre_local")]) < -0.1
    b = ws.batch(np.arange(4))
    assert b["rr"].shape == (4, len(RR_FEATURES)) and b["ecg"].shape == (4, 12, 360)


def test_excluded_records_are_left_out(tmp_path):
    d = _folder(tmp_path, "119")
    shutil.copy(d / "119.hea", d / "102.hea")
    shutil.copy(d / "119.dat", d / "102.dat")
    (d / "102.hea").write_text((d / "119.hea").read_text().replace("119", "102"))
    ws = build_windows(d, _cfg(tmp_path))
    assert {r["name"] for r in ws.record_info} == {"119"}


def test_record_without_beat_annotations_is_one_error(tmp_path):
    d = _folder(tmp_path, "119")
    (d / "119.atr").unlink()
    with pytest.raises(RecordError, match="no beat annotations"):
        build_windows(d, _cfg(tmp_path))


def test_record_without_the_required_lead_is_one_error(tmp_path):
    rec = wfdb.rdrecord(str(REAL / "119"), physical=False)
    d = tmp_path / "v1only"
    d.mkdir()
    wfdb.wrsamp("119", fs=360, units=["mV"], sig_name=["V1"], d_signal=rec.d_signal[:, 1:2], fmt=["212"],
                adc_gain=[200.0], baseline=[1024], write_dir=str(d))
    shutil.copy(REAL / "119.atr", d / "119.atr")
    with pytest.raises(RecordError, match="lacks the required lead II"):
        build_windows(d, _cfg(tmp_path))


def test_record_at_another_rate_is_one_error(tmp_path):
    with pytest.raises(RecordError, match="1000 Hz"):
        build_windows(REAL, _cfg(tmp_path), records=["iaf1_afw"])
