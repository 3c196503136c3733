"""The pipeline's route table: every event type but ``account`` (applied first, by the
account store) goes to a store (posts to the feed store, and to the product store last);
and the order it hands the stores (``log_order``). Builds a pipeline without touching
Redis."""

from __future__ import annotations

from feedamp.config import Settings
from feedamp.feeds import FeedStore
from feedamp.models import EVENT_TYPES
from feedamp.streams import Pipeline, Record
from feedamp.streams.pipeline import log_order
from feedamp.streams.records import Envelope
from redis.asyncio import Redis

from .factory import Events


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
