"""One round of the engine's ingest through the DSP of all its streams together.

The engine serves its streams round-robin (``Engine._serve_round``): each stream with queued
chunks gets one turn of at most one hop of samples. This module makes a round cheap:

* :func:`take_chunk`: a stream's turn takes *all* its queued contiguous chunks up to one hop
  (merged into one chunk) instead of one chunk. A chunk is merged only when the pipeline would
  have seen no gap between the two (next sample index, timestamps within ``gap_tolerance_s``,
  finite data of the same width), and the DSP is chunk-size invariant, so the result is the one
  of feeding them one by one. When the engine keeps up, a turn is one chunk as before; when it
  falls behind, the Python cost per stream is spread over more samples instead of growing with
  the number of chunks (one finiteness test for all the chunks merged). The merged chunk carries its parts' arrival times (:class:`Arrivals`):
  each window's end-to-end latency starts when the part holding its last sample arrived, as if
  the chunks had been fed one by one.
* :func:`feed_round`: the round's chunks go through :meth:`StreamPipeline.prepare` (checks,
  gaps, channel map, clipping, resampling) per stream, then through the filter banks of all
  streams at once (:func:`pedstream.dsp.bank.filter_many`: one ``sosfilt`` call per band for
  every group of streams with the same rate and chunk length), then :meth:`StreamPipeline.complete`
  (ring, QRS, windows) per stream, except that the QRS detectors of the round are fed together
  (:func:`pedstream.dsp.qrs_bank.process_many`: their signal front ends on one block for every
  group of detectors fed the same number of samples; in the engine a detector is fed a hop at each
  window's end, so the streams whose windows end in one round form a group). Bit-for-bit the
  result of ``StreamPipeline.feed`` per chunk (``tests/monitor/test_bank.py``).
"""

from __future__ import annotations

import math
from collections import deque
from contextlib import ExitStack
from collections.abc import Sequence

import numpy as np

from pedstream.dsp.bank import filter_many
from pedstream.dsp.qrs_bank import process_many
from pedstream.dsp.checks import all_finite
from pedstream.monitor.feedtypes import Arrivals, FeedResult, Staged
from pedstream.monitor.pipeline import StreamPipeline
from pedstream.events import Chunk, ChunkReceived

__all__ = ["take_chunk", "feed_round"]

QRS_BATCH = True  # feed_round feeds the round's QRS detectors together (False: each in its own complete(), for A/B)


def _rows(chunk: Chunk) -> int | None:
    d = getattr(chunk, "data", None)
    ts = getattr(chunk, "timestamps", None)
    if not isinstance(d, np.ndarray) or d.ndim != 2 or not isinstance(ts, np.ndarray) or ts.shape != (d.shape[0],):
        return None
    return d.shape[0]


def _follows(a: Chunk, b: Chunk, fs: float | None, gap_tolerance_s: float, *, check: bool = True) -> bool:
    """``b`` continues ``a`` without anything the pipeline would call a gap, and ``b`` is clean
    (``a`` was checked when it joined the merge)."""
    na, nb = _rows(a), _rows(b)
    if na is None or nb is None or na == 0 or nb == 0 or not fs or a.data.shape[1] != b.data.shape[1]:
        return False
    if int(b.first_index) != int(a.first_index) + na:
        return False
    t0, t1 = float(a.timestamps[-1]), float(b.timestamps[0])
    if not (np.isfinite(t0) and np.isfinite(t1)) or abs(t1 - t0 - 1.0 / fs) > gap_tolerance_s:
        return False
    return all_finite(b.data) if check else True


def _cut(chunk: Chunk, k: int) -> tuple[Chunk, Chunk]:
    head = Chunk(stream_id=chunk.stream_id, data=chunk.data[:k], timestamps=chunk.timestamps[:k],
                 first_index=chunk.first_index, seq=chunk.seq)
    tail = Chunk(stream_id=chunk.stream_id, data=chunk.data[k:], timestamps=chunk.timestamps[k:],
                 first_index=chunk.first_index + k, seq=chunk.seq)
    return head, tail


