"""A worker killed with SIGKILL in the middle of a fan-out batch, then restarted, loses no
feed entry and doubles none."""

from __future__ import annotations

import asyncio

import pytest
from feedamp.embedded.services import Service
from feedamp.feeds import FeedStore, Keys
from feedamp.kafka.topics import ensure_topics

from .conftest import WorkerHandle, make_settings, wait_until
from .factory import Events
from .kafka import send_events
from .snapshot import entries

FOLLOWERS = 1000
REPOSTERS = 10
REPOSTS = 300  # 300,000 deliveries: seconds of work, so the kill lands mid-way


@pytest.fixture(scope="module")
def crash_worker(broker: Service, redis_server: Service, tmp_path_factory) -> WorkerHandle:
    settings = make_settings(broker, redis_server, fanout_chunk=250, batch_size=50, feed_cap=800)
    asyncio.run(ensure_topics(settings))
    handle = WorkerHandle(settings, tmp_path_factory.mktemp("crash") / "worker.log")
    yield handle
    handle.stop()


async def test_sigkill_mid_fanout_then_restart(crash_worker: WorkerHandle, redis):
    s = crash_worker.settings
    ev = Events(step_ms=20_000)  # each reposter's reposts 200 s apart: under the rate cap
    followers = [f"f{i}" for i in range(FOLLOWERS)]
    reposters = [f"r{i}" for i in range(REPOSTERS)]
    # The follow graph goes straight to Redis through the same store the worker uses.
    graph = [ev.follow(f, r) for f in followers for r in reposters]
    assert (await FeedStore(redis, s).apply(graph)).failures == []
    reposts = [ev.repost(f"p{i}", "author", reposters[i % REPOSTERS]) for i in range(REPOSTS)]
    keys = Keys(s.key_prefix)
    buckets = range(s.feed_buckets)
    sample = [keys.feed(f, b) for f in followers[::50] for b in buckets]
    total = REPOSTS * len(followers[::50])

    async def progress() -> int:
        return await entries(redis, sample)

    await send_events(s, reposts)

    async def started() -> bool:
        return await progress() >= total // 20

    await wait_until(started, what="the fan-out to start")
    crash_worker.kill()
    at_kill = await progress()
    assert at_kill < total, "the kill came after the work was done; make the load larger"

    crash_worker.start()

    # Done when every follower's feeds are full, not only the sampled ones: a batch's
    # followers are visited in calls, and the sampled ones may be full while the rest of
    # the batch is still being delivered. An entry lost to the kill never comes: timeout.
    every = [keys.feed(f, b) for f in followers for b in buckets]

    async def finished() -> bool:
        return await entries(redis, every) == REPOSTS * len(followers)

    await wait_until(finished, timeout=180, what="the restarted worker to finish the fan-out")
    # Every follower has every repost of the accounts they follow, attributed once.
    async with redis.pipeline(transaction=False) as pipe:
        for f in followers:
            for b in buckets:
                pipe.zcard(keys.feed(f, b))
                pipe.hgetall(keys.via(f, b))
        results = iter(await pipe.execute())
    expected = {f"p{i}".encode(): reposters[i % REPOSTERS].encode() for i in range(REPOSTS)}
    for f in followers:
        count, via = 0, {}
        for _ in buckets:
            count += next(results)
            via.update(next(results))
        assert count == REPOSTS, f
        assert {p: v.rpartition(b"@")[0] for p, v in via.items()} == expected, f  # reposter@time
