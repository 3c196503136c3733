"""Calls of the slot-local steps packed into calls of the steps script
(:func:`feedamp.feeds.batch.run_scripts`, ``lua/steps.lua``) answer exactly as the same
calls one by one, on a standalone Redis and on a Redis Cluster (grouped by node): in
order per entity, a script error charged to its own call only (the calls after it run),
and again after the servers lost their script caches."""

from __future__ import annotations

from feedamp.config import Settings
from feedamp.feeds.batch import _units, context, run_scripts, text
from feedamp.feeds.connection import AnyRedis
from feedamp.feeds.keys import Keys
from feedamp.feeds.scripts import Scripts, argv
from redis.asyncio import Redis
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


def with_progress(settings: Settings, scripts: Scripts, senders: list[str]) -> list[tuple]:
    """:func:`claims`, with a call of a script that is not a step (``progress``, a field
    per sender) after every sender's: each ends a packed call, so that a round trip holds
    many calls of the steps script and many others."""
    ctx = context(settings)
    calls = claims(settings, scripts, senders)
    out: list[tuple] = []
    for n in range(len(senders)):
        out += calls[3 * n : 3 * n + 3]
        out.append((scripts.progress, argv("progress", ctx, f"f{n}", n)))
    return out


async def test_calls_made_as_they_are_sent_answer_as_a_list_and_one_by_one(
    redis: AnyRedis, settings: Settings
) -> None:
    # More units than one round trip takes (each sender's progress call ends a unit),
    # and more bytes than one write.
    senders = [f"m{n}" for n in range(300)]
    found = {}
    for side in ("generator", "list", "single"):
        s = settings.with_(key_prefix=f"{settings.key_prefix}{side}:")
        calls = with_progress(s, Scripts(redis), senders)
        if side == "generator":
            found[side] = [answer(r) for r in await run_scripts(redis, (c for c in calls))]
        elif side == "list":
            found[side] = [answer(r) for r in await run_scripts(redis, calls)]
        else:
            found[side] = await one_by_one(calls)
    assert found["generator"] == found["list"] == found["single"]
    assert found["generator"][:3] == ["ok", "send_limit", ""]
    assert len(found["generator"]) == 4 * len(senders)


async def test_a_call_that_cannot_be_made_leaves_the_client_answering_right(
    redis: AnyRedis, settings: Settings
) -> None:
    scripts = Scripts(redis)
    calls = claims(settings, scripts, [f"x{n}" for n in range(1500)])

    def failing():
        yield from calls  # well past one write of the round trip
        raise RuntimeError("cannot make the next call")

    try:
        await run_scripts(redis, failing())
    except RuntimeError as exc:
        assert "next call" in str(exc)
    else:
        raise AssertionError("the error of the calls' generator was swallowed")
    # Every call made was idempotent; the connections answer their own calls again (no
    # replies of the broken round trip are read as these).
    again = claims(settings, scripts, [f"x{n}" for n in range(40)] + ["fresh"])
    got = [answer(r) for r in await run_scripts(redis, again)]
    assert got[-3:] == ["ok", "send_limit", ""]
    assert set(got[: 3 * 40 : 3]) <= {"ok"} and set(got[1 : 3 * 40 : 3]) <= {"send_limit"}


def graph_calls(settings: Settings, scripts: Scripts, users: list[str]) -> list[tuple]:
    """Per user, calls of the graph steps (``lua/follow.lua``, ``lua/backfill.lua``)
    interleaved with a lean step (a gift claim), so that packed calls switch between the
    two steps scripts: a follow, a claim, an unfollow older than the follow (it loses), a
    backfill of one post, a follow of another account and a later unfollow of it."""
    ctx = context(settings)
    calls: list[tuple] = []
    for n, user in enumerate(users):
        calls += [
            (scripts.follow, argv("follow", ctx, follower_id=user, followee_id="star",
                                  ts=1000, on="1")),
            (scripts.gift_claim, argv("gift_claim", ctx, gift_id=f"g{n}", sender_id=user,
                                      campaign_id="c", send_limit=1)),
            (scripts.follow, argv("follow", ctx, follower_id=user, followee_id="star",
                                  ts=900, on="0")),
            (scripts.backfill, argv("backfill", ctx, "1", f"p{n}", "1000", "0", "0",
                                    user_id=user, target_id="star", mode="backfill")),
            (scripts.follow, argv("follow", ctx, follower_id=user, followee_id="other",
                                  ts=1000, on="1")),
            (scripts.follow, argv("follow", ctx, follower_id=user, followee_id="other",
                                  ts=2000, on="0")),
        ]  # fmt: skip
    return calls


