"""Scripts run as EVALSHA: loaded once per client, no ``SCRIPT EXISTS`` per pipeline, and
still run after Redis lost them (``NOSCRIPT``: loaded again, the refused calls resent)."""

from __future__ import annotations

from feedamp.config import Settings
from feedamp.embedded.services import start_redis
from feedamp.feeds.watermark import Watermark
from redis.asyncio import Redis


async def calls(redis: Redis, name: str) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))


async def test_scripts_load_once_and_survive_a_flush():
    server = start_redis()
    redis = Redis.from_url(f"redis://{server.address}/0")
    try:
        order = Watermark(redis, Settings(redis_url=f"redis://{server.address}/0"))
        for n in range(5):
            await order.advance({"posts:0": 10 + n, "posts:1": 20})
        assert await calls(redis, "script|load") == 1
        assert await calls(redis, "script|exists") == 0
        await order.advance({"posts:0": 5, "posts:1": 30})  # never lowered
        progress = order.keys.progress()
        assert await redis.hgetall(progress) == {b"posts:0": b"14", b"posts:1": b"30"}

        await redis.script_flush()
        await order.advance({"posts:0": 50})
        assert await redis.hget(progress, "posts:0") == b"50"
        assert await calls(redis, "script|load") == 2
    finally:
        await redis.aclose()
        server.stop()
