"""What the MQTT source admits, and whom it charges: token buckets, per-publisher accounting
(CPU time and metas), bundle authorisation and duplicate-publisher detection.

Publisher
    The first topic level after the prefix: ``<prefix>/<publisher>/{meta,data,bundle}``. With the
    documented broker ACL (``pattern readwrite <prefix>/%u/#``) only the broker user ``<publisher>``
    can write there, so everything charged to a publisher was sent by that user. A stream's own
    ``meta``/``data`` topics are its publisher's; a bundle's publisher is its bundle id.

Bundle authorisation (:func:`bundle_may_carry`)
    A frame of stream ``S`` in a bundle published on ``<prefix>/<B>/bundle`` is accepted only when
    ``S == B`` or the meta of ``S`` -- retained on ``<prefix>/<S>/meta``, which only the owner of
    ``S`` may write -- names ``"publisher": "B"``. Anything else (a stream with no meta yet
    included) is refused, counted against ``B`` (``unauthorised``) and reported as an error event of
    ``B``; the named stream is not touched.

Budgets (:class:`PublisherBook`)
    CPU: the time spent handling a publisher's messages is charged to a bucket refilled at
    ``cpu_share`` seconds per second for each stream it publishes (its own, plus those whose meta
    names it), with ``cpu_burst_s`` of that as burst. While the bucket is empty the publisher's
    messages are dropped before they are read (``throttled``). Metas: ``metas_per_s`` per publisher
    (burst ``meta_burst``); beyond, meta messages are dropped unread (``throttled_metas``).

Duplicate publishers (:class:`DuplicateGuard`)
    Two publishers sending one stream id show up as two interleaved, each continuous, ``seq``
    sequences. The first sequence is kept; messages far from it while it is still active are the
    other publisher's: dropped, counted (``duplicate_messages``) and, once that second sequence has
    run ``confirm`` messages, reported once as a duplicate publisher. If the first sequence stops
    for ``grace_s`` the other one takes over (a restarted publisher, or the original outliving a
    second one's exit).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Bucket", "Publisher", "PublisherBook", "DuplicateGuard", "bundle_may_carry", "publisher_of"]

_U32 = 1 << 32


class Bucket:
    """Token bucket: ``rate`` per second, ``burst`` at most. :meth:`take` is all-or-nothing;
    :meth:`charge` may run into debt (a cost known only afterwards) and :meth:`ok` says whether the
    bucket is out of debt."""

    __slots__ = ("rate", "burst", "tokens", "t")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.t = float(rate), float(burst), float(burst), now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now

    def take(self, amount: float, now: float) -> bool:
        self._refill(now)
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False

    def charge(self, amount: float, now: float) -> None:
        self._refill(now)
        self.tokens -= amount

    def ok(self, now: float) -> bool:
        self._refill(now)
        return self.tokens > 0

    def set_rate(self, rate: float, burst: float) -> None:
        self.rate, self.burst = float(rate), float(burst)
        self.tokens = min(self.tokens, self.burst)


def publisher_of(topic: str, prefix: str) -> str:
    """The publisher of a topic: its first level after ``prefix`` (cut to 64 characters)."""
    rest = topic[len(prefix) + 1:] if topic.startswith(prefix + "/") else topic
    return rest.partition("/")[0][:64] or "?"


def bundle_may_carry(bundle_id: str, stream_id: str, meta: Any) -> bool:
    """May a bundle of publisher ``bundle_id`` carry frames of ``stream_id`` (whose current meta is
    ``meta``, a :class:`~pedstream.transports.mqtt.wire.StreamMeta` or None)? See the module docstring."""
    if stream_id == bundle_id:
        return True
    return meta is not None and meta.extra.get("publisher") == bundle_id


@dataclass(slots=True)
class Publisher:
    """What the source charges to one publisher."""

    name: str
    cpu: Bucket
    metas: Bucket
    owned: set = field(default_factory=set)  # other streams whose meta names it (bundles)
    unauthorised: int = 0  # bundle frames naming a stream it may not write
    throttled: int = 0  # messages dropped over its CPU budget
    throttled_metas: int = 0  # meta messages dropped over its meta budget
    dropped_samples: int = 0  # samples in those messages (as far as a binary header tells)
    cpu_s: float = 0.0  # handler time charged in all

    def counters(self) -> dict[str, Any]:
        return {"unauthorised": self.unauthorised, "throttled": self.throttled,
                "throttled_metas": self.throttled_metas, "dropped_samples": self.dropped_samples,
                "cpu_s": round(self.cpu_s, 4), "streams": 1 + len(self.owned)}


class PublisherBook:
    """Bounded table of :class:`Publisher` (least recently seen forgotten first; totals kept)."""

    def __init__(self, *, cpu_share: float = 0.1, cpu_burst_s: float = 2.0, metas_per_s: float = 1.0,
                 meta_burst: float = 5.0, max_publishers: int = 1024) -> None:
        self.cpu_share, self.cpu_burst_s = float(cpu_share), float(cpu_burst_s)
        self.metas_per_s, self.meta_burst = float(metas_per_s), float(meta_burst)
        self.max_publishers = int(max_publishers)
        self._pubs: OrderedDict[str, Publisher] = OrderedDict()
        self._gone = {"unauthorised": 0, "throttled": 0, "throttled_metas": 0, "dropped_samples": 0}

    def get(self, name: str, now: float) -> Publisher:
        p = self._pubs.get(name)
        if p is None:
            rate = self.cpu_share
            p = self._pubs[name] = Publisher(name=name, cpu=Bucket(rate, rate * self.cpu_burst_s, now),
                                             metas=Bucket(self.metas_per_s, self.meta_burst, now))
            while len(self._pubs) > self.max_publishers:
                _, old = self._pubs.popitem(last=False)
                for k in self._gone:
                    self._gone[k] += getattr(old, k)
        else:
            self._pubs.move_to_end(name)
        return p

    def find(self, name: str) -> Publisher | None:
        return self._pubs.get(name)

    def own(self, publisher: str | None, stream_id: str, now: float, *, on: bool) -> None:
        """Stream ``stream_id`` names (``on``) or no longer names ``publisher`` in its meta: the
        publisher's CPU budget covers one more (one fewer) stream."""
        if not publisher or publisher == stream_id:
            return
        p = self.get(publisher, now) if on else self._pubs.get(publisher)
        if p is None:
            return
        (p.owned.add if on else p.owned.discard)(stream_id)
        rate = self.cpu_share * (1 + len(p.owned))
        p.cpu.set_rate(rate, rate * self.cpu_burst_s)

    def totals(self) -> dict[str, int]:
        out = dict(self._gone)
        for p in self._pubs.values():
            for k in out:
                out[k] += getattr(p, k)
        return out

    def flagged(self) -> dict[str, dict[str, Any]]:
        """Counters of the publishers that were refused or throttled (the summary names them)."""
        return {n: p.counters() for n, p in self._pubs.items() if p.unauthorised or p.throttled or p.throttled_metas}


