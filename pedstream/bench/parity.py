"""Calls of another execution provider (CUDA, TensorRT FP16) against FP32 ONNX Runtime on the CPU, on
real windows.

    python -m pedstream.bench.parity [--model PATH] [--providers cuda,tensorrt] [--records R ...] [--json FILE]

The windows are prepared exactly as the engine prepares them (:func:`pedstream.model.samples.record_windows`)
from real WFDB records: by default the excerpts in ``tests/fixtures/real`` (MIT-BIH 119, 208, 220,
iafdb iaf1_afw) of a source checkout, else the bundled simulated demo records. Each window is also
run with the IEGM hidden, so the ECG-only path is checked too. For each provider: the largest
absolute class-probability difference from the CPU (``max_prob_diff``), the share of windows whose
call (arg-max class) is the same (``call_agreement``), the largest logit difference, and the
provider ONNX Runtime really used (a provider that fell back to the CPU is reported as such, never
as a pass). ``--providers cpu`` compares the CPU with itself (a check of the checker: 0 and 1.0).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pedstream.bench.common import machine_info, repo_root
from pedstream.config import Config

__all__ = ["compare_providers", "real_windows", "main"]

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def _default_records() -> list[Path]:
    root = repo_root()
    if root is not None:
        real = root / "tests" / "fixtures" / "real"
        recs = [real / "119", real / "aami" / "208", real / "aami" / "220", real / "iaf1_afw"]
        recs = [r for r in recs if r.with_suffix(".hea").is_file()]
        if recs:
            return recs
    demo = Path(__file__).resolve().parents[1] / "assets" / "demo_records"
    return sorted(p.with_suffix("") for p in demo.glob("*.hea"))


def real_windows(cfg: Config, records: Sequence[Path] | None = None, *, n: int = 64) -> tuple[dict[str, np.ndarray], list[str]]:
    """Up to ``n`` real windows of ``records`` plus the same windows with the IEGM hidden (mask 0)."""
    from pedstream.model.samples import record_windows

    recs = list(records) if records else _default_records()
    w = record_windows(recs, cfg, n=n)
    n_ecg = len(cfg.signal.ecg)
    hidden = w["mask"].copy()
    hidden[:, n_ecg:] = 0.0
    both = {"ecg": np.concatenate([w["ecg"], w["ecg"]]),
            "iegm": np.concatenate([w["iegm"], np.zeros_like(w["iegm"])]),
            "mask": np.concatenate([w["mask"], hidden])}
    return both, [str(r) for r in recs]


def _run(session: Any, x: dict[str, np.ndarray], batch: int) -> np.ndarray:
    out = []
    for i in range(0, x["ecg"].shape[0], batch):
        out.append(session.run(x["ecg"][i:i + batch], x["iegm"][i:i + batch], x["mask"][i:i + batch])[0])
    return np.concatenate(out)


def compare_providers(cfg: Config, *, model: Path, providers: Sequence[str], records: Sequence[Path] | None = None,
                      n: int = 64, batch: int = 32) -> dict[str, Any]:
    """The figures of the module docstring for each of ``providers`` against FP32 CPU."""
    from pedstream.model.runtime import ModelSession, softmax

    x, recs = real_windows(cfg, records, n=n)
    ref_sess = ModelSession(path=model, providers=["CPUExecutionProvider"], runtime_cfg=cfg.runtime, max_batch=batch)
    ref_logits = _run(ref_sess, x, batch)
    ref_p = softmax(ref_logits)
    rows = []
    for key in providers:
        name = PROVIDERS.get(key, key)
        row: dict[str, Any] = {"provider": key, "windows": int(x["ecg"].shape[0])}
        try:
            sess = ModelSession(path=model, providers=[name], runtime_cfg=cfg.runtime, max_batch=batch)
        except Exception as exc:
            rows.append({**row, "status": f"failed: {exc}"})
            continue
        row["session_providers"] = sess.providers
        if sess.providers[0] != name:
            rows.append({**row, "status": "unavailable: ONNX Runtime used " + sess.providers[0],
                         "log": sess.session_log})
            continue
        logits = _run(sess, x, batch)
        p = softmax(logits)
        agree = float(np.mean(np.argmax(p, axis=1) == np.argmax(ref_p, axis=1)))
        row.update(status="ok", max_prob_diff=float(np.max(np.abs(p - ref_p))),
                   max_logit_diff=float(np.max(np.abs(logits - ref_logits))), call_agreement=round(agree, 4),
                   fp16=bool(name == "TensorrtExecutionProvider" and cfg.runtime.trt_fp16))
        rows.append(row)
    return {"bench": "parity", "model": str(model), "records": recs, "reference": "CPUExecutionProvider FP32",
            "machine": machine_info(), "results": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--providers", default="cuda,tensorrt")
    ap.add_argument("--records", nargs="*", type=Path, default=None)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from pedstream.config import load_config
    from pedstream.fileio import write_json
    from pedstream.monitor.assembly import default_model_path

    cfg = load_config()
    result = compare_providers(cfg, model=args.model or default_model_path(),
                               providers=[p.strip() for p in args.providers.split(",") if p.strip()],
                               records=args.records, n=args.n)
    for r in result["results"]:
        print(json.dumps({k: v for k, v in r.items() if k != "log"}), file=sys.stderr)
    if args.json is not None:
        write_json(args.json, result, indent=2)
    else:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
