"""The batch handler never lets an error escape: outages are waited out, bad records and
records that hit a bug are dead-lettered, everything else is applied."""

from __future__ import annotations

import asyncio

import pytest
from feedamp.embedded.services import start_redis
from feedamp.feeds import FeedReader, FeedStore
from feedamp.streams import BatchHandler, DeadLetter, Pipeline, Record
from redis.asyncio import Redis

from .conftest import wait_until
from .factory import Events, to_json


def record(settings, event, offset: int = 0) -> Record:
    topic = {"post": settings.topics.posts, "repost": settings.topics.reposts}.get(
        event.type, settings.topics.graph
    )
    return Record(topic, 0, offset, b"k", to_json(event), 1)


class Letters:
    """Outputs that remember what was published."""

    def __init__(self) -> None:
        self.sent: list[DeadLetter] = []
        self.decisions: list = []

    async def publish(self, outcome) -> None:
        self.sent += outcome.dead_letters
        self.decisions += outcome.decisions


async def test_script_error_dead_letters_that_event_only(redis, settings):
    ev = Events()
    # A key of the wrong type makes the script fail for this one author.
    await redis.set(settings.key_prefix + "followers:{broken}", "x")
    records = [
        record(settings, ev.follow("bob", "alice"), 0),
        record(settings, ev.post("p1", "broken"), 1),
        record(settings, ev.post("p2", "alice"), 2),
    ]
    letters = Letters()
    await BatchHandler(Pipeline(FeedStore(redis, settings), settings), letters).handle(records)
    assert [(d.record.offset, "WRONGTYPE" in d.reason) for d in letters.sent] == [(1, True)]
    reader = FeedReader(redis, key_prefix=settings.key_prefix)
    assert [i.post_id for i in (await reader.following("bob")).items] == ["p2"]


class BuggyPipeline(Pipeline):
    """A pipeline with a bug that one event triggers."""

    async def apply(self, records):
        if any(b"trigger" in r.value for r in records):
            raise RuntimeError("bug")
        return await super().apply(records)


async def test_a_bug_hit_by_one_record_dead_letters_that_record(redis, settings):
    ev = Events()
    records = [
        record(settings, ev.follow("bob", "alice"), 0),
        record(settings, ev.post("trigger", "alice"), 1),
        record(settings, ev.post("p2", "alice"), 2),
    ]
    letters = Letters()
    pipeline = BuggyPipeline(FeedStore(redis, settings), settings)
    await BatchHandler(pipeline, letters).handle(records)
    assert [(d.record.offset, d.reason) for d in letters.sent] == [
        (1, "internal error: RuntimeError('bug')")
    ]
    reader = FeedReader(redis, key_prefix=settings.key_prefix)
    assert [i.post_id for i in (await reader.following("bob")).items] == ["p2"]


async def test_redis_outage_is_waited_out_not_skipped(settings, caplog):
    server = start_redis()
    port = server.port
    client = Redis.from_url(f"redis://{server.address}/0", socket_connect_timeout=0.5)
    try:
        ev = Events()
        store = FeedStore(client, settings)
        letters = Letters()
        handler = BatchHandler(Pipeline(store, settings), letters)
        await handler.handle([record(settings, ev.follow("bob", "alice"))])
        server.stop()  # Redis goes away
        task = asyncio.create_task(handler.handle([record(settings, ev.post("p1", "alice"))]))

        async def retrying() -> bool:
            return "unavailable" in caplog.text

        await wait_until(retrying, what="the handler to report the outage")
        assert not task.done(), "the handler must wait for Redis, not give up"
        server = start_redis(port)  # back, empty: the graph is gone, the post is not lost
        await asyncio.wait_for(task, 30)
        assert letters.sent == []
        assert await client.hget(settings.key_prefix + "post:{p1}", "a") == b"alice"
    finally:
        await client.aclose()
        server.stop()


@pytest.mark.parametrize("value", [b"{oops", None])
async def test_unparseable_records_are_dead_lettered_with_reason(redis, settings, value):
    letters = Letters()
    bad = Record(settings.topics.posts, 3, 42, b"key", value, 5)
    await BatchHandler(Pipeline(FeedStore(redis, settings), settings), letters).handle([bad])
    (letter,) = letters.sent
    key, raw, headers = letter.message()
    assert (key, raw) == (b"key", value)
    assert dict(headers)["feedamp-offset"] == b"42"
    assert dict(headers)["feedamp-partition"] == b"3"
    assert letter.reason


async def test_posts_in_a_batch_are_applied_before_its_reposts(redis, settings):
    ev = Events()
    post = ev.post("p1", "alice", visibility="followers")
    repost = ev.repost("p1", "alice", "bob")
    letters = Letters()
    handler = BatchHandler(Pipeline(FeedStore(redis, settings), settings), letters)
    await handler.handle([record(settings, repost, 0), record(settings, post, 1)])
    (decision,) = letters.decisions
    assert (decision.repost_id, decision.decision) == (repost.repost_id, "refused")
