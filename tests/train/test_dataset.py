"""Window dataset: the shared dsp path (train/serve parity), warm-up drop, cache, subsampling, loaders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pedstream.data.labels import LabelGrouping
from pedstream.data.loader import open_record
from pedstream.data.segments import make_segments
from pedstream.dsp.filters import filter_signal
from pedstream.dsp.windowing import normalize_window
from pedstream.errors import RecordError
from pedstream.train import dataset as dataset_mod
from pedstream.train.dataset import WindowDataset, build_windows, make_loader, record_hashes

from .conftest import tiny_config, write_subject


def test_windows_equal_the_dsp_functions_on_the_raw_record(tiny_data: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_mod, "_CHUNK_S", 3.3)  # many chunk boundaries inside windows
    cfg = tiny_config(tmp_path / "cache")
    ws = build_windows(tiny_data, cfg)
    assert ws.x.dtype == np.float16 and ws.x.shape == (len(ws), 19, 2442)
    rec = open_record(tiny_data / "s02", cfg.signal)
    filtered = filter_signal(rec.read().data, rec.fs, cfg.filters)  # (n, 19) the offline helper
    sel = np.flatnonzero(ws.records == "s02")
    assert sel.size > 5
    windows = np.stack([filtered[s:s + ws.window].T for s in ws.starts[sel]])  # (k, 19, T)
    expected = normalize_window(windows, rec.present)
    got = np.asarray(ws.x[sel], dtype=np.float32)
    # float16 storage: |error| <= half a float16 step (< 4e-3 for |z| <= 10)
    np.testing.assert_allclose(got, expected, atol=4e-3, rtol=1e-3)
    assert np.mean(np.abs(got - expected)) < 1e-3
    b = ws.batch(sel[:4])
    assert b["ecg"].shape == (4, 12, 2442) and b["iegm"].shape == (4, 7, 2442) and b["mask"].shape == (4, 19)
    np.testing.assert_array_equal(b["ecg"], got[:4, :12])


def test_labels_match_segments_and_warmup_windows_are_dropped(tiny_data: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "cache")
    ws = build_windows(tiny_data, cfg)
    rec = open_record(tiny_data / "s01", cfg.signal)
    segs = make_segments(rec.annotations(), LabelGrouping(cfg.labels.active), cfg.segments, fs=rec.fs,
                         n_samples=rec.n_samples, record="s01")
    settle = int(round(cfg.filters.settle_s * rec.fs))
    assert any(s.start < settle for s in segs)  # the test is only meaningful if some are dropped
    want = {(s.start, s.label) for s in segs if s.start >= settle}
    sel = ws.records == "s01"
    assert set(zip(ws.starts[sel].tolist(), ws.labels[sel].tolist())) == want
    assert ws.starts.min() >= settle
    assert set(ws.subjects.tolist()) == {f"s{i:02d}" for i in range(1, 7)}
    assert {ws.classes[k] for k in np.unique(ws.labels)} == {"sinus", "pvc", "avrt"}


def test_second_build_hits_the_cache_and_inputs_change_the_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for i in range(2):
        write_subject(data, f"r{i}", seconds=24, seed=i)
    cfg = tiny_config(tmp_path / "cache")
    first = build_windows(data, cfg)
    second = build_windows(data, cfg)
    assert not first.cache_hit and second.cache_hit and first.key == second.key
    np.testing.assert_array_equal(np.asarray(first.x), np.asarray(second.x))
    assert isinstance(second.x, np.memmap)
    other = build_windows(data, tiny_config(tmp_path / "cache", "filters.mains_hz=60.0"))
    assert other.key != first.key and not other.cache_hit
    write_subject(data, "r1", seconds=24, seed=99)  # the same record name, different content
    changed = build_windows(data, cfg)
    assert changed.key != first.key and not changed.cache_hit
    assert record_hashes(data / "r1") == next(r["sha256"] for r in changed.record_info if r["name"] == "r1")


def test_absent_channels_are_masked_and_zero(tmp_path: Path) -> None:
    data = tmp_path / "ecg_only"
    iegm = ("ABL12", "RVA12", "CS12", "CS34", "CS56", "CS78", "CS90")
    write_subject(data, "e1", seconds=24, drop=iegm)
    ws = build_windows(data, tiny_config(tmp_path / "cache"))
    assert len(ws) > 0
    assert ws.mask[:, :12].all() and not ws.mask[:, 12:].any()
    assert not np.asarray(ws.iegm).any()
    assert np.asarray(ws.ecg, dtype=np.float32).std() > 0.5  # float16 storage: accumulate in float32


def test_cap_per_subject_and_class(tiny_data: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "cache", "train.max_windows_per_class_subject=3")
    ws = build_windows(tiny_data, cfg)
    pairs, counts = np.unique(np.stack([ws.subjects, ws.labels.astype(str)]), axis=1, return_counts=True)
    assert counts.max() == 3 and len(ws) == 3 * pairs.shape[1]


def test_bad_inputs_raise_record_errors(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordError, match="no WFDB records"):
        build_windows(tmp_path / "empty", cfg)
    write_subject(tmp_path / "fs500", "a", seconds=8, fs=500)
    with pytest.raises(RecordError, match="500 Hz"):
        build_windows(tmp_path / "fs500", cfg)


def test_loaders_are_deterministic_and_balanced_sampling_evens_classes(tiny_data: Path, tmp_path: Path) -> None:
    ws = build_windows(tiny_data, tiny_config(tmp_path / "cache"))
    ds = WindowDataset(ws, np.arange(len(ws)))
    item = ds[3]
    assert item["ecg"].dtype == torch.float32 and item["ecg"].shape == (12, 2442) and item["label"].dtype == torch.int64

    def labels(seed: int, balanced: bool) -> list[int]:
        out: list[int] = []
        for b in make_loader(ds, batch_size=16, shuffle=True, seed=seed, balanced=balanced, num_samples=600 if balanced else None):
            out += b["label"].tolist()
        return out

    assert labels(1, False) == labels(1, False) != labels(2, False)
    assert sorted(labels(1, False)) == sorted(ws.labels.tolist())
    drawn = np.bincount(labels(1, True), minlength=len(ws.classes))
    present = drawn[drawn > 0]
    assert present.size == 3 and present.min() > 150  # about 200 each, although sinus is rarer in the data
