"""ONNX export with embedded metadata and a PyTorch/ONNX Runtime parity check (torch).

``export_onnx`` writes ONE self-contained file (weights inside, no external data), opset 18, a
dynamic batch axis, inputs ``ecg (B,12,T)``, ``iegm (B,7,T)``, ``mask (B,19)`` and outputs
``logits (B,C)``, ``embedding (B,D)``; the model's metadata is stored as ONNX ``metadata_props``
(one JSON value per key); each exact GELU becomes one ONNX Runtime ``Gelu`` node, each 1-D
convolution a 2-D one and each attention block one ``Attention`` / ``MultiHeadAttention`` node
(:func:`pedstream.model.graph_opt.optimize`, same math; dynamo exporter). The file is then opened with ONNX Runtime (CPU) and run on the given real
inputs at batch 1 and at the full sample batch; the largest absolute logit difference from PyTorch
must stay below ``tol`` (1e-4) or :class:`ModelError` is raised and the file removed.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from pedstream.errors import ModelError
from pedstream.model.config import ModelConfig
from pedstream.model.graph_opt import optimize
from pedstream.model.metadata import decode_metadata, encode_metadata, trained_on

__all__ = ["ParityReport", "export_onnx", "export_run", "export_command", "OPSET", "EXPORTERS"]

OPSET = 18
EXPORTERS = ("dynamo", "torchscript")
_OUTPUTS = ("logits", "embedding")


@dataclass(frozen=True)
class ParityReport:
    """Largest absolute PyTorch-vs-ONNX Runtime differences over the checked batches."""

    path: Path
    max_abs_logits: float
    max_abs_embedding: float
    batch_sizes: tuple[int, ...]
    size_bytes: int
    exporter: str


def _as_tensors(sample_inputs: Mapping[str, Any], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {}
    for name, tail in cfg.input_shapes().items():
        if name not in sample_inputs:
            raise ModelError("export", f"sample_inputs lacks {name!r}")
        t = torch.as_tensor(np.asarray(sample_inputs[name], dtype=np.float32))
        if t.dim() != len(tail) + 1 or tuple(t.shape[1:]) != tail or t.shape[0] < 1:
            raise ModelError("export", f"sample_inputs[{name!r}] has shape {tuple(t.shape)}, expected (N, {', '.join(map(str, tail))})")
        out[name] = t.contiguous()
    if len({t.shape[0] for t in out.values()}) != 1:
        raise ModelError("export", f"sample_inputs {'/'.join(out)} have different batch sizes")
    return out


def _torch_export(model: torch.nn.Module, args: tuple[torch.Tensor, ...], exporter: str,
                  inputs: tuple[str, ...]) -> bytes:
    """Export to an in-memory ONNX model with a symbolic batch axis.

    ``exporter="dynamo"``: the torch.export-based exporter (torch's default since 2.9);
    ``"torchscript"``: the legacy tracer (about 10x faster to run, same graph semantics here).
    """
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            buf = io.BytesIO()
            torch.onnx.export(model, args, buf, input_names=list(inputs), output_names=list(_OUTPUTS),
                              dynamic_axes={n: {0: "batch"} for n in (*inputs, *_OUTPUTS)},
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
            return buf.getvalue()
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.onnx.export(model, args, input_names=list(inputs), output_names=list(_OUTPUTS),
                                    dynamic_shapes={n: {0: batch} for n in inputs}, opset_version=OPSET,
                                    dynamo=True, external_data=False, optimize=True, verbose=False, report=False)
        return program.model_proto.SerializeToString()


def _ensure_inputs(proto: Any, cfg: ModelConfig) -> None:
    """Put back inputs an exporter pruned because the graph ignores them (``iegm`` of ``ecg_only``):
    the I/O contract (:meth:`ModelConfig.input_shapes`) is the same for every architecture."""
    from onnx import TensorProto, helper

    shapes = cfg.input_shapes()
    have = {i.name for i in proto.graph.input}
    batch = "batch"
    for i in proto.graph.input:
        if i.name in shapes and i.type.tensor_type.shape.dim[0].dim_param:
            batch = i.type.tensor_type.shape.dim[0].dim_param
    for name, tail in shapes.items():
        if name not in have:
            proto.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, *tail]))
    order = {n: k for k, n in enumerate(shapes)}
    inputs = sorted(proto.graph.input, key=lambda v: order.get(v.name, len(order)))
    del proto.graph.input[:]
    proto.graph.input.extend(inputs)


def export_onnx(model: torch.nn.Module, model_cfg: ModelConfig, metadata: Mapping[str, Any], out_path: str | Path,
                *, sample_inputs: Mapping[str, Any], tol: float = 1e-4, exporter: str = "dynamo") -> ParityReport:
    """Export ``model`` to ``out_path`` and verify parity on ``sample_inputs`` (real, normalised windows
    ``ecg (N,12,T)``, ``iegm (N,7,T)``, ``mask (N,19)``). ``exporter``: ``"dynamo"`` (default) or
    ``"torchscript"`` (legacy). Returns the :class:`ParityReport`."""
    if exporter not in EXPORTERS:
        raise ModelError(str(out_path), f"exporter {exporter!r} is not one of {list(EXPORTERS)}")
    import onnx
    import onnxruntime as ort

    out = Path(out_path)
    decode_metadata(encode_metadata(metadata), path="metadata")  # refuse incomplete metadata early
    samples = _as_tensors(sample_inputs, model_cfg)
    names = tuple(samples)
    model = model.eval()
    args = tuple(samples[k][:2] for k in names)
    try:
        proto_bytes = _torch_export(model, args, exporter, names)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelError(str(out), f"torch.onnx.export ({exporter}) failed: {type(exc).__name__}: {first}") from exc
    proto = onnx.load_from_string(proto_bytes)
    _ensure_inputs(proto, model_cfg)
    optimize(proto)  # exact GELU as one op, 1-D convs as 2-D, fused attention (same math; pedstream.model.graph_opt)
    del proto.metadata_props[:]
    for key, value in encode_metadata(metadata).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "pedstream"
    proto.doc_string = ("pedstream classifier: inputs ecg (B,12,T), iegm (B,7,T), mask (B,19) float32 "
                        "(per-window z-scored, absent channels 0)" + (", rr (B,K) RR-interval features (pedstream.dsp.rr)"
                                                                       if model_cfg.n_rr else "")
                        + "; outputs logits (B,C), embedding (B,D).")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise ModelError(str(out), f"exported graph fails the ONNX checker: {exc}") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    data = proto.SerializeToString()
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_bytes(data)

    try:
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        worst_l = worst_e = 0.0
        n = samples["ecg"].shape[0]
        batches = (1, n) if n > 1 else (1,)
        for b in batches:
            feeds = {k: samples[k][:b].numpy() for k in names}
            with torch.no_grad():
                ref_l, ref_e = model(*(samples[k][:b] for k in names))
            got_l, got_e = sess.run(list(_OUTPUTS), feeds)
            if got_l.shape != tuple(ref_l.shape) or got_e.shape != tuple(ref_e.shape):
                raise ModelError(str(out), f"ONNX output shapes {got_l.shape}, {got_e.shape} differ from PyTorch "
                                           f"{tuple(ref_l.shape)}, {tuple(ref_e.shape)} at batch {b}")
            worst_l = max(worst_l, float(np.max(np.abs(got_l - ref_l.numpy()))))
            worst_e = max(worst_e, float(np.max(np.abs(got_e - ref_e.numpy()))))
        if not (worst_l < tol):  # also catches NaN
            raise ModelError(str(out), f"ONNX Runtime logits differ from PyTorch by {worst_l:.3g} (> {tol:g})")
    except ModelError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(str(out), f"onnxruntime could not run the export: {exc}") from exc
    tmp.replace(out)
    return ParityReport(path=out, max_abs_logits=worst_l, max_abs_embedding=worst_e,
                        batch_sizes=tuple(batches), size_bytes=len(data), exporter=exporter)


def export_run(run: str | Path, out_path: str | Path, *, sample_inputs: Mapping[str, Any] | None = None,
               tol: float = 1e-4, exporter: str = "dynamo") -> tuple[ParityReport, dict[str, Any]]:
    """Load the checkpoint of a run folder (or a .pt file) and export it with its metadata.

    Parity is checked on ``sample_inputs`` when given, else on the real windows stored in the
    checkpoint; the same windows with the IEGM hidden are added so the ECG-only path is checked too.
    """
    from pedstream.model.checkpoint import find_checkpoint, load_checkpoint, load_sample_inputs

    ckpt = find_checkpoint(run)
    model, meta = load_checkpoint(ckpt)
    samples = dict(sample_inputs) if sample_inputs is not None else load_sample_inputs(ckpt)
    if samples is None:
        raise ModelError(str(ckpt), "the checkpoint holds no sample_inputs for the parity check; "
                                    "pass real windows (pedstream export --data DIR)")
    cfg = model.cfg
    ecg = np.asarray(samples["ecg"], dtype=np.float32)
    iegm = np.asarray(samples["iegm"], dtype=np.float32)
    mask = np.asarray(samples["mask"], dtype=np.float32)
    hidden = mask.copy()
    hidden[:, cfg.n_ecg:] = 0.0
    both = {"ecg": np.concatenate([ecg, ecg]), "iegm": np.concatenate([iegm, np.zeros_like(iegm)]),
            "mask": np.concatenate([mask, hidden])}
    if "rr" in samples:
        rr = np.asarray(samples["rr"], dtype=np.float32)
        both["rr"] = np.concatenate([rr, rr])
    return export_onnx(model, cfg, meta, out_path, sample_inputs=both, tol=tol, exporter=exporter), meta


def export_command(cfg: Any, *, run: Path, out: Path, data: Path | None = None, exporter: str = "dynamo") -> ParityReport:
    """``pedstream export``: export ``run``'s checkpoint to ``out`` and print what was written."""
    from rich.console import Console

    from pedstream.model.flops import count_flops

    samples = None
    if data is not None:
        from pedstream.data.loader import list_records
        from pedstream.model.samples import record_windows

        paths = list_records(data) if Path(data).is_dir() else [Path(data).with_suffix("") if Path(data).suffix in (".hea", ".dat") else Path(data)]
        samples = record_windows(paths[:8], cfg, n=8)
    report, meta = export_run(run, out, sample_inputs=samples, exporter=exporter)
    from pedstream.model.checkpoint import load_checkpoint

    model, _ = load_checkpoint(run)
    flops = count_flops(model)
    console = Console()
    console.print(f"[bold]wrote[/bold] {report.path} ({report.size_bytes / 1e6:.2f} MB, opset {OPSET}, dynamic batch, {report.exporter} exporter)")
    console.print(f"parity vs PyTorch at batch {', '.join(map(str, report.batch_sizes))}: max |logits diff| = "
                  f"{report.max_abs_logits:.2e}, max |embedding diff| = {report.max_abs_embedding:.2e}")
    console.print(f"model: {meta['model_config']['arch']}, {flops.summary()}")
    console.print(f"classes: {', '.join(meta['class_names'])}")
    said = trained_on(meta)
    if said:
        console.print(f"[yellow]trained on {said}[/yellow]")
    elif meta["trained_on_simulated_data"]:
        console.print("[yellow]trained on SIMULATED data: not for clinical use[/yellow]")
    return report
