"""Fit the gradient-boosting beat model on every DS1 record and export it as an engine beat model (ONNX).

The graph keeps the engine's beat-model contract (:class:`pedstream.model.runtime.ModelSession`):
inputs ``ecg (B,12,T)``, ``iegm (B,7,T)``, ``mask (B,19)`` (unused by this model) and ``rr (B,F)``,
which carries the beat's :mod:`pedstream.dsp.beat_features` vector (``segments.features`` names the
feature version; the engine's :class:`~pedstream.monitor.ectopy.BeatStream` computes it); outputs
``logits (B,4)`` (log-probabilities of N, S, V, F, plus the log of the class-prior shift the CV chose:
the engine's softmax of them is the shifted, renormalised probability) and ``embedding (B,4)`` (the
unshifted probabilities).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m pedstream.train.beat_export --out models/mitdb-beats/model.onnx \\
        [--variant NAME] [--data ../shared/data/mitdb]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from pedstream.errors import ModelError, PedstreamError

__all__ = ["DEFAULT_VARIANT", "build_metadata", "export_onnx", "main"]

DEFAULT_VARIANT = "HGB, part 2 (adapted), sqrt weights"


def build_metadata(*, variant: Any, cfg: Any, feature_scale: np.ndarray, beats: dict[str, int],
                   records: list[str], adapt_settings: dict[str, Any]) -> dict[str, Any]:
    """The pedstream-model/1 metadata of a feature beat model (what open_beat_model checks)."""
    import pedstream
    from pedstream.data.channels import ECG_CHANNELS, IEGM_CHANNELS
    from pedstream.dsp.beat_features import FEATURE_VERSION, feature_names
    from pedstream.dsp.windowing import NORMALIZATION
    from pedstream.train.beat_gbm import CLASSES, columns

    adapt = variant.features.startswith("part2")
    names = feature_names(adapt)
    fs = float(cfg.signal.fs)
    scheme = cfg.labels.schemes[cfg.labels.scheme]
    return {
        "format": "pedstream-model/1", "pedstream_version": getattr(pedstream, "__version__", "0"),
        "class_names": list(CLASSES), "channels": [*ECG_CHANNELS, *IEGM_CHANNELS],
        "ecg_channels": list(ECG_CHANNELS), "iegm_channels": list(IEGM_CHANNELS), "trained_channels": ["II"],
        "fs": fs, "window_s": 1.0, "hop_s": 1.0, "window_samples": int(round(fs)),
        "filters": cfg.filters.model_dump(), "normalization": NORMALIZATION,
        "label_scheme": {"name": cfg.labels.scheme, **scheme.model_dump()},
        "data_description": f"MIT-BIH Arrhythmia Database DS1 (PhysioNet mitdb, real adult ECG; paced records "
                            f"excluded): {len(records)} records, {sum(beats.values())} reference beats",
        "trained_on_simulated_data": False,
        "training_data": {"format": "WFDB", "name": "MIT-BIH Arrhythmia Database DS1", "records": len(records),
                          "subjects": len(records), "beats": beats, "simulated": False, "record_names": records},
        "model_config": {"arch": "beat_gbm", "n_rr": len(names), "fs": fs, "window_samples": int(round(fs)),
                         "n_classes": len(CLASSES), "variant": variant.name, "params": variant.params,
                         "class_weights": variant.weights},
        "segments": {"mode": "beat", "rr_features": True, "rr_local_beats": 10, "rr_long_beats": 250,
                     "window_s": 1.0, "hop_s": 1.0, "features": FEATURE_VERSION, "adapt": adapt,
                     "feature_names": list(names), "model_columns": [int(c) for c in columns(variant.features)
                                                                     if c < len(names)]},
        "feature_scale": [float(s) for s in np.asarray(feature_scale)[: len(names)]],  # the engine's columns
        "adapt_settings": adapt_settings,
        "method": "gradient boosting on per-beat features", "loss": variant.weights,
        "inputs": {"ecg": [None, len(ECG_CHANNELS), int(round(fs))], "iegm": [None, len(IEGM_CHANNELS), int(round(fs))],
                   "mask": [None, len(ECG_CHANNELS) + len(IEGM_CHANNELS)], "rr": [None, len(names)]},
        "outputs": {"logits": [None, len(CLASSES)], "embedding": [None, len(CLASSES)]},
        "cv": "bench/results/beat_cv/cv.md", "model_card": "docs/models/beats.md",
    }


def export_onnx(clf: Any, path: Path, meta: dict[str, Any]) -> Path:
    """Write ``clf`` (fitted on ``meta['segments']['model_columns']``) as an engine beat model; checked with onnxruntime."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from pedstream.model.metadata import encode_metadata
    from pedstream.train.rhythm_export import sklearn_to_onnx

    cols = np.asarray(meta["segments"]["model_columns"], dtype=np.int64)
    n_feat, t = int(meta["model_config"]["n_rr"]), int(meta["window_samples"])
    onx = sklearn_to_onnx(clf, cols.size)
    g = onx.graph
    x_name = g.input[0].name
    prob = next(o.name for o in g.output if o.name == "probabilities")
    del g.input[:]
    shapes = {"ecg": [None, 12, t], "iegm": [None, 7, t], "mask": [None, 19], "rr": [None, n_feat]}
    g.input.extend([helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in shapes.items()])
    g.initializer.extend([numpy_helper.from_array(cols, "beat_feature_columns"),
                          numpy_helper.from_array(np.asarray(1e-7, np.float32), "beat_prob_floor")])
    head = [helper.make_node("Gather", ["rr", "beat_feature_columns"], [x_name], axis=1)]
    shift = meta.get("class_prior_shift") or {}
    bias = np.log(np.asarray([float(shift.get(c, 1.0)) for c in meta["class_names"]], np.float32))
    g.initializer.append(numpy_helper.from_array(bias, "beat_class_bias"))
    tail = [helper.make_node("Max", [prob, "beat_prob_floor"], ["beat_prob_floored"]),
            helper.make_node("Log", ["beat_prob_floored"], ["beat_log_prob"]),
            helper.make_node("Add", ["beat_log_prob", "beat_class_bias"], ["logits"]),
            helper.make_node("Identity", [prob], ["embedding"])]
    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    n_cls = len(meta["class_names"])
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info(k, TensorProto.FLOAT, [None, n_cls]) for k in ("logits", "embedding")])
    helper.set_model_props(onx, encode_metadata(meta))
    onnx.checker.check_model(onx)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(onx, str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(64, n_feat)).astype(np.float32)
    z = {"ecg": np.zeros((64, 12, t), np.float32), "iegm": np.zeros((64, 7, t), np.float32),
         "mask": np.ones((64, 19), np.float32), "rr": feats}
    got = np.exp(sess.run(["logits"], z)[0] - bias)
    diff = float(np.abs(got - clf.predict_proba(feats[:, cols])).max())
    if diff > 1e-4:
        raise ModelError(str(path), f"ONNX and scikit-learn probabilities differ by {diff:.2g}")
    return path


