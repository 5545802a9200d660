"""MIT-BIH rhythm windows and real-noise mixing for the monitor model (pedstream.train.rhythm_data), on
hand-made WFDB records written with wfdb.wrsamp / wfdb.wrann (no ../shared needed)."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb

from pedstream.config import load_config

FS = 360
DUR = 60  # s


def _beats(fs: int, n: int, rr_s: float) -> np.ndarray:
    return np.arange(int(0.3 * fs), n - int(0.3 * fs), int(rr_s * fs))


def _ecg(n: int, beats: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) mV: a narrow QRS-like bump at each beat on each lead, plus a little noise."""
    t = np.arange(n)
    sig = np.zeros((n, 2))
    for b in beats:
        w = np.exp(-0.5 * ((t[max(b - 40, 0):b + 40] - b) / 4.0) ** 2)
        sig[max(b - 40, 0):b + 40, 0] += 1.2 * w
        sig[max(b - 40, 0):b + 40, 1] -= 0.6 * w
    return sig + 0.01 * rng.standard_normal((n, 2))


@pytest.fixture()
def mitdb_like(tmp_path):
    """One 60 s, 360 Hz, two-lead (MLII, V1) record: (N 0-20 s with one V beat at 10 s, (AFIB 20-40 s,
    (SVTA 40-50 s (no class: excluded), (VT 50-60 s."""
    rng = np.random.default_rng(1)
    n = FS * DUR
    beats = _beats(FS, n, 0.8)
    sig = _ecg(n, beats, rng)
    folder = tmp_path / "mitdb"
    folder.mkdir()
    wfdb.wrsamp("900", fs=FS, units=["mV", "mV"], sig_name=["MLII", "V1"], p_signal=sig, fmt=["16", "16"],
                write_dir=str(folder))
    sym = ["N"] * beats.size
    v_at = int(np.argmin(np.abs(beats - 10 * FS)))
    sym[v_at] = "V"
    marks = [(0, "(N"), (20 * FS, "(AFIB"), (40 * FS, "(SVTA"), (50 * FS, "(VT")]
    samples = np.concatenate([beats, [m[0] for m in marks]])
    symbols = sym + ["+"] * len(marks)
    aux = [""] * beats.size + [m[1] for m in marks]
    order = np.argsort(samples, kind="stable")
    wfdb.wrann("900", "atr", sample=samples[order], symbol=[symbols[i] for i in order],
               aux_note=[aux[i] for i in order], write_dir=str(folder))
    return folder, beats[v_at]


@pytest.fixture()
def cfg():
    return load_config(None)


def test_rhythm_windows_labels_rate_mask(mitdb_like, cfg, tmp_path):
    from pedstream.train.rhythm_data import build_rhythm_windows

    folder, v_sample = mitdb_like
    ws = build_rhythm_windows(folder, cfg, cache_dir=tmp_path / "cache")
    assert ws.fs == 977.0 and ws.window == 2442 and ws.x.shape[1:] == (19, 2442)
    names = [ws.classes[k] for k in ws.labels]
    assert set(names) == {"sinus", "af_afl", "vt"}  # (SVTA has no class: dropped
    r = 977 / 360
    bounds = {"sinus": (0, 20), "af_afl": (20, 40), "vt": (50, 60)}
    for name, start in zip(names, ws.starts.tolist()):
        lo, hi = bounds[name]
        assert start >= max(lo * FS * r, cfg.filters.settle_s * 977) - 1 and start + 2442 <= hi * FS * r + 1
    # no window inside the excluded (SVTA episode, none before the filter warm-up
    assert not np.any((ws.starts + 2442 > 40 * FS * r + 1) & (ws.starts < 50 * FS * r - 1))
    # a sinus window holding the V beat is not clean sinus: dropped
    v = v_sample * r
    sinus = ws.starts[ws.labels == ws.classes.index("sinus")]
    assert sinus.size and not np.any((sinus <= v) & (sinus + 2442 > v))
    # the two leads land on II and V1 by name; every other lead and the whole IEGM branch are masked
    chans = cfg.signal.channels
    assert ws.mask.all(axis=0).tolist() == [c in ("II", "V1") for c in chans]
    assert not ws.mask[:, 12:].any() and not np.any(np.asarray(ws.x[:, 12:], np.float32))
    b = ws.batch(np.arange(len(ws)))
    assert np.allclose(b["ecg"][:, chans.index("II")].std(axis=1), 1.0, atol=0.02)
    assert np.all(b["iegm"] == 0) and np.all(b["mask"][:, 12:] == 0)


