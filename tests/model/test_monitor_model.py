"""The shipped monitor model (pedstream/assets/monitor_model.onnx) names its training data and is the default."""

from __future__ import annotations

from pedstream.model.metadata import trained_on
from pedstream.model.runtime import read_metadata
from pedstream.monitor.banner import is_packaged_model, model_banner
from pedstream.monitor.assembly import default_model_path

TRAINED_ON = "simulated Leipzig-format data + MIT-BIH ECG, not for clinical use"


def test_default_model_is_the_monitor_model_and_says_what_it_saw():
    path = default_model_path()
    assert path.name == "monitor_model.onnx" and path.is_file() and is_packaged_model(path)
    meta = read_metadata(path)
    assert trained_on(meta) == TRAINED_ON
    assert meta["data_description"].startswith(TRAINED_ON + ":")
    td = meta["training_data"]
    assert td["simulated"] and td["real"] and td["name"] == "simulated Leipzig-format data + MIT-BIH ECG"
    assert [p["name"] for p in td["parts"]] == ["simulated Leipzig-format records (pedstream data synth)",
                                                "MIT-BIH Arrhythmia Database (PhysioNet mitdb)"]
    assert all(p["windows"] > 0 for p in td["parts"])
    assert "iaf1_afw" not in str(meta)  # the one real ECG+IEGM check never trained or tuned the model
    assert model_banner(meta, packaged=True) == f"DEMO MODEL · trained on {TRAINED_ON}"
    assert model_banner(meta) == f"Model · trained on {TRAINED_ON}"  # a copy elsewhere is not the packaged model
