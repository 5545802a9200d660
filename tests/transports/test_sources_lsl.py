"""LSLSource end to end with real LSL outlets (scope machine, a session id private to this run)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest

from pedstream.transports.lsl.config import configure_lsl, render_lsl_config
from pedstream.events import ChunkReceived, StreamAdded, StreamFailed, StreamLost
from pedstream.transports.lsl.inlet import LSLSource, cardiac_labels
from tests.support.helpers import chunks_of, wait_for

pytestmark = pytest.mark.timeout(30)


def make_outlet(sid: str, *, labels: list[str] | None, units: list[str] | None, fs: float = 500.0,
                age: str | None = None, n_ch: int | None = None, stype: str = "ECG"):
    import pylsl

    n = n_ch if n_ch is not None else len(labels or [])
    info = pylsl.StreamInfo(name=f"test-{sid}", type=stype, channel_count=n, nominal_srate=fs,
                            channel_format=pylsl.cf_float32, source_id=sid)
    if labels is not None:
        chans = info.desc().append_child("channels")
        for i, name in enumerate(labels):
            ch = chans.append_child("channel")
            ch.append_child_value("label", name)
            if units is not None:
                ch.append_child_value("unit", units[i])
            ch.append_child_value("type", "ECG")
    if age is not None:
        info.desc().append_child("subject").append_child_value("age", age)
    return pylsl.StreamOutlet(info, chunk_size=0, max_buffered=60)


def lsl_source(events, sid: str, **kw) -> LSLSource:
    return LSLSource(events=events, predicate=f"source_id='{sid}'", resolve_interval_s=0.1,
                     pull_interval_ms=5, **kw)


async def collect_samples(events, sid: str, total: int, log: list, timeout: float = 8.0) -> np.ndarray:
    got = 0

    def enough(ev) -> bool:
        nonlocal got
        if isinstance(ev, ChunkReceived) and ev.chunk.stream_id == sid:
            got += ev.chunk.n_samples
        return got >= total

    await wait_for(events, enough, log=log, timeout=timeout)
    return np.concatenate([c.data for c in chunks_of(log, sid)])


async def test_labels_units_age_and_exact_samples(lsl_config):
    import pylsl

    sid = f"ped-{uuid.uuid4().hex[:8]}"
    outlet = make_outlet(sid, labels=["I", "II", "CS12"], units=["microvolts", "µV", "-6"], age="7.5")
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    rng = np.random.default_rng(3)
    sent = (rng.normal(size=(1500, 3)) * 1000).astype(np.float32)  # microvolts
    async with lsl_source(events, sid):
        added = await wait_for(events, lambda e: isinstance(e, StreamAdded), log=log)
        assert await asyncio.to_thread(outlet.wait_for_consumers, 5.0)
        t0 = pylsl.local_clock()
        for k in range(0, 1500, 100):  # 15 chunks pushed at once: the backlog must drain fully
            outlet.push_chunk(sent[k:k + 100], timestamp=t0 + (k + 99) / 500.0)
        got = await collect_samples(events, sid, 1500, log)
    info = added.info
    assert info.stream_id == sid and info.source == "lsl" and info.fs == 500.0
    assert info.channel_names == ["I", "II", "CS12"]
    assert info.units_assumed is False and info.units == ["microvolts", "µV", "-6"]
    assert info.age_years == 7.5
    assert got.dtype == np.float32 and got.shape == (1500, 3)
    np.testing.assert_allclose(got, sent * 1e-3, rtol=1e-6)
    chunks = [e.chunk for e in log if isinstance(e, ChunkReceived)]
    assert chunks[0].first_index == 0
    for a, b in zip(chunks, chunks[1:]):
        assert b.first_index == a.first_index + a.n_samples
    ts = np.concatenate([c.timestamps for c in chunks])
    np.testing.assert_allclose(np.diff(ts), 1 / 500.0, atol=1e-6)  # same machine: correction ~0
    assert abs(ts[0] - t0) < 0.01
    assert not [e for e in log if isinstance(e, StreamFailed)]
    del outlet


async def test_no_units_is_assumed_mv_and_bad_unit_reported(lsl_config):
    sid_a, sid_b, sid_c = (f"ped-{uuid.uuid4().hex[:8]}" for _ in range(3))
    a = make_outlet(sid_a, labels=["II", "V1"], units=None)
    b = make_outlet(sid_b, labels=None, units=None, n_ch=2)
    c = make_outlet(sid_c, labels=["II", "V1"], units=["mV", "mmHg"])
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    pred = f"source_id='{sid_a}' or source_id='{sid_b}' or source_id='{sid_c}'"
    async with LSLSource(events=events, predicate=pred, resolve_interval_s=0.1) as src:
        seen: set[str] = set()

        def all_added(e) -> bool:
            if isinstance(e, StreamAdded):
                seen.add(e.stream_id)
            return len(seen) == 3

        await wait_for(events, all_added, log=log)
        assert src.resolved.is_set()
    infos = {e.info.stream_id: e.info for e in log if isinstance(e, StreamAdded)}
    assert infos[sid_a].units_assumed is True and infos[sid_a].channel_names == ["II", "V1"]
    assert infos[sid_b].channel_names == ["ch1", "ch2"]
    assert infos[sid_c].units_assumed is True and infos[sid_c].units == ["mV", "mV"]
    errors = {e.stream_id: e.message for e in log if isinstance(e, StreamFailed)}
    assert set(errors) == {sid_b, sid_c}
    assert "no channel labels" in errors[sid_b]
    assert "'mmHg' is not a voltage unit" in errors[sid_c]
    del a, b, c


async def test_outlet_disappears_and_comes_back(lsl_config):
    sid = f"ped-{uuid.uuid4().hex[:8]}"
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    x = np.ones((50, 1), dtype=np.float32)
    outlet = make_outlet(sid, labels=["II"], units=["mV"])
    async with lsl_source(events, sid, lost_timeout_s=0.5):
        await wait_for(events, lambda e: isinstance(e, StreamAdded), log=log)
        assert await asyncio.to_thread(outlet.wait_for_consumers, 5.0)
        outlet.push_chunk(x)
        await wait_for(events, lambda e: isinstance(e, ChunkReceived), log=log)
        del outlet  # the device goes away
        lost = await wait_for(events, lambda e: isinstance(e, StreamLost), log=log)
        assert lost.stream_id == sid
        outlet = make_outlet(sid, labels=["II"], units=["mV"])  # same source_id comes back
        assert await asyncio.to_thread(outlet.wait_for_consumers, 8.0)  # liblsl recovered the inlet
        outlet.push_chunk(x * 2)
        again = await wait_for(events, lambda e: isinstance(e, StreamAdded), log=log)
        assert again.info.stream_id == sid
        chunk = await wait_for(events, lambda e: isinstance(e, ChunkReceived), log=log)
        np.testing.assert_array_equal(chunk.chunk.data, x * 2)
    kinds = [type(e).__name__ for e in log]
    assert kinds[:3] == ["StreamAdded", "ChunkReceived", "StreamLost"] and "StreamAdded" in kinds[3:]


def test_render_lsl_config_keys():
    text = render_lsl_config(scope="machine", known_peers=["127.0.0.1"], interfaces=["127.0.0.1"],
                             session_id="abc", log_level=-1)
    for line in ("IPv6 = disable", "ResolveScope = machine", "MachineAddresses = {127.0.0.1}",
                 "ListenAddress = 127.0.0.1", "Interfaces = {127.0.0.1}", "KnownPeers = {127.0.0.1}",
                 "SessionID = abc", "level = -1"):
        assert line in text.splitlines()
    from pedstream.errors import ConfigError

    with pytest.raises(ConfigError, match="resolve_scope"):
        render_lsl_config(scope="planet")
    with pytest.raises(ConfigError, match="log_level"):
        render_lsl_config(log_level=12)


def test_reconfiguring_lsl_differently_is_refused(lsl_config):
    from pedstream.errors import ConfigError

    with pytest.raises(ConfigError, match="already configured"):
        configure_lsl(scope="site", session_id=lsl_config.session_id)


def test_config_is_what_liblsl_loads_and_sessions_are_isolated(lsl_config, tmp_path):
    """In a fresh process: liblsl logs that it loaded our config, resolves with scope machine, and a
    stream in another LSL session is invisible while one in the same session is found."""
    code = textwrap.dedent(f"""
        import sys, pylsl
        from pedstream.transports.lsl.config import configure_lsl
        configure_lsl(session_id=sys.argv[1], log_level=3, directory={str(tmp_path)!r})
        import pylsl
        mine = pylsl.StreamOutlet(pylsl.StreamInfo("mine", "ECG", 1, 100, pylsl.cf_float32, "mine-" + sys.argv[1]))
        found = pylsl.resolve_bypred("source_id='mine-" + sys.argv[1] + "'", 1, 5.0)
        other = pylsl.resolve_bypred("source_id='{lsl_config.session_id}-other'", 1, 1.0)
        print("FOUND", len(found), "OTHER", len(other), flush=True)
    """)
    import pylsl

    other = pylsl.StreamOutlet(pylsl.StreamInfo("other", "ECG", 1, 100, pylsl.cf_float32,
                                                f"{lsl_config.session_id}-other"))
    env = {k: v for k, v in os.environ.items() if k != "LSLAPICFG"}
    proc = subprocess.run([sys.executable, "-c", code, f"iso-{uuid.uuid4().hex[:6]}"], capture_output=True,
                          text=True, timeout=25, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "FOUND 1 OTHER 0" in proc.stdout
    assert "Configuration loaded from content" in proc.stderr
    del other


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
def test_discovery_traffic_stays_on_loopback(tmp_path):
    """strace every send/connect of a process that creates an outlet and resolves it: with our config
    the only destination is 127.0.0.1 (liblsl's defaults multicast to 224.0.0.183, 239.255.172.215,
    255.255.255.255 and IPv6 groups)."""
    code = textwrap.dedent(f"""
        import pylsl
        from pedstream.transports.lsl.config import configure_lsl
        configure_lsl(session_id="strace-{uuid.uuid4().hex[:6]}", directory={str(tmp_path)!r})
        o = pylsl.StreamOutlet(pylsl.StreamInfo("n", "ECG", 1, 100, pylsl.cf_float32, "strace-n1"))
        print("FOUND", len(pylsl.resolve_bypred("source_id='strace-n1'", 1, 5.0)))
    """)
    trace = tmp_path / "trace.txt"
    env = {k: v for k, v in os.environ.items() if k != "LSLAPICFG"}
    proc = subprocess.run(["strace", "-f", "-e", "trace=sendto,sendmsg,connect", "-o", str(trace),
                           sys.executable, "-c", code], capture_output=True, text=True, timeout=25, env=env)
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        pytest.skip("ptrace not permitted here")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "FOUND 1" in proc.stdout
    text = trace.read_text()
    v4 = set(re.findall(r'inet_addr\("([0-9.]+)"\)', text))
    v6 = set(re.findall(r'inet_pton\(AF_INET6, "([^"]+)"', text))
    assert v4 == {"127.0.0.1"} and not v6, (v4, v6)


def test_sample_grid_absorbs_jitter_and_jumps_without_loss_but_keeps_real_gaps():
    """Issue 10: an LSL timestamp jump above 0.1 s was treated as a gap (4.5 s blind) although no
    sample was lost."""
    from pedstream.transports.lsl.inlet import SampleGrid

    fs, n = 500.0, 50
    grid = SampleGrid(fs=fs, jump_tolerance_s=1.0)
    rng = np.random.default_rng(0)
    out = []
    for k in range(40):
        ts = 100.0 + (k * n + np.arange(n)) / fs + rng.normal(0, 0.003)  # jittered chunk stamps
        if k >= 20:
            ts += 0.3  # the publisher's clock stepped by 0.3 s: no sample lost
        out.append(grid.place(ts, k * n))
    steps = np.diff(np.concatenate(out))
    assert np.all(np.abs(steps - 1 / fs) <= 0.5 / fs + 1e-9) and grid.jumps == 0
    # samples really lost (5 s of time for no samples): the grid re-anchors, the engine sees a gap
    after = grid.place(100.0 + 5.3 + (40 * n + np.arange(n)) / fs, 40 * n)
    assert grid.jumps == 1 and after[0] - out[-1][-1] > 4.0


async def test_lsl_timestamp_jump_without_loss_is_not_a_gap(lsl_config):
    import pylsl

    sid = f"ped-{uuid.uuid4().hex[:8]}"
    outlet = make_outlet(sid, labels=["II"], units=["mV"])
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    async with lsl_source(events, sid):
        await wait_for(events, lambda e: isinstance(e, StreamAdded), log=log)
        assert await asyncio.to_thread(outlet.wait_for_consumers, 5.0)
        t0 = pylsl.local_clock()
        for k in range(0, 1000, 50):
            jump = 0.4 if k >= 500 else 0.0  # the outlet's stamps jump by 0.4 s halfway
            outlet.push_chunk(np.zeros((50, 1), np.float32), timestamp=t0 + jump + (k + 49) / 500.0)
        await collect_samples(events, sid, 1000, log)
    ts = np.concatenate([e.chunk.timestamps for e in log if isinstance(e, ChunkReceived)])
    assert np.max(np.abs(np.diff(ts) - 1 / 500.0)) < 0.002  # no step anywhere near the 0.1 s gap tolerance
    del outlet


def test_cardiac_labels_by_name_and_alias():
    assert cardiac_labels(["Fp1", "ii", "V1", "CS12", "EKG"]) == ["ii", "V1", "CS12"]
    assert cardiac_labels(["EKG"], {"EKG": "II"}) == ["EKG"]
    assert cardiac_labels(["Fp1", "Cz"]) == []


async def test_discovery_finds_real_publishers_and_says_why_others_are_ignored(lsl_config):
    """Default discovery (no predicate): types matched case-insensitively (mne-lsl's ``ecg``,
    BrainFlow's ``EXG``), an EEG-typed stream with ECG labels is monitored, one with EEG labels and a
    marker stream are ignored, one line each, without a StreamFailed."""
    import pylsl

    tag = uuid.uuid4().hex[:6]
    sids = {k: f"disc-{k}-{tag}" for k in ("ecg", "exg", "eeg_ecg", "eeg", "markers")}
    outlets = [
        make_outlet(sids["ecg"], labels=["I", "II"], units=["uV", "uV"], stype="ecg"),
        make_outlet(sids["exg"], labels=["II", "V1", "V2"], units=None, stype="EXG"),
        make_outlet(sids["eeg_ecg"], labels=["Fp1", "ECG", "II"], units=None, stype="EEG"),
        make_outlet(sids["eeg"], labels=["Fp1", "Fp2", "C3", "C4", "O1", "O2"], units=None, stype="EEG"),
        pylsl.StreamOutlet(pylsl.StreamInfo(f"test-{sids['markers']}", "Markers", 1, pylsl.IRREGULAR_RATE,
                                            pylsl.cf_string, sids["markers"])),
    ]
    lines: dict[str, str] = {}
    all_seen = asyncio.Event()

    def seen(line: str) -> None:
        for k, sid in sids.items():
            if f"source_id {sid!r}" in line:
                lines[k] = line
        if len(lines) == len(sids):
            all_seen.set()

    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    async with LSLSource(events=events, resolve_interval_s=0.1, pull_interval_ms=5, on_discovery=seen) as src:
        assert src.predicate == ""
        await asyncio.wait_for(all_seen.wait(), 10.0)
        added: set[str] = set()

        def monitored(e) -> bool:
            if isinstance(e, StreamAdded) and e.stream_id in sids.values():
                added.add(e.stream_id)
            return added >= {sids["ecg"], sids["exg"], sids["eeg_ecg"]}

        await wait_for(events, monitored, log=log)
        while not events.empty():
            log.append(events.get_nowait())
        assert len([v for v in src.discovery.values() if tag in v]) == len(sids)  # one line per stream
    assert added == {sids["ecg"], sids["exg"], sids["eeg_ecg"]}
    assert "monitored (type 'ecg')" in lines["ecg"]
    assert "monitored (type 'EXG')" in lines["exg"]
    assert "monitored (type 'EEG'; channel labels II are ECG/IEGM channels)" in lines["eeg_ecg"]
    assert lines["eeg"].startswith(f"LSL stream 'test-{sids['eeg']}' (type 'EEG', 6 ch, 500 Hz")
    assert ("ignored: type 'EEG' is none of ECG, EKG, EXG, IEGM, EGM and none of its channel labels "
            "(Fp1, Fp2, C3, C4, ... (6)) is an ECG lead or IEGM channel") in lines["eeg"]
    assert "ignored: string stream" in lines["markers"]
    assert all("\n" not in line for line in lines.values())
    assert not [e for e in log if isinstance(e, StreamFailed) and e.stream_id in (sids["eeg"], sids["markers"])]
    del outlets
