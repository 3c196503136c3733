"""Key namespaces, the pointer, and ``feedamp replay --rebuild`` with readers running."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from feedamp.embedded.worker import worker_env
from feedamp.feeds import FeedReader, FeedStore, Keys
from feedamp.feeds.connection import close, connect
from feedamp.feeds.namespace import (
    Namespace,
    Namespaces,
    counter_key,
    generation_prefix,
    pointer_key,
    scratch_prefix,
)
from feedamp.kafka.topics import ensure_topics
from feedamp.ops.rebuild import rebuild
from feedamp.ops.status import collect_status

from .conftest import wait_until
from .factory import Events
from .kafka import send_events
from .test_replay import caught_up, windowed_log

#: Every test that writes runs on a standalone Redis and on a three-master cluster.
LAYOUTS = ("standalone", "cluster")

POSTS = 200


async def keys_of(redis, prefix: str) -> set[str]:
    """Every key name of the namespace ``prefix``, without the prefix."""
    found = redis.scan_iter(match=f"{prefix}*", count=1000)
    return {k.decode()[len(prefix) :] async for k in found}


def test_names():
    assert pointer_key("fa:") == "fa.active" and counter_key("fa:") == "fa.generation"
    assert generation_prefix("fa:", 3) == "fa.3:"
    assert scratch_prefix("fa:", "ab12") == "fa.sab12:"
    assert pointer_key("fa") is None  # no pointer: the base is always active
    with pytest.raises(ValueError, match="ends with ':'"):
        generation_prefix("fa", 1)


async def test_dropping_a_namespace_touches_no_other_nor_the_pointer(redis, settings):
    base = settings.key_prefix
    prefixes = [base, generation_prefix(base, 3), generation_prefix(base, 30),
                scratch_prefix(base, "3")]  # fmt: skip
    for prefix in prefixes:
        await redis.set(Keys(prefix).post("p"), prefix)
        await redis.sadd(Keys(prefix).followers("u"), "x")
    namespaces = Namespaces(redis, base)
    await redis.set(counter_key(base), 30)
    await namespaces.switch(base, prefixes[1])
    assert await namespaces.active() == prefixes[1]
    assert await namespaces.drop(prefixes[2]) == 2
    assert await namespaces.drop(base) == 2
    assert await keys_of(redis, prefixes[1]) == {"post:{p}", "followers:{u}"}
    assert await keys_of(redis, prefixes[3]) == {"post:{p}", "followers:{u}"}
    assert await redis.get(pointer_key(base)) == prefixes[1].encode()
    assert await redis.get(counter_key(base)) == b"30"
    assert await namespaces.new_generation() == generation_prefix(base, 31)
    with pytest.raises(ValueError, match="refusing to drop the active namespace"):
        await namespaces.drop(prefixes[1])
    # Compare-and-set: a switch from a namespace that is no longer active fails.
    with pytest.raises(RuntimeError, match="changed to"):
        await namespaces.switch(base, prefixes[3])
    assert await namespaces.active() == prefixes[1]


async def test_writers_and_readers_follow_the_pointer(redis, settings):
    ev = Events()
    store = FeedStore(redis, settings)
    gen = generation_prefix(settings.key_prefix, 1)
    log = [ev.follow("bob", "alice"), ev.post("p1", "alice")]
    result = await store.apply(log, namespace=Namespace.of(settings, gen))
    assert result.failures == [] and result.deliveries == 1
    assert await keys_of(redis, settings.key_prefix) == set()
    reader = FeedReader(redis, key_prefix=settings.key_prefix, pointer_ttl=0.5)
    assert (await reader.following("bob")).items == []
    await Namespaces(redis, settings.key_prefix).switch(settings.key_prefix, gen)
    # Cached for pointer_ttl: the reader still reads the base namespace for that long.
    assert (await reader.following("bob")).items == []
    await wait_until(lambda: _has_items(reader, "bob"), what="the reader's cache to expire")
    fresh = FeedReader(redis, key_prefix=settings.key_prefix)
    assert [i.post_id for i in (await fresh.following("bob")).items] == ["p1"]
    with pytest.raises(ValueError, match="pointer_ttl"):
        FeedReader(redis, pointer_ttl=60)


async def _has_items(reader: FeedReader, user: str) -> bool:
    return bool((await reader.following(user)).items)


async def feed_size(redis, prefix: str, user: str, buckets: int) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        for b in range(buckets):
            pipe.zcard(Keys(prefix).feed(user, b))
        return sum(await pipe.execute())


async def test_rebuild_with_readers_running(worker, redis, uid):
    s = worker.settings
    base = s.key_prefix
    ev = Events()
    alice, bob = uid("alice"), uid("bob")
    posts = [uid(f"p{i}") for i in range(POSTS)]
    # The follow first: applied after the posts, it would backfill only the latest 100.
    await send_events(s, [ev.follow(bob, alice)])

    async def following() -> bool:
        return bool(await redis.sismember(Keys(base).following(bob), alice))

    await wait_until(following, what="the follow to be applied")
    await send_events(s, [ev.post(p, alice) for p in posts])
    await wait_until(lambda: caught_up(s), what="the worker to apply the log")
    # The live namespace gets a post the log does not hold: old and new feeds differ.
    ghost = uid("ghost")
    await FeedStore(redis, s).apply([ev.post(ghost, alice)])
    reader = FeedReader(redis, key_prefix=base, feed_buckets=s.feed_buckets)
    old = tuple(i.post_id for i in (await reader.following(bob, limit=1000)).items)
    assert len(old) == POSTS + 1 and ghost in old
    new = tuple(p for p in old if p != ghost)
    expected = generation_prefix(base, int(await redis.get(counter_key(base)) or 0) + 1)

    pages: list[tuple[str, ...]] = []
    partial: list[int] = []  # sizes of bob's feed seen directly in the namespace being built
    done = asyncio.Event()

    async def read_all_the_time() -> None:
        while not done.is_set():
            page = await reader.following(bob, limit=1000)
            pages.append(tuple(i.post_id for i in page.items))
            size = await feed_size(redis, expected, bob, s.feed_buckets)
            if 0 < size < POSTS:
                partial.append(size)

    reading = asyncio.create_task(read_all_the_time())
    try:
        result = await rebuild(s, grace=1.0, batch=5)
    finally:
        done.set()
        await reading
    assert result.new == expected and result.old == base
    assert result.switched and result.drained and result.dropped
    assert await redis.get(pointer_key(base)) == expected.encode()
    assert partial, "the new namespace was never seen half-built: the test proves nothing"
    assert pages and all(p in (old, new) for p in pages), {len(p) for p in pages}
    assert pages[0] == old and pages[-1] == new
    assert await keys_of(redis, base) == set(), "the old namespace is dropped"

    # The worker follows the pointer: what it applies now lands in the new namespace.
    late = uid("late")
    await send_events(s, [ev.post(late, alice)])

    async def delivered() -> bool:
        return (await reader.following(bob, limit=1)).items[0].post_id == late

    await wait_until(delivered, what="the worker to write to the new namespace")
    assert f"post:{{{late}}}" in await keys_of(redis, expected)
    assert await keys_of(redis, base) == set()
    status = await collect_status(s, redis)
    assert status.namespace == expected
    assert (status.following.feeds, status.following.entries) == (1, POSTS + 1)


async def test_rebuild_that_loses_the_switch_drops_its_namespace(settings, redis):
    await windowed_log(settings)
    base = settings.key_prefix
    rival = generation_prefix(base, 99)

    async def say(line: str) -> None:  # another rebuild switches while this one replays
        if line.startswith("replaying into"):
            await redis.set(pointer_key(base), rival)

    with pytest.raises(RuntimeError, match="changed to"):
        await rebuild(settings, grace=0, say=say)
    assert await Namespaces(redis, base).active() == rival
    assert await keys_of(redis, generation_prefix(base, 1)) == set()


def test_rebuild_command(settings):
    asyncio.run(windowed_log(settings))
    env = worker_env(settings)
    cmd = [sys.executable, "-m", "feedamp.cli", "replay", "--rebuild"]
    out = subprocess.run([*cmd, "--grace", "0"], env=env, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    gen = generation_prefix(settings.key_prefix, 1)
    assert f"rebuilt {gen!r} from 5 events" in out.stdout
    assert f"switched the active namespace from {settings.key_prefix!r} to {gen!r}" in out.stdout
    assert f"dropped {settings.key_prefix!r}: 0 keys" in out.stdout
    assert "shorter than the longest reader pointer cache" in out.stderr

    async def check() -> None:
        client = connect(settings.redis_url)
        try:
            assert await client.get(pointer_key(settings.key_prefix)) == gen.encode()
            reader = FeedReader(client, key_prefix=settings.key_prefix)
            assert [i.post_id for i in (await reader.following("bob")).items] == [
                "p3", "p2", "p1"
            ]  # fmt: skip
        finally:
            await close(client)

    asyncio.run(check())
    out = subprocess.run([*cmd, "--to", "beginning"], env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 2 and "drop --to" in out.stderr


async def test_rebuild_catches_up_what_arrives_during_it(settings, redis):
    """Records produced after the first pass read its end offsets are caught up, before
    the switch and after it (here no worker runs: the rebuild alone must apply them)."""
    await ensure_topics(settings)
    ev = Events()
    await send_events(settings, [ev.follow("bob", "alice"),
                                 *(ev.post(f"p{i}", "alice") for i in range(3))])  # fmt: skip
    during = [ev.post(f"q{i}", "alice") for i in range(3)]
    after = [ev.post(f"r{i}", "alice") for i in range(2)]

    async def say(line: str) -> None:
        if line.startswith("replayed"):  # the first pass is done
            await send_events(settings, during)
        elif line.startswith("switched"):
            await send_events(settings, after)

    result = await rebuild(settings, grace=0, switch_gap=2, say=say)
    # full pass, catch-up (3 > 2 left), catch-up (nothing), switch, catch-up.
    assert [p.events for p in result.passes] == [4, 3, 0, 2]
    reader = FeedReader(redis, key_prefix=settings.key_prefix)
    items = (await reader.following("bob", limit=1000)).items
    assert [i.post_id for i in items] == ["r1", "r0", "q2", "q1", "q0", "p2", "p1", "p0"]
