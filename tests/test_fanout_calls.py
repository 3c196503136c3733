"""How a fan-out's segments become delivery calls (feeds/fanout.py): follower-major groups
that give every follower each of its events once, in the segments' order, in calls of at
most ``cap`` deliveries."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest
from feedamp.feeds import fanout
from feedamp.feeds.batch import context
from feedamp.feeds.fanout import (
    EVENTS_PER_CALL,
    WINDOW_EVENTS,
    Group,
    Segment,
    _calls,
    _groups,
    call_argv,
    deliver,
)
from feedamp.feeds.keys import READ_FIELD, Keys, bucket_of
from feedamp.feeds.scripts import Scripts

from .snapshot import snapshot


def segment(n: int, followers: list[str], op: str = "repost") -> Segment:
    return Segment(op, f"p{n}", "a", 1000 + n, n % 8, followers, n, f"r{n % 3}", "f")


def delivered(calls: list[list[Group]]) -> dict[str, list[int]]:
    """Each follower's events (indexes), in the order the calls deliver them."""
    got: dict[str, list[int]] = {}
    for call in calls:
        for group in call:
            for follower in group.followers:
                got.setdefault(follower, []).extend(seg.index for seg in group.events)
    return got


def wanted(parts: list[Segment]) -> dict[str, list[int]]:
    want: dict[str, list[int]] = {}
    for seg in parts:
        for follower in seg.followers:
            want.setdefault(follower, []).append(seg.index)
    return want


@pytest.mark.parametrize("seed", range(20))
def test_every_follower_gets_its_events_once_in_order(seed):
    rng = random.Random(seed)
    people = [f"u{i}" for i in range(rng.randint(1, 300))]
    lists = [rng.sample(people, rng.randint(1, len(people))) for _ in range(rng.randint(1, 5))]
    # a source's events share its list; several sources may share followers
    parts = [segment(n, rng.choice(lists)) for n in range(rng.randint(1, 80))]
    cap = rng.choice([1, 7, 100, 2000])
    calls = _calls(parts, cap)
    assert delivered(calls) == wanted(parts)
    for call in calls:
        size = sum(len(g.events) * len(g.followers) for g in call)
        assert size <= max(cap, EVENTS_PER_CALL)
        assert all(len(g.events) <= EVENTS_PER_CALL and g.followers for g in call)


def test_one_source_repeated_is_one_group_with_shared_reads():
    followers = [f"u{i}" for i in range(1000)]
    parts = [segment(n, followers) for n in range(10)]
    assert [(len(g.events), len(g.followers)) for g in _groups(parts)] == [(10, 1000)]
    calls = _calls(parts, 2000)
    # 10 events to 200 followers a call: each follower's pair state read once per call
    assert [[(len(g.events), len(g.followers)) for g in call] for call in calls] == [
        [(10, 200)]
    ] * 5


def test_sources_sharing_followers_are_grouped_by_follower():
    # two sources with the same followers in another order: one group of both's events
    many = [f"u{i}" for i in range(100)]
    parts = [segment(n, many if n % 2 else many[::-1]) for n in range(6)]
    groups = [(sorted(g.followers), [s.index for s in g.events]) for g in _groups(parts)]
    assert groups == [(sorted(many), list(range(6)))]
    # small fan-outs that overlap: each follower visited once for all of its events
    parts = [segment(0, ["a", "b"]), segment(1, ["a", "b"]), segment(2, ["b", "c"]),
             segment(3, ["a", "b"])]  # fmt: skip
    groups = [(g.followers, [s.index for s in g.events]) for g in _groups(parts)]
    assert groups == [(["a"], [0, 1, 3]), (["b"], [0, 1, 2, 3]), (["c"], [2])]


