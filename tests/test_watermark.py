"""Event-time order across partitions, on a real broker and Redis: a worker decides
reposts by event time whatever order their partitions are read in, and sees a post
published after its repost. With the watermark off (lateness 0) the same arrivals are decided
as they come, which is what the watermark is for."""

from __future__ import annotations

import time
from dataclasses import replace

import orjson
import pytest
from feedamp.feeds.keys import Keys
from feedamp.kafka.topics import ensure_topics
from feedamp.ops.status import collect_status, format_status
from redis.asyncio import Redis

from .conftest import WorkerHandle, make_settings, wait_until
from .factory import Events
from .kafka import read_topic, send_events


def watermark_settings(broker, redis_server, lateness_ms: int):
    s = make_settings(broker, redis_server)
    return s.with_(caps=replace(s.caps, lateness_ms=lateness_ms))


async def started(redis: Redis, settings) -> None:
    """Wait until the worker reports progress for every watched partition."""
    keys = Keys(settings.key_prefix)

    async def ready() -> bool:
        return (
            await redis.hlen(keys.progress()) >= len(settings.topics.watched) * settings.partitions
        )

    await wait_until(ready, what="the worker to report progress of every partition")


async def wait_parked(redis: Redis, settings, count: int) -> None:
    """Wait until ``count`` events are parked."""
    keys = Keys(settings.key_prefix)

    async def parked() -> bool:
        return await redis.zcard(keys.parked()) >= count

    await wait_until(parked, what=f"{count} event(s) to be parked")


async def send_one_by_one(redis: Redis, settings, events, *, parked: bool) -> None:
    """Send events one at a time, waiting until the worker has taken each (parked it, or
    with the watermark off published its decision) before sending the next, so they arrive in
    this order, batch after batch."""
    for n, event in enumerate(events, 1):
        await send_events(settings, [event])
        if parked:
            await wait_parked(redis, settings, n)
        else:
            await read_topic(settings, settings.topics.decisions, n)


@pytest.mark.parametrize(("lateness_ms", "expected"), [
    (600, ["delivered"] * 5 + ["rate_limited"]),  # by event time: the 6th in 60 s is capped
    (0, ["delivered"] * 6),  # by arrival: each saw only later attempts
])  # fmt: skip
async def test_rate_cap_counts_by_event_time_whatever_the_arrival_order(
    broker, redis_server, redis, tmp_path, lateness_ms, expected
):
    s = watermark_settings(broker, redis_server, lateness_ms)
    await ensure_topics(s)
    worker = WorkerHandle(s, tmp_path / "worker.log")
    try:
        if lateness_ms:
            await started(redis, s)
        base = int(time.time() * 1000) + 4000  # parked until the clock passes them
        ev = Events(start_ms=base, step_ms=10)
        posts = [ev.post(f"p{n}", "star") for n in range(6)]
        reposts = [ev.repost(f"p{n}", "star", "fan", repost_id=f"r{n}") for n in range(6)]
        await send_events(s, posts)
        # Latest first: the partitions holding the late ones are read first.
        await send_one_by_one(redis, s, reposts[::-1], parked=lateness_ms > 0)
        records = await read_topic(s, s.topics.decisions, 6, timeout=60)
    finally:
        worker.stop()
    decided = {d["repost_id"]: d["decision"] for d in map(orjson.loads, (r.value for r in records))}
    assert [decided[f"r{n}"] for n in range(6)] == expected


async def test_a_repost_read_before_its_post_still_sees_followers_only(
    broker, redis_server, redis, tmp_path
):
    s = watermark_settings(broker, redis_server, 600)
    await ensure_topics(s)
    worker = WorkerHandle(s, tmp_path / "worker.log")
    try:
        await started(redis, s)
        ev = Events(start_ms=int(time.time() * 1000) + 3000, step_ms=50)
        post = ev.post("closed", "star", visibility="followers")
        repost = ev.repost("closed", "star", "fan", repost_id="r-closed")
        await send_one_by_one(redis, s, [repost], parked=True)  # the repost first...
        await send_events(s, [post])  # ...then its post, on another topic
        (record,) = await read_topic(s, s.topics.decisions, 1, timeout=60)
        status = await collect_status(s, redis)  # what an operator sees
    finally:
        worker.stop()
    decision = orjson.loads(record.value)
    assert (decision["decision"], decision["reasons"]) == ("refused", ["followers_only"])
    assert status.parked == 0
    assert status.watermark_lag_ms is not None and status.watermark_lag_ms < 30_000
    assert "parked events: 0 (watermark behind the clock: " in format_status(status)


async def test_two_workers_share_the_partitions_and_still_decide_by_event_time(
    broker, redis_server, redis, tmp_path
):
    """Each worker raises the progress of the partitions it holds; whichever holds the
    release lock decides, in event-time order across both workers' partitions."""
    s = watermark_settings(broker, redis_server, 600)
    await ensure_topics(s)
    workers = [WorkerHandle(s, tmp_path / f"worker{n}.log") for n in range(2)]
    try:
        await started(redis, s)
        base = int(time.time() * 1000) + 5000
        ev = Events(start_ms=base, step_ms=10)
        posts = [ev.post(f"p{n}", "star") for n in range(7)]
        reposts = [ev.repost(f"p{n}", "star", "fan", repost_id=f"r{n}") for n in range(7)]
        await send_events(s, posts)
        await send_one_by_one(redis, s, reposts[::-1], parked=True)
        records = await read_topic(s, s.topics.decisions, 7, timeout=60)
    finally:
        for worker in workers:
            worker.stop()
    decided = {d["repost_id"]: d["decision"] for d in map(orjson.loads, (r.value for r in records))}
    assert [decided[f"r{n}"] for n in range(7)] == ["delivered"] * 5 + ["rate_limited"] * 2