def test_rhythm_windows_cap_even_and_cache(mitdb_like, cfg, tmp_path):
    from pedstream.train.rhythm_data import build_rhythm_windows, training_subset

    folder, _ = mitdb_like
    cfg.mix.eval_windows_per_class_record = 3
    ws = build_rhythm_windows(folder, cfg, cache_dir=tmp_path / "cache")
    assert np.bincount(ws.labels).max() == 3 and not ws.cache_hit
    again = build_rhythm_windows(folder, cfg, cache_dir=tmp_path / "cache")
    assert again.cache_hit and np.array_equal(again.starts, ws.starts)
    sub = training_subset(ws, np.arange(len(ws)), 2, seed=0)
    assert np.bincount(ws.labels[sub]).max() == 2
    assert np.array_equal(sub, training_subset(ws, np.arange(len(ws)), 2, seed=0))


def test_unmapped_aux_is_excluded_by_configuration(mitdb_like, tmp_path):
    from pedstream.train.rhythm_data import build_rhythm_windows

    folder, _ = mitdb_like
    cfg = load_config(None, ['labels.rhythm.mitdb.classes={sinus=["(N"], af_afl=["(AFIB"]}'])
    ws = build_rhythm_windows(folder, cfg, cache_dir=tmp_path / "cache")
    assert {ws.classes[k] for k in ws.labels} == {"sinus", "af_afl"}  # (VT no longer mapped: dropped


def test_resample_to_matches_the_rate():
    from pedstream.train.rhythm_data import resample_to

    t_in = np.arange(3600) / 360.0
    y = resample_to(np.sin(2 * np.pi * 5 * t_in)[:, None], 360.0, 977.0)
    assert y.shape == (int(np.ceil(3600 * 977 / 360)), 1)
    t_out = np.arange(y.shape[0]) / 977.0
    mid = slice(500, -500)
    assert np.max(np.abs(y[mid, 0] - np.sin(2 * np.pi * 5 * t_out[mid]))) < 1e-2
    with pytest.raises(ValueError):
        resample_to(y, 0.0, 977.0)


def _batch(rng: np.random.Generator) -> dict[str, np.ndarray]:
    ecg = rng.standard_normal((6, 12, 2442)).astype(np.float32)
    mask = np.zeros((6, 19), np.float32)
    mask[:3, :12] = 1.0  # three full 12-lead windows
    mask[3:, [1, 6]] = 1.0  # three two-lead (II, V1) windows
    ecg[3:] *= mask[3:, :12, None]
    return {"ecg": ecg, "iegm": np.zeros((6, 7, 2442), np.float32), "mask": mask}


