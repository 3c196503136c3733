"""``feedamp explain USER POST``: prints :func:`feedamp.feeds.explain.explain`."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from feedamp.config import Settings
from feedamp.feeds.explain import Explanation, explain
from redis.asyncio import Redis

__all__ = ["run"]


async def explain_with(settings: Settings, user: str, post: str) -> Explanation:
    """Explain with a Redis client and sizes configured like the workers'."""
    redis = Redis.from_url(settings.redis_url)
    try:
        return await explain(redis, user, post, key_prefix=settings.key_prefix,
                             feed_buckets=settings.feed_buckets, feed_cap=settings.feed_cap,
                             for_you_cap=settings.for_you_cap)  # fmt: skip
    finally:
        await redis.aclose()


def run(args: Any, settings: Settings) -> int:
    """Print the explanation (``--json``: one JSON object)."""
    x = asyncio.run(explain_with(settings, args.user, args.post))
    print(orjson.dumps(x.to_json()).decode() if args.json else x.text())
    return 0
