"""Run an exported pedstream model with ONNX Runtime (no torch here).

``ModelSession(path=..., runtime_cfg=cfg.runtime, expected=expected_metadata(...))`` opens the file
with an explicit provider list (TensorRT with engine cache / FP16 when configured, CUDA, CPU; those
not installed are skipped, CPU is the last resort), checks the embedded metadata against the
engine's configuration, warms up, and runs batches::

    logits, embedding = session.run(ecg, iegm, mask)   # (B,12,T) (B,7,T) (B,19) float32 -> (B,C) (B,D)

Session options come from ``[runtime]``: intra/inter-op threads, graph optimisation level,
execution mode (sequential/parallel) and thread spinning (off by default: spinning pool threads
steal the cores the engine's DSP needs, and on a busy machine they halve throughput).

On a GPU provider (CUDA, TensorRT) with ``io_binding`` the data stays on the device: each batch
size gets its input buffers on the GPU once (``OrtValue`` on ``cuda``), a call copies the host
arrays into them once (``update_inplace``), the outputs are bound on the device and copied back
once. On the CPU provider there is no I/O binding (``run()`` already hands numpy memory over).

Session creation runs inside :func:`pedstream.model.ortcapture.capture_output`: ONNX Runtime's
provider fallback message (``EP Error ... Falling back``, printed to stdout) becomes one logger
warning and never reaches stdout.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pedstream.errors import ModelError, ModelMismatchError
from pedstream.dsp.windowing import WindowGeometry, window_samples
from pedstream.model.metadata import NORMALIZATION, decode_metadata
from pedstream.model.ortcapture import capture_output
from pedstream.config import RuntimeSection, SignalConfig

__all__ = [
    "ModelSession",
    "check_metadata",
    "compare_metadata",
    "expected_metadata",
    "read_metadata",
    "select_providers",
    "session_options",
    "softmax",
]

_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
_OUTPUTS = ("logits", "embedding")
# Filter settings that do not change the filtered signal (settle_s only marks warm-up output).
_FILTER_KEYS_IGNORED = frozenset({"settle_s"})


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - the cpu or gpu extra is always installed
        raise ModelError("onnxruntime", "not installed: pip install 'pedstream[cpu]' or 'pedstream[gpu]'") from exc
    return onnxruntime


def softmax(logits: np.ndarray, axis: int = -1, *, dtype: type = np.float32) -> np.ndarray:
    """Numerically stable softmax of ``logits (B, C)`` -> probabilities ``(B, C)`` (computed in
    float64, returned as ``dtype``: float32 by default)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=axis, keepdims=True)).astype(dtype, copy=False)


