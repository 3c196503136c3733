"""``feedamp status`` against a running worker."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys

from feedamp.embedded.worker import worker_env
from feedamp.feeds import Keys
from feedamp.ops.status import collect_status, count_feeds, format_status

from .conftest import wait_until
from .factory import Events
from .kafka import send, send_events


async def test_status_reports_lag_dead_letters_memory_and_feeds(worker, redis, uid):
    s = worker.settings
    ev = Events()
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    events = [ev.follow(bob, alice), ev.follow(carol, alice),
              *(ev.post(uid(f"p{i}"), alice) for i in range(3))]  # fmt: skip
    await send_events(s, events)
    await send(s, [(s.topics.posts, b"x", b"{oops"), (s.topics.graph, b"y", b"[]")])

    # A group that never committed has every record still to do.
    idle = await collect_status(s.with_(app_id=uid("nobody")), redis)
    assert idle.total_lag == len(events) + 2
    assert all(p.committed is None for p in idle.lag)
    assert {p.topic for p in idle.lag} == set(s.topics.inputs)
    assert len(idle.lag) == len(s.topics.inputs) * s.partitions

    async def settled() -> bool:
        status = await collect_status(s, redis)
        return status.total_lag == 0 and status.dead_letters == 2

    await wait_until(settled, what="the worker to commit everything and dead-letter two")
    status = await collect_status(s, redis)
    done = [p for p in status.lag if p.end]
    assert sum(p.end for p in done) == len(events) + 2
    assert all(p.committed == p.end for p in done)
    assert (status.following.feeds, status.following.entries) == (2, 6)
    assert re.fullmatch(r"[\d.]+[BKMG]", status.redis_memory), status.redis_memory
    text = format_status(status)
    assert f"consumer group {s.app_id}: lag 0" in text
    assert "dead letters: 2" in text and "following feeds: 2 (6 entries)" in text

    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "feedamp.cli", "status", "--json"],
        env=worker_env(s), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["total_lag"], report["dead_letters"]) == (0, 2)
    assert report["following"] == {"feeds": 2, "entries": 6}


async def test_feed_count_groups_buckets_by_user(redis, settings):
    keys = Keys(settings.key_prefix)
    await redis.zadd(keys.feed("u1", 0), {"a": 1, "b": 2})
    await redis.zadd(keys.feed("u1", 5), {"c": 3})
    await redis.zadd(keys.feed("u2", 3), {"a": 1})
    await redis.sadd(keys.followers("u3"), "u1")  # not a feed
    count = await count_feeds(redis, keys.feed_pattern())
    assert (count.feeds, count.entries) == (2, 4)
