"""The gradient-boosting beat model exported to ONNX and run by the engine's beat path.

A small real model: HistGradientBoosting fitted on the beat features of the real MIT-BIH 208 and 220
excerpts (tests/fixtures/real/aami), exported by pedstream.train.beat_export, opened by the engine's
open_beat_model, and the real 119 excerpt replayed through the engine: the engine computes the
features of its detector's beats (per-stream template) and the model calls 119's ventricular beats V.
The shipped model (models/mitdb-beats/model.onnx, when present) is checked the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pedstream.dsp.beat_features import feature_names
from pedstream.errors import ModelError
from pedstream.stream.ectopy import open_beat_model
from tests.stream.test_ectopy import REC119, cfg, matched, replay_119, session  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]
AAMI_FIX = ROOT / "tests" / "fixtures" / "real" / "aami"
SHIPPED = ROOT / "models" / "mitdb-beats" / "model.onnx"


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    from pedstream.train.beat_data import beat_config, record_table
    from pedstream.train.beat_export import build_metadata, export_onnx
    from pedstream.train.beat_gbm import VARIANTS, fit

    bc = beat_config()
    tabs = [record_table(AAMI_FIX / n, bc, adapt=True) for n in ("208", "220")]
    x, y = np.concatenate([t.x for t in tabs]), np.concatenate([t.y for t in tabs])
    v = VARIANTS["HGB, part 2 (adapted), sqrt weights"]
    v = type(v)(v.name, v.features, v.model, v.weights, {"max_iter": 30, "min_samples_leaf": 5})
    clf = fit(v, x, y)
    meta = build_metadata(variant=v, cfg=bc, feature_scale=x.std(axis=0), beats={"N": 1}, records=["208", "220"],
                          adapt_settings={"method": "knn", "k": 3, "mix": 0.8, "n_half": 10.0})
    path = export_onnx(clf, tmp_path_factory.mktemp("gbm") / "beats.onnx", meta)
    return path, clf, x


def test_export_matches_scikit_learn_and_the_engine_accepts_it(small_model, cfg):  # noqa: F811
    path, clf, x = small_model
    sess, spec = open_beat_model(cfg, path)
    assert spec.features and spec.adapt and sess.n_rr == len(feature_names(True))
    assert spec.class_names == ("N", "S", "V", "F")
    t = spec.window
    logits, emb = sess.run(np.zeros((8, 12, t), np.float32), np.zeros((8, 7, t), np.float32),
                           np.ones((8, 19), np.float32), rr=x[:8].astype(np.float32))
    np.testing.assert_allclose(np.exp(logits), clf.predict_proba(x[:8]), atol=1e-5)


def test_a_feature_model_of_another_feature_version_is_refused(small_model, cfg, tmp_path):  # noqa: F811
    import onnx

    path, _, _ = small_model
    m = onnx.load(str(path))
    for p in m.metadata_props:
        if p.key == "segments":
            p.value = p.value.replace("beat-features-", "beat-features-old-")
    onnx.save(m, str(tmp_path / "old.onnx"))
    with pytest.raises(ModelError, match="this engine computes"):
        open_beat_model(cfg, tmp_path / "old.onnx")


async def _v_calls(cfg, session, path, tmp_path):  # noqa: F811
    from pedstream.data.annotations import read_annotations

    beat, _ = open_beat_model(cfg, path)
    eng, seen = await replay_119(cfg, session, beat, tmp_path)
    assert eng.counts.get("error", 0) == 0
    beats = [e for e in seen if e.kind == "beat"]
    pairs = matched(beats, next(iter(eng.pipelines.values())).segment_t0, read_annotations(REC119))
    assert len(pairs) >= len(beats) - 1 and len(beats) > 50
    return [lab for s, lab in pairs if s == "V"], [lab for s, lab in pairs if s == "N"]


async def test_engine_computes_the_features_and_calls_119s_pvcs(small_model, cfg, session, tmp_path):  # noqa: F811
    v, n = await _v_calls(cfg, session, small_model[0], tmp_path)
    assert len(v) >= 10 and sum(lab == "V" for lab in v) / len(v) > 0.7
    assert sum(lab != "V" for lab in n) / len(n) > 0.8  # (two minutes of training beats: N vs F is rough)


@pytest.mark.skipif(not SHIPPED.is_file(), reason="models/mitdb-beats/model.onnx not built")
async def test_shipped_model_calls_119s_pvcs(cfg, session, tmp_path):  # noqa: F811
    v, n = await _v_calls(cfg, session, SHIPPED, tmp_path)
    assert len(v) >= 10 and sum(lab == "V" for lab in v) / len(v) > 0.7
    assert sum(lab == "N" for lab in n) / len(n) > 0.7
