"""process_many: the QRS detectors of many streams together equal each detector on its own, to the bit.

Real signal: the bundled MIT-BIH excerpts ``tests/fixtures/real/{119,203,aami/208,aami/220}`` (first
60 s or 60 s excerpts, ODC-By 1.0; see the README there) and the bundled simulated record ``x001``
through the engine's filter bank, at their own rates and resampled to the model's 977 Hz.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pedstream.dsp.qrs import OnlineQRSDetector
from pedstream.dsp.qrs_bank import process_many
from pedstream.errors import StreamError

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "tests" / "fixtures" / "real"
RECORDS = [REAL / "119", REAL / "203", REAL / "aami" / "208", REAL / "aami" / "220"]


def _leads(fs: float) -> list[np.ndarray]:
    """Both leads of each bundled MIT-BIH excerpt (mV), resampled to ``fs`` when it is not 360 Hz."""
    import wfdb
    from scipy import signal as sps

    out = []
    for rec in RECORDS:
        r = wfdb.rdrecord(str(rec))
        for c in range(r.p_signal.shape[1]):
            x = r.p_signal[:, c].astype(np.float64)
            if fs != r.fs:
                x = sps.resample_poly(x, int(fs), int(r.fs))
            out.append(x)
    return out


def _state(det: OnlineQRSDetector) -> tuple:
    """Everything the detector carries, for an exact comparison."""
    h, c = det._hist, det._csum_hist
    return (det.samples_seen, det._next_check, det._learned, det.spki, det.npki, det._last_peak, det._last_slope,
            det._last_v, det._sb_anchor, det._sb_best, tuple(det._rr_mwi), tuple(det.beats), det.n_beats, det._csum,
            det._zi_bp.tobytes(), np.asarray(det._zi_der).tobytes(), h.total_written, h._data.tobytes(),
            c.total_written, c._data.tobytes())


def _feed(dets: list[OnlineQRSDetector], leads: list[np.ndarray], cuts: list[list[int]], *, batch: bool) -> list[list[int]]:
    """Feed each lead in the chunks given by its cut points, one round (every stream's next chunk) at a time."""
    found: list[list[int]] = [[] for _ in dets]
    rounds = max(len(c) for c in cuts) - 1
    for r in range(rounds):
        idx = [i for i, c in enumerate(cuts) if r + 1 < len(c)]
        xs = [leads[i][cuts[i][r]:cuts[i][r + 1]] for i in idx]
        if batch:
            outs = process_many([dets[i] for i in idx], xs)
        else:
            outs = [dets[i].process(x) for i, x in zip(idx, xs)]
        for i, peaks in zip(idx, outs):
            found[i].extend(peaks)
    return found


def _compare(leads: list[np.ndarray], cuts: list[list[int]], fs: float) -> list[list[int]]:
    ref = [OnlineQRSDetector(fs=fs) for _ in leads]
    new = [OnlineQRSDetector(fs=fs) for _ in leads]
    want = _feed(ref, leads, cuts, batch=False)
    got = _feed(new, leads, cuts, batch=True)
    assert got == want
    for a, b in zip(ref, new):
        assert _state(a) == _state(b)
        assert a.heart_rate() == b.heart_rate()
        assert a.flush() == b.flush()
    return want


@pytest.mark.parametrize("fs", [360.0, 977.0])
@pytest.mark.parametrize("chunk", [49, 612, 1221, 3000])
def test_real_records_equal_chunk_by_chunk(fs: float, chunk: int) -> None:
    """Every stream the same chunk length (one block per round; chunks longer than a second are cut
    in sub-chunks, a short tail goes alone): the same beats and the same state to the bit."""
    leads = _leads(fs)
    n = min(len(x) for x in leads)
    cuts = [list(range(0, n, chunk)) + [n] for _ in leads]
    want = _compare([x[:n] for x in leads], cuts, fs)
    assert sum(len(w) for w in want) > 400  # the records' beats were found (8 leads x ~60 s)


def test_streams_out_of_phase_and_ragged_chunks() -> None:
    """Streams at different points of their records, with chunks of different lengths in a round
    (groups by length; groups of one go alone)."""
    fs = 360.0
    leads = _leads(fs)
    rng = np.random.default_rng(5)
    cuts = []
    for k, x in enumerate(leads):
        start = 97 * k
        c = [start]
        while c[-1] < len(x):
            c.append(min(len(x), c[-1] + int(rng.choice([8, 49, 49, 49, 400, 1221]))))
        cuts.append(c)
    _compare([x for x in leads], cuts, fs)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), streams=st.integers(2, 6), same=st.booleans())
def test_random_chunkings_match_the_detector(seed: int, streams: int, same: bool) -> None:
    """Random chunk lengths (1 to 2.5 s; all streams alike or each its own), random stream starts."""
    fs = 360.0
    leads = _leads(fs)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(leads), size=streams, replace=False)
    xs = [leads[i][int(rng.integers(0, 3000)):][:12000] for i in pick]
    n = min(len(x) for x in xs)
    xs = [x[:n] for x in xs]
    lengths = rng.integers(1, 900, size=200)
    cuts = []
    for k in range(streams):
        if not same:
            lengths = rng.integers(1, 900, size=200)
        c = [0]
        for m in lengths:
            if c[-1] >= n:
                break
            c.append(min(n, c[-1] + int(m)))
        if c[-1] < n:
            c.append(n)
        cuts.append(c)
    _compare(xs, cuts, fs)


def test_simulated_record_through_the_engine_filter_bank() -> None:
    """The engine's case: the bundled 977 Hz record's lead II after the FilterBank, hop-sized chunks."""
    from pedstream.config import FilterConfig
    from pedstream.data.loader import open_record
    from pedstream.config import load_config
    from pedstream.dsp.filters import filter_signal

    cfg = load_config()
    rec = open_record(ROOT / "pedstream" / "assets" / "demo_records" / "x001", cfg.signal)
    sig = rec.read().data
    lead = filter_signal(sig, rec.fs, FilterConfig())[:, 1].astype(np.float64)
    leads = [np.roll(lead, 977 * k) for k in range(5)]
    n = len(lead)
    cuts = [list(range(0, n, 1221)) + [n] for _ in leads]
    want = _compare(leads, cuts, rec.fs)
    assert all(len(w) > 10 for w in want)


def test_errors_stay_with_their_stream() -> None:
    fs = 360.0
    leads = [x[:3000] for x in _leads(fs)[:3]]
    dets = [OnlineQRSDetector(fs=fs) for _ in leads]
    bad = leads[1].copy()
    bad[100] = np.nan
    out = process_many(dets, [leads[0], bad, leads[2]], return_errors=True)
    assert isinstance(out[1], StreamError)
    ref = [OnlineQRSDetector(fs=fs) for _ in (0, 2)]
    assert out[0] == ref[0].process(leads[0]) and out[2] == ref[1].process(leads[2])
    with pytest.raises(StreamError):
        process_many([OnlineQRSDetector(fs=fs) for _ in leads], [leads[0], bad, leads[2]])
    with pytest.raises(ValueError):
        process_many([dets[0], dets[0]], [leads[0], leads[0]])
