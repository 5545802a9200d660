from collections import Counter

import pytest

from pedstream.monitor.assign import assign, assign_all, moved

IDS = [f"bed-{i:03d}" for i in range(600)]


def test_every_stream_goes_to_a_live_worker_and_spread_is_even():
    a = assign_all(IDS, ["w0", "w1", "w2"])
    counts = Counter(a.values())
    assert set(counts) == {"w0", "w1", "w2"}
    assert min(counts.values()) > 150  # 200 expected each


def test_worker_leaving_moves_only_its_streams():
    before = assign_all(IDS, ["w0", "w1", "w2"])
    after = assign_all(IDS, ["w0", "w2"])
    assert moved(before, after) == {s for s, w in before.items() if w == "w1"}


def test_worker_joining_moves_about_a_quarter_all_to_the_new_one():
    before = assign_all(IDS, ["w0", "w1", "w2"])
    after = assign_all(IDS, ["w0", "w1", "w2", "w3"])
    m = moved(before, after)
    assert {after[s] for s in m} == {"w3"}
    assert 100 < len(m) < 200


def test_order_of_workers_does_not_matter_and_no_worker_is_an_error():
    assert assign_all(IDS, ["a", "b", "c"]) == assign_all(IDS, ["c", "a", "b"])
    with pytest.raises(ValueError, match="bed-001"):
        assign("bed-001", [])
