"""model_inputs: the one place that maps a batch onto the network's keyword inputs (rr passes through)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pedstream.train.predict import input_keys, model_inputs


def _batch(rr: bool) -> dict[str, object]:
    b: dict[str, object] = {"ecg": torch.zeros(2, 12, 8), "iegm": np.zeros((2, 7, 8), np.float32),
                            "mask": torch.ones(2, 19), "label": torch.tensor([0, 1]), "record": ["a", "b"]}
    if rr:
        b["rr"] = torch.full((2, 4), 0.8)
    return b


def test_model_inputs_takes_ecg_iegm_mask_and_rr_only_when_present() -> None:
    got = model_inputs(_batch(rr=False), "cpu")
    assert list(got) == ["ecg", "iegm", "mask"] == input_keys(_batch(rr=False))
    assert all(isinstance(v, torch.Tensor) for v in got.values()) and got["iegm"].shape == (2, 7, 8)
    with_rr = model_inputs(_batch(rr=True), "cpu")
    assert list(with_rr) == ["ecg", "iegm", "mask", "rr"]
    assert with_rr["rr"].shape == (2, 4) and with_rr["rr"].dtype == torch.float32


def test_model_inputs_calls_a_network_with_an_rr_argument() -> None:
    class Net(torch.nn.Module):
        def forward(self, ecg, iegm, mask, rr=None):  # the lead's signature
            return ecg.mean(dim=(1, 2)) + (0 if rr is None else rr.sum(dim=1))

    assert torch.allclose(Net()(**model_inputs(_batch(rr=True), "cpu")), torch.full((2,), 3.2))
    assert torch.allclose(Net()(**model_inputs(_batch(rr=False), "cpu")), torch.zeros(2))
    with pytest.raises(KeyError):
        model_inputs({"ecg": torch.zeros(1, 12, 8)}, "cpu")