def take_chunk(q: deque, limit: int, *, fs: float | None,
               gap_tolerance_s: float) -> tuple[ChunkReceived, float | Arrivals, int]:
    """Take one turn's samples from a stream's queue of ``(event, arrival)`` whose head is a
    :class:`ChunkReceived`: the head chunk cut to ``limit`` samples (the rest stays queued), or the
    head merged with the contiguous chunks after it up to ``limit`` samples in all (the last one
    cut). Returns ``(event, arrival, chunks taken whole)``: the arrival is a time for one chunk, the
    parts' :class:`Arrivals` for a merge (what :meth:`StreamPipeline.prepare` takes)."""
    ev, t_arr = q.popleft()
    chunk = ev.chunk
    n = _rows(chunk)
    if n is None:  # malformed: the pipeline reports it
        return ev, t_arr, 1
    if n > limit:
        head, tail = _cut(chunk, limit)
        q.appendleft((ChunkReceived(tail), t_arr))
        return ChunkReceived(head), t_arr, 0
    parts, whole, times = [chunk], 1, [t_arr]
    if not (n < limit and q and isinstance(q[0][0], ChunkReceived) and all_finite(chunk.data)):
        return ev, t_arr, whole  # nothing to merge (or a bad head: its own error)
    fast = _take_fast(q, chunk, t_arr, n, limit, fs, gap_tolerance_s)
    if fast is not None:
        return fast
    while n < limit and q and isinstance(q[0][0], ChunkReceived) and _follows(parts[-1], q[0][0].chunk, fs,
                                                                                   gap_tolerance_s):
        nxt_ev, nxt_t = q.popleft()
        nxt = nxt_ev.chunk
        k = nxt.data.shape[0]
        if n + k > limit:
            nxt, tail = _cut(nxt, limit - n)
            q.appendleft((ChunkReceived(tail), nxt_t))
            k = limit - n
        else:
            whole += 1
        parts.append(nxt)
        times.append(nxt_t)
        n += k
    if len(parts) == 1:
        return ev, t_arr, whole
    merged = Chunk(stream_id=chunk.stream_id, data=np.concatenate([p.data for p in parts]),
                   timestamps=np.concatenate([p.timestamps for p in parts]), first_index=chunk.first_index,
                   seq=chunk.seq)
    ends = tuple(int(p.first_index) + p.data.shape[0] for p in parts)
    return ChunkReceived(merged), Arrivals(ends=ends, times=tuple(times)), whole


def _take_fast(q: deque, chunk: Chunk, t_arr: float, n: int, limit: int, fs: float | None,
               gap_tolerance_s: float) -> tuple[ChunkReceived, Arrivals, int] | None:
    """:func:`take_chunk`'s merge with one finiteness test of all the chunks it joins instead of one
    per chunk (the engine's queues hold about 25 chunks of 50 ms per hop); None when it joins
    nothing or one of them is not finite: the caller then merges chunk by chunk (the bad chunk
    stays queued for its own error). Nothing is taken from ``q`` before it is sure."""
    if not fs or n == 0:
        return None
    parts, times = [chunk], [t_arr]
    total = n
    cut = None  # rows taken of the last part when it is cut
    width = chunk.data.shape[1]
    end = int(chunk.first_index) + n  # the next sample index the pipeline expects
    t_last = float(chunk.timestamps[-1])
    step = 1.0 / fs
    for nxt_ev, nxt_t in q:  # _follows(parts[-1], nxt, check=False), with what is known of parts[-1]
        if total >= limit or type(nxt_ev) is not ChunkReceived:
            break
        b = nxt_ev.chunk
        d, ts = b.data, b.timestamps
        if (type(d) is not np.ndarray or d.ndim != 2 or d.shape[1] != width or type(ts) is not np.ndarray
                or ts.shape != (d.shape[0],) or d.shape[0] == 0 or int(b.first_index) != end):
            break
        t1 = float(ts[0])
        if not (math.isfinite(t_last) and math.isfinite(t1)) or abs(t1 - t_last - step) > gap_tolerance_s:
            break
        k = d.shape[0]
        end += k
        t_last = float(ts[-1])
        if total + k > limit:
            cut = limit - total
            k = cut
        parts.append(nxt_ev.chunk)
        times.append(nxt_t)
        total += k
    if len(parts) == 1:
        return None
    datas = [p.data for p in parts]
    if cut is not None:
        datas[-1] = datas[-1][:cut]
    data = np.concatenate(datas)
    if not all_finite(data[n:]):
        return None
    for _ in range(len(parts) - 1):
        q.popleft()
    whole = len(parts)
    ts = [p.timestamps for p in parts]
    if cut is not None:
        head, tail = _cut(parts[-1], cut)
        q.appendleft((ChunkReceived(tail), times[-1]))
        parts[-1], ts[-1] = head, head.timestamps
        whole -= 1
    merged = Chunk(stream_id=chunk.stream_id, data=data, timestamps=np.concatenate(ts), first_index=chunk.first_index,
                   seq=chunk.seq)
    ends = tuple(int(p.first_index) + p.data.shape[0] for p in parts)
    return ChunkReceived(merged), Arrivals(ends=ends, times=tuple(times)), whole


