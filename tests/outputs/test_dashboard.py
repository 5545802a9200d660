"""The dashboard renders into a recording Console (no terminal): banner, rows, alarm state, footer,
100-column fit and the SVG/text capture; the model banner is built from the model metadata."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from rich.console import Console

from pedstream.config import load_config
from pedstream.monitor.batcher import BatchResult, WindowItem
from pedstream.outputs.dashboard import export_dashboard, render_dashboard
from pedstream.monitor.banner import model_banner
from pedstream.monitor.engine import Engine, EngineSnapshot, StreamStatus
from pedstream.events import StreamAdded, StreamInfo
from tests.support.tiny_model import build_tiny_model, open_session

# the data_description the packaged demo model was exported with (before loop.py wrote clean ones)
OLD_DEMO_DESCRIPTION = ("SIMULATED Leipzig-format records (pedstream data synth) from data: 29 records, 29 subjects, "
                        "1945 windows of 2442 samples at 977 Hz")
DEMO_BANNER = "DEMO MODEL · trained on SIMULATED Leipzig-format data (29 simulated subjects) · not for clinical use"


def snapshot(now: float | None = None) -> EngineSnapshot:
    now = time.monotonic() if now is None else now
    streams = [
        StreamStatus(stream_id="bed1", source="lsl", fs=977.0, n_present=19, has_ecg=True, has_iegm=True, call="vt",
                     p=0.91, hr=212.0, rhythm_since=now - 75, alarm=("vt", "high"), alarms_active=2, alarms=2,
                     quality="ok", dropped=3, windows=50),
        StreamStatus(stream_id="bed2", source="mqtt", fs=1000.0, n_present=8, has_ecg=True, has_iegm=True,
                     units_assumed=True, quality="warm-up", call="ventricular_paced", p=0.84, rhythm_since=now - 5,
                     last_alarm=("hr_high", "medium"), last_alarm_ended=now - 12, alarms=1),
        StreamStatus(stream_id="bed3", source="replay", fs=500.0, quality="error",
                     error="stream bed3: none of the channel names I, II, V1 is known"),
    ]
    banner = model_banner({"data_description": OLD_DEMO_DESCRIPTION, "trained_on_simulated_data": True}, packaged=True)
    return EngineSnapshot(streams=streams, windows_per_s=2.4, batch_mean=2.5, infer_p50=4.2, infer_p99=9.9, e2e_p50=20.5,
                          e2e_p99=48.0, queue_depth=1, banner=banner, windows_total=50, dropped_total=3, alarms_total=3,
                          uptime_s=80.0, alarms_active=2)


def rendered(snap: EngineSnapshot, *, width: int, now: float | None = None) -> str:
    console = Console(record=True, width=width, force_terminal=True, color_system="truecolor")
    console.print(render_dashboard(snap, now=time.monotonic() if now is None else now))
    return console.export_text()


def test_banner_from_old_and_new_metadata():
    assert model_banner({"data_description": OLD_DEMO_DESCRIPTION, "trained_on_simulated_data": True},
                        packaged=True) == DEMO_BANNER
    new = {"data_description": "simulated Leipzig-format records (pedstream data synth): 3 subjects, 3 records",
           "trained_on_simulated_data": True,
           "training_data": {"format": "Leipzig-format", "subjects": 3, "records": 3, "simulated": True}}
    # a user's own model trained on simulated data is not "the demo model"
    assert model_banner(new) == ("Model · trained on SIMULATED Leipzig-format data (3 simulated subjects) · "
                                 "not for clinical use")
    real = {"data_description": "Leipzig-format records from leipzig: 39 subjects, 39 records",
            "trained_on_simulated_data": False,
            "training_data": {"format": "Leipzig-format", "subjects": 39, "records": 39, "simulated": False}}
    text = model_banner(real)
    assert text == "Model · trained on Leipzig-format data (39 subjects) · research use only, not a medical device"
    assert "DEMO" not in text and "SIMULATED" not in text.upper()
    other = model_banner({"data_description": "MIT-BIH Arrhythmia Database", "trained_on_simulated_data": False})
    assert other == "Model · trained on MIT-BIH Arrhythmia Database · research use only, not a medical device"
    named = {"data_description": "WFDB records from aami: 22 subjects, 22 records", "trained_on_simulated_data": False,
             "training_data": {"format": None, "subjects": 22, "records": 22, "simulated": False,
                               "name": "MIT-BIH Arrhythmia Database DS1 (22 records)"}}
    assert model_banner(named, packaged=True) == ("Model · trained on MIT-BIH Arrhythmia Database DS1 (22 records) "
                                                  "· research use only, not a medical device")


def test_only_the_packaged_simulated_model_is_the_demo_model(tmp_path):
    from pedstream.monitor.banner import is_packaged_model
    from pedstream.monitor.assembly import default_model_path

    assert is_packaged_model(default_model_path()) and not is_packaged_model(None)
    copy = tmp_path / "demo_model.onnx"
    copy.write_bytes(default_model_path().read_bytes())
    assert not is_packaged_model(copy)


def test_render_contains_banner_once_rows_and_footer():
    now = time.monotonic()
    text = rendered(snapshot(now), width=170, now=now)
    assert text.count(DEMO_BANNER) == 1
    lines = {sid: next(ln for ln in text.splitlines() if ln.startswith(sid)) for sid in ("bed1", "bed2", "bed3")}
    assert "vt 0.91" in lines["bed1"] and "212" in lines["bed1"] and "HIGH vt +1" in lines["bed1"]
    assert "1:15" in lines["bed1"] and "19/19 ECG+IEGM" in lines["bed1"]
    assert "ended 0:12 ago hr_high" in lines["bed2"] and "ventricular_paced 0.84" in lines["bed2"]
    assert "8/19" in lines["bed2"] and "warm-up" in lines["bed2"] and "mV?" in lines["bed2"]
    assert "error" in lines["bed3"] and "none" in lines["bed3"]
    assert "bed3: stream bed3: none of the channel names I, II, V1 is known" in text  # full message below the table
    assert "windows/s 2.4" in text and "p99 48.0" in text and "queue 1" in text and "dropped 3" in text
    assert "alarms 3 (2 active)" in text


def test_alarm_colours():
    console = Console(width=170, force_terminal=True, color_system="truecolor")
    segments = list(console.render(render_dashboard(snapshot()), console.options))
    high = next(s for s in segments if "HIGH vt +1" in s.text)
    assert high.style.bold and high.style.bgcolor.name == "red"
    ended = next(s for s in segments if "ended 0:12 ago hr_high" in s.text)
    assert ended.style.dim
    none = next(s for s in segments if s.text.strip() == "none")
    assert none.style.color.name == "green"


def test_fits_100_columns_without_losing_columns():
    now = time.monotonic()
    text = rendered(snapshot(now), width=100, now=now)
    lines = text.splitlines()
    assert all(len(ln.rstrip()) <= 100 for ln in lines)
    header = next(ln for ln in lines if ln.startswith("stream"))
    for col in ("src", "rhythm (p)", "HR", "for", "alarm", "channels", "signal", "drops"):
        assert col in header, col
    assert "…" not in text  # no cell cut short
    bed1 = next(ln for ln in lines if ln.startswith("bed1"))
    assert bed1.rstrip().endswith("3") and "ventricular" not in bed1 and "HIGH vt +1" in bed1
    bed2 = next(ln for ln in lines if ln.startswith("bed2"))
    assert "ventricular_paced 0.84" in bed2 and "ended 0:12 ago hr_high" in bed2  # calls and alarms never wrap
    assert lines[0].strip() == DEMO_BANNER  # one line, no panel around it
    footer = [ln for ln in lines if ln.startswith(("streams ", "alarms "))]
    assert len(footer) == 2 and footer[0].startswith("streams 3") and footer[1].startswith("alarms 3 (2 active)")


def test_render_without_streams_and_real_model_banner():
    snap = snapshot()
    snap.streams = []
    snap.banner = model_banner({"data_description": "Leipzig Heart Center ECG-Database", "trained_on_simulated_data": False})
    text = rendered(snap, width=120)
    assert "waiting for streams" in text and "not a medical device" in text and "mV?" not in text


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    cfg = load_config()
    return open_session(build_tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx", cfg), cfg)


def _result(eng: Engine, sid: str, start: int, label: str) -> BatchResult:
    logits = np.full(len(eng.class_names), -8.0, np.float32)  # (C,)
    logits[eng.class_names.index(label)] = 8.0
    item = WindowItem(stream_id=sid, start=start, x=np.zeros((19, eng.window), np.float32),
                      mask=np.ones(19, np.float32), t_received=time.monotonic())
    return BatchResult(item=item, logits=logits, embedding=np.zeros(8, np.float32), batch_size=1, infer_ms=1.0)


async def test_alarm_state_per_stream_active_then_ended_and_counts_agree(session, tmp_path):
    """The engine's bookkeeping behind the alarm column: an AVRT alarm shows while active (class
    and priority), then as 'ended ... ago avrt'; footer and summary count the same onset."""
    cfg = load_config(overrides=["alarms.smoothing_windows=1", "alarms.onset_windows=2", "alarms.offset_windows=2",
                                 "alarms.strips=false"])
    eng = Engine(cfg=cfg, session=session, alarms_dir=tmp_path / "alarms")
    sub = eng.subscribe()
    names = list(cfg.signal.ecg) + list(cfg.signal.iegm)
    for sid in ("bedA", "bedB"):
        eng.handle(StreamAdded(StreamInfo(stream_id=sid, source="lsl", fs=977.0, channel_names=names,
                                          units=["mV"] * len(names))), time.monotonic())
    step = eng.hop
    eng._on_results([_result(eng, "bedA", i * step, "avrt") for i in range(2)] + [_result(eng, "bedB", 0, "sinus")])
    assert [(e.kind, e.label, e.extra.get("priority")) for e in sub.drain() if e.kind.startswith("alarm")] == [
        ("alarm_on", "avrt", "medium")]
    snap = eng.snapshot()
    st = {s.stream_id: s for s in snap.streams}
    assert st["bedA"].alarm == ("avrt", "medium") and st["bedA"].alarms_active == 1 and st["bedB"].alarm is None
    text = rendered(snap, width=120)
    row = next(ln for ln in text.splitlines() if ln.startswith("bedA"))
    assert "MEDIUM avrt" in row and "alarms 1 (1 active)" in text
    assert "none" in next(ln for ln in text.splitlines() if ln.startswith("bedB"))

    eng._on_results([_result(eng, "bedA", (2 + i) * step, "sinus") for i in range(2)])
    assert [e.kind for e in sub.drain() if e.kind.startswith("alarm")] == ["alarm_off"]
    snap = eng.snapshot()
    a = next(s for s in snap.streams if s.stream_id == "bedA")
    assert a.alarm is None and a.last_alarm == ("avrt", "medium") and a.alarms == 1
    text = rendered(snap, width=120, now=a.last_alarm_ended + 12.4)
    row = next(ln for ln in text.splitlines() if ln.startswith("bedA"))
    assert "ended 0:12 ago avrt" in row
    assert "alarms 1 (0 active)" in text
    summary = eng.summary()
    assert summary["alarms"] == snap.alarms_total == 1 and summary["alarms_active"] == snap.alarms_active == 0


@pytest.mark.parametrize("suffix", [".svg", ".txt"])
def test_export_dashboard(tmp_path, suffix):
    path = export_dashboard(snapshot(), tmp_path / f"dash{suffix}", width=100)
    body = path.read_text(encoding="utf-8")
    if suffix == ".svg":
        assert body.lstrip().startswith("<svg") and "DEMO" in body and "bed1" in body
    else:
        assert body.splitlines()[0].strip() == DEMO_BANNER and all(len(ln) <= 100 for ln in body.splitlines())
        assert "\x1b[" not in body
    with pytest.raises(ValueError, match="expected a .svg or .txt"):
        export_dashboard(snapshot(), tmp_path / "dash.png")


def test_truth_column_and_agreement_fit_100_columns(tmp_path):
    """Annotated records replayed: a truth column ("=" when the call agrees, else the reference label)
    and the running agreement; the strip folder is named; rows still fit 100 columns."""
    from pedstream.monitor.reference import ReferenceLabels, ReferenceTrack

    now = time.monotonic()
    snap = snapshot(now)
    snap.streams[1].source = "replay"  # bed2 with the longest call, and an alarm that ended
    snap.streams[1].units_assumed = False
    ref = ReferenceLabels.from_config(load_config())
    empty = np.zeros(0, np.int64)
    for sid, truth in (("bed1", "vt"), ("bed2", "atrial_flutter")):
        ref.tracks[sid] = ReferenceTrack(t0=0.0, fs=977.0, start=0, stop=1, samples=empty, labels=empty, truth=truth,
                                         compared=4, agreed=3)
    console = Console(record=True, width=100, force_terminal=True, color_system="truecolor")
    console.print(render_dashboard(snap, now=now, reference=ref, strips_dir=tmp_path / "strips"))
    text = console.export_text()
    lines = text.splitlines()
    head = next(ln for ln in lines if ln.startswith("stream"))
    assert "truth" in head and max(len(ln) for ln in lines) <= 100
    bed1 = next(ln for ln in lines if ln.startswith("bed1"))
    bed2_i = next(i for i, ln in enumerate(lines) if ln.startswith("bed2"))
    assert "vt 0.91" in bed1 and " = " in bed1
    assert "ventricular_paced 0.84" in lines[bed2_i] and "atrial_fl…" in lines[bed2_i]
    assert lines[bed2_i + 1].startswith("bed3")  # no row wraps onto a second line
    assert "agreement with the annotations 75% (6/8 calls)" in text
    assert f"alarm strips: {tmp_path / 'strips'}" in text


def test_held_call_never_shows_a_probability_that_contradicts_it():
    """Regression: a held ``sinus`` call showed ``sinus 0.16`` while AVRT led. The cell names the class
    that leads and its probability beside the held call."""
    now = time.monotonic()
    snap = snapshot(now)
    snap.streams[0] = StreamStatus(stream_id="bed1", source="lsl", fs=977.0, n_present=19, has_ecg=True, call="sinus",
                                   p=0.16, lead="avrt", lead_p=0.71, hr=238.0, quality="ok", windows=9)
    text = rendered(snap, width=100, now=now)
    bed1 = next(ln for ln in text.splitlines() if ln.startswith("bed1"))
    assert "sinus ▸ avrt 0.71" in bed1 and "0.16" not in bed1
    assert "call a is held while b leads" in text  # the legend says how to read it
    snap.streams[0].lead, snap.streams[0].lead_p = "sinus", 0.16  # leading itself: the plain form
    bed1 = next(ln for ln in rendered(snap, width=100, now=now).splitlines() if ln.startswith("bed1"))
    assert "sinus 0.16" in bed1 and "▸" not in bed1


@pytest.mark.parametrize("width", [100, 80, 132])
def test_plain_frames_have_fixed_columns(width):
    """Regression: piped output wrapped mid-field at 80 columns, collapsed columns to ``c…`` and changed
    widths between frames. The fixed layout keeps every frame's columns where they were."""
    now = time.monotonic()

    def frame(snap):
        console = Console(record=True, width=width, file=io.StringIO())
        console.print(render_dashboard(snap, now=now, banner=False, fixed_width=width))
        return console.export_text().splitlines()

    a = snapshot(now)
    b = snapshot(now)
    b.streams[0].call, b.streams[0].p = "x", 0.5  # shorter content must not move the columns
    fa, fb = frame(a), frame(b)
    header_a = next(ln for ln in fa if ln.startswith("stream"))
    assert header_a == next(ln for ln in fb if ln.startswith("stream"))
    assert all(len(ln) <= width for ln in fa + fb)
    for col in ("src", "rhythm (p)", "HR", "for", "alarm", "signal", "drops"):
        assert col in header_a, col
    assert sum(ln.startswith(("bed1 ", "bed2 ", "bed3 ")) for ln in fa) == 3  # one line per stream: nothing wrapped


def test_dashboard_console_is_fixed_width_when_piped():
    from pedstream.outputs.dashboard import PLAIN_WIDTH, dashboard_console

    assert dashboard_console().width == PLAIN_WIDTH  # pytest's stdout is not a terminal
    assert dashboard_console(120).width == 120


def test_ectopy_cell_shows_the_ventricular_pattern_and_the_labels_adapting_the_stream():
    from pedstream.events import StreamStatus
    from pedstream.outputs.dashboard import _ectopy_cell

    st = StreamStatus(stream_id="bed1", source="python", fs=360.0)
    assert _ectopy_cell(st).plain == "-"
    st.ectopy, st.pvc_per_min, st.pac_per_min = "on", 12, 1
    assert _ectopy_cell(st).plain == "12/1"
    st.ectopy_patterns, st.beat_labels = {"couplets": 0, "runs": 0, "pattern": "bigeminy"}, 16
    assert _ectopy_cell(st).plain == "12/1 big L16"
