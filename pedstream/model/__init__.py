"""The fusion model: config, metadata, checkpoint format, ONNX export and the ONNX Runtime session.

Importing this package does not import torch: the torch-based names (``FusionNet``,
``build_model``, ``export_onnx``, ``count_flops``...) are loaded on first use.
"""

from __future__ import annotations

from pedstream._lazy import lazy_exports
from pedstream.model.checkpoint import (
    CHECKPOINT_NAME,
    find_checkpoint,
    load_checkpoint,
    load_sample_inputs,
    save_checkpoint,
)
from pedstream.model.config import ARCHS, ModelConfig
from pedstream.model.metadata import (
    METADATA_FORMAT,
    NORMALIZATION,
    build_metadata,
    decode_metadata,
    encode_metadata,
)
from pedstream.model.runtime import (
    ModelSession,
    check_metadata,
    compare_metadata,
    expected_metadata,
    read_metadata,
    select_providers,
    softmax,
)
from pedstream.model.samples import record_windows

_LAZY = {
    "FusionNet": "pedstream.model.network",
    "build_model": "pedstream.model.network",
    "export_onnx": "pedstream.model.export",
    "export_run": "pedstream.model.export",
    "ParityReport": "pedstream.model.export",
    "count_params": "pedstream.model.flops",
    "count_flops": "pedstream.model.flops",
    "FlopReport": "pedstream.model.flops",
}

__all__ = [
    "ARCHS",
    "CHECKPOINT_NAME",
    "METADATA_FORMAT",
    "NORMALIZATION",
    "ModelConfig",
    "ModelSession",
    "build_metadata",
    "check_metadata",
    "compare_metadata",
    "decode_metadata",
    "encode_metadata",
    "expected_metadata",
    "find_checkpoint",
    "load_checkpoint",
    "load_sample_inputs",
    "read_metadata",
    "record_windows",
    "save_checkpoint",
    "select_providers",
    "softmax",
    *_LAZY,
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
