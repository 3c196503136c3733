"""``feedamp replay``: the worker's code path from the topics, idempotent, windowed."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from feedamp.config import Settings
from feedamp.embedded.worker import worker_env
from feedamp.feeds import FeedReader
from feedamp.kafka.offsets import end_offsets, partitions
from feedamp.kafka.topics import ensure_topics
from feedamp.models import key_of, topic_of
from feedamp.ops.replay import input_topics, parse_time, replay
from feedamp.ops.status import kafka_status

from .conftest import wait_until
from .factory import Events, to_json
from .kafka import send, send_events
from .snapshot import snapshot

#: Every test that writes runs on a standalone Redis and on a three-master cluster.
LAYOUTS = ("standalone", "cluster")

T0 = 1_750_000_000_000  # record timestamps of the windowed log


def test_parse_time():
    assert parse_time("beginning") is None
    assert parse_time(" Beginning ") is None
    assert parse_time("1700000000000") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20.250+00:00") == 1_700_000_000_250
    assert parse_time("2023-11-14T23:13:20+01:00") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20") == 1_700_000_000_000  # no zone: UTC
    assert parse_time("2023-11-14") == 1_699_920_000_000
    for bad in ("yesterday", "", "-5", "12:00"):
        with pytest.raises(ValueError, match="not a time"):
            parse_time(bad)


@pytest.mark.single_layout  # no write path of its own
def test_topic_names(settings):
    t = settings.topics
    assert input_topics(settings, None) == list(t.inputs)
    assert input_topics(settings, ["posts", t.graph, "posts"]) == [t.posts, t.graph]
    with pytest.raises(ValueError, match="unknown input topic 'dead-letter'"):
        input_topics(settings, ["dead-letter"])


async def caught_up(settings: Settings) -> bool:
    """The worker group committed every record of the input topics."""
    lag, _ = await kafka_status(settings)
    return sum(p.lag for p in lag) == 0


async def output_ends(settings: Settings) -> tuple[int, int]:
    """Records in the dead-letter and decisions topics."""
    t = settings.topics
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        sizes = []
        for topic in (t.dead_letter, t.decisions):
            tps = await partitions(consumer, [topic])
            consumer.assign(tps)
            sizes.append(sum((await end_offsets(consumer, tps)).values()))
        return sizes[0], sizes[1]
    finally:
        await consumer.stop()


def story(ev: Events, uid) -> list[list]:
    """A realistic log in three phases: the graph and posts; reposts, a withdrawal and a
    delete; a late follow and an unfollow of a reposter. The worker applies each phase
    before the next is sent, so it sees them in the order they were produced, as replay
    does (the unfollow and the repost by the unfollowed account are on different topics,
    and their order decides whether the entry keeps the repost's time)."""
    alice, bob, carol, dave = uid("alice"), uid("bob"), uid("carol"), uid("dave")
    p1, p2, p3 = uid("p1"), uid("p2"), uid("p3")
    return [
        [ev.follow(bob, alice), ev.follow(carol, bob), ev.follow(dave, bob),
         ev.follow(dave, carol), ev.post(p1, alice, text="one"), ev.post(p2, alice),
         ev.post(p3, carol)],
        [ev.repost(p1, alice, bob, comment="look"), ev.repost(p1, alice, carol),
         ev.repost(p2, alice, bob), ev.unrepost(p2, bob), ev.delete(p3, carol)],
        [ev.follow(uid("erin"), alice), ev.unfollow(dave, carol)],
    ]  # fmt: skip


async def play(settings: Settings, phases: list[list]) -> int:
    """Send each phase once the worker applied the previous one; return the time (ms)
    between the last two phases."""
    middle = 0
    for n, phase in enumerate(phases):
        if n == len(phases) - 1:
            middle = int(time.time() * 1000)
        await send_events(settings, phase)
        await wait_until(lambda: caught_up(settings), what=f"the worker to apply phase {n}")
    return middle


async def test_replaying_what_the_worker_applied_changes_nothing(worker, redis, uid):
    s = worker.settings
    phases = story(Events(), uid)
    await send(s, [(s.topics.posts, b"bad", b'{"type": "post"}')])  # one dead letter
    middle = await play(s, phases)
    before = await snapshot(redis, s.key_prefix)
    outputs = await output_ends(s)
    assert before

    stats = await replay(s)  # from the beginning
    assert stats.events >= sum(map(len, phases)) + 1
    assert stats.dead_letters >= 1
    assert await snapshot(redis, s.key_prefix) == before
    assert await output_ends(s) == outputs, "dead letters and decisions are not re-published"

    stats = await replay(s, start_ms=middle)  # only the last phase
    assert stats.events == len(phases[-1])
    assert await snapshot(redis, s.key_prefix) == before


async def test_flushed_redis_is_rebuilt_by_a_replay_from_the_beginning(worker, redis, uid):
    s = worker.settings
    phases = story(Events(start_ms=1_710_000_000_000), uid)
    await play(s, phases)
    before = await snapshot(redis, s.key_prefix)
    reader = FeedReader(redis, key_prefix=s.key_prefix, feed_buckets=s.feed_buckets)
    dave = (await reader.following(uid("dave"))).items
    assert [(i.post_id, i.reposted_by) for i in dave] == [(uid("p1"), (uid("bob"),))]

    keys = [k async for k in redis.scan_iter(match=f"{s.key_prefix}*", count=1000)]
    await redis.unlink(*keys)
    assert await snapshot(redis, s.key_prefix) == {}

    stats = await replay(s)
    assert stats.events >= sum(map(len, phases))
    assert await snapshot(redis, s.key_prefix) == before
    assert (await reader.following(uid("dave"))).items == dave


async def windowed_log(settings: Settings) -> None:
    """alice posts p1..p3 one second apart (record times T0+1s..T0+3s) after bob followed
    her (T0), and one invalid record at T0+4s."""
    await ensure_topics(settings)
    ev = Events()
    events = [ev.follow("bob", "alice"), *(ev.post(f"p{i}", "alice") for i in (1, 2, 3))]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for n, e in enumerate(events):
            topic, key = topic_of(e.type, settings.topics), key_of(e).encode()
            await producer.send_and_wait(topic, to_json(e), key, timestamp_ms=T0 + n * 1000)
        await producer.send_and_wait(settings.topics.posts, b"{oops", b"bad",
                                     timestamp_ms=T0 + 4000)  # fmt: skip
    finally:
        await producer.stop()


async def post_ids(redis, settings: Settings) -> set[str]:
    keys = [k.decode() async for k in redis.scan_iter(match=f"{settings.key_prefix}post:*")]
    return {k.split("{")[1].rstrip("}") for k in keys}


async def test_from_to_and_topics_select_what_is_replayed(settings, redis):
    await windowed_log(settings)
    prefix = settings.key_prefix
    # Only the graph topic: bob follows alice, no post is applied.
    stats = await replay(settings, topics=["graph"])
    assert (stats.events, dict(stats.by_topic)) == (1, {settings.topics.graph: 1})
    assert await redis.smembers(f"{prefix}followers:{{alice}}") == {b"bob"}
    assert await post_ids(redis, settings) == set()
    # Up to T0+1.5s: p1 only.
    stats = await replay(settings, end_ms=T0 + 1500, topics=["posts"])
    assert stats.events == 1
    assert await post_ids(redis, settings) == {"p1"}
    # From T0+2.5s: p3 and the invalid record, not p2. Tansu answers offset 0 for any
    # time, so the older records are read and skipped.
    stats = await replay(settings, start_ms=T0 + 2500)
    assert (stats.events, stats.dead_letters) == (2, 1)
    assert await post_ids(redis, settings) == {"p1", "p3"}
    reader = FeedReader(redis, key_prefix=prefix, feed_buckets=settings.feed_buckets)
    assert [i.post_id for i in (await reader.following("bob")).items] == ["p3", "p1"]
    # Later than every record: nothing.
    stats = await replay(settings, start_ms=T0 + 60_000)
    assert stats.events == 0
    # The dead letter was counted, not published; --publish sends it.
    assert (await kafka_status(settings))[1] == 0
    stats = await replay(settings, start_ms=T0 + 4000, publish=True)
    assert (stats.dead_letters, stats.published) == (1, 1)
    assert (await kafka_status(settings))[1] == 1


async def test_dry_run_counts_and_writes_nothing(settings, redis):
    await windowed_log(settings)
    stats = await replay(settings, dry_run=True)
    assert dict(stats.by_type) == {"follow": 1, "post": 3}
    assert stats.dead_letters == 1
    assert await snapshot(redis, settings.key_prefix) == {}


@pytest.mark.single_layout  # the command's output; on a cluster: test_cluster_worker.py
def test_replay_command_prints_progress_and_summary(settings):
    import asyncio

    asyncio.run(windowed_log(settings))
    env = worker_env(settings)
    cmd = [sys.executable, "-m", "feedamp.cli", "replay"]
    out = subprocess.run([*cmd, "--from", "beginning", "--topics", "posts,graph"], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "replayed 5 events from" in out.stdout
    assert "dead letters: 1 (not re-published; --publish sends them)" in out.stdout
    # Off a terminal: log lines of records applied, no carriage returns.
    assert "replay: 5/5 records applied (100%)" in out.stderr and "\r" not in out.stderr
    out = subprocess.run([*cmd, "--from", str(T0 + 2500), "--dry-run"], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "dry run: read 2 events" in out.stdout and "post 1" in out.stdout
    out = subprocess.run([*cmd, "--from", "last tuesday"], env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2 and "not a time" in out.stderr
