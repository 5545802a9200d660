"""The runtime's GPU-path mechanics that can be checked without a GPU: ONNX Runtime's fallback message
never reaches stdout (captured at the fd level, logged as one line), the I/O-binding path with buffers
bound on a device gives the same result as plain run(), session options from [runtime], the
provider-parity checker (CPU against CPU), and bench/gpu_check.sh is valid (shellcheck-clean)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pedstream.config import load_config
from pedstream.model.ortcapture import capture_output, fallback_line
from pedstream.model.runtime import ModelSession, session_options
from pedstream.monitor.assembly import default_model_path

ROOT = Path(__file__).resolve().parents[2]
# the exact lines onnxruntime's InferenceSession prints when a provider cannot start
ORT_FALLBACK = ("*************** EP Error ***************\n"
                "EP Error [ONNXRuntimeError] : 1 : FAIL : libcudnn.so.9: cannot open shared object file when using "
                "['CUDAExecutionProvider', 'CPUExecutionProvider']\n"
                "Falling back to ['CPUExecutionProvider'] and retrying.\n"
                "****************************************\n")


def test_fallback_message_is_one_log_line_and_never_stdout(capfd, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="pedstream.model.runtime")
    with capture_output() as cap:
        os.write(1, ORT_FALLBACK.encode())  # C++-side write to fd 1
        print("EP Error again (python print) Falling back to ['CPUExecutionProvider']")  # noqa: T201
        os.write(2, b"\x1b[0;93m2026-01-01 [W:onnxruntime:, session.cc:1] some warning\x1b[m\n")
        os.write(1, b'{"event": "call"}\n')  # someone else's line: given back
    out, err = capfd.readouterr()
    assert "EP Error" not in out and "Falling back" not in out and "EP Error" not in err
    assert out == '{"event": "call"}\n'
    assert "onnxruntime" not in err
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].getMessage() == cap.logged[0]
    assert "CUDAExecutionProvider" in cap.logged[0] and "libcudnn.so.9" in cap.logged[0]
    assert "falling back to ['CPUExecutionProvider']" in cap.logged[0]


def test_fallback_line_none_without_fallback() -> None:
    assert fallback_line("some other output\n") is None
    assert fallback_line(ORT_FALLBACK).startswith("ONNX Runtime could not use ['CUDAExecutionProvider'")


def test_cpu_session_has_no_io_binding_and_bound_path_matches_run() -> None:
    cfg = load_config()
    sess = ModelSession(path=default_model_path(), providers=["CPUExecutionProvider"], runtime_cfg=cfg.runtime,
                        max_batch=8)
    assert sess.providers == ["CPUExecutionProvider"] and sess.io_binding is False and sess.session_log == []
    rng = np.random.default_rng(3)
    t = sess.window_samples
    for b in (3, 8, 3):  # a batch size seen before reuses its bound buffers
        ecg = rng.standard_normal((b, 12, t), dtype=np.float32)
        iegm = rng.standard_normal((b, 7, t), dtype=np.float32)
        mask = np.ones((b, 19), np.float32)
        ref_l, ref_e = sess.run(ecg, iegm, mask)
        got_l, got_e = sess.run(ecg, iegm, mask, io_binding=True)  # the GPU path's code, device "cpu" here
        np.testing.assert_array_equal(got_l, ref_l)
        np.testing.assert_array_equal(got_e, ref_e)
    assert sorted(sess._bound) == [3, 8]


def test_session_options_follow_runtime_section() -> None:
    cfg = load_config(overrides=["runtime.intra_op_threads=1", "runtime.execution_mode=\"parallel\"",
                                 "runtime.allow_spinning=true", "runtime.graph_optimization=\"basic\""])
    opts = session_options(cfg.runtime)
    import onnxruntime as ort

    assert opts.intra_op_num_threads == 1
    assert opts.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    default = session_options(load_config().runtime)
    assert default.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_parity_checker_cpu_against_cpu() -> None:
    from pedstream.bench.parity import compare_providers

    cfg = load_config()
    res = compare_providers(cfg, model=default_model_path(), providers=["cpu", "cuda"], n=8, batch=4)
    assert all("tests/fixtures/real" in r for r in res["records"])
    cpu, cuda = res["results"]
    assert cpu["status"] == "ok" and cpu["windows"] == 16  # 8 real windows + the same with the IEGM hidden
    assert cpu["max_prob_diff"] == 0.0 and cpu["call_agreement"] == 1.0
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert cuda["status"].startswith("unavailable") and "max_prob_diff" not in cuda


def test_gpu_check_script_is_valid() -> None:
    script = ROOT / "bench" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


@pytest.mark.service("shellcheck")
def test_gpu_check_script_passes_shellcheck() -> None:
    script = ROOT / "bench" / "gpu_check.sh"
    res = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
