"""The dual-branch cross-modal fusion network and its architecture baselines (torch).

``FusionNet(cfg)`` (``cfg.arch``):

- ``"fusion"``: one strided 1-D conv stem per modality (ECG 12 ch, IEGM 7 ch; each conditioned on
  its presence mask) turns the 977 Hz window into a few dozen tokens; gated multi-head
  cross-attention lets each modality's tokens attend to the other's; a light pre-norm Transformer
  encoder runs over ``[CLS] + ECG tokens + IEGM tokens``; heads give class logits and an
  L2-normalised embedding.
- ``"ecg_only"`` / ``"iegm_only"``: one branch, no cross-attention (the other input is ignored).
- ``"early"``: early fusion, all 19 channels through one stem into one encoder.

RR context (``cfg.n_rr > 0``, beat classifiers): ``rr (B, n_rr)`` (pedstream.dsp.rr) goes through a
small MLP into one extra token right after ``[CLS]``, attended like the signal tokens, so the
classifier can weigh a beat's timing against its shape.

Missing data: inputs are multiplied by the mask, the stems see the mask, and tokens of an absent
modality (all its mask entries 0) are excluded from every attention as keys. A sample whose other
modality is absent skips cross-attention (its output is multiplied by 0; the keys are unmasked
first so the softmax never sees an all-masked row, i.e. no NaN). Attention is written out with
plain matmuls so it exports cleanly to ONNX and counts cleanly in FLOP counters.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from pedstream.errors import ModelError
from pedstream.model.config import ModelConfig

__all__ = ["FusionNet", "build_model", "ConvStem", "GatedCrossAttention", "TransformerBlock", "MultiHeadAttention"]

_NEG = -1e4  # additive mask value: exp(-1e4) == 0 in float32 and float16-safe


class ConvStem(nn.Module):
    """Strided conv stack: ``x (B, C_in, T)`` + ``mask (B, C_in)`` -> tokens ``(B, L, d_model)``.

    Each layer is Conv1d(stride s_i, 'same'-style padding k//2) -> BatchNorm -> GELU. The channel
    presence mask enters as a learned per-channel bias added after the first conv (the same as
    concatenating the mask as constant input channels, at no convolution cost).
    """

    def __init__(self, *, in_channels: int, cfg: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i, (w, k, s) in enumerate(zip(cfg.stem_widths, cfg.stem_kernels, cfg.stem_strides)):
            layers.append(nn.Conv1d(c, w, kernel_size=k, stride=s, padding=k // 2, bias=False))
            layers.append(nn.BatchNorm1d(w))
            layers.append(nn.GELU())
            c = w
        self.first = layers[0]
        self.rest = nn.Sequential(*layers[1:])
        self.mask_bias = nn.Linear(in_channels, cfg.stem_widths[0], bias=False)
        self.proj = nn.Linear(c, cfg.d_model) if c != cfg.d_model else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        # x: (B, C_in, T), mask: (B, C_in)
        h = self.first(x * mask.unsqueeze(-1))  # (B, W0, T/s0)
        h = h + self.mask_bias(mask).unsqueeze(-1)  # (B, W0, T/s0)
        h = self.rest(h)  # (B, W_last, L)
        return self.proj(h.transpose(1, 2))  # (B, L, d_model)


def sinusoidal_positions(n: int, d: int) -> Tensor:
    """Fixed sinusoidal position table ``(n, d)``."""
    pos = torch.arange(n, dtype=torch.float32).unsqueeze(1)  # (n, 1)
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))  # (d/2,)
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: d // 2])
    return pe


class MultiHeadAttention(nn.Module):
    """Multi-head attention with an additive key mask, written with plain matmuls.

    ``q (B, Lq, d)``, ``kv (B, Lk, d)``, ``key_bias (B, Lk)`` (0 = attend, -1e4 = ignore) ->
    ``(B, Lq, d)``. Callers guarantee at least one attended key per row.
    """

    def __init__(self, *, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.h = n_heads
        self.dk = d_model // n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, q: Tensor, kv: Tensor, key_bias: Tensor) -> Tensor:
        b, lq, d = q.shape
        lk = kv.shape[1]
        qh = self.q(q).reshape(b, lq, self.h, self.dk).transpose(1, 2)  # (B, H, Lq, dk)
        k, v = self.kv(kv).reshape(b, lk, 2, self.h, self.dk).permute(2, 0, 3, 1, 4).unbind(0)  # 2 x (B, H, Lk, dk)
        scores = torch.matmul(qh, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.dk))  # (B, H, Lq, Lk)
        scores = scores + key_bias[:, None, None, :]
        attn = self.drop(torch.softmax(scores, dim=-1))  # (B, H, Lq, Lk)
        ctx = torch.matmul(attn, v).transpose(1, 2).reshape(b, lq, d)  # (B, Lq, d)
        return self.out(ctx)


class GatedCrossAttention(nn.Module):
    """``x <- x + tanh(gate) * present * CrossAttn(LN(x), LN(y))``, then a gated feed-forward.

    ``x (B, Lx, d)`` queries, ``y (B, Ly, d)`` keys/values, ``y_bias (B, Ly)`` additive key mask,
    ``y_present (B,)`` 1 when the other modality has any channel. Rows whose ``y`` is absent get
    their keys unmasked (no all-masked softmax, no NaN) and the update multiplied by 0.
    """

    def __init__(self, *, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.norm_q = nn.LayerNorm(d)
        self.norm_kv = nn.LayerNorm(d)
        self.attn = MultiHeadAttention(d_model=d, n_heads=cfg.n_heads, dropout=cfg.dropout)
        self.norm_ff = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, cfg.ff_mult * d), nn.GELU(), nn.Dropout(cfg.dropout),
                                nn.Linear(cfg.ff_mult * d, d))
        g = math.atanh(min(cfg.gate_init, 0.999))
        self.gate_attn = nn.Parameter(torch.full((d,), g))
        self.gate_ff = nn.Parameter(torch.full((d,), g))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, y: Tensor, y_bias: Tensor, y_present: Tensor) -> Tensor:
        on = y_present.unsqueeze(-1)  # (B, 1)
        safe_bias = y_bias * on  # (B, Ly): all-zero rows where y is absent
        upd = self.attn(self.norm_q(x), self.norm_kv(y), safe_bias)  # (B, Lx, d)
        x = x + torch.tanh(self.gate_attn) * self.drop(upd) * on.unsqueeze(-1)
        x = x + torch.tanh(self.gate_ff) * self.drop(self.ff(self.norm_ff(x))) * on.unsqueeze(-1)
        return x  # (B, Lx, d)


class TransformerBlock(nn.Module):
    """Pre-norm self-attention block: ``x (B, L, d)``, ``bias (B, L)`` -> ``(B, L, d)``."""

    def __init__(self, *, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.norm1 = nn.LayerNorm(d)
        self.attn = MultiHeadAttention(d_model=d, n_heads=cfg.n_heads, dropout=cfg.dropout)
        self.norm2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, cfg.ff_mult * d), nn.GELU(), nn.Dropout(cfg.dropout),
                                nn.Linear(cfg.ff_mult * d, d))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, bias))
        return x + self.drop(self.ff(self.norm2(x)))


class FusionNet(nn.Module):
    """``forward(ecg (B,12,T), iegm (B,7,T), mask (B,19)[, rr (B,n_rr)]) -> (logits (B,C), embedding (B,D))``.

    ``mask`` is 1.0 for a present channel and 0.0 for an absent one (ECG channels first). The
    embedding is L2-normalised (unit length). In training mode a fraction ``cfg.modality_dropout``
    of the samples have their IEGM and its mask zeroed (fusion and early fusion only).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        arch = cfg.arch
        self.use_ecg = arch in ("fusion", "ecg_only")
        self.use_iegm = arch in ("fusion", "iegm_only")
        if arch == "early":
            self.stem_all = ConvStem(in_channels=cfg.n_channels, cfg=cfg)
        if self.use_ecg:
            self.stem_ecg = ConvStem(in_channels=cfg.n_ecg, cfg=cfg)
        if self.use_iegm:
            self.stem_iegm = ConvStem(in_channels=cfg.n_iegm, cfg=cfg)
        if arch == "fusion":
            self.cross_e2i = GatedCrossAttention(cfg=cfg)  # ECG queries attend to IEGM
            self.cross_i2e = GatedCrossAttention(cfg=cfg)  # IEGM queries attend to ECG
        n_streams = 2 if arch == "fusion" else 1
        self.type_embed = nn.Parameter(torch.zeros(n_streams, d))
        self.register_buffer("pos", sinusoidal_positions(4 * cfg.n_tokens() + 8, d), persistent=False)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = nn.ModuleList(TransformerBlock(cfg=cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.n_classes)
        self.proj = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, cfg.embed_dim))
        if cfg.n_rr:
            self.rr_embed = nn.Sequential(nn.Linear(cfg.n_rr, d), nn.GELU(), nn.Linear(d, d))
        self._init()

    def _init(self) -> None:
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.type_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    # ---------------------------------------------------------------- helpers
    def _check(self, ecg: Tensor, iegm: Tensor, mask: Tensor, rr: Tensor | None) -> None:
        c = self.cfg
        b = ecg.shape[0]
        if c.n_rr and (rr is None or rr.dim() != 2 or rr.shape[0] != b or rr.shape[1] != c.n_rr):
            got = None if rr is None else tuple(rr.shape)
            raise ModelError("FusionNet", f"rr must be (B, {c.n_rr}) for this model, got {got}")
        if ecg.dim() != 3 or ecg.shape[1] != c.n_ecg:
            raise ModelError("FusionNet", f"ecg must be (B, {c.n_ecg}, T), got {tuple(ecg.shape)}")
        if iegm.dim() != 3 or iegm.shape[1] != c.n_iegm or iegm.shape[2] != ecg.shape[2] or iegm.shape[0] != b:
            raise ModelError("FusionNet", f"iegm must be (B, {c.n_iegm}, T) like ecg {tuple(ecg.shape)}, got {tuple(iegm.shape)}")
        if mask.dim() != 2 or mask.shape[1] != c.n_channels or mask.shape[0] != b:
            raise ModelError("FusionNet", f"mask must be (B, {c.n_channels}), got {tuple(mask.shape)}")
        if ecg.shape[2] < c.total_stride or c.n_tokens(int(ecg.shape[2])) > self.pos.shape[0]:
            raise ModelError("FusionNet", f"window of {ecg.shape[2]} samples is outside what the model handles "
                                          f"(built for {c.window_samples})")

    def _modality_dropout(self, iegm: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        p = self.cfg.modality_dropout
        if not self.training or p <= 0 or self.cfg.arch not in ("fusion", "early"):
            return iegm, mask
        keep = (torch.rand(mask.shape[0], 1, device=mask.device) >= p).to(mask.dtype)  # (B, 1)
        mask = torch.cat([mask[:, : self.cfg.n_ecg], mask[:, self.cfg.n_ecg :] * keep], dim=1)  # (B, 19)
        return iegm * keep.unsqueeze(-1), mask

    def _tokens(self, stem: ConvStem, x: Tensor, m: Tensor, kind: int) -> tuple[Tensor, Tensor, Tensor]:
        """-> tokens (B, L, d), additive key bias (B, L), present (B,) float."""
        tok = stem(x, m)  # (B, L, d)
        tok = tok + self.pos[: tok.shape[1]].unsqueeze(0) + self.type_embed[kind]
        present = (m.sum(dim=1) > 0).to(tok.dtype)  # (B,)
        bias = ((1.0 - present) * _NEG).unsqueeze(1).expand(-1, tok.shape[1])  # (B, L)
        return tok, bias, present

    # ---------------------------------------------------------------- forward
    def forward(self, ecg: Tensor, iegm: Tensor, mask: Tensor, rr: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(ecg, iegm, mask, rr)
        iegm, mask = self._modality_dropout(iegm, mask)
        m_ecg, m_iegm = mask[:, : self.cfg.n_ecg], mask[:, self.cfg.n_ecg :]  # (B, 12), (B, 7)
        arch = self.cfg.arch
        if arch == "early":
            x, bias, _ = self._tokens(self.stem_all, torch.cat([ecg, iegm], dim=1), mask, 0)
        elif arch == "ecg_only":
            x, bias, _ = self._tokens(self.stem_ecg, ecg, m_ecg, 0)
        elif arch == "iegm_only":
            x, bias, _ = self._tokens(self.stem_iegm, iegm, m_iegm, 0)
        else:
            te, be, pe = self._tokens(self.stem_ecg, ecg, m_ecg, 0)  # (B, Le, d)
            ti, bi, pi = self._tokens(self.stem_iegm, iegm, m_iegm, 1)  # (B, Li, d)
            te2 = self.cross_e2i(te, ti, bi, pi)  # ECG tokens enriched by IEGM
            ti2 = self.cross_i2e(ti, te, be, pe)  # IEGM tokens enriched by ECG
            x = torch.cat([te2, ti2], dim=1)  # (B, Le+Li, d)
            bias = torch.cat([be, bi], dim=1)  # (B, Le+Li)
        b = x.shape[0]
        if self.cfg.n_rr:
            rr_tok = self.rr_embed(rr).unsqueeze(1)  # (B, 1, d)
            x = torch.cat([rr_tok, x], dim=1)
            bias = torch.cat([torch.zeros_like(bias[:, :1]), bias], dim=1)  # the RR token is always attended
        x = torch.cat([self.cls.expand(b, -1, -1), x], dim=1)  # (B, 1+L, d)
        bias = torch.cat([torch.zeros_like(bias[:, :1]), bias], dim=1)  # (B, 1+L): CLS always attended
        for blk in self.blocks:
            x = blk(x, bias)
        h = self.norm(x[:, 0])  # (B, d)
        logits = self.head(h)  # (B, C)
        emb = F.normalize(self.proj(h), dim=-1, eps=1e-6)  # (B, D), unit length
        return logits, emb


def build_model(cfg: ModelConfig) -> FusionNet:
    """The network for ``cfg`` (all architectures are :class:`FusionNet` with a different ``arch``)."""
    return FusionNet(cfg)