def test_noise_mixing_is_seeded_and_only_touches_present_leads():
    from pedstream.train.rhythm_data import NoiseMixer

    rng = np.random.default_rng(0)
    noise = {"ma": rng.standard_normal((20000, 2)).astype(np.float32),
             "bw": np.cumsum(rng.standard_normal((20000, 2)), axis=0).astype(np.float32)}
    clean = _batch(np.random.default_rng(5))
    out = [NoiseMixer(noise, prob=1.0, snr_db=(0.0, 0.0), lead_dropout=0.0, seed=s)(
        {k: v.copy() for k, v in clean.items()}) for s in (3, 3, 4)]
    assert np.array_equal(out[0]["ecg"], out[1]["ecg"])  # same seed, same noise
    assert not np.array_equal(out[0]["ecg"], out[2]["ecg"])
    e, m = out[0]["ecg"], out[0]["mask"]
    assert np.array_equal(m, clean["mask"])
    absent = m[:, :12] == 0
    assert np.all(e[absent] == 0)  # absent leads stay zero
    present = ~absent
    assert np.allclose(e[present].std(axis=-1), 1.0, atol=1e-3)  # z-scored again
    # 0 dB: the noisy lead is half signal, half noise -> correlation with the clean lead about 1/sqrt(2)
    corr = [np.corrcoef(e[i, c], clean["ecg"][i, c])[0, 1] for i, c in zip(*np.nonzero(present))]
    assert 0.6 < np.median(corr) < 0.8
    still = NoiseMixer(noise, prob=0.0, snr_db=(0.0, 0.0), lead_dropout=0.0, seed=3)(
        {k: v.copy() for k, v in clean.items()})
    assert np.array_equal(still["ecg"], clean["ecg"])
    with pytest.raises(ValueError):
        NoiseMixer(noise, prob=1.0, snr_db=(10.0, 0.0), lead_dropout=0.0, seed=0)


def test_lead_dropout_cuts_only_full_layouts():
    from pedstream.train.rhythm_data import NoiseMixer

    clean = _batch(np.random.default_rng(2))
    out = NoiseMixer({}, prob=0.0, snr_db=(0.0, 0.0), lead_dropout=1.0, seed=0)({k: v.copy() for k, v in clean.items()})
    kept = out["mask"][:, :12].sum(axis=1)
    assert np.all((kept[:3] >= 1) & (kept[:3] <= 3))  # 12-lead windows cut to 1-3 leads
    assert np.array_equal(out["mask"][3:], clean["mask"][3:])  # partial layouts untouched
    assert np.all(out["ecg"][out["mask"][:, :12] == 0] == 0)


def test_em_noise_recovered_as_stress_record_minus_clean(tmp_path, cfg):
    from pedstream.train.rhythm_data import load_noise

    rng = np.random.default_rng(0)
    n = FS * 40
    clean_d = (rng.integers(-200, 200, size=(n, 2)) + 1024).astype(np.int64)
    noise_d = np.zeros((n, 2), np.int64)
    noise_d[FS * 20:FS * 30] = rng.integers(-300, 300, size=(FS * 10, 2))  # 10 s of noise
    (tmp_path / "mitdb").mkdir()
    (tmp_path / "nstdb").mkdir()
    for rec, d, zero, folder in (("118", clean_d, 1024, "mitdb"), ("118e00", clean_d - 1024 + noise_d, 0, "nstdb")):
        wfdb.wrsamp(rec, fs=FS, units=["mV", "mV"], sig_name=["MLII", "V1"], d_signal=d, fmt=["16", "16"],
                    adc_gain=[200.0, 200.0], baseline=[1024, 1024], write_dir=str(tmp_path / folder))
        assert zero in (0, 1024)
    for rec in ("bw", "ma"):
        wfdb.wrsamp(rec, fs=FS, units=["mV", "mV"], sig_name=["noise1", "noise2"], fmt=["16", "16"],
                    p_signal=0.1 * rng.standard_normal((n, 2)), write_dir=str(tmp_path / "nstdb"))
    out = load_noise(tmp_path / "nstdb", cfg, clean_dir=tmp_path / "mitdb")
    assert set(out) == {"bw", "ma", "em"}
    settle = int(cfg.filters.settle_s * 977)
    assert out["em"].shape[0] == int(np.ceil(10 * FS * 977 / 360)) - settle  # only the 10 noisy seconds
    assert out["bw"].shape[0] == int(np.ceil(n * 977 / 360)) - settle
    assert out["em"].std() > 0.1
