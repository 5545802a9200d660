"""pedstream.monitor.shm.WindowRing: windows cross a real process boundary through shared memory,
bit for bit and in order; a full ring refuses (counted) instead of overwriting; misuse is refused."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from pedstream.monitor.shm import RingSpec, WindowRing

C, T = 19, 2442


def _window(k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(k)
    return rng.standard_normal((C, T)).astype(np.float32), (rng.random(C) > 0.3).astype(np.float32)


def _producer(spec: RingSpec, n: int, conn) -> None:  # runs in the child process
    ring = WindowRing.attach(spec)
    sent = 0
    while sent < n:
        x, m = _window(sent)
        seq = ring.put(x, m)
        if seq is None:  # full: wait for the consumer to say it took one
            conn.recv()
            continue
        conn.send(("win", seq, f"bed{sent % 7}", sent))
        sent += 1
    conn.send(("done", ring.dropped, None, None))
    ring.close()


def test_windows_cross_processes_bit_for_bit_in_order():
    ctx = mp.get_context("spawn")
    with WindowRing.create(slots=4, channels=C, samples=T) as ring:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_producer, args=(ring.spec, 25, child), daemon=True)
        p.start()
        got = []
        while True:
            assert parent.poll(60), "producer sent nothing for 60 s"
            kind, seq, sid, k = parent.recv()
            if kind == "done":
                break
            x, m = ring.take(seq)
            ex, em = _window(k)
            assert np.array_equal(x, ex) and np.array_equal(m, em) and sid == f"bed{k % 7}"
            got.append(seq)
            parent.send("took")
        p.join(30)
        assert p.exitcode == 0
        assert ring.written == ring.taken == 25
    assert got == list(range(25))


def test_full_ring_refuses_and_counts_and_take_checks_order():
    with WindowRing.create(slots=2, channels=3, samples=5) as ring:
        prod = WindowRing.attach(ring.spec)
        a, b, c = (np.full((3, 5), v, np.float32) for v in (1, 2, 3))
        m = np.ones(3, np.float32)
        assert prod.put(a, m) == 0 and prod.put(b, m) == 1
        assert prod.put(c, m) is None and prod.dropped == 1 and ring.free == 0
        with pytest.raises(ValueError, match="next window to take is 0"):
            ring.take(1)
        x, _ = ring.take(0)
        assert np.array_equal(x, a) and ring.free == 1
        assert prod.put(c, m) == 2
        assert np.array_equal(ring.take(1)[0], b) and np.array_equal(ring.take(2)[0], c)
        with pytest.raises(ValueError, match="3 were written"):
            ring.take(3)
        with pytest.raises(ValueError):
            prod.put(np.zeros((3, 4), np.float32), m)  # wrong shape: nothing published
        assert ring.written == 3
        prod.close()
    with pytest.raises(FileNotFoundError):  # the creator removed the block on close
        WindowRing.attach(ring.spec)
    with pytest.raises(ValueError, match=">= 1"):
        WindowRing.create(slots=0, channels=3, samples=5)
