"""The model's self-description: built at training time, stored in the checkpoint and in the ONNX
file (as ``metadata_props``, one JSON value per key), checked by the engine before it trusts a model.

No torch here: the engine reads this through :mod:`pedstream.model.runtime`.

Besides :data:`REQUIRED_KEYS`, models written by ``pedstream train`` carry ``training_data`` (a dict:
``format``, ``subjects``, ``records``, ``windows``, ``simulated``, ``name`` for a named data set) and
models trained on several sources at once (the shipped monitor model, :mod:`pedstream.train.monitor`)
also ``training_data.trained_on``: what they were trained on in words, shown verbatim by the run
banner, e.g. ``"simulated Leipzig-format data + MIT-BIH ECG, not for clinical use"`` (:func:`trained_on`).
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from pedstream.errors import ModelError

__all__ = [
    "METADATA_FORMAT",
    "NORMALIZATION",
    "REQUIRED_KEYS",
    "build_metadata",
    "encode_metadata",
    "decode_metadata",
    "trained_on",
]

METADATA_FORMAT = "pedstream-model/1"
NORMALIZATION = "window_zscore"  # per-window per-channel z-score (pedstream.dsp.windowing.normalize_window)

REQUIRED_KEYS: tuple[str, ...] = (
    "format",
    "pedstream_version",
    "class_names",
    "channels",
    "ecg_channels",
    "iegm_channels",
    "fs",
    "window_s",
    "hop_s",
    "window_samples",
    "filters",
    "normalization",
    "label_scheme",
    "data_description",
    "trained_on_simulated_data",
    "model_config",
)


def build_metadata(
    *,
    model_cfg: Mapping[str, Any],
    class_names: Sequence[str],
    channels: Sequence[str],
    fs: float,
    window_s: float,
    hop_s: float,
    filters: Mapping[str, Any],
    normalization: str,
    label_scheme: Any,
    data_description: str,
    simulated: bool,
    segments: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Plain-JSON metadata of a trained model.

    ``model_cfg`` is ``ModelConfig.to_dict()``; ``channels`` the model's input channel order (ECG
    names then IEGM names, as many as ``n_ecg + n_iegm``); ``fs`` in Hz; ``window_s``/``hop_s`` in
    seconds; ``filters`` the ``[filters]`` section as a dict; ``label_scheme`` the scheme name or
    its dict; ``segments`` the ``[segments]`` section as a dict (``mode`` "rhythm" or "beat", and for
    a model with an ``rr`` input the RR settings the engine must reproduce: ``rr_local_beats``,
    ``rr_long_beats``). Raises :class:`ModelError` when the pieces disagree with each other.
    """
    from pedstream import __version__

    n_ecg, n_iegm = int(model_cfg["n_ecg"]), int(model_cfg["n_iegm"])
    channels = [str(c) for c in channels]
    class_names = [str(c) for c in class_names]
    if len(channels) != n_ecg + n_iegm:
        raise ModelError("metadata", f"channels has {len(channels)} names, the model takes {n_ecg} ECG + {n_iegm} IEGM")
    if len(class_names) != int(model_cfg["n_classes"]):
        raise ModelError("metadata", f"class_names has {len(class_names)} names, the model has {model_cfg['n_classes']} outputs")
    n_rr = int(model_cfg.get("n_rr", 0))
    if n_rr and not (segments and segments.get("rr_features")):
        raise ModelError("metadata", f"the model takes {n_rr} RR features but segments.rr_features is not set")
    if abs(float(model_cfg["fs"]) - float(fs)) > 1e-6:
        raise ModelError("metadata", f"fs {fs} differs from the model config's fs {model_cfg['fs']}")
    meta: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "pedstream_version": __version__,
        "class_names": class_names,
        "channels": channels,
        "ecg_channels": channels[:n_ecg],
        "iegm_channels": channels[n_ecg:],
        "fs": float(fs),
        "window_s": float(window_s),
        "hop_s": float(hop_s),
        "window_samples": int(model_cfg["window_samples"]),
        "filters": dict(filters),
        "normalization": str(normalization),
        "label_scheme": label_scheme,
        "data_description": str(data_description),
        "trained_on_simulated_data": bool(simulated),
        "model_config": dict(model_cfg),
        "segments": dict(segments) if segments else {"mode": "rhythm"},
        "inputs": {"ecg": [None, n_ecg, int(model_cfg["window_samples"])],
                   "iegm": [None, n_iegm, int(model_cfg["window_samples"])],
                   "mask": [None, n_ecg + n_iegm], **({"rr": [None, n_rr]} if n_rr else {})},
        "outputs": {"logits": [None, len(class_names)], "embedding": [None, int(model_cfg["embed_dim"])]},
    }
    for key, value in (extra or {}).items():
        if key in meta:
            raise ModelError("metadata", f"extra key {key!r} would overwrite a standard metadata field")
        meta[key] = value
    try:
        json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ModelError("metadata", f"metadata is not plain JSON: {exc}") from exc
    return meta


def encode_metadata(meta: Mapping[str, Any]) -> dict[str, str]:
    """``{key: json.dumps(value)}``: the form stored in ONNX ``metadata_props``."""
    return {str(k): json.dumps(v, sort_keys=True) for k, v in meta.items()}


def decode_metadata(props: Mapping[str, str], *, path: str = "model") -> dict[str, Any]:
    """Inverse of :func:`encode_metadata`; raises :class:`ModelError` on bad JSON or missing keys."""
    meta: dict[str, Any] = {}
    for key, raw in props.items():
        try:
            meta[key] = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ModelError(path, f"metadata field {key!r} is not JSON ({exc.msg})") from exc
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelError(path, f"not a pedstream model: metadata lacks {missing}")
    if meta["format"] != METADATA_FORMAT:
        raise ModelError(path, f"metadata format {meta['format']!r} is not {METADATA_FORMAT!r}")
    return meta


def trained_on(meta: Mapping[str, Any]) -> str:
    """``training_data.trained_on`` of a model's metadata (one line), ``""`` when it has none."""
    td = meta.get("training_data")
    return " ".join(str(td.get("trained_on") or "").split()) if isinstance(td, Mapping) else ""
