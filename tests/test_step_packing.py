"""Calls of the slot-local steps packed into calls of the steps script
(:func:`feedamp.feeds.batch.run_scripts`, ``lua/steps.lua``) answer exactly as the same
calls one by one, on a standalone Redis and on a Redis Cluster (grouped by node): in
order per entity, a script error charged to its own call only (the calls after it run),
and again after the servers lost their script caches."""

from __future__ import annotations

from feedamp.config import Settings
from feedamp.feeds.batch import context, run_scripts, text
from feedamp.feeds.connection import AnyRedis
from feedamp.feeds.scripts import Scripts, argv
from redis.exceptions import ResponseError

LAYOUTS = ("standalone", "cluster")


def claims(settings: Settings, scripts: Scripts, senders: list[str]) -> list[tuple]:
    """Two gift claims per sender under a send limit of one, then a look at each claim's
    gift (another step of another slot), interleaved: 3 calls per sender."""
    ctx = context(settings)
    calls: list[tuple] = []
    for n, sender in enumerate(senders):
        for gift in (f"g{n}a", f"g{n}b"):
            calls.append((scripts.gift_claim, argv("gift_claim", ctx, gift_id=gift,
                                                   sender_id=sender, campaign_id="c",
                                                   send_limit=1)))  # fmt: skip
        calls.append((scripts.gift_known, argv("gift_known", ctx, gift_id=f"g{n}a")))
    return calls


def answer(result: object) -> str:
    """A call's answer as text, an error as its first word."""
    if isinstance(result, Exception):
        return "error " + str(result).split()[0]
    return text(result)


async def one_by_one(calls: list[tuple]) -> list[str]:
    """Each call as its own script call."""
    found = []
    for script, args in calls:
        try:
            found.append(answer(await script(args=args)))
        except ResponseError as exc:
            found.append(answer(exc))
    return found


async def test_packed_steps_answer_as_one_by_one(redis: AnyRedis, settings: Settings) -> None:
    senders = [f"s{n}" for n in range(60)]  # spread over the slots of every node
    sides = {}
    for side in ("packed", "single"):
        s = settings.with_(key_prefix=f"{settings.key_prefix}{side}:")
        # One sender's claims key holds a string: its claims fail (WRONGTYPE), alone.
        await redis.set(f"{s.key_prefix}gift_claims:{{s7}}", "not a hash")
        scripts = Scripts(redis)
        calls = claims(s, scripts, senders)
        if side == "packed":
            sides[side] = [answer(r) for r in await run_scripts(redis, calls)]
        else:
            sides[side] = await one_by_one(calls)
    assert sides["packed"] == sides["single"]
    got = sides["packed"]
    for n in range(len(senders)):
        first, second, known = got[3 * n : 3 * n + 3]
        if n == 7:
            assert first == second == "error WRONGTYPE"
        else:
            # In order per entity: the first claim takes the one send, the second is over
            # the limit.
            assert (first, second) == ("ok", "send_limit")
        assert known == ""  # no gift was committed


async def test_packed_steps_after_the_script_cache_was_flushed(
    redis: AnyRedis, settings: Settings
) -> None:
    scripts = Scripts(redis)
    calls = claims(settings, scripts, [f"u{n}" for n in range(30)])
    first = [answer(r) for r in await run_scripts(redis, calls)]
    assert first == ["ok", "send_limit", ""] * 30
    await redis.script_flush()
    # Again (idempotent): the claims taken before are found, the second still refused.
    assert [answer(r) for r in await run_scripts(redis, calls)] == first