async def feeds_of(redis: AnyRedis, settings: Settings, users: list[str]) -> list[list]:
    """Each user's Following feed (every bucket) and follows, as (member, score) pairs."""
    keys = Keys(settings.key_prefix)
    found = []
    for user in users:
        entries = []
        for b in range(settings.feed_buckets):
            entries += await redis.zrange(keys.feed(user, b), 0, -1, withscores=True)
        entries += [(m, 0.0) for m in sorted(await redis.smembers(keys.following(user)))]
        found.append(entries)
    return found


async def test_packed_graph_steps_answer_and_write_as_one_by_one(
    redis: AnyRedis, settings: Settings
) -> None:
    users = [f"v{n}" for n in range(60)]  # spread over the slots of every node
    answers, feeds = {}, {}
    for side in ("packed", "single"):
        s = settings.with_(key_prefix=f"{settings.key_prefix}{side}:")
        # One user's pair state holds a string: its graph steps fail (WRONGTYPE), alone.
        await redis.set(f"{s.key_prefix}pair:{{v7}}", "not a hash")
        calls = graph_calls(s, Scripts(redis), users)
        if side == "packed":
            answers[side] = [answer(r) for r in await run_scripts(redis, calls)]
        else:
            answers[side] = await one_by_one(calls)
        feeds[side] = await feeds_of(redis, s, users)
    assert answers["packed"] == answers["single"]
    assert feeds["packed"] == feeds["single"]
    for n in range(len(users)):
        got = answers["packed"][6 * n : 6 * n + 6]
        if n == 7:
            assert got[1] == "ok" and set(got) - {"ok"} == {"error WRONGTYPE"}
            assert feeds["packed"][n] == []
        else:
            assert got == ["1", "ok", "1", "1", "1", "0"]
            assert feeds["packed"][n] == [(f"p{n}".encode(), 1000.0), (b"star", 0.0)]


def test_graph_step_calls_are_packed_apart_from_lean_ones() -> None:
    # A run of follows' state steps goes as calls of the graph steps script, the seven
    # settings sent once in front; a lean step's calls go to the steps script.
    scripts = Scripts(Redis())
    units = list(_units(graph_calls(Settings(), scripts, ["a", "b"])))
    ctx = context(Settings())
    assert [(u.script is scripts.graph_steps, u.size) for u in units] == [
        (True, 1), (False, 1), (True, 5), (False, 1), (True, 4)]  # fmt: skip
    assert units[0].args == [*ctx, 1, 4, "a", "star", 1000, "1"]
    assert units[1].args[:3] == [ctx[0], scripts.gift_claim.step, 4]  # type: ignore[attr-defined]
    assert units[2].args[: len(ctx) + 2] == [*ctx, 1, 4]


async def test_a_step_sees_only_its_own_arguments_after_a_longer_call(
    redis: AnyRedis, settings: Settings
) -> None:
    # The loop reuses one ARGV table per step: a call with fewer arguments than the one
    # before must not see the earlier call's (order_unwait removes unpack(ARGV, 10)).
    keys, ctx, scripts = Keys(settings.key_prefix), context(settings), Scripts(redis)
    # Two waiting sets of one post: one slot, so one call on a cluster too.
    first, second = keys.awaiting_post("p1"), keys.awaiting_tags("p1")
    await redis.sadd(first, "o1", "o2", "o3")
    await redis.sadd(second, "o1", "o2", "o3", "o4")
    calls = [(scripts.order_unwait, argv("order_unwait", ctx, "o1", "o2", "o3",
                                         kind="awaiting_post", id="p1")),
             (scripts.order_unwait, argv("order_unwait", ctx, "o4", kind="awaiting_tags",
                                         id="p1"))]  # fmt: skip
    assert len(list(_units(calls))) == 1  # one call of the steps script
    assert [int(r) for r in await run_scripts(redis, calls)] == [3, 1]  # type: ignore[call-overload]
    assert await redis.smembers(first) == set()
    assert {m.decode() for m in await redis.smembers(second)} == {"o1", "o2", "o3"}
