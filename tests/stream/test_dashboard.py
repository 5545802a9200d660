"""The dashboard renders into a recording Console (no terminal) with rows, banner and footer."""

from __future__ import annotations

import time

from rich.console import Console

from pedstream.stream.dashboard import render_dashboard
from pedstream.stream.engine import EngineSnapshot, StreamStatus, model_banner


def snapshot() -> EngineSnapshot:
    now = time.monotonic()
    streams = [
        StreamStatus(stream_id="bed1", source="lsl", fs=977.0, n_present=19, has_ecg=True, has_iegm=True, call="vt",
                     p=0.91, hr=212.0, rhythm_since=now - 75, alarm=("vt", "high"), quality="ok", dropped=3, windows=50),
        StreamStatus(stream_id="bed2", source="mqtt", fs=1000.0, n_present=8, has_ecg=True, has_iegm=True,
                     units_assumed=True, quality="warm-up"),
        StreamStatus(stream_id="bed3", source="lsl", fs=500.0, quality="error", error="stream bed3: none of the channel names"),
    ]
    banner = model_banner({"data_description": "Leipzig-format records from pedstream data synth",
                           "trained_on_simulated_data": True})
    return EngineSnapshot(streams=streams, windows_per_s=2.4, batch_mean=2.5, infer_p50=4.2, infer_p99=9.9, e2e_p50=20.5,
                          e2e_p99=48.0, queue_depth=1, banner=banner, windows_total=50, dropped_total=3, alarms_total=1,
                          uptime_s=80.0)


def test_render_contains_rows_banner_and_footer():
    console = Console(record=True, width=170, force_terminal=True, color_system="truecolor")
    console.print(render_dashboard(snapshot(), now=time.monotonic()))
    text = console.export_text(clear=False)
    assert "DEMO MODEL trained on SIMULATED data" in text and "not for clinical use" in text
    lines = {sid: next(ln for ln in text.splitlines() if sid in ln) for sid in ("bed1", "bed2", "bed3")}
    assert "vt 0.91" in lines["bed1"] and "212" in lines["bed1"] and "HIGH vt" in lines["bed1"]
    assert "1:15" in lines["bed1"] and "19/19 ECG+IEGM" in lines["bed1"]
    assert "8/19" in lines["bed2"] and "warm-up" in lines["bed2"] and "mV?" in lines["bed2"]
    assert "error" in lines["bed3"]
    assert "windows/s 2.4" in text and "p99 48.0" in text and "queue 1" in text and "dropped 3" in text
    styled = console.export_text(styles=True)
    assert "\x1b[" in styled  # the alarm/quality colours are there


def test_render_without_streams_and_real_model_banner():
    snap = snapshot()
    snap.streams = []
    snap.banner = model_banner({"data_description": "Leipzig Heart Center ECG-Database", "trained_on_simulated_data": False})
    console = Console(record=True, width=120)
    console.print(render_dashboard(snap))
    text = console.export_text()
    assert "waiting for streams" in text and "not a medical device" in text