def feed_round(items: Sequence[tuple[StreamPipeline, Chunk, float | Arrivals]]) -> list[tuple[StreamPipeline, FeedResult | Exception]]:
    """``[(pipe, pipe.feed(chunk, t))]`` for chunks of distinct streams, the filter banks of all of
    them run together. A stream whose chunk fails gets its exception in place of a result (the
    others carry on)."""
    staged: list[tuple[StreamPipeline, Staged | Exception]] = []
    for pipe, chunk, t in items:
        try:
            staged.append((pipe, pipe.prepare(chunk, t)))
        except Exception as exc:  # noqa: BLE001 - reported per stream by the caller
            staged.append((pipe, exc))
    todo = [k for k, (_, st) in enumerate(staged) if isinstance(st, Staged) and st.y is not None and len(st.y)]
    outs = filter_many([staged[k][0].filters for k in todo], [staged[k][1].y for k in todo],  # type: ignore[union-attr]
                       return_errors=True)
    filt: dict[int, np.ndarray | Exception] = dict(zip(todo, outs))
    if not QRS_BATCH:
        return [(pipe, _complete_one(pipe, st, filt.get(k))) for k, (pipe, st) in enumerate(staged)]
    return _complete_together(staged, filt)


def _complete_one(pipe: StreamPipeline, st: Staged | Exception, f: np.ndarray | Exception | None) -> FeedResult | Exception:
    if isinstance(st, Exception):
        return st
    if isinstance(f, Exception):
        return f
    try:
        return pipe.complete(st, f)
    except Exception as exc:  # noqa: BLE001
        return exc


def _complete_together(staged: list[tuple[StreamPipeline, Staged | Exception]],
                       filt: dict[int, np.ndarray | Exception]) -> list[tuple[StreamPipeline, FeedResult | Exception]]:
    """:meth:`StreamPipeline.complete` of every stream, their QRS detectors fed together
    (:func:`pedstream.dsp.qrs_bank.process_many`): each detector gets the same pieces of its lead in
    the same order as in ``complete`` (up to each window's end, whose rates are then read; then the
    rest once it holds a hop), so every result is the one ``complete`` gives. The streams' locks are
    held throughout, so nothing else feeds their detectors in between (``heart_rate`` does)."""
    results: list[FeedResult | Exception] = []
    due: dict[int, list] = {}
    pipes = [pipe for pipe, _ in staged]
    with ExitStack() as stack:
        for pipe in sorted({id(p): p for p in pipes}.values(), key=id):  # one order for any holder of several
            stack.enter_context(pipe._lock)
        for k, (pipe, st) in enumerate(staged):
            f = filt.get(k)
            if isinstance(st, Exception) or isinstance(f, Exception):
                results.append(st if isinstance(st, Exception) else f)  # type: ignore[arg-type]
                continue
            try:
                res, d = pipe.cut_windows(st, f)
            except Exception as exc:  # noqa: BLE001
                results.append(exc)
                continue
            results.append(res)
            if d is not None:
                due[k] = d
        step = 0
        while True:  # the k-th window of every stream that has one, then the next
            now = [(k, *due[k][step]) for k in due if step < len(due[k]) and not isinstance(results[k], Exception)]
            if not now:
                break
            _feed_qrs(pipes, results, [(k, pipes[k].qrs_due(end)) for k, _, end in now])
            for k, item, end in now:
                if not isinstance(results[k], Exception):
                    try:
                        pipes[k].rate_meta(item, end)
                    except Exception as exc:  # noqa: BLE001
                        results[k] = exc
            step += 1
        ok = [k for k in due if not isinstance(results[k], Exception)]
        _feed_qrs(pipes, results, [(k, pipes[k].qrs_due_final()) for k in ok])
        for k in ok:
            if not isinstance(results[k], Exception):
                try:
                    pipes[k].finish(results[k], qrs_done=True)  # type: ignore[arg-type]
                except Exception as exc:  # noqa: BLE001
                    results[k] = exc
    return list(zip(pipes, results))


def _feed_qrs(pipes: list[StreamPipeline], results: list, leads: list[tuple[int, np.ndarray | None]]) -> None:
    """Each stream's QRS lead piece to its detector, all in one :func:`process_many`; a stream whose
    detector fails gets the exception as its result."""
    todo = [(k, lead) for k, lead in leads if lead is not None]
    if not todo:
        return
    outs = process_many([pipes[k].qrs for k, _ in todo], [lead for _, lead in todo], return_errors=True)
    for (k, _), out in zip(todo, outs):
        if isinstance(out, Exception):
            results[k] = out
