"""The network's hyper-parameters as a plain dataclass (no torch, no pydantic at use sites).

``ModelConfig`` is what :class:`pedstream.model.network.FusionNet` is built from and what a
checkpoint / ONNX file stores (``to_dict`` is plain JSON). Build it from the validated
``[model]`` section plus the signal and segment settings with :meth:`ModelConfig.from_sections`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Mapping

from pedstream.dsp.windowing import window_samples
from pedstream.errors import ModelError

__all__ = ["ARCHS", "Arch", "ModelConfig", "n_rr_features"]

Arch = Literal["fusion", "ecg_only", "iegm_only", "early"]
ARCHS: tuple[str, ...] = ("fusion", "ecg_only", "iegm_only", "early")


def n_rr_features(segments: Any) -> int:
    """RR features per window that a ``[segments]`` section asks for (0 when ``rr_features`` is off)."""
    from pedstream.dsp.rr import RR_FEATURES

    return len(RR_FEATURES) if getattr(segments, "rr_features", False) else 0


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the fusion network and its architecture baselines.

    Shapes: inputs ``ecg (B, n_ecg, window_samples)``, ``iegm (B, n_iegm, window_samples)``,
    ``mask (B, n_ecg + n_iegm)``; outputs ``logits (B, n_classes)``, ``embedding (B, embed_dim)``.
    Each conv stem layer ``i`` has ``stem_widths[i]`` output channels, kernel ``stem_kernels[i]``
    and stride ``stem_strides[i]``; the tokens per modality are about
    ``window_samples / prod(stem_strides)``.
    """

    n_classes: int
    arch: str = "fusion"
    n_ecg: int = 12
    n_iegm: int = 7
    fs: float = 977.0  # Hz
    window_samples: int = 2442  # T
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    ff_mult: int = 2  # feed-forward width = ff_mult * d_model
    dropout: float = 0.1
    embed_dim: int = 64  # projection-head output (contrastive embedding)
    stem_widths: tuple[int, ...] = (24, 48, 64)
    stem_kernels: tuple[int, ...] = (7, 5, 5)
    stem_strides: tuple[int, ...] = (4, 4, 6)
    gate_init: float = 0.1  # initial value of the cross-attention residual gate (tanh-gated)
    modality_dropout: float = 0.2  # training only: fraction of samples whose IEGM is hidden
    n_rr: int = 0  # RR-interval features per window (pedstream.dsp.rr); 0 = no ``rr`` input
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.arch not in ARCHS:
            problems.append(f"arch {self.arch!r} is not one of {list(ARCHS)}")
        if self.n_classes < 2:
            problems.append(f"n_classes must be >= 2 (got {self.n_classes})")
        if self.d_model % self.n_heads:
            problems.append(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if not (len(self.stem_widths) == len(self.stem_kernels) == len(self.stem_strides) >= 1):
            problems.append("stem_widths, stem_kernels and stem_strides must have the same non-zero length")
        if any(v < 1 for v in (*self.stem_widths, *self.stem_kernels, *self.stem_strides)):
            problems.append("stem widths, kernels and strides must be >= 1")
        if not 0.0 <= self.modality_dropout <= 1.0:
            problems.append(f"modality_dropout must be in [0, 1] (got {self.modality_dropout})")
        if self.n_rr < 0:
            problems.append(f"n_rr must be >= 0 (got {self.n_rr})")
        if self.window_samples < 1 or self.fs <= 0:
            problems.append("window_samples and fs must be positive")
        if problems:
            raise ModelError("ModelConfig", "; ".join(problems))

    # ------------------------------------------------------------------ derived sizes
    @property
    def n_channels(self) -> int:
        return self.n_ecg + self.n_iegm

    @property
    def total_stride(self) -> int:
        return math.prod(self.stem_strides)

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """The model's inputs and their shapes after the batch axis, in call order: ``ecg``,
        ``iegm``, ``mask`` and, when ``n_rr > 0``, ``rr``. The one statement of the I/O contract."""
        shapes: dict[str, tuple[int, ...]] = {"ecg": (self.n_ecg, self.window_samples),
                                              "iegm": (self.n_iegm, self.window_samples),
                                              "mask": (self.n_channels,)}
        if self.n_rr:
            shapes["rr"] = (self.n_rr,)
        return shapes

    def n_tokens(self, n_samples: int | None = None) -> int:
        """Tokens one conv stem makes from ``n_samples`` (default ``window_samples``)."""
        n = self.window_samples if n_samples is None else n_samples
        for k, s in zip(self.stem_kernels, self.stem_strides):
            n = (n + 2 * (k // 2) - k) // s + 1
        return n

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("stem_widths", "stem_kernels", "stem_strides"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError("ModelConfig", f"unknown model config keys {unknown}")
        kw = dict(data)
        for key in ("stem_widths", "stem_kernels", "stem_strides"):
            if key in kw:
                kw[key] = tuple(int(v) for v in kw[key])
        try:
            return cls(**kw)
        except TypeError as exc:
            raise ModelError("ModelConfig", f"bad model config: {exc}") from exc

    @classmethod
    def from_sections(cls, model: Any, *, signal: Any, segments: Any, n_classes: int,
                      arch: str | None = None) -> "ModelConfig":
        """Build from the pydantic ``ModelSection`` + ``SignalConfig`` + ``SegmentConfig``.

        ``arch`` overrides ``model.arch`` (the trainer runs the architecture baselines this way).
        """
        return cls(
            n_classes=int(n_classes),
            arch=arch or model.arch,
            n_ecg=len(signal.ecg),
            n_iegm=len(signal.iegm),
            fs=float(signal.fs),
            window_samples=window_samples(segments.window_s, signal.fs),
            d_model=model.d_model,
            n_heads=model.n_heads,
            n_layers=model.n_layers,
            ff_mult=model.ff_mult,
            dropout=model.dropout,
            embed_dim=model.embed_dim,
            stem_widths=tuple(model.stem_widths),
            stem_kernels=tuple(model.stem_kernels),
            stem_strides=tuple(model.stem_strides),
            gate_init=model.gate_init,
            modality_dropout=model.modality_dropout,
            n_rr=n_rr_features(segments),
        )
