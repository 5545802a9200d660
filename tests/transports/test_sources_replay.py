"""Replay: pacing, exact contents, and end to end over LSL and MQTT (real outlets, real mosquitto)."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import wfdb
from click.testing import CliRunner

from pedstream.cli import cli
from pedstream.config import SignalConfig
from pedstream.events import ChunkReceived, StreamAdded, StreamLost
from pedstream.transports.lsl.inlet import LSLSource
from pedstream.transports.mqtt import MQTTSource
from pedstream.transports.lsl.outlet import replay_to_lsl
from pedstream.transports.mqtt.publisher import replay_to_mqtt
from pedstream.transports.replay import ReplaySource, plan_replay
from tests.support.helpers import chunks_of, wait_for

pytestmark = pytest.mark.timeout(30)

FS = 250
NAMES = ["I", "II", "V1", "CS12"]  # a 4-channel subset: 3 ECG leads + 1 IEGM


def write_record(folder: Path, name: str, seconds: float = 4.0, seed: int = 0) -> tuple[Path, np.ndarray]:
    """A small WFDB record (format 16, mV) and its physical signal as wfdb reads it back."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    t = np.arange(n) / FS
    sig = np.stack([np.sin(2 * np.pi * (1 + k) * t) + 0.1 * rng.normal(size=n) for k in range(len(NAMES))], 1)
    wfdb.wrsamp(name, fs=FS, units=["mV"] * len(NAMES), sig_name=NAMES, p_signal=sig, fmt=["16"] * len(NAMES),
                adc_gain=[1000.0] * len(NAMES), baseline=[0] * len(NAMES), write_dir=str(folder))
    back = wfdb.rdrecord(str(folder / name)).p_signal.astype(np.float32)  # (n, 4) mV as quantised
    return folder / name, back


def drain(events: asyncio.Queue) -> list:
    out = []
    while not events.empty():
        out.append(events.get_nowait())
    return out


def stacked(log: list, sid: str) -> np.ndarray:
    return np.concatenate([c.data for c in chunks_of(log, sid)])


async def test_replay_paced_at_speed_20_equals_record(tmp_path):
    path, truth = write_record(tmp_path, "rec_a", seconds=4.0)
    events: asyncio.Queue = asyncio.Queue()
    t0 = time.monotonic()
    async with ReplaySource(events=events, records=[path], signal_cfg=SignalConfig(), speed=20, chunk_ms=50) as src:
        await asyncio.wait_for(src.finished.wait(), 5)
    wall = time.monotonic() - t0
    chunk = round(0.050 * FS)  # 12 samples
    n_chunks = math.ceil(4 * FS / chunk)  # 84
    expected = (n_chunks - 1) * chunk / FS / 20  # the last chunk is due at k_last * chunk / fs / speed
    assert 0.9 * expected <= wall <= expected + 1.5, wall
    log = drain(events)
    assert isinstance(log[0], StreamAdded) and isinstance(log[-1], StreamLost)
    info = log[0].info
    assert (info.stream_id, info.source, info.fs, info.channel_names) == ("rec_a", "replay", FS, NAMES)
    chunks = [e.chunk for e in log if isinstance(e, ChunkReceived)]
    assert [c.seq for c in chunks] == list(range(n_chunks))
    assert [c.n_samples for c in chunks] == [chunk] * (n_chunks - 1) + [4 * FS - chunk * (n_chunks - 1)]
    assert [c.first_index for c in chunks] == list(np.cumsum([0] + [c.n_samples for c in chunks[:-1]]))
    np.testing.assert_allclose(stacked(log, "rec_a"), truth, atol=1e-6)
    np.testing.assert_allclose(np.diff(np.concatenate([c.timestamps for c in chunks])), 1 / FS)


