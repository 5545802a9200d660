"""``pedstream bench model|engine|ingest|alarm --quick --json``: each runs through the real CLI (a
subprocess, real ONNX Runtime, real mosquitto and LSL) and writes the documented JSON schema. Speed is
not checked (the machine is shared); the schema and the internal consistency of the figures are."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MACHINE_KEYS = {"cpu", "cores", "load_avg", "gpus", "platform", "python", "versions", "commit", "time_utc"}


def bench(tmp_path: Path, *args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, dict | None]:
    out = tmp_path / "result.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "pedstream.cli", "bench", *args, "--json", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout, env=env)
    return proc, (json.loads(out.read_text()) if out.is_file() else None)


def check_machine(result: dict) -> None:
    assert MACHINE_KEYS <= set(result["machine"]), result["machine"]
    assert result["machine"]["cores"] >= 1
    assert result["machine"]["versions"]["onnxruntime"] or result["machine"]["versions"]["onnxruntime-gpu"]


def test_model_quick(tmp_path: Path) -> None:
    proc, r = bench(tmp_path, "model", "--quick", "--providers", "cpu,cuda", "--batches", "1,4", "--seconds", "0.1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert r["bench"] == "model" and r["quick"] is True and r["command"].startswith("pedstream bench model")
    check_machine(r)
    assert r["matmul"]["peak_gflops"] >= r["matmul"]["median_gflops"] > 0
    ort_rows = [x for x in r["results"] if x["engine"] == "onnxruntime" and x["provider"] == "cpu"]
    assert [x["batch"] for x in ort_rows] == [1, 4]
    for x in ort_rows:
        assert x["status"] == "ok" and x["calls"] >= 5 and x["io_binding"] is False
        assert 0 < x["median_ms"] <= x["p99_ms"]
        assert x["windows_per_s"] > 0
    cuda = [x for x in r["results"] if x["provider"] == "cuda"]
    if "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers():
        # never a CPU figure under a GPU name
        assert len(cuda) == 1 and cuda[0]["status"].startswith("unavailable") and "windows_per_s" not in cuda[0]
    if importlib.util.find_spec("torch") is not None:
        assert r["flops_per_window"] > 1e6
        for x in ort_rows:
            assert x["gflops"] == pytest.approx(x["windows_per_s"] * r["flops_per_window"] / 1e9, rel=0.01)
            assert x["fraction_of_peak"] == pytest.approx(x["gflops"] / r["matmul"]["peak_gflops"], abs=0.002)
            assert x["speedup_vs_torch"] > 0
        assert {x["batch"] for x in r["results"] if x["engine"] == "torch-eager"} == {1, 4}
    assert "pedstream bench model" in proc.stdout  # the table


@pytest.mark.parametrize("source", ["replay", pytest.param("mqtt", marks=pytest.mark.service("mosquitto"))])
def test_engine_quick(tmp_path: Path, source: str) -> None:
    proc, r = bench(tmp_path, "engine", "--quick", "--source", source, "--streams", "2", "--seconds", "3",
                    timeout=150)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert r["bench"] == "engine" and r["source"] == source
    check_machine(r)
    assert isinstance(r["max_realtime_streams"], int)
    (row,) = r["results"]
    assert {"streams", "sustained", "e2e_ms_p99", "dropped", "realtime_ratio", "e2e_ms_p50", "cpu_per_core_pct",
            "rss_mib", "windows", "windows_expected"} <= set(row)
    assert row["streams"] == 2 and row["streams_seen"] == 2
    assert row["realtime_ratio"] > 0 and row["rss_mib"] > 0
    assert row["thread_cpu_pct"]["loop"] > 0  # the event loop's thread ran the source and the ingest
    assert r["max_realtime_streams"] == (2 if row["sustained"] else 0)
    if row["sustained"]:
        assert row["dropped"] == 0 and row["e2e_ms_p99"] < 1250
    png = Path(r["png"])
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_engine_quick_with_the_rhythm_layer(tmp_path: Path) -> None:
    """`--set rhythm_context.enabled=true`: the engine under test runs the rhythm-context layer too."""
    proc, r = bench(tmp_path, "engine", "--quick", "--streams", "2", "--seconds", "8", "--set",
                    "rhythm_context.enabled=true", timeout=150)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = r["results"]
    assert row["rhythm_calls"] > 0 and row["windows"] > 0
    assert "children" in row["thread_cpu_pct"]  # the feature process is counted in the engine's CPU


def test_thread_cpu_counts_each_thread_under_its_role() -> None:
    """ThreadCpu: a busy thread named like the engine's DSP thread is counted as ``dsp``, not ``loop``."""
    import threading
    import time

    from pedstream.bench.common import ThreadCpu

    stop = threading.Event()
    started = threading.Event()

    def spin() -> None:
        started.set()
        t_end = time.perf_counter() + 30.0  # bounded
        while not stop.is_set() and time.perf_counter() < t_end:
            sum(range(1000))

    th = threading.Thread(target=spin, name="dsp_test")
    th.start()
    started.wait(10)
    tc = ThreadCpu().start()
    t_end = time.perf_counter() + 0.5
    while time.perf_counter() < t_end:  # CPU time for the snapshots to see (both threads share the interpreter)
        sum(range(1000))
    out = tc.stop()
    stop.set()
    th.join(10)
    assert out["dsp"] > 5 and out["loop"] > 5 and set(out) <= {"loop", "dsp", "inference", "other", "native", "children"}


