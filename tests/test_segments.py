"""A batch larger than a follow's backfill: a follow read before its author's posts is
applied before them, so the follower gets every post (the backfill alone is bounded by
``recent_per_author``), as if the batch had been handed over in smaller pieces."""

from __future__ import annotations

from feedamp.feeds import FeedReader
from feedamp.models import key_of, topic_of
from feedamp.streams import Pipeline, Record

from .factory import Events, to_json


def record(settings, event, offset: int) -> Record:
    topic = topic_of(event.type, settings.topics)
    return Record(topic, 0, offset, key_of(event).encode(), to_json(event), event.ts)


async def test_a_follow_before_many_posts_in_one_batch_gets_them_all(store, settings, uid):
    posts = settings.recent_per_author + 50
    ev = Events()
    alice, bob = uid("alice"), uid("bob")
    events = [ev.follow(bob, alice), *(ev.post(uid(f"p{n}"), alice) for n in range(posts))]
    outcome = await Pipeline(store, settings).apply(
        [record(settings, e, n) for n, e in enumerate(events)]
    )
    assert outcome.dead_letters == []
    reader = FeedReader(store.redis, key_prefix=settings.key_prefix,
                        feed_buckets=settings.feed_buckets)  # fmt: skip
    page = await reader.following(bob, limit=1000)
    assert len(page.items) == posts
