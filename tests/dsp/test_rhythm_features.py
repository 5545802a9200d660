"""Context features and the RR-irregularity rule: known RR patterns, causality, and real recordings
(CinC 2017 AF / normal, tests/fixtures/real/rhythm) through the serving filters and the QRS detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pedstream.config import load_config
from pedstream.data.cinc2017 import read_recording
from pedstream.dsp.filters import FilterBank
from pedstream.dsp.qrs import OnlineQRSDetector
from pedstream.dsp.rhythm_features import (ALL_FEATURES, BEAT_RUN_FEATURES, CONTEXT_FEATURES, EXTRA_RR_FEATURES, MORPH_FEATURES,
                                           RR_CONTEXT_FEATURES, context_features, context_features_multi,
                                           decimation_step, extra_rr_features, morph_features, rr_context_features,
                                           signal_features)
from pedstream.dsp.rr_rule import RRIrregularityRule, clean_intervals

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "rhythm"
F = {n: i for i, n in enumerate(CONTEXT_FEATURES)}


def beats_of(rr: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(rr)])


def test_rule_on_patterns() -> None:
    rng = np.random.default_rng(1)
    rule = RRIrregularityRule()
    sinus = 0.8 + 0.05 * np.sin(np.arange(80) * 2 * np.pi / 5)  # respiratory sinus arrhythmia
    af = rng.uniform(0.4, 1.1, 80)
    bigeminy = np.tile([0.5, 1.0], 40)
    pvcs = np.full(80, 0.8)
    pvcs[10::9] = 0.5
    pvcs[11::9] = 1.1
    assert rule.is_af(beats_of(af))
    for rr in (sinus, bigeminy, pvcs):
        assert not rule.is_af(beats_of(rr))
    kept, frac = clean_intervals(pvcs)
    assert frac > 0.1 and np.all(kept == 0.8)
    assert not rule.is_af(beats_of(af[:20]))  # too few intervals: no call


def test_rr_features_irregularity_and_asystole() -> None:
    rng = np.random.default_rng(2)
    reg = rr_context_features(beats_of(np.full(40, 0.75)), 30.0, 30.0)
    irr = rr_context_features(beats_of(rng.uniform(0.4, 1.1, 60)), 30.0, 30.0)
    i = {n: k for k, n in enumerate(RR_CONTEXT_FEATURES)}
    assert reg[i["hr_bpm"]] == pytest.approx(80.0, rel=1e-3) and reg[i["pdiff10"]] == 0 and reg[i["rr_cv"]] < 1e-6
    assert irr[i["pdiff10"]] > 0.5 and irr[i["nrmssd"]] > 0.2 and irr[i["sampen"]] > reg[i["sampen"]]
    pause = rr_context_features(beats_of(np.full(20, 0.75)), 15.0 + 6.0, 30.0)  # 6 s after the last beat
    assert pause[i["since_last_s"]] == pytest.approx(6.0) and pause[i["max_gap_s"]] == pytest.approx(6.0)
    empty = rr_context_features(np.zeros(0), 10.0, 30.0)
    assert np.isfinite(empty).all() and empty[i["n_beats"]] == 0


def test_features_are_causal() -> None:
    rng = np.random.default_rng(3)
    b = beats_of(rng.uniform(0.5, 1.0, 100))
    lead = rng.normal(size=1000)
    now = float(b[50]) + 0.1
    a = context_features(b[:51], now, 30.0, lead, 125.0, lead_t0=now - 8.0)
    c = context_features(b, now, 30.0, lead, 125.0, lead_t0=now - 8.0)  # future beats present
    assert np.array_equal(a, c) and a.shape == (len(CONTEXT_FEATURES),) and a.dtype == np.float32


def test_signal_features_vf_like_sine_vs_noise() -> None:
    fs = 125.0
    t = np.arange(int(8 * fs)) / fs
    vf = signal_features(0.5 * np.sin(2 * np.pi * 5.0 * t), fs)
    noise = signal_features(np.random.default_rng(4).normal(0, 0.3, t.size), fs)
    s = {n: k for k, n in enumerate(CONTEXT_FEATURES[len(RR_CONTEXT_FEATURES):])}
    assert vf[s["dom_hz"]] == pytest.approx(5.0, abs=0.5) and vf[s["conc"]] > 0.8 and 0 <= vf[s["vf_leak"]] <= 1
    assert noise[s["hf_frac"]] > vf[s["hf_frac"]] and noise[s["conc"]] < 0.5
    assert decimation_step(977.0) == 8 and decimation_step(250.0) == 2


@pytest.mark.parametrize("name,af", [("A00009", True), ("A00001", False)])
def test_real_cinc_recordings_through_detector(name: str, af: bool) -> None:
    cfg = load_config()
    x, fs = read_recording(FIX, name)
    y = FilterBank(fs=fs, cfg=cfg.filters, n_ecg=1, n_iegm=0).process(x[:, None])[:, 0]
    det = OnlineQRSDetector(fs=fs)
    b = np.asarray(det.process(y), dtype=np.float64) / fs
    assert len(b) > 20
    assert bool(RRIrregularityRule(min_intervals=20).is_af(b)) is af
    f = context_features(b, x.size / fs, 30.0, y[-int(8 * fs)::2], fs / 2, lead_t0=x.size / fs - 8.0)
    assert bool(f[F["pdiff10_clean"]] > 0.5) is af and np.isfinite(f).all()


@pytest.mark.parametrize("name,af", [("A00009", True), ("A00001", False)])
def test_morphology_and_multiscale_features_on_real_recordings(name: str, af: bool) -> None:
    """P waves are the same before every beat in sinus rhythm and absent (fibrillatory waves) in AF."""
    cfg = load_config()
    x, fs = read_recording(FIX, name)
    y = FilterBank(fs=fs, cfg=cfg.filters, n_ecg=1, n_iegm=0).process(x[:, None])[:, 0]
    b = np.asarray(OnlineQRSDetector(fs=fs).process(y), dtype=np.float64) / fs
    now = x.size / fs
    full = context_features_multi(b, now, (30.0, 60.0), y[-int(8 * fs)::2], fs / 2, lead_t0=now - 8.0)
    a = {n: float(v) for n, v in zip(ALL_FEATURES, full[30.0])}
    assert full[30.0].shape == (len(ALL_FEATURES),) and np.isfinite(full[60.0]).all()
    assert np.array_equal(full[30.0][: len(CONTEXT_FEATURES)],
                          context_features(b, now, 30.0, y[-int(8 * fs)::2], fs / 2, lead_t0=now - 8.0))
    assert (a["p_corr"] < 0.5) is af and (a["pnn50"] > 0.3) is af and a["tmpl_corr_mean"] > 0.9
    assert a["n_beats_10"] < a["n_beats"] and 0.0 <= a["beat_free_frac"] <= 1.0


def test_morphology_features_identical_beats_and_flat_lead() -> None:
    fs = 125.0
    x = np.zeros(int(8 * fs))
    r = np.arange(50, x.size - 60, 100)
    for i in r:
        x[i - 3: i + 4] += np.hanning(7)
    m = {n: float(v) for n, v in zip(MORPH_FEATURES, morph_features(x, fs, r))}
    assert m["tmpl_corr_mean"] > 0.99 and m["tmpl_low_frac"] == 0.0 and 0.0 < m["qrs_width_last_s"] < 0.06
    flat = morph_features(np.zeros(int(8 * fs)), fs, np.zeros(0, np.int64))
    assert np.isfinite(flat).all() and flat[MORPH_FEATURES.index("beat_free_frac")] == 1.0
    e = extra_rr_features(np.zeros(0), 5.0, 30.0)
    assert np.isfinite(e).all() and e.shape == (len(EXTRA_RR_FEATURES),)


def _beats_lead(kinds: str, rr: list[float], fs: float = 125.0) -> tuple[np.ndarray, np.ndarray]:
    """A decimated lead with a narrow QRS ("n") or a wide, inverted one ("v") at each beat; beat times (s)."""
    t = np.concatenate([[1.0], 1.0 + np.cumsum(rr)])
    x = np.zeros(int((t[-1] + 1.0) * fs))
    narrow, wide = np.hanning(7), -np.sin(np.linspace(0, 2 * np.pi, 19)) * np.hanning(19)
    for k, tb in zip(kinds, t):
        i = int(round(tb * fs))
        w = narrow if k == "n" else wide
        x[i - w.size // 2: i + w.size // 2 + 1] += w
    return x, t


def _runs(x: np.ndarray, t: np.ndarray, fs: float = 125.0) -> dict[str, float]:
    now = x.size / fs
    f = context_features(t, now, 30.0, x[-int(8 * fs):], fs, lead_t0=now - 8.0)
    return {n: float(f[CONTEXT_FEATURES.index(n)]) for n in BEAT_RUN_FEATURES}


def test_beat_runs_find_a_fast_ventricular_run_and_not_bigeminy() -> None:
    x, t = _beats_lead("nnnnnvvvvnnn", [0.8] * 4 + [0.4] * 4 + [0.8] * 3)
    r = _runs(x, t)
    assert r["vt_run_70"] == 4 and r["vt_run_50"] == 4
    assert r["vt_run_rate_bpm"] == pytest.approx(150.0, rel=0.02) and r["vt_run_len_s"] == pytest.approx(1.2, abs=0.02)
    assert r["vt_run_end_s"] == pytest.approx(x.size / 125.0 - t[8], abs=0.02) and r["vent_fast_frac"] > 0.2
    x, t = _beats_lead("nvnvnvnvnvnv", [0.8, 0.5] * 5 + [0.8])  # ventricular bigeminy: single beats, no run
    assert _runs(x, t)["vt_run_70"] <= 1
    x, t = _beats_lead("nnnnnvvvvnnn", [0.8] * 11)  # ventricular beats at 75 bpm (idioventricular): not fast
    assert _runs(x, t)["vt_run_70"] == 0
    empty = _runs(np.zeros(1000), np.zeros(0))
    assert empty["vt_run_70"] == 0 and empty["vt_run_end_s"] == pytest.approx(8.0)


def test_beat_runs_on_real_mitdb_vt_run() -> None:
    """MIT-BIH 203 (first 60 s, tests/fixtures/real): a (VT run annotated at 46.4 s, through the serving filters and
    the causal detector, shows as a run of fast ventricular-like beats within a few seconds; none before it."""
    from pedstream.data.rhythm_sources import read_lead

    cfg = load_config()
    x, fs = read_lead(FIX.parent / "203")
    y = FilterBank(fs=fs, cfg=cfg.filters, n_ecg=1, n_iegm=0).process(x[:, None])[:, 0]
    det = OnlineQRSDetector(fs=fs)
    beats: list[int] = []
    hop, step = int(1.25 * fs), decimation_step(fs)
    seen = {}
    for end in range(hop, y.size + 1, hop):
        beats.extend(det.process(y[end - hop:end]))
        a = max(0, end - int(8 * fs))
        f = context_features(np.asarray(beats) / fs, end / fs, 30.0, y[a:end:step], fs / step, lead_t0=a / fs)
        seen[end / fs] = f[CONTEXT_FEATURES.index("vt_run_70")]
    assert max(v for t, v in seen.items() if 46.4 < t < 52.0) >= 3
    assert max(v for t, v in seen.items() if 15.0 < t < 45.0) < 3


def test_features_equal_the_frozen_reference_bit_for_bit() -> None:
    """The shipped rhythm model was trained on these features: random, edge-case (no beat, one, beats on the
    context's and the lead's edges, short/flat/no lead, future beats, two contexts) and real inputs give the
    outputs of the implementation it was trained with (tests/dsp/rhythm_reference.py), bit for bit."""
    from tests.dsp.rhythm_reference import REF, unpack

    cases = unpack(dict(np.load(REF)))
    assert len(cases) >= 50
    for k, (b, t_now, ctx, x, fs, t0, ref) in enumerate(cases):
        got = context_features_multi(b, t_now, ctx, x, fs, lead_t0=t0)
        for row, c in zip(ref, ctx):
            assert got[c].dtype == np.float32 and np.array_equal(got[c], row), (k, c, got[c] - row)
        assert np.array_equal(context_features(b, t_now, ctx[0], x, fs, lead_t0=t0), ref[0][: len(CONTEXT_FEATURES)])


def test_public_parts_equal_their_share_of_the_reference() -> None:
    """The part functions (as training and the bench call them) give the same columns as the whole vector."""
    from tests.dsp.rhythm_reference import REF, unpack

    n_rr, n_sig = len(RR_CONTEXT_FEATURES), len(signal_features(np.zeros(10), 125.0))
    for b, t_now, ctx, x, fs, t0, ref in unpack(dict(np.load(REF)))[::3]:
        assert np.array_equal(rr_context_features(b, t_now, ctx[0]), ref[0][:n_rr])
        e0 = n_rr + n_sig
        assert np.array_equal(extra_rr_features(b, t_now, ctx[0]), ref[0][e0: e0 + len(EXTRA_RR_FEATURES)])
        if x is None:
            continue
        bb = b[b <= t_now]
        idx = np.round((bb[bb >= t0] - t0) * fs).astype(np.int64)
        assert np.array_equal(signal_features(x, fs, idx), ref[0][n_rr: n_rr + n_sig])
        m0 = n_rr + n_sig + len(EXTRA_RR_FEATURES)
        assert np.array_equal(morph_features(x, fs, idx), ref[0][m0: m0 + len(MORPH_FEATURES)])
