"""The fan-out benchmark's completion check (``bench/run.py``, ``Bench.short_feeds``) on a
real Redis: it names exactly the followers whose feeds (all buckets together) hold fewer
entries than wanted, in order, whatever the number of checks it is cut into, and counts
no key other than the feed buckets (not the For You feed, not the attributions)."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any, cast

import pytest
from feedamp.feeds import Keys

from bench import run


async def test_short_feeds_names_the_followers_below_the_wanted_size(
    redis, settings, uid, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(settings.key_prefix)
    buckets = settings.feed_buckets
    rng = random.Random(7)
    users = [uid(f"follower{n}") for n in range(7)]
    sizes: dict[str, int] = {}
    for n, user in enumerate(users):
        # entries spread over a few buckets (none for the first user), and other keys of
        # the same user that the check must not count
        per_bucket = {b: rng.randint(1, 3) for b in rng.sample(range(buckets), n % buckets)}
        for b, count in per_bucket.items():
            await redis.zadd(keys.feed(user, b), {f"p{b}-{i}": i + 1 for i in range(count)})
        await redis.zadd(keys.for_you(user, 0), {f"fy{i}": i for i in range(5)})
        await redis.hset(keys.via(user, 0), mapping={f"v{i}": "x" for i in range(5)})
        sizes[user] = sum([await redis.zcard(keys.feed(user, b)) for b in range(buckets)])
    bench = run.Bench(cast(Any, SimpleNamespace(settings=settings)), redis, cast(Any, None))
    for per_check in (2, 3, run.FEEDS_PER_CHECK):
        monkeypatch.setattr(run, "FEEDS_PER_CHECK", per_check)
        for want in range(max(sizes.values()) + 2):
            expected = [u for u in users if sizes[u] < want]
            assert await bench.short_feeds(users, want) == expected
        assert await bench.short_feeds([], 1) == []
