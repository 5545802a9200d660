"""pedstream.dsp.bank.filter_many: many streams' filter banks in one sosfilt call per band are
bit-for-bit the per-stream FilterBank.process (outputs and delay lines), whatever the chunking."""

from __future__ import annotations

import numpy as np
import pytest

from pedstream.config import load_config
from pedstream.dsp.bank import filter_many
from pedstream.dsp.filters import FilterBank
from pedstream.errors import StreamError


@pytest.fixture(scope="module")
def fcfg():
    return load_config().filters


def _signals(rng, n_streams, n, fs):
    t = np.arange(n) / fs
    out = []
    for k in range(n_streams):
        base = np.sin(2 * np.pi * (1.0 + 0.1 * k) * t)[:, None] + 0.3 * np.sin(2 * np.pi * 50 * t)[:, None]
        x = base + 0.2 * rng.standard_normal((n, 19)) + rng.uniform(-2, 2, 19)  # DC offsets: priming matters
        out.append(x.astype(np.float32))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filter_many_equals_per_stream_bit_for_bit(fcfg, seed):
    rng = np.random.default_rng(seed)
    fs_of = [977.0] * 6 + [600.0] * 3  # two designs: grouped separately
    sigs = [s for fs in (977.0, 600.0) for s in _signals(rng, fs_of.count(fs), 4000, fs)]
    alone = [FilterBank(fs=fs, cfg=fcfg) for fs in fs_of]
    many = [FilterBank(fs=fs, cfg=fcfg) for fs in fs_of]
    pos = [0] * len(sigs)
    got: list[list[np.ndarray]] = [[] for _ in sigs]
    want: list[list[np.ndarray]] = [[] for _ in sigs]
    while any(p < 4000 for p in pos):
        # a round: some streams send nothing, the others a chunk of one of a few sizes (equal sizes batch)
        who = [i for i in range(len(sigs)) if pos[i] < 4000 and rng.random() < 0.8]
        sizes = [min(int(rng.choice([1, 7, 49, 49, 49, 300])), 4000 - pos[i]) for i in who]
        chunks = [sigs[i][pos[i]:pos[i] + k] for i, k in zip(who, sizes)]
        outs = filter_many([many[i] for i in who], chunks)
        for i, k, x, y in zip(who, sizes, chunks, outs):
            assert y.dtype == np.float32 and y.shape == (k, 19)
            got[i].append(y)
            want[i].append(alone[i].process(x))
            pos[i] += k
    for i in range(len(sigs)):
        assert np.array_equal(np.concatenate(got[i]), np.concatenate(want[i])), i
        assert many[i].samples_seen == alone[i].samples_seen == 4000
        for band in alone[i].zi:
            assert np.array_equal(many[i].zi[band], alone[i].zi[band])


def test_filter_many_nonfinite_raises_for_that_stream_and_checks_input(fcfg):
    banks = [FilterBank(fs=977.0, cfg=fcfg, name=f"stream s{i}") for i in range(3)]
    xs = [np.zeros((10, 19), np.float32) for _ in range(3)]
    xs[1][4, 3] = np.nan
    with pytest.raises(StreamError, match="stream s1.*non-finite samples in channel"):
        filter_many(banks, xs)
    with pytest.raises(ValueError, match="more than once"):
        filter_many([banks[0], banks[0]], xs[:2])
    with pytest.raises(ValueError, match="2 banks but 1 inputs"):
        filter_many(banks[:2], xs[:1])
    with pytest.raises(StreamError, match=r"expected samples shaped \(n, 19\)"):
        filter_many(banks[:2], [xs[0], np.zeros((10, 3))])