async def test_replay_as_fast_as_possible_with_loop_start_and_seconds(tmp_path):
    path, truth = write_record(tmp_path, "rec_b", seconds=4.0)
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    async with ReplaySource(events=events, records=[path], speed=math.inf, loop=True, start_s=1.0, seconds=1.0,
                            stream_id="bed9", age_years=2.0):
        await wait_for(events, lambda e: isinstance(e, ChunkReceived) and e.chunk.first_index >= 3 * FS, log=log)
    assert log[0].info.stream_id == "bed9" and log[0].info.age_years == 2.0
    got = stacked(log, "bed9")[: 3 * FS]
    np.testing.assert_allclose(got, np.tile(truth[FS:2 * FS], (3, 1)), atol=1e-6)  # three passes of [1 s, 2 s)


def test_plan_errors_name_the_record(tmp_path):
    from pedstream.errors import RecordError

    path, _ = write_record(tmp_path, "rec_c", seconds=1.0)
    with pytest.raises(RecordError, match="rec_c.*beyond"):
        plan_replay([path], SignalConfig(), start_s=5.0)
    with pytest.raises(RecordError, match="nothing"):
        plan_replay([tmp_path / "nothing"], SignalConfig())
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordError, match="no WFDB records"):
        plan_replay([tmp_path / "empty"], SignalConfig())
    plans = plan_replay([tmp_path, path], SignalConfig(), stream_id="ward")
    assert [p.stream_id for p in plans] == ["ward-rec_c", "ward-rec_c.2"]


def test_age_comes_from_the_subject_table_unless_given(tmp_path):
    from pedstream.data.subjects import SubjectInfo, write_subjects

    a, _ = write_record(tmp_path, "x001", seconds=1.0)
    write_record(tmp_path, "x002", seconds=1.0)
    write_subjects(tmp_path / "children-subject-info.csv",
                   [SubjectInfo("001", "x001", "F", 7.5, "AVNRT", "", 1.0)])
    plans = {p.stream_id: p.age_years for p in plan_replay([tmp_path], SignalConfig())}
    assert plans == {"x001": 7.5, "x002": None}  # x002 has no row: age unknown, not guessed
    assert plan_replay([a], SignalConfig(), age_years=12.0)[0].age_years == 12.0


async def test_replay_to_lsl_into_lsl_source(tmp_path, lsl_config):
    import uuid

    path, truth = write_record(tmp_path, "rec_l", seconds=2.0)
    sid = f"lslrep-{uuid.uuid4().hex[:8]}"
    plans = plan_replay([path], SignalConfig(), stream_id=sid, age_years=5.0)
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    async with LSLSource(events=events, predicate=f"source_id='{sid}'", resolve_interval_s=0.1, pull_interval_ms=5):
        sent = await replay_to_lsl(plans, speed=10, chunk_ms=40, wait_for_consumers_s=5.0)
        assert sent == {sid: truth.shape[0]}
        total = 0

        def done(e) -> bool:
            nonlocal total
            if isinstance(e, ChunkReceived):
                total += e.chunk.n_samples
            return total >= truth.shape[0]

        await wait_for(events, done, log=log)
    info = next(e.info for e in log if isinstance(e, StreamAdded))
    assert info.channel_names == NAMES and info.units_assumed is False and info.fs == FS
    assert info.age_years == 5.0 and info.units == ["millivolts"] * 4
    np.testing.assert_allclose(stacked(log, sid), truth, atol=1e-6)


async def test_replay_to_mqtt_into_mqtt_source(tmp_path, mosquitto):
    path, truth = write_record(tmp_path, "rec_m", seconds=2.0)
    plans = plan_replay([path], SignalConfig(), stream_id="mq1")
    for encoding, atol in (("binary", 0.0005 + 1e-6), ("json", 1e-6)):
        events: asyncio.Queue = asyncio.Queue()
        log: list = []
        async with MQTTSource(events=events, host=mosquitto.host, port=mosquitto.port, topic_prefix="pedstream/v1") as src:
            await asyncio.wait_for(src.connected.wait(), 5)
            await replay_to_mqtt(plans, host=mosquitto.host, port=mosquitto.port, speed=math.inf, chunk_ms=100,
                                 encoding=encoding, dtype="int16", int16_scale_mv=0.001)
            await wait_for(events, lambda e: isinstance(e, StreamLost), log=log)  # meta withdrawn at the end
        info = next(e.info for e in log if isinstance(e, StreamAdded))
        assert info.channel_names == NAMES and info.fs == FS
        np.testing.assert_allclose(stacked(log, "mq1"), truth, atol=atol)


