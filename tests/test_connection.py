"""Commands packed by hiredis reach a real Redis intact: multi-word command names,
binary values, numbers, pipelines and scripts."""

from __future__ import annotations

from feedamp.feeds.connection import hiredis_packing
from redis.asyncio import BlockingConnectionPool, Redis


async def test_hiredis_packing_round_trips(redis_server, uid):
    pool = BlockingConnectionPool.from_url(f"redis://{redis_server.address}/0")
    client = Redis(connection_pool=hiredis_packing(pool))
    assert pool.connection_class.__name__ == "HiredisConnection"
    try:
        key = uid("packing")
        assert await client.config_get("maxmemory-policy")  # 'CONFIG GET' split in two
        await client.set(key, b"\x00\xffbinary \r\n value")
        assert await client.get(key) == b"\x00\xffbinary \r\n value"
        async with client.pipeline(transaction=False) as pipe:
            pipe.zadd(key + "z", {"m": 1.5})
            pipe.zscore(key + "z", "m")
            pipe.eval("return ARGV[1] .. ARGV[2]", 0, "é", 42)
            assert await pipe.execute() == [1, 1.5, "é42".encode()]
    finally:
        await client.aclose()
