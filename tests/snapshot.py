"""A canonical dump of every key of one namespace, to compare Redis states exactly, and
a count of the entries of sampled feeds, to follow a worker's progress."""

from __future__ import annotations

from feedamp.feeds.cluster import scan_keys
from feedamp.feeds.keys import Keys
from redis.asyncio import Redis

#: Bookkeeping of the event-time order (progress follows the clock), not views.
ORDER_KEYS = Keys.bookkeeping()


async def snapshot(redis: Redis, prefix: str) -> dict[str, object]:
    """{key without prefix: contents} for every key under ``prefix`` (but the watermark
    bookkeeping); on a cluster, of every master."""
    out: dict[str, object] = {}
    async for key in scan_keys(redis, f"{prefix}*"):
        name = key.decode()[len(prefix) :]
        if name in ORDER_KEYS:
            continue
        kind = (await redis.type(key)).decode()
        if kind == "zset":
            out[name] = ("zset", await redis.zrange(key, 0, -1, withscores=True))
        elif kind == "hash":
            out[name] = ("hash", await redis.hgetall(key))
        elif kind == "set":
            out[name] = ("set", sorted(await redis.smembers(key)))
        elif kind == "string":
            out[name] = ("string", await redis.get(key))
        else:
            out[name] = (kind, None)
    return out


async def entries(redis: Redis, feeds: list[str]) -> int:
    """The entries of the sorted sets ``feeds`` (one pipeline of ``ZCARD``)."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in feeds:
            pipe.zcard(key)
        return sum(await pipe.execute())
