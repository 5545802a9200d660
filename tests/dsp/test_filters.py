"""FilterBank: exact chunk-size invariance, frequency response, state handling, validation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from pedstream.config import FilterConfig
from pedstream.dsp.filters import FilterBank, FilterCutoffWarning, filter_signal
from pedstream.errors import ConfigError, StreamError

FS = 977.0


def _test_signal(n: int, seed: int = 0) -> np.ndarray:
    """(n, 19) mV: QRS-ish pulses + baseline wander + 50 Hz mains + DC offsets + white noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    x = 0.05 * rng.standard_normal((n, 19))
    x += 0.3 * np.sin(2 * np.pi * 0.3 * t)[:, None]  # baseline wander
    x += 0.2 * np.sin(2 * np.pi * 50.0 * t)[:, None]  # mains
    x += np.linspace(-1.0, 1.0, 19)[None, :]  # electrode offsets
    beats = (np.arange(n) % int(0.6 * FS)) < 40
    x[beats] += 1.0
    return x


def _response_db(bank: FilterBank, band: str, f: float) -> float:
    _, h = sps.sosfreqz(bank.sos[band], worN=[f], fs=bank.fs)
    return 20 * np.log10(abs(h[0]))


@pytest.mark.parametrize("chunk", [1, 7, 49, 977])
def test_chunked_output_equals_whole(chunk: int) -> None:
    x = _test_signal(3 * 977 + 123)
    whole = filter_signal(x, fs=FS, cfg=FilterConfig())
    bank = FilterBank(fs=FS, cfg=FilterConfig())
    parts = [bank.process(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    got = np.concatenate(parts, axis=0)
    assert got.shape == x.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-9)  # bit-exact in practice
    assert bank.samples_seen == len(x)


def test_irregular_chunks_and_empty_chunks_are_invariant() -> None:
    x = _test_signal(5000, seed=3)
    whole = filter_signal(x, FS, FilterConfig())  # positional form of the contract
    bank = FilterBank(fs=FS, cfg=FilterConfig())
    rng = np.random.default_rng(1)
    out, i = [], 0
    while i < len(x):
        k = int(rng.integers(0, 300))
        out.append(bank.process(x[i : i + k]))
        i += k
    np.testing.assert_allclose(np.concatenate(out), whole, rtol=0, atol=1e-9)  # bit-exact in practice


def test_mains_is_attenuated_more_than_30_db_and_passband_is_flat() -> None:
    bank = FilterBank(fs=FS, cfg=FilterConfig(mains_hz=50.0))
    for band in ("ecg", "iegm"):
        assert _response_db(bank, band, 50.0) < -30.0
    assert abs(_response_db(bank, "ecg", 10.0)) < 1.0  # ECG passband
    assert abs(_response_db(bank, "iegm", 120.0)) < 1.0  # IEGM passband
    assert _response_db(bank, "ecg", 200.0) < -20.0  # ECG low-pass at 40 Hz
    assert _response_db(bank, "iegm", 2.0) < -40.0  # IEGM high-pass at 30 Hz


def test_sixty_hz_mains_and_harmonics_measured_on_sines() -> None:
    cfg = FilterConfig(mains_hz=60.0, mains_harmonics=3)
    n = int(8 * FS)
    t = np.arange(n) / FS
    steady = slice(int(4 * FS), n)
    for f, band_ch, limit_db in ((60.0, 0, -30.0), (60.0, 15, -30.0), (120.0, 15, -30.0), (180.0, 15, -30.0), (100.0, 15, 1.0)):
        x = np.zeros((n, 19))
        x[:, band_ch] = np.sin(2 * np.pi * f * t)
        y = filter_signal(x, fs=FS, cfg=cfg)[steady, band_ch]
        gain_db = 20 * np.log10(np.sqrt(2) * y.std())
        if limit_db < 0:
            assert gain_db < limit_db, (f, band_ch, gain_db)
        else:
            assert abs(gain_db) < limit_db, (f, band_ch, gain_db)


def test_mains_zero_disables_the_notch() -> None:
    with_notch = FilterBank(fs=FS, cfg=FilterConfig(mains_hz=50.0))
    without = FilterBank(fs=FS, cfg=FilterConfig(mains_hz=0.0))
    assert without.sos["ecg"].shape[0] < with_notch.sos["ecg"].shape[0]
    assert _response_db(without, "iegm", 50.0) > -3.0


def test_dc_offset_removed_and_no_startup_step() -> None:
    n = int(6 * FS)
    x = np.full((n, 19), 3.0)  # constant 3 mV electrode offset
    y = filter_signal(x, fs=FS, cfg=FilterConfig())
    # primed on the first sample: a constant input gives (numerically) zero output from the start
    assert np.abs(y).max() < 1e-6
    # a step after start is removed by the high-pass within the settle period
    x[n // 3 :] += 2.0
    y = filter_signal(x, fs=FS, cfg=FilterConfig())
    assert np.abs(y[n // 3 + int(2 * FS) :, :12]).max() < 0.02
    assert np.abs(y[n // 3 + int(1.5 * FS) :, 12:]).max() < 1e-3  # notch ringing (tau ~0.2 s) has died out


def test_reset_warmup_and_counters() -> None:
    bank = FilterBank(fs=FS, cfg=FilterConfig(settle_s=2.0))
    assert bank.settle_samples == round(2.0 * FS) and bank.in_warmup and bank.samples_seen == 0
    x = _test_signal(3000)
    first = bank.process(x)
    assert bank.samples_seen == 3000 and not bank.in_warmup
    assert bank.zi["ecg"].shape == (bank.sos["ecg"].shape[0], 2, 12)
    assert bank.zi["iegm"].shape == (bank.sos["iegm"].shape[0], 2, 7)
    bank.reset()
    assert bank.samples_seen == 0 and bank.in_warmup
    np.testing.assert_array_equal(bank.process(x), first)


def test_other_channel_splits() -> None:
    x = _test_signal(2000)[:, :5]
    bank = FilterBank(fs=FS, cfg=FilterConfig(), n_ecg=3, n_iegm=2)
    y = bank.process(x)
    ref_ecg = FilterBank(fs=FS, cfg=FilterConfig(), n_ecg=3, n_iegm=0).process(x[:, :3])
    np.testing.assert_array_equal(y[:, :3], ref_ecg)
    assert set(FilterBank(fs=FS, cfg=FilterConfig(), n_ecg=0, n_iegm=2).sos) == {"iegm"}


@pytest.mark.parametrize(
    ("fs", "cfg", "key"),
    [
        (360.0, FilterConfig(iegm_highpass_hz=170.0), "filters.iegm_highpass_hz"),  # above 0.45 x 360 = 162 Hz
        (70.0, FilterConfig(ecg_highpass_hz=33.0, iegm_highpass_hz=1.0, iegm_lowpass_hz=30.0, mains_hz=0.0),
         "filters.ecg_highpass_hz"),
        (90.0, FilterConfig(ecg_lowpass_hz=40.0, iegm_highpass_hz=1.0, iegm_lowpass_hz=40.0), "filters.mains_hz"),
    ],
)
def test_impossible_bands_name_the_key(fs: float, cfg: FilterConfig, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        FilterBank(fs=fs, cfg=cfg)
    assert key in str(err.value) and "Nyquist" in str(err.value)
    assert "\n" not in str(err.value).split(key)[0]  # the key is on the first problem line or its own


def test_bad_fs_and_bad_input() -> None:
    with pytest.raises(ConfigError, match="signal.fs"):
        FilterBank(fs=0.0, cfg=FilterConfig())
    bank = FilterBank(fs=FS, cfg=FilterConfig(), name="stream s1")
    with pytest.raises(StreamError, match=r"stream s1: expected samples shaped \(n, 19\)"):
        bank.process(np.zeros((10, 18)))
    x = np.zeros((10, 19))
    x[3, 4] = np.nan
    with pytest.raises(StreamError, match=r"non-finite samples in channel\(s\) \[4\]"):
        bank.process(x)
    assert bank.samples_seen == 0  # rejected chunks do not advance the state


def test_lowpass_above_the_rate_is_clipped_with_one_warning() -> None:
    fs = 360.0  # MIT-BIH, default config (iegm_lowpass_hz = 250 Hz > Nyquist 180 Hz)
    with pytest.warns(FilterCutoffWarning) as rec:
        bank = FilterBank(fs=fs, cfg=FilterConfig(), name="record 100")
    assert len(rec) == 1  # once per bank
    msg = str(rec[0].message)
    assert "filters.iegm_lowpass_hz" in msg and "250 Hz" in msg and "162 Hz" in msg and "record 100" in msg
    assert "ecg_lowpass_hz" not in msg  # 40 Hz fits
    assert bank.clipped == {"filters.iegm_lowpass_hz": (250.0, 162.0)}
    assert bank.cutoffs == {"ecg": (0.5, 40.0), "iegm": (30.0, 162.0)}
    x = _test_signal(int(4 * fs))
    y = bank.process(x)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert _response_db(bank, "iegm", 100.0) > -1.0 and _response_db(bank, "iegm", 175.0) < -6.0
    with pytest.warns(FilterCutoffWarning):  # a new bank warns again
        chunked = FilterBank(fs=fs, cfg=FilterConfig())  # still chunk-size invariant
    parts = [chunked.process(x[i:i + 37]) for i in range(0, x.shape[0], 37)]
    np.testing.assert_array_equal(np.concatenate(parts), y)


def test_no_warning_when_cutoffs_fit(recwarn: pytest.WarningsRecorder) -> None:
    bank = FilterBank(fs=FS, cfg=FilterConfig())
    assert not [w for w in recwarn if issubclass(w.category, FilterCutoffWarning)]
    assert bank.clipped == {} and bank.cutoffs["iegm"] == (30.0, 250.0)