def _delta(seq: int, ref: int) -> int:
    d = (seq - ref) % _U32
    return d - _U32 if d >= _U32 // 2 else d


class DuplicateGuard:
    """Keeps the first of two interleaved ``seq`` sequences of one stream (see the module docstring).
    :meth:`check` says whether a message belongs to the kept sequence.

    A message far (more than ``near``) from the kept sequence starts a *candidate* sequence. If the
    candidate runs ``confirm`` messages with no message of the kept sequence in between, the stream
    simply moved on (a publisher restart, a long loss): the candidate is kept from then on (the
    messages before were ``skipped``). If the kept sequence goes on in between, two publishers are
    sending: the candidate's messages are dropped (``dropped``) and :attr:`newly_detected` says so
    once. A kept sequence quiet for ``grace_s`` gives way to whatever comes next."""

    __slots__ = ("near", "grace_s", "confirm", "next", "last", "cand_next", "cand_run", "interleaved", "detected",
                 "dropped", "skipped")

    def __init__(self, *, near: int = 64, grace_s: float = 1.0, confirm: int = 3) -> None:
        self.near, self.grace_s, self.confirm = int(near), float(grace_s), int(confirm)
        self.reset()
        self.detected = False
        self.dropped = 0
        self.skipped = 0

    def reset(self) -> None:
        self.next: int | None = None
        self.last = 0.0
        self.cand_next: int | None = None
        self.cand_run = 0
        self.interleaved = False

    def _keep(self, seq: int, now: float) -> bool:
        self.next, self.last, self.cand_next, self.cand_run, self.interleaved = (seq + 1) % _U32, now, None, 0, False
        return True

    def check(self, seq: int, now: float) -> bool:
        if self.next is None or now - self.last > self.grace_s:  # first message, or the kept sequence went quiet
            return self._keep(seq, now)
        d = _delta(seq, self.next)
        if -self.near <= d <= self.near:
            if d >= 0:
                self.next = (seq + 1) % _U32
            self.last = now
            self.interleaved |= self.cand_next is not None
            return True
        if self.cand_next is not None and abs(_delta(seq, self.cand_next)) <= self.near:
            self.cand_run += 1
        else:
            self.cand_run, self.interleaved = 1, False
        self.cand_next = (seq + 1) % _U32
        if not self.interleaved and self.cand_run >= self.confirm:  # the sequence moved on: follow it
            return self._keep(seq, now)
        if self.interleaved:
            self.dropped += 1
        else:
            self.skipped += 1
        return False

    @property
    def newly_detected(self) -> bool:
        """True once, when a second sequence interleaved with the kept one has run ``confirm`` messages."""
        if not self.detected and self.interleaved and self.cand_run >= self.confirm:
            self.detected = True
            return True
        return False
