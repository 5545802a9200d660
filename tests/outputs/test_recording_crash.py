"""Crash-safe EDF+ recordings (pedstream.outputs.recording / edfrepair): a `pedstream run --record` killed
with SIGKILL leaves a file pyedflib opens at once (every whole data record), and `pedstream record
repair` puts the journal's annotations back; channels are typed ECG, clipping is marked; a full disk
stops only the file, is reported once and recording resumes in a new file."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pyedflib = pytest.importorskip("pyedflib")

from pedstream.config import load_config  # noqa: E402
from pedstream.outputs.recording import Recorder  # noqa: E402
from pedstream.events import MonitorEvent  # noqa: E402
from pedstream.events import Chunk, ChunkReceived, StreamAdded, StreamInfo  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
X003 = ROOT / "pedstream" / "assets" / "demo_records" / "x003"


pytestmark = pytest.mark.usefixtures("private_state_home")  # the HL7 outbox's default place, per test


async def test_sigkill_leaves_a_readable_file_and_repair_restores_the_annotations(tmp_path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pedstream.cli", "run", "--source", "replay", "--records", str(X003), "--headless",
        "--duration", "120", "--set", "replay.speed=1", "--set", "alarms.strips=false", "--record", "rec",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    calls = 0
    try:
        async with asyncio.timeout(90):
            while calls < 5:  # about 8 s of signal recorded
                line = await proc.stdout.readline()
                assert line, "the run ended early"
                calls += json.loads(line)["kind"] == "call"
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    (edf,) = (tmp_path / "rec").glob("x003_*.edf")
    (journal,) = (tmp_path / "rec").glob("journal-*.jsonl")
    with pyedflib.EdfReader(str(edf)) as f:  # opens without repair: the header follows the data
        n_killed = f.getNSamples()[0]
        assert f.getSignalLabels()[:2] == ["ECG I", "ECG II"] and n_killed >= 977 * 5
    mne = _mne()
    if mne is not None:  # MNE too reads the file as the crash left it (without its annotations yet)
        raw = mne.io.read_raw_edf(edf, infer_types=True, verbose="error")
        assert raw.n_times == n_killed and set(raw.get_channel_types()) == {"ecg"}
    r = subprocess.run([sys.executable, "-m", "pedstream.cli", "record", "repair", "rec"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "repaired:" in r.stderr, r.stderr
    assert not journal.exists()  # every file dealt with
    with pyedflib.EdfReader(str(edf)) as f:
        n = f.getNSamples()[0]
        sig = f.readSignal(1)
        onsets, _, texts = f.readAnnotations()
    assert n == n_killed
    assert sum(t.startswith("call ") for t in texts) >= calls - 1 and "recording cut short (repaired)" in texts
    from pedstream.data.loader import open_record

    ii = open_record(X003, load_config().signal).read(0, n).data[:, 1]
    assert np.abs(sig - ii).max() < 10.0 / 32767 * 2  # the samples are the source's (16-bit over +-10 mV)
    if mne is None:
        return
    raw = mne.io.read_raw_edf(edf, infer_types=True, verbose="error")
    assert set(raw.get_channel_types()) == {"ecg"} and len(raw.annotations) >= calls - 1


def _mne():
    """MNE where it is installed (not a pedstream dependency: pyedflib checks the same files always)."""
    try:
        import mne
    except ImportError:
        return None
    return mne


def _info(names: list[str]) -> StreamInfo:
    return StreamInfo(stream_id="bed1", source="replay", fs=100.0, channel_names=names, units=["mV"] * len(names))


def _chunk(data: np.ndarray, first: int) -> ChunkReceived:
    n = data.shape[0]
    return ChunkReceived(Chunk(stream_id="bed1", data=data.astype(np.float32),
                               timestamps=(first + np.arange(n)) / 100.0, first_index=first))


async def test_channels_are_typed_and_clipping_is_marked(tmp_path):
    cfg = load_config()
    rec = Recorder(tmp_path / "rec", cfg=cfg)
    async with rec:
        rec.observe(StreamAdded(_info(["II", "CS12"])))
        x = np.zeros((300, 2))
        x[120:150, 0] = 25.0  # beyond +-10 mV on II for 0.3 s
        for k in range(0, 300, 50):
            rec.observe(_chunk(x[k:k + 50], k))
        rec.emit(MonitorEvent(stream="bed1", kind="call", label="sinus", p=0.9, hr=100.0, t_signal=0.5))
    (edf,) = rec.files
    with pyedflib.EdfReader(str(edf)) as f:
        assert f.getSignalLabels() == ["ECG II", "ECG CS12"]
        assert f.getTransducer(0) == "surface ECG electrode" and f.getTransducer(1).startswith("intracardiac")
        onsets, durations, texts = f.readAnnotations()
        assert f.readSignal(0)[130] == pytest.approx(10.0, abs=1e-3)  # clipped in the file ...
    (k,) = [i for i, t in enumerate(texts) if t.startswith("clipped")]
    assert texts[k] == "clipped II (beyond +-10 mV)"  # ... and marked where and how long
    assert onsets[k] == pytest.approx(1.2, abs=0.011) and durations[k] == pytest.approx(0.3, abs=0.011)
    assert not list((tmp_path / "rec").glob("journal-*"))  # closed cleanly: no journal left


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()[:80]}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_a_full_disk_stops_only_the_file_and_recording_resumes(small_tmpfs):
    cfg = load_config(overrides=["record.retry_s=0.001"])
    tech: list[MonitorEvent] = []
    rec = Recorder(small_tmpfs / "rec", cfg=cfg)
    rec.on_technical = tech.append
    async with rec:
        rec.observe(StreamAdded(_info(["I", "II"])))
        first = 0
        while rec.fault is None and first < 100_000:  # 128 KiB fills within ~300 data records
            rec.observe(_chunk(np.full((100, 2), 1.0), first))
            first += 100
            await rec.flush()  # the recorder thread has handled it
        assert rec.fault is not None and rec.lost_samples > 0
        for path in rec.files:  # space returns
            path.unlink()
        while rec.fault is not None and first < 200_000:
            rec.observe(_chunk(np.full((100, 2), 1.0), first))
            first += 100
            await rec.flush()
        assert rec.fault is None and len(rec.files) >= 2
        for _ in range(3):
            rec.observe(_chunk(np.full((100, 2), 1.0), first))
            first += 100
    states = [t.extra["state"] for t in tech if t.extra["message"].startswith(("recording again", str(small_tmpfs)))]
    assert states == ["on", "off"]  # reported once, and its end
    with pyedflib.EdfReader(str(rec.files[-1])) as f:
        assert f.getNSamples()[0] >= 300
