"""Round trips written ahead of the answers of the one before (feeds/batch.py,
``run_ahead``): every call runs once, in the order given, even when Redis loses its
scripts between two round trips."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from feedamp.feeds.batch import run_ahead
from redis import Redis as SyncRedis

#: Appends its argument to a list and answers the list's length (not idempotent: a call
#: run twice, or skipped, shows in the list).
APPEND = "return redis.call('RPUSH', KEYS[1], ARGV[1])"


def trips(count: int, size: int) -> list[list[list[str | int]]]:
    return [[[f"{t}.{n}"] for n in range(size)] for t in range(count)]


async def run(redis, script, made: Iterator[list[list[str | int]]]) -> list[list[object]]:
    return [answers async for answers in run_ahead(redis, script, made)]


def lean(redis, key: str):
    """The script with its key written in (run_ahead sends no KEYS)."""
    return redis.register_script(APPEND.replace("KEYS[1]", repr(key)))


async def test_calls_run_once_in_order(redis, uid):
    key = uid("list")
    script = lean(redis, key)
    made = trips(5, 40)
    answers = await run(redis, script, iter(made))
    assert [len(a) for a in answers] == [40] * 5
    assert [r for a in answers for r in a] == list(range(1, 201))
    assert [v.decode() for v in await redis.lrange(key, 0, -1)] == [
        argv[0] for trip in made for argv in trip
    ]


async def test_scripts_flushed_between_round_trips(redis, settings, uid):
    key = uid("list")
    script = lean(redis, key)
    made = trips(4, 30)
    flusher = SyncRedis.from_url(settings.redis_url)

    def flushing() -> Iterator[list[list[str | int]]]:
        for n, trip in enumerate(made):
            if n == 2:  # trip 1 written, its answers not read yet
                flusher.script_flush()
            yield trip

    try:
        answers = await run(redis, script, flushing())
    finally:
        flusher.close()
    assert [r for a in answers for r in a] == list(range(1, 121))
    assert [v.decode() for v in await redis.lrange(key, 0, -1)] == [
        argv[0] for trip in made for argv in trip
    ]
    # and the next run finds the script loaded again
    more = trips(2, 5)
    assert [r for a in await run(redis, script, iter(more)) for r in a] == list(range(121, 131))


async def test_stopping_early_leaves_the_client_usable(redis, uid):
    key = uid("list")
    script = lean(redis, key)
    seen = 0
    async with contextlib.aclosing(run_ahead(redis, script, iter(trips(6, 10)))) as answers:
        async for got in answers:
            seen += len(got)
            if seen == 20:
                break  # a trip written ahead is left unanswered: its connection is dropped
    assert 20 <= int(await redis.llen(key)) <= 30
    assert await redis.ping()
    assert int(await redis.rpush(key, "x")) == int(await redis.llen(key))