def visits(groups: list[Group]) -> int:
    """Follower visits of the delivery calls: one per group and EVENTS_PER_CALL events."""
    return sum(len(g.followers) * -(-len(g.events) // EVENTS_PER_CALL) for g in groups)


@pytest.mark.parametrize("seed", range(3))
def test_large_fan_outs_to_overlapping_followers_share_reads_by_window(seed):
    # many sources, each with its own large follower set drawn from one pool (a replayed
    # log of large accounts): a follower is visited about once for EVENTS_PER_CALL of its
    # events, and a group's events come from one window of the parts, so a call's event
    # table stays small
    rng = random.Random(seed)
    pool = [f"u{i}" for i in range(400)]
    lists = [rng.sample(pool, 100) for _ in range(20)]
    # enough parts for several windows: each follower gets a quarter of the parts
    parts = [segment(n, rng.choice(lists)) for n in range(16 * WINDOW_EVENTS)]
    groups = _groups(parts)
    deliveries = sum(len(seg.followers) for seg in parts)
    assert visits(groups) <= deliveries / (EVENTS_PER_CALL / 2)
    assert visits(groups) < visits([Group([seg], seg.followers) for seg in parts]) / 20
    assert max(g.events[-1].index - g.events[0].index for g in groups) < len(parts) / 2
    calls = _calls(parts, 2000)
    assert delivered(calls) == wanted(parts)
    for call in calls:
        table = call_argv(call)[0]
        assert table <= len({id(seg) for g in call for seg in g.events}) < len(parts) / 2


def test_call_argv_is_the_declared_layout():
    one, two, three = segment(1, []), segment(2, [], "unpush"), segment(3, [])
    call = [Group([one, two], ["x", "y"]), Group([three, one], ["z"])]
    # the call's event table (each event once), then each group's events by number
    assert call_argv(call) == [3, "repost", "p1", "a", 1001, "r1", "f",
                               "unpush", "p2", "a", 1002, "r2", "f",
                               "repost", "p3", "a", 1003, "r0", "f",
                               2, 1, 2, 2, "x", "y", 2, 3, 1, 1, "z"]  # fmt: skip


LAYOUTS = ("standalone", "cluster")


@pytest.mark.parametrize(("cutoff", "trip"), [(0, None), (1_700_000_000_000, None), (0, 300)])
async def test_groups_write_what_one_event_per_call_writes(
    redis, settings, uid, cutoff, trip, monkeypatch
):
    """The same segments delivered in groups (each follower's pair state read once for
    its events, each bucket counted once) and one segment per ``deliver`` (no event
    shares a read or a count): the same keys, byte for byte, caps reached in small
    buckets, hidden and unfollowed pairs, withdrawals, removals and inactive followers.
    ``trip``: calls of at most that many deliveries, a round trip each, written ahead of
    the answers of the one before (many calls and round trips)."""
    if trip is not None:
        monkeypatch.setattr(fanout, "TRIP_DELIVERIES", trip)
        settings = replace(settings, fanout_chunk=trip // 3)
    rng = random.Random(5)
    small = {"feed_cap": 48, "for_you_cap": 32}  # 6 and 4 a bucket: evictions
    users = [uid(f"u{i}") for i in range(40)]
    reposters, authors = users[:4], users[4:7]
    states = ["1|", "1|", "1|", "1|5", "1|;1700000000500|", "1|;;1700000000000|1700000090000",
              "1|;;;1700000100000|", None]  # fmt: skip
    marks = ["1800000000000", "1800000000000", "~1800000000000", "1000", "-55", None]
    posts = [uid(f"p{i}") for i in range(400)]
    segments = []
    ts = 1_700_000_000_000
    # sources' follower lists, some the same followers in another order; segments come in
    # bursts from one list (one group of many events) or alternate between two orders of
    # one list (one group by follower) or between lists (a group per run)
    lists = [rng.sample(users, rng.randrange(1, len(users))) for _ in range(4)]
    lists += [lst[::-1] for lst in lists]
    order: list[list[str]] = []
    while len(order) < 300:
        if rng.random() < 0.5:
            order += [rng.choice(lists)] * rng.randrange(1, 20)
        else:
            n = rng.randrange(4)
            order += [lists[n], lists[n + 4]] * rng.randrange(1, 10)
    for n, followers in enumerate(order[:300]):
        ts += rng.randrange(0, 3000)
        post, author = rng.choice(posts), rng.choice(authors)
        kind = rng.random()
        if kind < 0.7:
            flags = rng.choice(["f", "fl", "", "l"])
            seg = Segment("repost", post, author, ts, 0, followers, n, rng.choice(reposters), flags)
        elif kind < 0.85:
            seg = Segment("post", post, author, ts, 0, followers, n)
        elif kind < 0.95:
            seg = Segment("withdraw", post, author, ts - 5000, 0, followers, n,
                          rng.choice(reposters), rng.choice(["", "d"]))  # fmt: skip
        else:
            seg = Segment("unpush", post, "", "", 0, followers, n)
        segments.append(seg)
    pairs = {u: {x: rng.choice(states) for x in reposters + authors} for u in users}
    read = {u: rng.choice(marks) for u in users}
    dumps, reached = [], []
    for one_by_one in (False, True):
        s = replace(settings, key_prefix=uid("g1:" if one_by_one else "g0:"), **small)
        ns, keys = context(s), Keys(s.key_prefix)
        for user in users:
            fields = {x: v for x, v in pairs[user].items() if v is not None}
            if read[user] is not None:
                fields[READ_FIELD] = read[user]
            if fields:
                await redis.hset(keys.pair(user), mapping=fields)
        for seg in segments:
            seg.bucket = bucket_of(seg.post_id, s.feed_buckets)
        script = Scripts(redis).deliver
        runs = [[seg] for seg in segments] if one_by_one else [segments]
        counts: dict[int, int] = {}
        for run in runs:
            done = await deliver(redis, script, [*ns, cutoff], run, keys, s.fanout_chunk)
            assert not done.errors
            for i, n in done.reached.items():
                counts[i] = counts.get(i, 0) + n
        dumps.append(await snapshot(redis, s.key_prefix))
        reached.append(counts)
    assert dumps[0] == dumps[1]
    assert reached[0] == reached[1]
    caps = {"feed": 6, "foryou": 4}
    full = [name for name, (_, members) in dumps[0].items()  # type: ignore[misc]
            if caps.get(name.split(":")[0]) == len(members)]  # fmt: skip
    assert len(full) > 50  # buckets at their caps: pushes evicted


async def zadd_calls(redis) -> int:  # type: ignore[no-untyped-def]
    """``ZADD`` calls so far on a standalone Redis (scripts' own commands included)."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_zadd", {}).get("calls", 0))


@pytest.mark.parametrize(("seed", "caps"), [(0, (480, 400)), (1, (480, 96)), (2, (160, 96))])
async def test_a_buckets_pushes_together_write_what_one_push_at_a_time_writes(
    redis, settings, uid, layout, seed, caps
):
    """A follower's posts and reposts of one bucket in a group go in together when each
    post is new to the bucket and no feed passes its cap (lib.lua, push_planned), else one
    at a time: the same keys and counts as one event per call. Bursts of fresh posts and
    reposts (For You or not, labelled or not) to followers some of whom hide an author or
    a reposter (they get part of a bucket's events), posts met again (already in a feed,
    or in the same group: a post and reposts of it, one entry), buckets filled to their
    caps, withdrawals and removals between them. caps: the Following and For You caps, 60
    and 50 a bucket, 12 a bucket For You (its cap binds first) or 20 a bucket Following
    (entries evicted)."""
    rng = random.Random(seed)
    roomy = {"feed_cap": caps[0], "for_you_cap": caps[1]}
    users = [uid(f"u{i}") for i in range(24)]
    reposters, authors = users[:4], users[4:7]
    states = ["1|"] * 6 + ["1|;1700000000500|", "1|;;;1700000100000|", None]
    fresh = (uid(f"p{i}") for i in itertools.count())
    seen: list[str] = []
    lists = [rng.sample(users, rng.randrange(8, len(users))) for _ in range(3)]
    segments: list[Segment] = []
    ts = 1_700_000_000_000
    while len(segments) < 900:
        followers = rng.choice(lists)
        burst: list[str] = []
        for _ in range(rng.randrange(1, 40)):  # a burst: one group of many events
            n = len(segments)
            ts += rng.randrange(0, 3000)
            draw = rng.random()
            if burst and draw < 0.12:  # met again in its group: one entry of its pushes
                post = rng.choice(burst)
            elif seen and draw < 0.2:
                post = rng.choice(seen)
            else:
                post = next(fresh)
            burst.append(post)
            seen.append(post)
            kind = rng.random()
            if kind < 0.75:
                flags = rng.choice(["f", "f", "fl", "", "l"])
                segments.append(Segment("repost", post, rng.choice(authors), ts, 0, followers,
                                        n, rng.choice(reposters), flags))  # fmt: skip
            elif kind < 0.95:
                segments.append(Segment("post", post, rng.choice(authors), ts, 0, followers, n))
            elif kind < 0.98:
                back = Segment("withdraw", rng.choice(seen), rng.choice(authors), ts - 5000, 0,
                               followers, n, rng.choice(reposters))  # fmt: skip
                segments.append(back)
            else:
                segments.append(Segment("unpush", rng.choice(seen), "", "", 0, followers, n))
    pairs = {u: {x: rng.choice(states) for x in reposters + authors} for u in users}
    # some posts already in a follower's bucket before: in For You only (its Following
    # entry evicted), in Following only (the author's post), or an attribution alone
    ahead = [(u, rng.choice(seen), rng.randrange(3)) for u in users for _ in range(12)]
    dumps, reached, planned, prefixes = [], [], [], []
    for one_by_one in (False, True):
        s = replace(settings, key_prefix=uid("q1:" if one_by_one else "q0:"), **roomy)
        prefixes.append(s.key_prefix)
        ns, keys = context(s), Keys(s.key_prefix)
        for user in users:
            fields = {x: v for x, v in pairs[user].items() if v is not None}
            await redis.hset(keys.pair(user), mapping=fields)
        for user, post, where in ahead:
            b = bucket_of(post, s.feed_buckets)
            if where == 0:
                await redis.zadd(keys.for_you(user, b), {post: 1_600_000_000_000})
                await redis.hset(keys.via(user, b), post, f"{reposters[0]}@1600000000000")
            elif where == 1:
                await redis.zadd(keys.feed(user, b), {post: 1_600_000_000_000})
            else:
                await redis.hset(keys.via(user, b), post, f"{reposters[1]}@1600000000000:")
        for seg in segments:
            seg.bucket = bucket_of(seg.post_id, s.feed_buckets)
        script = Scripts(redis).deliver
        before = await zadd_calls(redis) if layout == "standalone" else 0
        counts: dict[int, int] = {}
        for run in [[seg] for seg in segments] if one_by_one else [segments]:
            done = await deliver(redis, script, [*ns, 0], run, keys, s.fanout_chunk)
            assert not done.errors
            for i, n in done.reached.items():
                counts[i] = counts.get(i, 0) + n
        if layout == "standalone":
            planned.append(await zadd_calls(redis) - before)
        dumps.append(await snapshot(redis, s.key_prefix))
        reached.append(counts)
    assert dumps[0] == dumps[1]
    # to the byte: a hash keeps its fields in the order they were first written
    hashes = [name for name, (kind, _) in dumps[0].items() if kind == "hash"]  # type: ignore[misc]
    for name in hashes:
        assert await redis.dump(prefixes[0] + name) == await redis.dump(prefixes[1] + name)
    assert reached[0] == reached[1]
    if layout == "standalone":
        # grouped: pushes went in together, a ZADD for several (a feed's twelfth of a
        # burst is often one push, and one at a time it costs as many ZADD as before)
        assert planned[0] <= planned[1] - 50
    sizes = [len(members) for name, (_, members) in dumps[0].items()  # type: ignore[misc]
             if name.startswith("feed:")]  # fmt: skip
    cap = caps[0] // 8
    assert max(sizes) == cap and sum(size > min(cap - 1, 48) for size in sizes) > 10
