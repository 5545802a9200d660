"""Train the shipped rhythm-context model on every row of CinC 2017 + MIT-BIH + vfdb and export it to
ONNX (skl2onnx; ``X (B, K) float32`` -> ``label (B,)``, ``probabilities (B, C)``), with metadata
(``pedstream_rhythm`` JSON: classes, feature names, context/signal seconds, every data set it saw).

    nice -n 10 .venv/bin/python -m pedstream.train.rhythm_export --out pedstream/assets/rhythm_model.onnx \\
        [--settings bench/results/rhythm_context/cv.json]

The context length, class weights and feature columns come from the CV's choice (``chosen`` in ``cv.json``;
features default to :data:`~pedstream.dsp.rhythm_features.MODEL_FEATURES`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from pedstream.dsp.rhythm_features import CONTEXT_FEATURES, MODEL_FEATURES
from pedstream.errors import ModelError, PedstreamError
from pedstream.train.rhythm_context_data import CLASSES, FEATURE_VERSION

__all__ = ["METADATA_KEY", "export_onnx", "main"]

METADATA_KEY = "pedstream_rhythm"
DATASETS = {
    "cinc2017": "PhysioNet/CinC Challenge 2017 training set (8,528 single-lead recordings; Clifford et al. 2017)",
    "mitdb": "MIT-BIH Arrhythmia Database, 26 records (DS1 + paced; Moody & Mark 2001)",
    "vfdb": "MIT-BIH Malignant Ventricular Ectopy Database, 22 records (Greenwald 1986)",
}


def _patch_skl2onnx() -> None:
    """skl2onnx 1.20 passes Python ``False`` for a leaf's missing-value flag, which onnx >= 1.20 refuses
    in an ``ints`` attribute: cast it to int (same value)."""
    import skl2onnx.common.tree_ensemble as te

    if getattr(te.add_node, "_pedstream", False):
        return
    orig = te.add_node

    def add_node(*a: Any, nodes_missing_value_tracks_true: Any = False, **k: Any) -> Any:
        return orig(*a, nodes_missing_value_tracks_true=int(bool(nodes_missing_value_tracks_true)), **k)

    add_node._pedstream = True  # type: ignore[attr-defined]
    te.add_node = add_node


def sklearn_to_onnx(clf: Any, n_features: int) -> Any:
    """``clf`` (a fitted scikit-learn classifier on ``n_features`` float32 inputs) as an ONNX model whose
    ``probabilities`` output is a plain ``(B, C)`` tensor (no zipmap); opset 17, ai.onnx.ml 3."""
    from skl2onnx import to_onnx

    _patch_skl2onnx()
    return to_onnx(clf, np.zeros((1, n_features), np.float32), options={id(clf): {"zipmap": False}},
                   target_opset={"": 17, "ai.onnx.ml": 3})


def export_onnx(clf: Any, path: Path, meta: dict[str, Any]) -> Path:
    """Write ``clf`` (8 classes, inputs ``meta["features"]``, served features) as ONNX with ``meta``; checked
    with onnxruntime."""
    import onnx
    import onnxruntime as ort

    if list(clf.classes_) != list(range(len(CLASSES))):
        raise ModelError(str(path), f"the model saw classes {list(clf.classes_)}, not all of {list(CLASSES)}")
    k = len(meta.get("features") or CONTEXT_FEATURES)
    onx = sklearn_to_onnx(clf, k)
    onnx.helper.set_model_props(onx, {METADATA_KEY: json.dumps(meta, sort_keys=True)})
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(onx, str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(64, k)).astype(np.float32)
    diff = float(np.abs(sess.run(["probabilities"], {"X": xs})[0] - clf.predict_proba(xs)).max())
    if diff > 1e-4:
        raise ModelError(str(path), f"ONNX and scikit-learn probabilities differ by {diff:.2g}")
    return path


def main(argv: list[str] | None = None) -> int:
    from pedstream.config import load_config
    from pedstream.data.cinc2017 import default_cache
    from pedstream.train.rhythm_context import DEFAULT_PARAMS, fit, training_rows
    from pedstream.train.rhythm_tables import HOP_S, SIGNAL_S, default_shared, load, merge, weights

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="pedstream/assets/rhythm_model.onnx")
    ap.add_argument("--settings", default="bench/results/rhythm_context/cv.json")
    ap.add_argument("--shared", default=str(default_shared()))
    ap.add_argument("--cache", default=None)
    a = ap.parse_args(argv)
    try:
        settings = json.loads(Path(a.settings).read_text(encoding="utf-8"))
        ctx, wmode = float(settings["chosen"]["context_s"]), str(settings["chosen"]["weights"])
        cfg = load_config()
        data = load(cfg, Path(a.cache) if a.cache else default_cache(), a.shared)
        features = list(settings.get("chosen", {}).get("features") or MODEL_FEATURES)
        tabs = [merge([data["cinc2017"]], ctx, features), merge([data["mitdb"], data["vfdb"]], ctx, features)]
        rows = [training_rows(tabs[0], min_age_s=0, stride=1), training_rows(tabs[1])]
        X = np.concatenate([t["X"][r] for t, r in zip(tabs, rows)])
        y = np.concatenate([t["y"][r] for t, r in zip(tabs, rows)]).astype(np.int64)
        t0 = time.time()
        clf = fit(X, y, source_weight=weights(y, wmode))
        meta = {"kind": "rhythm_context", "feature_version": FEATURE_VERSION, "classes": list(CLASSES),
                "features": features, "context_s": ctx, "signal_s": SIGNAL_S, "hop_s": HOP_S,
                "class_weights": wmode, "params": DEFAULT_PARAMS, "datasets": DATASETS,
                "rows": {c: int(np.sum(y == k)) for k, c in enumerate(CLASSES)}, "fit_seconds": round(time.time() - t0, 1),
                "not_seen": "iafdb iaf1_afw (kept as a check), nsrdb/sddb (no signals), Leipzig records",
                "cv": "bench/results/rhythm_context/cv.md"}
        export_onnx(clf, Path(a.out), meta)
    except (OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PedstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {a.out}: {X.shape[0]} rows, context {ctx:g} s, weights {wmode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