# ---------------------------------------------------------------------------- metadata checks
def expected_metadata(*, signal_cfg: SignalConfig, filter_cfg: Any, window_s: float, hop_s: float,
                      class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """What the engine's configuration requires of a model's metadata (the input of the checks)."""
    filters = filter_cfg.model_dump() if hasattr(filter_cfg, "model_dump") else dict(filter_cfg)
    exp: dict[str, Any] = {
        "fs": float(signal_cfg.fs),
        "channels": [*signal_cfg.ecg, *signal_cfg.iegm],
        "filters": filters,
        "window_s": float(window_s),
        "window_samples": window_samples(window_s, signal_cfg.fs),
        "hop_s": float(hop_s),
        "normalization": NORMALIZATION,
    }
    if class_names is not None:
        exp["class_names"] = [str(c) for c in class_names]
    return exp


def _close(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    except (TypeError, ValueError):
        return False


def compare_metadata(metadata: Mapping[str, Any], expected: Mapping[str, Any], *,
                     path: str = "model") -> list[str]:
    """Refuse (``ModelMismatchError`` naming the field, expected and got) a model whose metadata
    disagrees with ``expected`` on fs, channels, filters, window, normalisation or class names.

    A different ``hop_s`` is not refused (the model does not depend on it); it is returned as a note.
    Returns the list of such notes.
    """
    seg = metadata.get("segments")
    if "window_s" in expected and isinstance(seg, Mapping) and seg.get("mode") == "beat":
        raise ModelError(path, f"is a beat model (classes {'/'.join(map(str, metadata.get('class_names') or []))}, "
                               "one window per beat), not a rhythm model: load it beside the rhythm model with "
                               f"--set stream.beat_model=\"{path}\"")
    notes: list[str] = []
    for key, want in expected.items():
        got = metadata.get(key)
        if key == "hop_s":
            if not _close(got, want):
                notes.append(f"model was trained with hop_s={got}, the engine uses {want}")
        elif key in ("fs", "window_s"):
            if not _close(got, want):
                raise ModelMismatchError(path, key, want, got)
        elif key == "filters":
            got_f = got if isinstance(got, Mapping) else {}
            for fk, fv in want.items():
                if fk in _FILTER_KEYS_IGNORED:
                    continue
                gv = got_f.get(fk)
                same = _close(gv, fv) if isinstance(fv, (int, float)) and not isinstance(fv, bool) else gv == fv
                if not same:
                    raise ModelMismatchError(path, f"filters.{fk}", fv, gv)
        elif key in ("channels", "class_names"):
            if list(got or []) != list(want):
                raise ModelMismatchError(path, key, list(want), got)
        elif got != want:
            raise ModelMismatchError(path, key, want, got)
    return notes


def check_metadata(metadata: Mapping[str, Any], *, signal_cfg: Any, filter_cfg: Any, window_s: float,
                   hop_s: float, class_names: Sequence[str] | None = None, path: str = "model") -> list[str]:
    """Check a model's ``metadata`` against the engine's config; raise ``ModelMismatchError`` on the
    first disagreement (fs, channel order, a signal-changing filter setting, window, normalisation,
    class names when given). Returns non-fatal notes (a different hop)."""
    exp = expected_metadata(signal_cfg=signal_cfg, filter_cfg=filter_cfg, window_s=window_s, hop_s=hop_s,
                            class_names=class_names)
    return compare_metadata(metadata, exp, path=path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The decoded metadata of an ONNX model file (opens a CPU session, runs nothing)."""
    ort = _ort()
    p = Path(path)
    if not p.is_file():
        raise ModelError(str(p), "no such file")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(str(p), f"onnxruntime cannot open it: {exc}") from exc
    return decode_metadata(sess.get_modelmeta().custom_metadata_map, path=str(p))


# ---------------------------------------------------------------------------- providers
def select_providers(requested: Sequence[str], *, runtime_cfg: Any = None, available: Sequence[str] | None = None,
                     trt_profile: Mapping[str, str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """``requested`` provider names filtered to ``available`` (default: installed), in order, each
    with its options; ``CPUExecutionProvider`` is appended when missing. An unknown name is an error.

    ``trt_profile`` (optional) adds TensorRT optimisation-profile shapes
    (``trt_profile_min_shapes``/``opt``/``max``) so dynamic batches do not rebuild engines.
    """
    ort = _ort()
    known = set(ort.get_all_providers())
    avail = list(ort.get_available_providers() if available is None else available)
    cfg = runtime_cfg
    device = int(getattr(cfg, "cuda_device", 0))
    out: list[tuple[str, dict[str, Any]]] = []
    for name in requested:
        if name not in known:
            raise ModelError("runtime.providers", f"{name!r} is not an ONNX Runtime execution provider "
                                                  f"(known: TensorrtExecutionProvider, CUDAExecutionProvider, CPUExecutionProvider, ...)")
        if name not in avail or any(n == name for n, _ in out):
            continue
        opts: dict[str, Any] = {}
        if name == "TensorrtExecutionProvider":
            opts = {"device_id": device, "trt_fp16_enable": bool(getattr(cfg, "trt_fp16", False))}
            if getattr(cfg, "trt_cache", False):
                cache = Path(getattr(cfg, "trt_cache_dir", ".trt_cache"))
                cache.mkdir(parents=True, exist_ok=True)
                opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache))
            if trt_profile:
                opts.update(trt_profile)
        elif name == "CUDAExecutionProvider":
            opts = {"device_id": device}
        out.append((name, opts))
    if not any(n == "CPUExecutionProvider" for n, _ in out):
        out.append(("CPUExecutionProvider", {}))
    return out


_preloaded = False


def _preload_gpu_libraries(ort: Any) -> None:
    """Load the CUDA/cuDNN libraries of the nvidia-* wheels (``pedstream[gpu]``) once, before the first
    GPU session (onnxruntime-gpu >= 1.21 does not find them on its own); a failure only means the
    provider falls back, which the session reports."""
    global _preloaded
    if _preloaded or not hasattr(ort, "preload_dlls"):
        return
    _preloaded = True
    try:
        ort.preload_dlls()
    except Exception as exc:  # missing wheels: the CUDA provider then fails and ONNX Runtime falls back
        import logging

        logging.getLogger(__name__).debug("onnxruntime.preload_dlls failed: %s", exc)


def session_options(runtime_cfg: RuntimeSection, *, profile_prefix: str | None = None) -> Any:
    """``onnxruntime.SessionOptions`` from the ``[runtime]`` section: intra/inter-op threads (0 = ONNX
    Runtime's default), graph optimisation level, execution mode, thread spinning."""
    ort = _ort()
    opts = ort.SessionOptions()
    if getattr(runtime_cfg, "intra_op_threads", 0):
        opts.intra_op_num_threads = int(runtime_cfg.intra_op_threads)
    if getattr(runtime_cfg, "inter_op_threads", 0):
        opts.inter_op_num_threads = int(runtime_cfg.inter_op_threads)
    level = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
             "all": "ORT_ENABLE_ALL"}[getattr(runtime_cfg, "graph_optimization", "all")]
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    mode = getattr(runtime_cfg, "execution_mode", "sequential")
    opts.execution_mode = ort.ExecutionMode.ORT_PARALLEL if mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
    spin = "1" if getattr(runtime_cfg, "allow_spinning", False) else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(profile_prefix)
    return opts


# ---------------------------------------------------------------------------- session
class ModelSession:
    """One ONNX Runtime session of a pedstream model.

    ``path``: the .onnx file. ``providers``: preference list (default ``runtime_cfg.providers``).
    ``runtime_cfg``: the ``[runtime]`` section (threads, TensorRT cache/FP16, I/O binding, warm-up).
    ``expected``: :func:`expected_metadata` of the engine's config (``None`` skips the check).
    ``max_batch``: the largest batch the caller sends (TensorRT profile and warm-up).
    ``profile_prefix``: turn on ONNX Runtime's profiler (``end_profiling()`` writes the JSON).
    ``settle_s``: the filters' warm-up in the caller's configuration (default: the model's own); with the
    metadata it makes :attr:`geometry`.
    """

    def __init__(self, *, path: str | Path, providers: Sequence[str] | None = None, runtime_cfg: RuntimeSection = None,
                 expected: Mapping[str, Any] | None = None, max_batch: int = 32,
                 profile_prefix: str | None = None, settle_s: float | None = None) -> None:
        ort = _ort()
        if runtime_cfg is None:
            from pedstream.config import RuntimeSection

            runtime_cfg = RuntimeSection()
        self.path = Path(path)
        self.runtime_cfg = runtime_cfg
        if not self.path.is_file():
            raise ModelError(str(self.path), "no such model file")
        self.metadata = read_metadata(self.path)
        if settle_s is None:
            settle_s = float((self.metadata.get("filters") or {}).get("settle_s", 0.0))
        self._settle_s = float(settle_s)
        self._geometry: WindowGeometry | None = None
        self.notes: list[str] = compare_metadata(self.metadata, expected, path=str(self.path)) if expected else []
        self.max_batch = max(1, int(max_batch))

        t = self.window_samples
        n_ecg, n_iegm = len(self.metadata["ecg_channels"]), len(self.metadata["iegm_channels"])
        n_rr = int(self.metadata["model_config"].get("n_rr", 0) or 0)
        # the I/O contract of ModelConfig.input_shapes, read from the metadata
        self._shapes: dict[str, tuple[int, ...]] = {"ecg": (n_ecg, t), "iegm": (n_iegm, t), "mask": (n_ecg + n_iegm,)}
        if n_rr:
            self._shapes["rr"] = (n_rr,)
        profile = {
            f"trt_profile_{kind}_shapes": ",".join(
                f"{name}:{b}x" + "x".join(map(str, tail)) for name, tail in self._shapes.items())
            for kind, b in (("min", 1), ("opt", self.max_batch), ("max", self.max_batch))
        }
        chosen = select_providers(providers if providers is not None else runtime_cfg.providers,
                                  runtime_cfg=runtime_cfg, trt_profile=profile)
        opts = session_options(runtime_cfg, profile_prefix=profile_prefix)
        try:
            with capture_output() as captured:
                if any(n in _GPU_PROVIDERS for n, _ in chosen):
                    _preload_gpu_libraries(ort)
                self._sess = ort.InferenceSession(str(self.path), opts, providers=[n for n, _ in chosen],
                                                  provider_options=[o for _, o in chosen])
        except Exception as exc:
            raise ModelError(str(self.path), f"onnxruntime cannot create a session: {exc}") from exc
        self.session_log: list[str] = captured.logged  # the fallback line, when ONNX Runtime fell back
        self.available_providers: list[str] = list(ort.get_available_providers())
        names_in = [i.name for i in self._sess.get_inputs()]
        names_out = [o.name for o in self._sess.get_outputs()]
        if sorted(names_in) != sorted(self._shapes) or sorted(names_out) != sorted(_OUTPUTS):
            raise ModelError(str(self.path), f"inputs {names_in} / outputs {names_out} are not "
                                             f"{list(self._shapes)} / {list(_OUTPUTS)}")
        self.providers: list[str] = list(self._sess.get_providers())
        self.on_gpu = any(p in _GPU_PROVIDERS for p in self.providers)
        self.io_binding = bool(getattr(runtime_cfg, "io_binding", True)) and self.on_gpu
        self.device = ("cuda", int(getattr(runtime_cfg, "cuda_device", 0))) if self.on_gpu else ("cpu", 0)
        self._bound: dict[int, tuple[Any, dict[str, Any]]] = {}  # batch -> (binding, device inputs)
        self._bound_lock = threading.Lock()  # the device buffers are shared: one bound call at a time
        self.warmup(int(getattr(runtime_cfg, "warmup_runs", 2)))

    # ------------------------------------------------------------- metadata views
    @property
    def class_names(self) -> list[str]:
        return list(self.metadata["class_names"])

    @property
    def channels(self) -> list[str]:
        return list(self.metadata["channels"])

    @property
    def window_samples(self) -> int:
        return int(self.metadata["window_samples"])

    @property
    def fs(self) -> float:
        return float(self.metadata["fs"])

    @property
    def geometry(self) -> WindowGeometry:
        """The model's window grid (fs, window, hop) from its checked metadata, computed once."""
        if self._geometry is None:
            self._geometry = WindowGeometry.from_metadata(self.metadata, settle_s=self._settle_s)
        return self._geometry

    @property
    def simulated(self) -> bool:
        return bool(self.metadata["trained_on_simulated_data"])

    # ------------------------------------------------------------- inference
    def warmup(self, runs: int) -> None:
        """Run ``runs`` inferences on zeros at batch 1 and ``max_batch`` (builds kernels / engines)."""
        for i in range(runs):
            b = 1 if i % 2 == 0 else self.max_batch
            z = {k: np.zeros((b, *tail), dtype=np.float32) for k, tail in self._shapes.items()}
            z["mask"][:] = 1.0
            self.run(z["ecg"], z["iegm"], z["mask"], rr=z.get("rr"))

    @property
    def n_rr(self) -> int:
        """RR features per window the model takes (0: no ``rr`` input; see pedstream.dsp.rr)."""
        return int(self._shapes["rr"][0]) if "rr" in self._shapes else 0

    def _prepare(self, ecg: np.ndarray, iegm: np.ndarray, mask: np.ndarray,
                 rr: np.ndarray | None) -> dict[str, np.ndarray]:
        feeds = {}
        b = None
        given = {"ecg": ecg, "iegm": iegm, "mask": mask, "rr": rr}
        if (rr is None) != ("rr" not in self._shapes):
            raise ModelError(str(self.path), "this model takes an rr input (RR-interval features)" if rr is None
                             else "this model takes no rr input")
        for name in self._shapes:
            a = np.ascontiguousarray(given[name], dtype=np.float32)
            tail = self._shapes[name]
            if a.ndim != len(tail) + 1 or tuple(a.shape[1:]) != tail or (b is not None and a.shape[0] != b):
                raise ModelError(str(self.path), f"input {name} has shape {a.shape}, expected (B, {', '.join(map(str, tail))})"
                                                 + ("" if b is None else f" with B={b}"))
            b = a.shape[0]
            feeds[name] = a
        if b == 0:
            raise ModelError(str(self.path), "empty batch")
        return feeds

    def run(self, ecg: np.ndarray, iegm: np.ndarray, mask: np.ndarray, *, rr: np.ndarray | None = None,
            io_binding: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``ecg (B,12,T)``, ``iegm (B,7,T)``, ``mask (B,19)`` (float32; normalised windows, absent
        channels 0) and, for a beat model, ``rr (B,K)`` -> ``logits (B,C)``, ``embedding (B,D)``.
        ``io_binding`` overrides the session default (on by default on GPU providers)."""
        feeds = self._prepare(ecg, iegm, mask, rr)
        use_binding = self.io_binding if io_binding is None else io_binding
        try:
            if use_binding:
                return self._run_bound(feeds)
            logits, emb = self._sess.run(list(_OUTPUTS), feeds)
        except Exception as exc:
            raise ModelError(str(self.path), f"inference failed: {exc}") from exc
        return logits, emb

    def _binding(self, batch: int) -> tuple[Any, dict[str, Any]]:
        """The I/O binding of ``batch``: input buffers allocated on ``self.device`` once, outputs bound
        on the device (ONNX Runtime allocates them there). At most 8 batch sizes are kept."""
        if batch in self._bound:
            return self._bound[batch]
        ort = _ort()
        kind, dev = self.device
        binding = self._sess.io_binding()
        values = {}
        for name, tail in self._shapes.items():
            values[name] = ort.OrtValue.ortvalue_from_shape_and_type((batch, *tail), np.float32, kind, dev)
            binding.bind_ortvalue_input(name, values[name])
        for name in _OUTPUTS:
            binding.bind_output(name, kind, dev)
        if len(self._bound) >= 8:
            self._bound.pop(next(iter(self._bound)))
        self._bound[batch] = (binding, values)
        return binding, values

    def _run_bound(self, feeds: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        batch = next(iter(feeds.values())).shape[0]
        with self._bound_lock:
            binding, values = self._binding(batch)
            for name, arr in feeds.items():
                values[name].update_inplace(arr)  # the one host -> device copy of this call
            binding.synchronize_inputs()
            self._sess.run_with_iobinding(binding)
            binding.synchronize_outputs()
            outs = dict(zip([o.name for o in self._sess.get_outputs()], binding.copy_outputs_to_cpu()))
        return outs["logits"], outs["embedding"]

    def end_profiling(self) -> str:
        """Stop ONNX Runtime's profiler (``profile_prefix`` given) and return its JSON file."""
        return str(self._sess.end_profiling())

    def predict_proba(self, ecg: np.ndarray, iegm: np.ndarray, mask: np.ndarray, *,
                      rr: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities ``(B, C)`` (softmax of the logits)."""
        return softmax(self.run(ecg, iegm, mask, rr=rr)[0])

    def __repr__(self) -> str:
        return f"ModelSession({self.path.name}, providers={self.providers}, classes={len(self.class_names)})"