async def test_cli_replay_to_mqtt_subprocess(tmp_path, mosquitto):
    path, truth = write_record(tmp_path, "rec_cli", seconds=1.0)
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    async with MQTTSource(events=events, host=mosquitto.host, port=mosquitto.port, topic_prefix="pedstream/v1") as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pedstream.cli", "replay", str(path), "--to", "mqtt", "--speed", "inf",
            "--encoding", "json", "--stream-id", "cli1", "--set", f"mqtt.port={mosquitto.port}",
            stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, err.decode()
        await wait_for(events, lambda e: isinstance(e, StreamLost), log=log)
    assert b"cli1: 250 samples sent" in err
    np.testing.assert_allclose(stacked(log, "cli1"), truth, atol=1e-6)


def test_cli_replay_bad_record_is_one_line_error(tmp_path):
    res = CliRunner().invoke(cli, ["replay", str(tmp_path / "missing"), "--to", "lsl"])
    assert res.exit_code != 0
    assert res.output.strip().startswith("error: record missing")


async def test_cli_replay_to_mqtt_killed_its_last_will_clears_the_meta(tmp_path, mosquitto):
    """Issue 10: a replay that dies (SIGKILL) must not leave its retained meta behind."""
    import signal

    path, _ = write_record(tmp_path, "rec_kill", seconds=2.0)
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    async with MQTTSource(events=events, host=mosquitto.host, port=mosquitto.port, topic_prefix="pedstream/v1") as src:
        await asyncio.wait_for(src.connected.wait(), 5)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pedstream.cli", "replay", str(path), "--to", "mqtt", "--loop",
            "--stream-id", "kill1", "--set", f"mqtt.port={mosquitto.port}",
            stderr=asyncio.subprocess.DEVNULL)
        try:
            await wait_for(events, lambda e: isinstance(e, ChunkReceived), log=log, timeout=20)
        finally:
            proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), 10)
        gone = await wait_for(events, lambda e: isinstance(e, StreamLost) and "withdrawn" in e.reason,
                              log=log, timeout=10)
        assert gone.stream_id == "kill1"
    # a new subscriber finds no retained meta
    events2: asyncio.Queue = asyncio.Queue()
    async with MQTTSource(events=events2, host=mosquitto.host, port=mosquitto.port, topic_prefix="pedstream/v1") as src2:
        await asyncio.wait_for(src2.connected.wait(), 5)
        with pytest.raises(asyncio.TimeoutError):
            await wait_for(events2, lambda e: isinstance(e, StreamAdded), timeout=0.5)


async def test_looped_replay_schedule_follows_the_sample_index_not_the_chunk_count(tmp_path):
    """A record whose length is not a multiple of the chunk ends each pass with a short chunk; the
    pace must follow the samples sent (the soak's lateness grew by one chunk's shortfall per loop)."""
    from pedstream.transports.replay import paced_chunks

    path, _ = write_record(tmp_path, "rec_short", seconds=0.044)  # 11 samples at 250 Hz
    plan = plan_replay([path], SignalConfig())[0]
    assert plan.stop - plan.start == 11
    speed, n_target = 4.0, 440  # 40 passes: 1.76 s of signal at speed 4 = 0.44 s wall
    t0 = time.monotonic()
    async for _seq, first, part in paced_chunks(plan, chunk_ms=40, speed=speed, loop=True):  # 10-sample chunks
        if first + part.shape[0] >= n_target:
            break
    elapsed = time.monotonic() - t0
    due_last = first / FS / speed  # when the last chunk's first sample is due
    assert elapsed >= due_last - 0.01
    # scheduling by chunk count would have taken 80 chunks x 10 samples = 0.8 s
    assert elapsed < due_last + 0.15, f"replay fell {elapsed - due_last:.3f} s behind its samples"
