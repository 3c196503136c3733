"""Views are a function of the log, not of arrival order.

Graph events (follow, block, mute and their undos) and account labels may arrive in any
order; feed events arrive as the worker applies them behind the event-time watermark:
reposts and unreposts in event-time order, posts before the reposts that come after
them. Whatever the order, the namespace's keys are byte-identical to applying the log in
event-time order. The edge cases of issue-sized behaviours (withdrawals re-placing
entries, blocks protecting both sides) are tested one by one below.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import replace

import pytest
from feedamp.config import Settings
from feedamp.feeds import FeedReader, FeedStore
from feedamp.feeds.accounts import AccountStore
from feedamp.models.events import Account, Event, Post, Repost
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from redis.asyncio import Redis

from .factory import Events
from .snapshot import snapshot

USERS = [f"u{i}" for i in range(6)]
FEED_TYPES = (Post, Repost)
LAYOUTS = ("standalone", "cluster")


def story(rng: random.Random, length: int = 50) -> list[Event]:
    """A random log of feed, graph and label events, one second apart."""
    ev = Events(start_ms=1_700_000_000_000 + rng.randrange(10**6))
    posts: dict[str, str] = {}  # post -> author
    deleted: set[str] = set()
    reposts: dict[tuple[str, str], str] = {}  # (post, reposter) -> repost id
    withdrawn: set[tuple[str, str]] = set()
    out: list[Event] = []
    for _ in range(length):
        kind = rng.choices(
            ["post", "repost", "unrepost", "delete", "follow", "unfollow", "hide", "label"],
            weights=[5, 8, 2, 1, 8, 3, 3, 1],
        )[0]
        a, b = rng.sample(USERS, 2)
        live = [p for p in posts if p not in deleted]
        if kind == "post" or (kind in ("repost", "delete") and not live):
            pid = f"p{len(posts)}"
            posts[pid] = a
            visibility = rng.choice(["public", "public", "followers"])
            out.append(ev.post(pid, a, visibility=visibility))
        elif kind == "repost":
            pid = rng.choice(live)
            author = posts[pid]
            reposter = rng.choice([u for u in USERS if u != author])
            if (pid, reposter) in reposts:
                continue
            earlier = [r for (p, _), r in reposts.items() if p == pid]
            via = rng.choice(earlier) if earlier and rng.random() < 0.6 else None
            rid = reposts[(pid, reposter)] = f"r-{pid}-{reposter}"
            comment = rng.choice([None, f"c-{reposter}"])
            out.append(ev.repost(pid, author, reposter, comment=comment, via=via, repost_id=rid))
        elif kind == "unrepost":
            left = [k for k in reposts if k not in withdrawn]
            if not left:
                continue
            pid, reposter = rng.choice(left)
            withdrawn.add((pid, reposter))
            out.append(ev.unrepost(pid, reposter))
        elif kind == "delete":
            pid = rng.choice(live)
            deleted.add(pid)
            out.append(ev.delete(pid, posts[pid]))
        elif kind in ("follow", "unfollow", "hide"):
            out.append(ev.graph(kind, a, b, rng))
        else:
            out.append(ev.account(a, rng.choice(["label", "unlabel"]), label="bot"))
    return out


def arrival(rng: random.Random, log: list[Event]) -> list[Event]:
    """One arrival order the worker can see: feed events in event-time order, but posts
    moved earlier at random; graph and account events anywhere."""
    feed = [e for e in log if _is_feed(e)]
    side = [e for e in log if not _is_feed(e)]
    for i in range(len(feed)):
        if isinstance(feed[i], Post) and rng.random() < 0.5:
            post = feed.pop(i)
            feed.insert(rng.randrange(0, i + 1), post)
    out = list(feed)
    for e in side:
        out.insert(rng.randrange(0, len(out) + 1), e)
    return out


def _is_feed(event: Event) -> bool:
    return not isinstance(event, Account) and event.type in (
        "post", "repost", "unrepost", "delete_post",
    )  # fmt: skip


async def apply_each(redis: Redis, settings: Settings, events: list[Event]) -> None:
    """Apply events one at a time, as separate batches."""
    feeds, accounts = FeedStore(redis, settings), AccountStore(redis, settings)
    for e in events:
        store = accounts if isinstance(e, Account) else feeds
        result = await store.apply([e])
        assert result.failures == [], (e, result.failures)


async def _compare(address: str, seed: int) -> None:
    rng = random.Random(seed)
    log = story(rng)
    redis = Redis.from_url(f"redis://{address}/0")
    try:
        tag = uuid.uuid4().hex[:8]
        reference = Settings(key_prefix=f"ref{tag}:")
        await apply_each(redis, reference, sorted(log, key=lambda e: e.ts))
        expected = await snapshot(redis, reference.key_prefix)
        for n in range(3):
            shuffled = replace(reference, key_prefix=f"arr{tag}{n}:")
            await apply_each(redis, shuffled, arrival(rng, log))
            got = await snapshot(redis, shuffled.key_prefix)
            diff = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
            assert not diff, f"seed {seed}: {diff[:5]}"
        await _rebuilt_feeds_equal(redis, reference)
    finally:
        await redis.aclose()


async def _rebuilt_feeds_equal(redis: Redis, settings: Settings) -> None:
    """rebuild-feed regenerates the same Following feed as the live writes."""
    reader = FeedReader(redis, key_prefix=settings.key_prefix)
    store = FeedStore(redis, settings)
    for user in USERS:
        before = (await reader.following(user, limit=1000)).items
        await store.rebuild_feed(user)
        assert (await reader.following(user, limit=1000)).items == before, user


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_any_arrival_order_gives_identical_keys(redis_server, seed):
    asyncio.run(_compare(redis_server.address, seed))


# --- edges, one behaviour each -------------------------------------------------------


async def feed(reader: FeedReader, user: str) -> list[tuple[str, int, tuple, str | None]]:
    items = (await reader.following(user, limit=100)).items
    return [(i.post_id, i.ts, i.reposted_by, i.comment) for i in items]


async def run(store: FeedStore, *events: Event) -> None:
    for e in events:
        assert (await store.apply([e])).failures == []


async def test_unfollow_before_its_follow_in_arrival_keeps_the_later_unfollow(store, reader):
    ev = Events()
    follow, unfollow = ev.follow("bob", "alice"), ev.unfollow("bob", "alice")
    await run(store, ev.post("p1", "alice"), unfollow, follow)
    assert await feed(reader, "bob") == []
    assert not await store.redis.sismember(store.keys.following("bob"), "alice")


async def test_withdrawn_repost_falls_back_to_the_posts_own_time(store, reader):
    ev = Events()
    await run(store, ev.follow("reader", "alice"), ev.follow("reader", "bob"))
    p, q = ev.post("P", "alice"), ev.post("Q", "alice")
    await run(store, p, q, ev.repost("P", "alice", "bob", comment="look"))
    assert [e[0] for e in await feed(reader, "reader")] == ["P", "Q"]
    await run(store, ev.unrepost("P", "bob"))
    assert await feed(reader, "reader") == [("Q", q.ts, (), None), ("P", p.ts, (), None)]


@pytest.mark.parametrize("how", ["unfollow", "block", "mute"])
async def test_losing_the_reposter_re_places_the_entry(store, reader, how):
    ev = Events()
    await run(store, ev.follow("reader", "alice"), ev.follow("reader", "bob"))
    p, q = ev.post("P", "alice"), ev.post("Q", "alice")
    await run(store, p, q, ev.repost("P", "alice", "bob"))
    undo = ev.unfollow("reader", "bob") if how == "unfollow" else ev.hide(how, "reader", "bob")
    await run(store, undo)
    assert await feed(reader, "reader") == [("Q", q.ts, (), None), ("P", p.ts, (), None)]


async def test_withdrawing_the_latest_of_several_reposts_shows_the_one_before(store, reader):
    ev = Events()
    await run(store, ev.follow("reader", "bob"), ev.follow("reader", "carol"))
    first = ev.repost("P", "alice", "bob", comment="first")
    await run(store, ev.post("P", "alice"), first, ev.repost("P", "alice", "carol", comment="2nd"))
    await run(store, ev.unrepost("P", "carol"))
    assert await feed(reader, "reader") == [("P", first.ts, ("bob",), "first")]


async def test_reposters_are_ordered_by_repost_time_not_arrival(store, reader):
    ev = Events()
    a = ev.repost("P", "alice", "bob")
    b = ev.repost("P", "alice", "carol")
    await run(store, ev.post("P", "alice"), b, a)  # arrive latest first
    await run(store, ev.follow("reader", "bob"), ev.follow("reader", "carol"))
    other = replace(store.settings, key_prefix=store.settings.key_prefix + "x:")
    in_order = FeedStore(store.redis, other)
    await run(in_order, ev.follow("reader", "bob"), ev.follow("reader", "carol"))
    await run(in_order, ev.post("P", "alice"), a, b)
    reader2 = FeedReader(store.redis, key_prefix=other.key_prefix)
    assert await feed(reader, "reader") == await feed(reader2, "reader")
    assert (await feed(reader, "reader"))[0][2] == ("carol", "bob")


async def test_block_protects_the_blocker_from_the_blocked(store, reader):
    ev = Events()
    # bob follows alice and carol; carol reposts alice's post; alice reposts dave's.
    await run(store, ev.follow("bob", "alice"), ev.follow("bob", "carol"),
              ev.post("old", "alice"))  # fmt: skip
    assert [e[0] for e in await feed(reader, "bob")] == ["old"]
    await run(store, ev.hide("block", "alice", "bob"))
    assert await feed(reader, "bob") == []  # retroactive
    await run(store, ev.post("new", "alice"), ev.repost("new", "alice", "carol"),
              ev.post("d1", "dave"), ev.repost("d1", "dave", "alice"))  # fmt: skip
    assert await feed(reader, "bob") == []
    # and the blocked user's content leaves the blocker's feeds, both ways
    await run(store, ev.follow("alice", "bob"), ev.post("b1", "bob"))
    assert await feed(reader, "alice") == []


async def test_unblock_lets_later_events_through_only(store, reader):
    ev = Events()
    await run(store, ev.follow("bob", "alice"), ev.hide("block", "alice", "bob"))
    before = ev.post("before", "alice")
    unblock = ev.hide("unblock", "alice", "bob")
    after = ev.post("after", "alice")
    await run(store, unblock, after, before)  # the earlier post arrives last
    assert [e[0] for e in await feed(reader, "bob")] == ["after"]


async def test_late_block_takes_back_only_what_came_before_its_unblock(store, reader):
    ev = Events()
    await run(store, ev.follow("bob", "alice"))
    early = ev.post("early", "alice")
    block = ev.hide("block", "bob", "alice")
    unblock = ev.hide("unblock", "bob", "alice")
    late = ev.post("late", "alice")
    await run(store, early, unblock, late, block)
    assert [e[0] for e in await feed(reader, "bob")] == ["late"]


async def test_content_after_an_unblock_that_arrives_late_is_restored(store, reader):
    ev = Events()
    await run(store, ev.follow("bob", "alice"), ev.follow("bob", "carol"))
    block, unblock = ev.hide("block", "alice", "bob"), ev.hide("unblock", "alice", "bob")
    own, other = ev.post("own", "alice"), ev.repost("own", "alice", "carol")
    await run(store, block, own, other)
    assert await feed(reader, "bob") == []
    await run(store, unblock)
    assert await feed(reader, "bob") == [("own", other.ts, ("carol",), None)]
