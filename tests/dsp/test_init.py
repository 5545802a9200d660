"""pedstream.dsp: public API, import hygiene, and the whole chain on a real 1000 Hz ECG+IEGM excerpt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pedstream.dsp as dsp

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "real" / "iaf1_afw"


def test_all_names_resolve() -> None:
    for name in dsp.__all__:
        assert getattr(dsp, name) is not None
    assert dsp.NORMALIZATION == "window_zscore"


def test_import_is_light_and_independent() -> None:
    code = (
        "import sys, pedstream.dsp\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'pedstream.train', 'pedstream.monitor', 'pylsl'))]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("chunk", [1, 32, 977])
def test_real_iaf1_chain_is_chunk_invariant(chunk: int) -> None:
    """Real iafdb iaf1_afw (1000 Hz: II V1 aVF + CS12..CS90, first 20 s, ODC-By 1.0): resample to 977 Hz
    and filter exactly like the engine; any chunking gives the offline result."""
    wfdb = pytest.importorskip("wfdb")
    from pedstream.config import FilterConfig

    rec = wfdb.rdrecord(str(FIXTURE), sampto=8000)
    x = np.nan_to_num(rec.p_signal)  # (n, 8) at 1000 Hz
    n_ecg, n_iegm = 3, 5

    def chain(step: int) -> np.ndarray:
        rs = dsp.StreamResampler(fs_in=rec.fs, fs_out=977.0, n_channels=8)
        bank = dsp.FilterBank(fs=977.0, cfg=FilterConfig(), n_ecg=n_ecg, n_iegm=n_iegm)
        return np.concatenate([bank.process(rs.process(x[i : i + step])) for i in range(0, len(x), step)])

    whole = chain(len(x))
    got = chain(chunk)
    assert whole.shape == (-(-len(x) * 977 // 1000), 8)
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-6)
    # the IEGM band (30-250 Hz) removed the slow content: near-zero mean per CS channel after warm-up
    tail = whole[2000:, n_ecg:]
    assert np.all(np.abs(tail.mean(axis=0)) < 0.05 * tail.std(axis=0) + 1e-9)
