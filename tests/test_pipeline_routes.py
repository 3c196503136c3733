"""The pipeline's route table: every event type but ``account`` (applied first, by the
account store) goes to a store (posts to the feed store, and to the product store last);
and the order it hands the stores (``log_order``). Builds a pipeline without touching
Redis."""

from __future__ import annotations

import random
from types import SimpleNamespace

from feedamp.config import Settings
from feedamp.feeds import FeedStore
from feedamp.feeds.namespace import Namespace
from feedamp.models import EVENT_TYPES
from feedamp.streams import Pipeline, Record
from feedamp.streams.pipeline import _pack, log_order
from feedamp.streams.records import Envelope
from redis.asyncio import Redis

from .factory import Events, to_json


def test_every_event_type_has_a_store():
    settings = Settings()
    pipeline = Pipeline(FeedStore(Redis(), settings), settings)
    routed = {cls.__name__ for cls in pipeline._store_of}
    routed |= {cls.__name__ for _, types in pipeline._last for cls in types}
    expected = {cls.__name__ for name, cls in EVENT_TYPES.items() if name != "account"}
    assert routed == expected
    assert set(pipeline._store_of.values()) <= set(pipeline._stores)
    assert not pipeline.watermarked  # no partitions given: nothing is parked


def test_posts_move_ahead_of_what_was_read_before_them_but_never_past_a_graph_event():
    topics = Settings().topics
    ev = Events()
    read = [
        (topics.reposts, ev.repost("p1", "alice", "bob")),
        (topics.posts, ev.post("p1", "alice")),
        (topics.graph, ev.follow("carol", "alice")),
        (topics.gifts, ev.gift("g1", "bob", "carol", "editor")),
        (topics.reposts, ev.repost("p2", "alice", "bob")),
        (topics.posts, ev.post("p2", "alice")),
        (topics.posts, ev.post("p3", "alice")),
    ]
    envelopes = [Envelope(Record(t, 0, n, None, None), e) for n, (t, e) in enumerate(read)]
    ordered = log_order(envelopes, topics.posts, topics.graph)
    assert [e.record.offset for e in ordered] == [1, 0, 2, 5, 6, 3, 4]


def _reference_order(envelopes, posts, graph):
    """The rule of ``log_order`` spelt out: a stable sort by (graph events read before,
    not a posts-topic event)."""
    stretch, keys = 0, []
    for envelope in envelopes:
        keys.append((stretch, envelope.record.topic != posts))
        stretch += envelope.record.topic == graph
    return [e for _, e in sorted(zip(keys, envelopes, strict=True), key=lambda k: k[0])]


def test_log_order_is_the_stable_sort_it_describes_with_or_without_posts():
    topics = Settings().topics
    ev = Events()
    event = ev.post("p", "alice")
    rng = random.Random(14)
    for size in range(0, 40):
        for choices in (
            [topics.posts, topics.reposts, topics.graph, topics.gifts, topics.purchases],
            [topics.gifts, topics.purchases, topics.graph],  # no posts: read order
        ):
            read = [rng.choice(choices) for _ in range(size)]
            envelopes = [Envelope(Record(t, 0, n, None, None), event) for n, t in enumerate(read)]
            ordered = log_order(envelopes, topics.posts, topics.graph)
            assert ordered == _reference_order(envelopes, topics.posts, topics.graph)
            if topics.posts not in read:
                assert ordered == envelopes and ordered is not envelopes


def test_records_are_made_alike_from_every_kind_of_message():
    def message(headers, timestamp):
        return SimpleNamespace(topic="t", partition=2, offset=7, key=b"k", value=b"v",
                               timestamp=timestamp, headers=headers)  # fmt: skip

    plain = Record("t", 2, 7, b"k", b"v", 1_700_000_000_123)
    for empty in (None, [], (), {}):
        assert Record.from_message(message(empty, 1_700_000_000_123)) == plain
    # Faust gives seconds as a float, and may give headers as a dict.
    assert Record.from_message(message(None, 1_700_000_000.123)).timestamp == 1_700_000_000_123
    with_headers = Record.from_message(message([("a", b"1"), ("b", None)], 5))
    assert with_headers.headers == (("a", b"1"), ("b", b""))
    assert Record.from_message(message({"a": bytearray(b"1")}, 5)).headers == (("a", b"1"),)


def test_a_release_takes_the_envelope_parked_here_only_for_that_very_record():
    """A worker keeps what it parked, so its own release does not parse a record again;
    a record parked under the same event id by another arrival (other bytes) is parsed
    afresh, and one released elsewhere is never taken from the keeping."""
    settings = Settings()
    pipeline = Pipeline(FeedStore(Redis(), settings), settings)
    ns = Namespace.of(settings)
    ev = Events()
    gift = ev.gift("g1", "ann", "bob", "offer")
    record = Record(settings.topics.gifts, 0, 7, b"ann", to_json(gift), 1)
    (mine,), _ = pipeline.parse_all([record])
    raw = _pack(record)
    pipeline._parsed[(ns.prefix, gift.event_id)] = (raw, mine)
    envelopes, dead = pipeline._released([(gift.event_id, raw)], ns)
    assert envelopes == [mine] and envelopes[0] is mine and dead == []
    assert (ns.prefix, gift.event_id) not in pipeline._parsed  # dropped once released
    # Another record under the same event id: parsed from what was released.
    other = Record(settings.topics.gifts, 1, 3, b"ann", to_json(ev.gift("g2", "ann", "cat",
                                                                          "offer")), 2)  # fmt: skip
    pipeline._parsed[(ns.prefix, gift.event_id)] = (raw, mine)
    (taken,), _ = pipeline._released([(gift.event_id, _pack(other))], ns)
    assert taken is not mine and taken.event.gift_id == "g2" and taken.record.partition == 1
