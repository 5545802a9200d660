"""The rhythm-context model at run time (onnxruntime only, no torch, no scikit-learn).

``RhythmModel.load(path)`` opens the ONNX file written by :mod:`pedstream.train.rhythm_export`,
checks its ``pedstream_rhythm`` metadata against this build (its feature names must all be served
features, :data:`~pedstream.dsp.rhythm_features.CONTEXT_FEATURES`) and ``predict(X (B, K) float32) ->
(B, C)`` probabilities, one ``session.run`` per batch; ``X`` is the served vector (the model's columns are
picked from it) or already the model's own columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from pedstream.dsp.rhythm_features import CONTEXT_FEATURES
from pedstream.errors import ModelError, ModelMismatchError

__all__ = ["RhythmModel", "default_rhythm_model_path"]

METADATA_KEY = "pedstream_rhythm"


def default_rhythm_model_path() -> Path:
    return Path(str(resources.files("pedstream") / "assets" / "rhythm_model.onnx"))


@dataclass
class RhythmModel:
    path: Path
    session: Any
    meta: dict[str, Any] = field(default_factory=dict)
    columns: np.ndarray = field(default_factory=lambda: np.arange(len(CONTEXT_FEATURES)))

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def context_s(self) -> float:
        return float(self.meta["context_s"])

    @property
    def signal_s(self) -> float:
        return float(self.meta["signal_s"])

    @classmethod
    def load(cls, path: str | Path | None = None, *, threads: int = 1) -> "RhythmModel":
        import onnxruntime as ort

        p = Path(path) if path else default_rhythm_model_path()
        if not p.is_file():
            raise ModelError(str(p), "no such rhythm model file")
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, int(threads))
        so.inter_op_num_threads = 1
        try:
            sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
            raw = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
            meta = json.loads(raw) if raw else None
        except Exception as exc:  # onnxruntime raises its own kinds on a damaged file
            raise ModelError(str(p), f"cannot load the rhythm model: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("kind") != "rhythm_context":
            raise ModelError(str(p), f"not a rhythm-context model (no {METADATA_KEY} metadata)")
        names = meta.get("features")
        if not isinstance(names, list) or not names or any(f not in CONTEXT_FEATURES for f in names):
            raise ModelMismatchError(str(p), "features", list(CONTEXT_FEATURES), names)
        return cls(path=p, session=sess, meta=meta,
                   columns=np.asarray([CONTEXT_FEATURES.index(f) for f in names], dtype=np.int64))

    @property
    def features(self) -> list[str]:
        return list(self.meta["features"])

    def predict(self, X: np.ndarray) -> np.ndarray:
        x = np.asarray(X, dtype=np.float32)
        x = x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, -1)
        if x.shape[1] == len(CONTEXT_FEATURES) and x.shape[1] != self.columns.size:
            x = x[:, self.columns]
        elif x.shape[1] != self.columns.size:
            raise ModelMismatchError(str(self.path), "feature count", self.columns.size, x.shape[1])
        x = np.ascontiguousarray(x)
        return np.asarray(self.session.run(["probabilities"], {"X": x})[0], dtype=np.float64)