def test_ingest_quick(tmp_path: Path) -> None:
    proc, r = bench(tmp_path, "ingest", "--quick", "--streams", "2", "--seconds", "2", "--peer", "mne-lsl",
                    timeout=150)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert r["bench"] == "ingest" and r["lsl"]["scope"] == "machine" and r["lsl"]["interfaces"] == ["127.0.0.1"]
    check_machine(r)
    consumers = [x["consumer"] for x in r["results"]]
    assert consumers[0] == "pedstream"
    if importlib.util.find_spec("mne_lsl") is not None:
        assert consumers == ["pedstream", "mne-lsl"]
    else:
        assert consumers == ["pedstream"] and any("mne-lsl not installed" in n for n in r["notes"])
    for x in r["results"]:
        assert x["streams"] == 2 and x["samples_sent"] > 0
        assert x["lost"] == x["samples_sent"] - x["samples_received"]
        assert x["samples_received"] > 0 and x["samples_per_s"] > 0
        assert x["discovered"] == 2 and x["discover_s"] >= x["discover_spread_s"] >= 0
        assert 0 <= x["streams_with_loss"] <= 2
        assert (x["streams_with_loss"] > 0) == (x["max_lost_on_a_stream"] != 0)
        assert x["cpu_s"] > 0
        assert x["samples_per_cpu_s"] == pytest.approx(x["samples_received"] / x["cpu_s"], rel=0.05)
    if len(r["results"]) == 2:
        a, b = (x["samples_per_cpu_s"] for x in r["results"])
        assert r["throughput_ratio_to_mne_lsl"] == round(a / b, 2)


def test_alarm_quick(tmp_path: Path) -> None:
    proc, r = bench(tmp_path, "alarm", "--quick", timeout=150)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert r["bench"] == "alarm" and r["quick"] is True and r["command"] == "pedstream bench alarm --quick"
    assert r["records_set"].endswith("(3 SIMULATED records x 24 s)") and r["classes"]
    check_machine(r)


def test_bad_lists_are_usage_errors(tmp_path: Path) -> None:
    proc, r = bench(tmp_path, "model", "--batches", "1,x")
    assert proc.returncode == 2 and r is None and "--batches" in proc.stderr and "Traceback" not in proc.stderr
    proc, r = bench(tmp_path, "model", "--providers", "tpu")
    assert proc.returncode == 2 and r is None and "tpu" in proc.stderr and "Traceback" not in proc.stderr
