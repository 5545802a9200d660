"""What the MQTT source admits and whom it charges, on explicit clocks: token buckets, publishers of
topics, bundle authorisation, the bounded publisher table and the duplicate-publisher guard. (Through a
real broker: tests/transports/test_mqtt_acl.py and tests/transports/test_stream_lifecycle.py.)"""

from __future__ import annotations

import pytest

from pedstream.transports.mqtt.admission import (
    Bucket,
    DuplicateGuard,
    PublisherBook,
    bundle_may_carry,
    publisher_of,
)
from pedstream.transports.mqtt.wire import StreamMeta, decode_meta, encode_meta


def test_bucket_take_is_all_or_nothing_and_refills_at_its_rate_up_to_its_burst() -> None:
    b = Bucket(rate=2.0, burst=4.0, now=0.0)
    assert b.take(3.0, 0.0) and not b.take(2.0, 0.0)  # 1 left: 2 is refused whole
    assert b.tokens == pytest.approx(1.0)
    assert b.take(2.0, 0.5)  # +1 after 0.5 s
    assert b.take(4.0, 100.0) and not b.take(0.5, 100.0)  # refilled to the burst, never beyond
    b.charge(3.0, 100.0)  # a cost known afterwards: into debt
    assert not b.ok(100.0) and not b.ok(101.4) and b.ok(101.6)


def test_bucket_new_rate_caps_the_tokens_at_the_new_burst() -> None:
    b = Bucket(rate=1.0, burst=10.0, now=0.0)
    b.set_rate(0.5, 2.0)
    assert b.tokens == 2.0 and b.take(2.0, 0.0) and not b.take(1.0, 1.0) and b.take(1.0, 2.0)


def test_the_publisher_is_the_first_level_after_the_prefix() -> None:
    assert publisher_of("pedstream/v1/bed7/data", "pedstream/v1") == "bed7"
    assert publisher_of("pedstream/v1/gw1/bundle", "pedstream/v1") == "gw1"
    assert publisher_of("other/x/data", "pedstream/v1") == "other"
    assert publisher_of("pedstream/v1//data", "pedstream/v1") == "?"
    assert publisher_of("pedstream/v1/" + "p" * 100 + "/data", "pedstream/v1") == "p" * 64


def _meta(**extra) -> StreamMeta:
    """A meta as the source decodes it from the retained message."""
    return decode_meta(encode_meta(fs=500.0, channels=["II"], **extra), stream="bed7")


def test_a_bundle_carries_its_own_stream_and_those_whose_meta_names_it() -> None:
    assert bundle_may_carry("gw1", "gw1", None)
    assert bundle_may_carry("gw1", "bed7", _meta(publisher="gw1"))
    assert not bundle_may_carry("gw1", "bed7", _meta(publisher="gw2"))
    assert not bundle_may_carry("gw1", "bed7", _meta())
    assert not bundle_may_carry("gw1", "bed7", None)  # no meta yet: refused


def test_a_publishers_cpu_budget_grows_with_the_streams_it_owns() -> None:
    book = PublisherBook(cpu_share=0.1, cpu_burst_s=2.0)
    gw = book.get("gw1", 0.0)
    assert gw.cpu.rate == pytest.approx(0.1) and gw.cpu.burst == pytest.approx(0.2)
    book.own("gw1", "bed7", 0.0, on=True)
    book.own("gw1", "bed8", 0.0, on=True)
    book.own("gw1", "gw1", 0.0, on=True)  # its own stream is already counted
    assert gw.owned == {"bed7", "bed8"} and gw.cpu.rate == pytest.approx(0.3)
    assert gw.counters()["streams"] == 3
    book.own("gw1", "bed7", 1.0, on=False)
    assert gw.owned == {"bed8"} and gw.cpu.rate == pytest.approx(0.2) and gw.cpu.burst == pytest.approx(0.4)
    book.own("nobody", "bed9", 1.0, on=False)  # unknown publisher, no longer named: nothing made up
    assert book.find("nobody") is None


def test_the_book_is_bounded_forgets_the_least_recent_and_keeps_its_totals() -> None:
    book = PublisherBook(max_publishers=2)
    book.get("a", 0.0).throttled = 5
    book.get("b", 0.0).unauthorised = 2
    book.get("a", 1.0)  # seen again: now the most recent
    book.get("c", 2.0).throttled_metas = 1
    assert book.find("b") is None and book.find("a") is not None and book.find("c") is not None
    assert book.totals() == {"unauthorised": 2, "throttled": 5, "throttled_metas": 1, "dropped_samples": 0}
    assert set(book.flagged()) == {"a", "c"} and book.flagged()["a"]["throttled"] == 5


def test_one_sequence_with_loss_reordering_and_wrap_is_always_kept() -> None:
    g = DuplicateGuard(near=8, grace_s=1.0, confirm=3)
    seqs = [2**32 - 3, 2**32 - 2, 2**32 - 1, 0, 2, 1, 5, 4, 9]
    assert all(g.check(s, 0.01 * k) for k, s in enumerate(seqs))
    assert (g.dropped, g.skipped, g.detected) == (0, 0, False)


def test_a_second_interleaved_sequence_is_dropped_and_reported_once() -> None:
    g = DuplicateGuard(near=8, grace_s=1.0, confirm=3)
    kept, dropped, reports = [], [], 0
    t = 0.0
    for k in range(6):
        for seq, who in ((100 + k, "first"), (5000 + k, "second")):
            t += 0.01
            (kept if g.check(seq, t) else dropped).append(who)
            reports += g.newly_detected
    assert set(kept) == {"first"} and dropped == ["second"] * 6
    assert reports == 1 and g.detected and g.dropped >= 4


def test_a_sequence_that_moved_on_is_followed_after_confirm_messages() -> None:
    """A publisher restart (a jump, then the old sequence never again): after ``confirm`` messages the new
    sequence is the kept one; the first ones were skipped, nobody is reported."""
    g = DuplicateGuard(near=8, grace_s=10.0, confirm=3)
    assert all(g.check(s, 0.0) for s in range(10, 15))
    got = [g.check(s, 0.1) for s in range(6)]
    assert got == [False, False, True, True, True, True]
    assert g.skipped == 2 and g.dropped == 0 and not g.newly_detected


def test_a_quiet_kept_sequence_gives_way_after_its_grace() -> None:
    g = DuplicateGuard(near=8, grace_s=1.0, confirm=3)
    assert g.check(100, 0.0) and g.check(101, 0.5)
    assert not g.check(9000, 1.2)  # 0.7 s after the last kept message: still within the grace
    assert g.check(9001, 2.6)  # the kept sequence has been quiet for 2.1 s: this one takes over
    assert g.check(9002, 2.7) and not g.check(102, 2.8)
