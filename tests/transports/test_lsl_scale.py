"""LSL at scale (issue 11): every outlet on this machine is discovered, all pulled by one pump.

liblsl finds outlets on one machine through the unicast ports ``16572 .. 16572 + PortRange``; with
its default range of 32 at most 33 outlets are found (the first test shows it in a fresh process),
so pedstream renders ``[lsl] port_range`` (default 1024) into its ``lsl_api.cfg``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest

from pedstream.errors import ConfigError
from pedstream.transports.lsl.config import render_lsl_config
from pedstream.transports.lsl.inlet import LSLSource
from pedstream.events import ChunkReceived, StreamAdded, StreamFailed, StreamLost
from tests.support.helpers import wait_for

pytestmark = pytest.mark.timeout(60)

N_OUTLETS = 40  # more than liblsl's default PortRange (32) + 1 lets discovery see


def _outlet(sid: str, *, fs: float = 250.0, source_id: bool = True):
    import pylsl

    info = pylsl.StreamInfo(name=sid, type="ECG", channel_count=2, nominal_srate=fs,
                            channel_format=pylsl.cf_float32, source_id=sid if source_id else "")
    chans = info.desc().append_child("channels")
    for label in ("II", "V1"):
        chans.append_child("channel").append_child_value("label", label)
    return pylsl.StreamOutlet(info, chunk_size=0, max_buffered=60)


def test_port_range_is_rendered_and_bounded():
    assert "PortRange = 1024" in render_lsl_config().splitlines()
    assert "PortRange = 64" in render_lsl_config(port_range=64).splitlines()
    for bad in (8, 100_000):
        with pytest.raises(ConfigError, match="port_range"):
            render_lsl_config(port_range=bad)


def test_liblsl_default_port_range_hides_outlets(tmp_path):
    """The cause, in a fresh process with liblsl's default PortRange (32): of 40 outlets on this
    machine a resolve finds at most 33, however long it waits; with pedstream's range all 40."""
    code = textwrap.dedent(f"""
        import sys, pylsl
        from pedstream.transports.lsl.config import render_lsl_config
        text = render_lsl_config(session_id=sys.argv[1]).replace("PortRange = 1024", sys.argv[2])
        pylsl.set_config_content(text)
        outs = [pylsl.StreamOutlet(pylsl.StreamInfo(f"o{{i}}", "ECG", 1, 100, pylsl.cf_float32, f"o{{i}}"))
                for i in range({N_OUTLETS})]
        print("FOUND", len(pylsl.resolve_streams(1.5)), flush=True)
    """)
    env = {k: v for k, v in os.environ.items() if k != "LSLAPICFG"}
    found = {}
    for setting in ("", "PortRange = 1024"):
        proc = subprocess.run([sys.executable, "-c", code, f"range-{uuid.uuid4().hex[:8]}", setting],
                              capture_output=True, text=True, timeout=40, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        found[setting] = int(proc.stdout.split("FOUND")[1])
    assert found[""] <= 33 < N_OUTLETS
    assert found["PortRange = 1024"] == N_OUTLETS


async def test_forty_outlets_all_discovered_and_pulled_without_loss(lsl_config):
    """40 outlets: each announced (StreamAdded) within a bound, and every sample of every stream
    arrives once, in order, through the one pump."""
    tag = f"scale{uuid.uuid4().hex[:6]}"
    sids = [f"{tag}-{i:02d}" for i in range(N_OUTLETS)]
    outlets = {sid: _outlet(sid) for sid in sids}
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    added: set[str] = set()
    async with LSLSource(events=events, predicate=f"starts-with(source_id, '{tag}')", resolve_interval_s=0.1,
                         pull_interval_ms=5) as src:
        def all_added(e) -> bool:
            if isinstance(e, StreamAdded):
                added.add(e.stream_id)
            return len(added) == N_OUTLETS

        await wait_for(events, all_added, log=log, timeout=20.0)
        assert await asyncio.to_thread(lambda: all(o.wait_for_consumers(5.0) for o in outlets.values()))
        sent = {sid: np.full((300, 2), i, np.float32) + np.arange(300, dtype=np.float32)[:, None]
                for i, sid in enumerate(sids)}
        for sid in sids:
            for k in range(0, 300, 50):
                outlets[sid].push_chunk(sent[sid][k:k + 50])
        got = {sid: 0 for sid in sids}

        def all_in(e) -> bool:
            if isinstance(e, ChunkReceived):
                got[e.chunk.stream_id] += e.chunk.n_samples
            return all(v >= 300 for v in got.values())

        await wait_for(events, all_in, log=log, timeout=20.0)
        assert len(src.pump.feeds) == N_OUTLETS and src.pump.passes > 0
    assert added == set(sids)
    for sid in sids:
        chunks = [e.chunk for e in log if isinstance(e, ChunkReceived) and e.chunk.stream_id == sid]
        np.testing.assert_array_equal(np.concatenate([c.data for c in chunks]), sent[sid])
        assert [c.first_index for c in chunks] == list(np.cumsum([0] + [c.n_samples for c in chunks[:-1]]))
    del outlets


async def test_one_unrecoverable_stream_ends_alone(lsl_config):
    """A stream liblsl cannot recover (no source_id) whose outlet goes away is reported lost, and
    only it: the pump keeps pulling the other stream."""
    tag = f"alone{uuid.uuid4().hex[:6]}"
    keep, gone = _outlet(f"{tag}-keep"), _outlet(f"{tag}-gone", source_id=False)
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    seen: set[str] = set()
    async with LSLSource(events=events, predicate=f"starts-with(name, '{tag}')", resolve_interval_s=0.1,
                         pull_interval_ms=5, lost_timeout_s=0.5) as src:
        await wait_for(events, lambda e: isinstance(e, StreamAdded) and (seen.add(e.stream_id) or len(seen) == 2),
                       log=log)
        assert await asyncio.to_thread(keep.wait_for_consumers, 5.0)
        del gone
        await wait_for(events, lambda e: isinstance(e, StreamLost) and e.stream_id == f"{tag}-gone"
                       and "not recoverable" in e.reason, log=log, timeout=15.0)
        assert f"{tag}-gone" not in src.pump.feeds
        keep.push_chunk(np.ones((20, 2), np.float32))
        chunk = await wait_for(events, lambda e: isinstance(e, ChunkReceived), log=log)
        assert chunk.chunk.stream_id == f"{tag}-keep"
        assert f"{tag}-keep" in src.pump.feeds
    assert not [e for e in log if isinstance(e, StreamLost) and e.stream_id == f"{tag}-keep"]


async def test_stream_faster_than_announced_is_stopped_alone(lsl_config):
    """Hostile rate: a stream announced at 100 Hz that sends 20 times that is stopped with one
    StreamFailed (after its burst allowance), refused from then on; an honest stream goes on."""
    tag = f"fast{uuid.uuid4().hex[:6]}"
    fast, ok = _outlet(f"{tag}-fast", fs=100.0), _outlet(f"{tag}-ok", fs=100.0)
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    seen: set[str] = set()
    async with LSLSource(events=events, predicate=f"starts-with(source_id, '{tag}')", resolve_interval_s=0.1,
                         pull_interval_ms=5, max_buflen_s=1) as src:
        await wait_for(events, lambda e: isinstance(e, StreamAdded) and (seen.add(e.stream_id) or len(seen) == 2),
                       log=log)
        assert await asyncio.to_thread(fast.wait_for_consumers, 5.0)
        assert await asyncio.to_thread(ok.wait_for_consumers, 5.0)

        async def flood() -> None:  # 2,000 samples/s: 50 every 25 ms, until stopped
            while True:
                fast.push_chunk(np.zeros((50, 2), np.float32))
                ok.push_chunk(np.zeros((1, 2), np.float32))
                await asyncio.sleep(0.025)

        pusher = asyncio.create_task(flood())
        try:
            err = await wait_for(events, lambda e: isinstance(e, StreamFailed), log=log, timeout=15.0)
            assert err.stream_id == f"{tag}-fast"
            assert "faster than 2 x its nominal rate of 100 Hz" in err.message and "\n" not in err.message
            assert f"{tag}-fast" not in src.pump.feeds and f"{tag}-ok" in src.pump.feeds
            await wait_for(events, lambda e: isinstance(e, ChunkReceived) and e.chunk.stream_id == f"{tag}-ok",
                           log=log)  # the honest stream still flows
        finally:
            pusher.cancel()
    assert [x for x in src.discovery.values() if f"{tag}-fast" in x and "ignored: LSL stream sends faster" in x]
    assert len([e for e in log if isinstance(e, StreamFailed)]) == 1


async def test_long_lost_stream_is_closed_and_found_again(lsl_config):
    """No data for close_lost_after_s: the inlet is closed (liblsl's recovery attempts stop); the
    same source_id publishing again is found by the resolver and served by a new inlet."""
    sid = f"relost{uuid.uuid4().hex[:6]}"
    outlet = _outlet(sid)
    events: asyncio.Queue = asyncio.Queue()
    log: list = []
    async with LSLSource(events=events, predicate=f"source_id='{sid}'", resolve_interval_s=0.1, pull_interval_ms=5,
                         lost_timeout_s=0.3, close_lost_after_s=1.0, forget_after_s=0.3) as src:
        await wait_for(events, lambda e: isinstance(e, StreamAdded), log=log)
        first = src.pump.feeds[sid]
        del outlet
        await wait_for(events, lambda e: isinstance(e, StreamLost), log=log)
        assert await asyncio.wait_for(asyncio.shield(first.done), 10.0) is None  # ended normally: closed
        outlet = _outlet(sid)
        await wait_for(events, lambda e: isinstance(e, StreamAdded), log=log, timeout=10.0)
        assert src.pump.feeds[sid] is not first
        assert await asyncio.to_thread(outlet.wait_for_consumers, 5.0)
        outlet.push_chunk(np.full((10, 2), 3.0, np.float32))
        chunk = await wait_for(events, lambda e: isinstance(e, ChunkReceived), log=log)
        assert chunk.chunk.first_index == 0 and np.all(chunk.chunk.data == 3.0)
    del outlet