def main(argv: list[str] | None = None) -> int:
    from pedstream.train.beat_data import DS1, beat_config, build_tables
    from pedstream.train.beat_gbm import VARIANTS, columns, fit

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="models/mitdb-beats/model.onnx")
    ap.add_argument("--variant", default=DEFAULT_VARIANT)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mitdb"))
    ap.add_argument("--adapt-settings", default="bench/results/beat_cv/adapt.json")
    ap.add_argument("--cv", default="bench/results/beat_cv/cv.json", help="the CV's choice (variant, class-prior shift)")
    ap.add_argument("--manifest", default=None, help="also write the metadata as this JSON file")
    ap.add_argument("--positions", choices=("reference", "engine"), default=None,
                    help="train at the reference beats or at the beats the live engine classifies "
                         "(default: the positions of the CV in --cv)")
    ap.add_argument("--engine-model", default="models/mitdb-beats/model.onnx",
                    help="a feature beat model to find the engine's beats with (when not cached)")
    a = ap.parse_args(argv)
    try:
        shift = None
        cv = Path(a.cv)
        if a.positions is None:
            a.positions = json.loads(cv.read_text()).get("positions", "reference") if cv.is_file() else "reference"
        if a.variant == DEFAULT_VARIANT and cv.is_file() and json.loads(cv.read_text()).get("chosen"):
            ch = json.loads(cv.read_text())["chosen"]
            a.variant = ch["variant"]
            shift = ch["shift"] if "class-prior shift" in ch["row"] else None
        if a.variant not in VARIANTS:
            raise ModelError(a.variant, f"unknown variant; known: {list(VARIANTS)}")
        v = VARIANTS[a.variant]
        tables = build_tables(a.data, positions=a.positions, model=a.engine_model)
        x = np.concatenate([t.x for t in tables])
        y = np.concatenate([t.y for t in tables])
        t0 = time.time()
        clf = fit(v, x, y)
        adapt = {"method": "knn", "k": 3, "mix": 0.8, "n_half": 10.0}
        p = Path(a.adapt_settings)
        if p.is_file():
            five = json.loads(p.read_text())["results"]["5 min"]
            if five.get("chosen_settings"):  # the AdaptSettings fields of the setting chosen most often
                adapt = {"n_half": 10.0, **five["chosen_settings"]}
            else:
                m, k, mix = five["chosen_most_often"]
                adapt = {"method": str(m).split("-")[0], "k": max(int(k), 1), "mix": float(mix), "n_half": 10.0,
                         "combine": "product" if str(m).endswith("product") else "mean"}
        cfg = beat_config()
        from pedstream.dsp.beat_features import feature_names

        n = len(feature_names(v.features.startswith("part2")))  # the columns the engine computes
        meta = build_metadata(variant=v, cfg=cfg, feature_scale=x[:, :n].std(axis=0), records=list(DS1),
                              beats={c: int(np.sum(y == i)) for i, c in enumerate("NSVFQ")}, adapt_settings=adapt)
        meta["fit_seconds"] = round(time.time() - t0, 1)
        meta["beat_positions"] = a.positions
        meta["training_data"]["beats"] = {c: int(np.sum(y == i)) for i, c in enumerate("NSVFQ")}
        meta["class_prior_shift"] = {"S": shift[0], "V": shift[1]} if shift else None
        export_onnx(clf, Path(a.out), meta)
        if a.manifest:
            Path(a.manifest).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    except (OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PedstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {a.out}: {a.variant}, {x.shape[0]} beats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
