"""The GRU rhythm-context model (pedstream.train.rhythm_seq) on the feature table of real vfdb excerpts
(tests/fixtures/real/rhythm): it trains with each candidate loss and returns probabilities per row."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from pedstream.config import load_config  # noqa: E402
from pedstream.train.rhythm_context_data import CLASSES, build_records  # noqa: E402
from pedstream.train.rhythm_seq import _seq_inputs, fit_seq, predict_seq  # noqa: E402

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "rhythm"


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    d = tmp_path_factory.mktemp("vfdb")
    for n in ("vfdb421_vt", "vfdb607_asys"):
        for e in ("hea", "dat", "atr"):
            shutil.copy(FIX / f"{n}.{e}", d / f"{n}.{e}")
    kw = dict(cache=tmp_path_factory.mktemp("cache"), hop_s=1.25, contexts=(30.0,), signal_s=8.0, log=lambda m: None)
    return build_records(d, "vfdb", load_config(), **kw)


@pytest.mark.parametrize("kind,loss", [("cnn", "ce"), ("cnn", "weighted_ce"), ("cnn", "focal"), ("cnn", "agcacl"),
                                       ("gru", "agcacl")])
def test_fit_predict_each_loss(table, kind: str, loss: str) -> None:
    m = table["y"] >= 0
    X, seq, y = table["X_30"][m], table["rr_seq"][m], table["y"][m].astype(np.int64)
    model = fit_seq(seq, X, y, load_config(), loss=loss, epochs=2, batch=64, kind=kind)
    p = predict_seq(model, seq, X)
    assert p.shape == (y.size, len(CLASSES)) and np.allclose(p.sum(1), 1.0, atol=1e-5)


def test_sequence_inputs_padding() -> None:
    s = np.zeros((2, 6), np.float32)
    s[0, 3:] = [0.8, 0.4, 1.2]
    z = _seq_inputs(s)
    assert z.shape == (2, 6, 4) and (z[1] == 0).all() and z[0, :3, 3].sum() == 0 and (z[0, 3:, 3] == 1).all()
    assert z[0, 4, 2] == pytest.approx(np.log(0.5), abs=1e-5)
