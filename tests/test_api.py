"""The public Python API (pedstream/api.py, re-exported from pedstream): the examples of the Python API
page (docs/user-guide/python-api.md) and of the README run as written; classify equals the monitor's raw calls; the metadata check refuses a mismatched model;
``import pedstream`` stays light."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pedstream
from pedstream.config import load_config
from pedstream.errors import ModelMismatchError, StreamError

ROOT = Path(__file__).resolve().parents[1]


API_PAGE = ROOT / "docs" / "user-guide" / "python-api.md"


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def test_import_is_light_and_all_is_public():
    code = ("import sys, pedstream; heavy = [m for m in ('torch', 'onnxruntime', 'pylsl', 'matplotlib', 'aiomqtt') "
            "if m in sys.modules]; print(heavy, sorted(pedstream.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("[] ")
    for name in ("load_model", "classify", "Monitor", "read_record", "plot_strip", "MonitorEvent"):
        assert name in pedstream.__all__ and callable(getattr(pedstream, name))


def test_api_page_examples_run(tmp_path, monkeypatch):
    blocks = _python_blocks(API_PAGE)
    assert len(blocks) == 4
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "api_page"}
    for block in blocks:
        exec(compile(block, str(API_PAGE.relative_to(ROOT)), "exec"), ns)
    assert ns["call"].kind == "call" and isinstance(ns["call"].t_signal, float)
    assert (tmp_path / "x002_strip.png").stat().st_size > 10_000
    assert ns["model"].trained_on_simulated_data and ns["model"].banner.startswith("DEMO MODEL")


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = _python_blocks(ROOT / "README.md")
    assert len(blocks) >= 1
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), ns)
    assert ns["calls"] and all(c.label in ns["model"].classes for c in ns["calls"])


def test_classify_equals_the_monitors_raw_calls():
    model = pedstream.load_model(config=load_config(overrides=["stream.queue_windows=64"]))  # keep the backlog
    rec = pedstream.read_record(pedstream.demo_records() / "x003", seconds=16)
    names = rec.present_channels
    x = rec.signal[:, rec.present]
    calls = pedstream.classify(x, fs=rec.fs, channels=names, model=model)
    assert len(calls) >= 8 and calls[0].start_s >= load_config().filters.settle_s - 1e-3
    assert all(abs(sum(c.probabilities.values()) - 1) < 1e-5 for c in calls)

    async def run():
        async with pedstream.Monitor(model=model, alarms_dir=None) as mon:
            for k in range(0, x.shape[0], 333):
                mon.push("bed", x[k:k + 333], fs=rec.fs, channels=names)
                await asyncio.sleep(0)  # as a transport would between chunks: the engine takes each one
            got = []
            async for ev in mon.events():
                if ev.kind == "call":
                    got.append(ev)
                    if len(got) == len(calls):
                        return got

    events = asyncio.run(asyncio.wait_for(run(), 60))
    for c, ev in zip(calls, events):
        assert ev.extra["raw_label"] == c.label and abs(ev.extra["raw_p"] - round(c.p, 4)) < 1e-3
        assert abs(ev.extra["window_start"] / model.fs - c.start_s) < 1e-3
        assert abs(ev.t_signal - c.start_s) < 2e-3  # the source clock starts at 0 here


def test_metadata_check_and_bad_input():
    with pytest.raises(ModelMismatchError, match="filters.mains_hz"):
        pedstream.load_model(config=load_config(overrides=["filters.mains_hz=60"]))
    with pytest.raises(StreamError, match="channel names"):
        pedstream.classify(np.zeros((100, 2), np.float32), fs=500, channels=["II"])
    assert pedstream.classify(np.zeros((500, 1), np.float32), fs=500, channels=["II"]) == []  # shorter than warm-up
