"""Replay's event-time order (no services): parked-topic events are held back until every
watched partition still being read has passed their event time plus the lateness, then
handed on in event-time order after the batch's other events; each event exactly once."""

from __future__ import annotations

import random

from feedamp.config import Topics
from feedamp.models.events import Event
from feedamp.ops.event_order import EventTimeOrder
from feedamp.streams.records import Envelope, Record

from .factory import Events

TOPICS = Topics()
LATENESS = 100


class Log:
    """Envelopes on chosen partitions, with offsets counted per partition."""

    def __init__(self) -> None:
        self.offsets: dict[tuple[str, int], int] = {}

    def at(self, topic: str, partition: int, event: Event) -> Envelope:
        offset = self.offsets.get((topic, partition), 0)
        self.offsets[(topic, partition)] = offset + 1
        return Envelope(Record(topic, partition, offset, None, b"", None), event)


def order(ends: dict[tuple[str, int], int]) -> EventTimeOrder:
    return EventTimeOrder(TOPICS.parked, TOPICS.watched, LATENESS, ends)


def step(o: EventTimeOrder, batch: list[Envelope]) -> list[str]:
    records, (envelopes, dead) = o.step([e.record for e in batch], (batch, []))
    assert [e.record for e in envelopes] == records and dead == []
    return [e.event.event_id for e in envelopes]


def test_a_parked_event_waits_until_every_watched_partition_passed_it():
    ev, log = Events(start_ms=1_000, step_ms=10, id_prefix="e"), Log()
    late = log.at(TOPICS.reposts, 0, ev.repost("p1", "ann", "bob", ts=1_050))
    early = log.at(TOPICS.gifts, 1, ev.gift("g1", "cat", "dan", "o", ts=1_040))
    post = log.at(TOPICS.posts, 0, ev.post("p2", "ann", ts=1_060))
    o = order({(TOPICS.reposts, 0): 10, (TOPICS.gifts, 1): 10, (TOPICS.posts, 0): 10})
    # The reposts and gifts partitions were read, the posts partition not past 1_150 yet.
    assert step(o, [late, early, post]) == [post.event.event_id]
    assert o.held == 2
    # The posts partition passes 1_150; the gifts partition only reached 1_040 (progress
    # 940): nothing goes.
    assert step(o, [log.at(TOPICS.posts, 0, ev.post("p3", "ann", ts=1_200))]) == ["e3"]
    assert o.held == 2
    # Every partition past 1_150: both go, in event-time order, after the batch's own.
    batch = [log.at(TOPICS.gifts, 1, ev.gift("g2", "cat", "dan", "o", ts=1_300)),
             log.at(TOPICS.reposts, 0, ev.repost("p9", "ann", "eve", ts=1_310))]  # fmt: skip
    assert step(o, batch) == [early.event.event_id, late.event.event_id]
    assert o.held == 2  # the two just read wait in turn


def test_a_partition_read_to_its_end_no_longer_holds_back():
    ev, log = Events(start_ms=1_000, id_prefix="e"), Log()
    o = order({(TOPICS.reposts, 0): 1, (TOPICS.accounts, 0): 5})
    repost = log.at(TOPICS.reposts, 0, ev.repost("p1", "ann", "bob", ts=5_000))
    assert step(o, [repost]) == []  # the accounts partition has not been read
    account = log.at(TOPICS.accounts, 0, ev.account("ann", "label", label="x", ts=10))
    assert step(o, [account]) == [account.event.event_id]
    assert o.held == 1
    for n in range(3):
        step(o, [log.at(TOPICS.accounts, 0, ev.account("ann", "label", label="x", ts=20 + n))])
    assert o.held == 1  # offset 3 of 5
    last = log.at(TOPICS.accounts, 0, ev.account("ann", "unlabel", label="x", ts=30))
    assert step(o, [last]) == [last.event.event_id, repost.event.event_id]


def test_what_is_left_at_the_end_goes_in_event_time_order():
    ev, log = Events(start_ms=1_000, id_prefix="e"), Log()
    o = order({(TOPICS.reposts, 0): 100, (TOPICS.reposts, 1): 100})
    a = log.at(TOPICS.reposts, 0, ev.repost("p1", "ann", "bob", ts=3_000))
    b = log.at(TOPICS.reposts, 1, ev.repost("p2", "ann", "bob", ts=2_000))
    c = log.at(TOPICS.reposts, 1, ev.repost("p3", "ann", "cat", ts=2_000))
    assert step(o, [a, b, c]) == []
    records, (envelopes, _) = o.rest()
    assert [e.event.event_id for e in envelopes] == [b.event.event_id, c.event.event_id,
                                                     a.event.event_id]  # fmt: skip
    assert records == [e.record for e in envelopes] and o.held == 0


def test_every_event_is_handed_on_once_in_event_time_order_for_the_parked_topics():
    rng = random.Random(3)
    for trial in range(20):
        ev, log = Events(start_ms=0, id_prefix=f"t{trial}-"), Log()
        topics = [TOPICS.posts, TOPICS.reposts, TOPICS.gifts, TOPICS.accounts, TOPICS.graph]
        arrivals = []
        for n in range(rng.randint(1, 200)):
            topic, partition = rng.choice(topics), rng.randrange(2)
            ts = n * 10 + rng.randrange(-LATENESS // 2, LATENESS // 2)  # none late
            if topic == TOPICS.reposts:
                event: Event = ev.repost(f"p{n}", "ann", "bob", ts=ts)
            elif topic == TOPICS.gifts:
                event = ev.gift(f"g{n}", "ann", "bob", "o", ts=ts)
            elif topic == TOPICS.graph:
                event = ev.follow("ann", "bob")  # not watched: its time does not count
            elif topic == TOPICS.accounts:
                event = ev.account("ann", "label", label="x", ts=ts)
            else:
                event = ev.post(f"p{n}", "ann", ts=ts)
            arrivals.append(log.at(topic, partition, event))
        ends = dict(log.offsets)
        o = order(ends)
        out: list[Envelope] = []
        at = 0
        while at < len(arrivals):
            size = rng.randint(1, 30)
            batch = arrivals[at : at + size]
            at += size
            out += o.step([e.record for e in batch], (batch, []))[1][0]
        out += o.rest()[1][0]
        assert sorted(map(id, out)) == sorted(map(id, arrivals)), trial
        parked = [e.event for e in out if e.record.topic in TOPICS.parked]
        assert parked == sorted(parked, key=lambda e: (e.ts, e.event_id)), trial
