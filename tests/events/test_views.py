"""The read-only views of a running monitor: :func:`percentile` and :class:`EventSubscription` (the async
iterator ``Engine.subscribe()`` returns), driven here the way the engine drives them."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pedstream.events import EventSubscription, MonitorEvent, percentile


def test_percentile_of_nothing_is_none_and_of_values_is_numpys() -> None:
    assert percentile([], 50) is None
    assert percentile(iter(()), 99) is None
    xs = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    assert percentile(xs, 50) == pytest.approx(float(np.percentile(xs, 50)))
    assert percentile((x for x in xs), 99) == pytest.approx(float(np.percentile(xs, 99)))
    assert percentile([7.5], 1) == 7.5


def _ev(stream: str, kind: str = "call", label: str | None = None) -> MonitorEvent:
    return MonitorEvent(stream=stream, kind=kind, label=label)  # type: ignore[arg-type]


async def test_iteration_yields_events_in_order_and_remembers_them() -> None:
    sub = EventSubscription(lambda s: None)
    first, second = _ev("a", label="sinus"), _ev("b", label="svt")
    sub._put(first)
    sub._put(second)
    got = [await anext(sub), await anext(sub)]
    assert got == [first, second] and sub.seen == [first, second]


async def test_wait_for_skips_to_the_first_match_and_times_out_otherwise() -> None:
    sub = EventSubscription(lambda s: None)
    for ev in (_ev("a"), _ev("a", "alarm_on", "svt"), _ev("b", "alarm_on", "vt")):
        sub._put(ev)
    hit = await sub.wait_for(lambda e: e.kind == "alarm_on" and e.stream == "b", timeout=1.0)
    assert hit.label == "vt" and [e.kind for e in sub.seen] == ["call", "alarm_on", "alarm_on"]
    with pytest.raises(TimeoutError):
        await sub.wait_for(lambda e: True, timeout=0.05)


async def test_wait_for_returns_an_event_that_arrives_while_it_waits() -> None:
    sub = EventSubscription(lambda s: None)
    waiter = asyncio.create_task(sub.wait_for(lambda e: e.label == "vf", timeout=5.0))
    await asyncio.sleep(0)  # let the waiter start waiting on the empty queue
    assert not waiter.done()
    sub._put(_ev("x", label="sinus"))
    sub._put(_ev("x", label="vf"))
    assert (await waiter).label == "vf"


async def test_drain_takes_what_is_there_without_waiting() -> None:
    sub = EventSubscription(lambda s: None)
    assert sub.drain() == [] and sub.seen == []
    evs = [_ev(f"s{i}") for i in range(3)]
    for ev in evs:
        sub._put(ev)
    assert sub.drain() == evs and sub.seen == evs
    assert sub.drain() == []


def test_close_hands_the_subscription_to_its_owner() -> None:
    closed: list[EventSubscription] = []
    subscribers: set[EventSubscription] = set()
    sub = EventSubscription(lambda s: (closed.append(s), subscribers.discard(s)))
    subscribers.add(sub)
    sub.close()
    assert closed == [sub] and subscribers == set()
