"""The training checkpoint format shared by ``pedstream train`` and ``pedstream export``.

A checkpoint is one ``torch.save`` file (default name ``checkpoint.pt`` inside a run folder) holding
a dict::

    {"format": "pedstream-checkpoint", "format_version": 1,
     "state_dict": {...tensors...},
     "metadata": {...plain JSON, see pedstream.model.metadata.build_metadata...},
     "sample_inputs": {"ecg": (N,12,T), "iegm": (N,7,T), "mask": (N,19)} float32 tensors or None}

``sample_inputs`` are a few real, already filtered and normalised windows (from the validation set)
that ``export`` uses to check ONNX/PyTorch parity. It loads with ``torch.load(weights_only=True)``.
torch is imported inside the functions only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from pedstream.errors import ModelError
from pedstream.model.config import ModelConfig
from pedstream.model.metadata import build_metadata

__all__ = [
    "CHECKPOINT_NAME",
    "CHECKPOINT_FORMAT",
    "find_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "load_sample_inputs",
]

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "pedstream-checkpoint"
_VERSION = 1
_MAX_SAMPLES = 32


def find_checkpoint(run: str | Path) -> Path:
    """``run`` is a checkpoint file or a run folder holding ``checkpoint.pt``."""
    p = Path(run)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    if not p.is_file():
        raise ModelError(str(p), "no checkpoint here (expected a run folder with checkpoint.pt or a .pt file)")
    return p


def _sample_tensors(sample_inputs: Mapping[str, Any], cfg: ModelConfig) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {}
    for key, tail in cfg.input_shapes().items():
        if key not in sample_inputs:
            raise ModelError("checkpoint", f"sample_inputs lacks {key!r} (needs {', '.join(cfg.input_shapes())})")
        arr = np.asarray(sample_inputs[key].detach().cpu() if hasattr(sample_inputs[key], "detach")
                         else sample_inputs[key], dtype=np.float32)
        if arr.ndim != len(tail) + 1 or tuple(arr.shape[1:]) != tail:
            raise ModelError("checkpoint", f"sample_inputs[{key!r}] has shape {arr.shape}, expected (N, {', '.join(map(str, tail))})")
        out[key] = torch.from_numpy(np.ascontiguousarray(arr[:_MAX_SAMPLES]))
    if len({t.shape[0] for t in out.values()}) != 1:
        raise ModelError("checkpoint", f"sample_inputs {'/'.join(out)} have different batch sizes")
    return out


def save_checkpoint(
    path: str | Path,
    *,
    model: Any,
    model_cfg: ModelConfig | Mapping[str, Any],
    sample_inputs: Mapping[str, Any] | None = None,
    **metadata: Any,
) -> Path:
    """Write ``model``'s weights and the plain-JSON metadata to ``path`` (a file or a run folder).

    ``metadata``: the keywords of :func:`pedstream.model.metadata.build_metadata` other than
    ``model_cfg`` (``class_names, channels, fs, window_s, hop_s, filters, normalization,
    label_scheme, data_description, simulated``, optional ``extra``).
    ``sample_inputs`` (optional, recommended): a few real normalised windows ``ecg (N,12,T)``,
    ``iegm (N,7,T)``, ``mask (N,19)`` for the export parity check (at most 32 are kept).
    Returns the file written.
    """
    import torch

    cfg_dict = model_cfg.to_dict() if isinstance(model_cfg, ModelConfig) else dict(model_cfg)
    mcfg = ModelConfig.from_dict(cfg_dict)  # validate
    meta = build_metadata(model_cfg=cfg_dict, **metadata)
    samples = None
    if sample_inputs is not None:
        samples = _sample_tensors(sample_inputs, mcfg)
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    p.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "format_version": _VERSION, "state_dict": state,
               "metadata": meta, "sample_inputs": samples}
    tmp = p.with_suffix(p.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(p)
    return p


def _read(path: str | Path) -> tuple[Path, dict[str, Any]]:
    import torch

    p = find_checkpoint(path)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(str(p), f"cannot read checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(str(p), f"not a {CHECKPOINT_FORMAT} file")
    if payload.get("format_version") != _VERSION:
        raise ModelError(str(p), f"checkpoint format_version {payload.get('format_version')!r} is not {_VERSION}")
    return p, payload


def load_checkpoint(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """Rebuild the network from ``path`` (file or run folder) -> ``(model in eval mode, metadata)``."""
    from pedstream.model.network import build_model

    p, payload = _read(path)
    meta = payload["metadata"]
    cfg = ModelConfig.from_dict(meta["model_config"])
    model = build_model(cfg)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(str(p), f"weights do not fit the stored model config: {first}") from exc
    model.eval()
    return model, meta


def load_sample_inputs(path: str | Path) -> dict[str, np.ndarray] | None:
    """The real sample windows stored with the checkpoint (``None`` when it has none)."""
    _, payload = _read(path)
    samples = payload.get("sample_inputs")
    if samples is None:
        return None
    return {k: v.numpy().astype(np.float32) for k, v in samples.items()}
