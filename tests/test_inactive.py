"""Inactive users (``FEEDAMP_INACTIVE_AFTER``, :mod:`feedamp.feeds.dormancy`) on a real
Redis and a real Redis Cluster: fan-out writes nothing to the feeds of a follower without
a recent read, that follower's next read shows the page an active follower with the same
followees sees (entries, order, attribution, comments, labels, For You, hidden content),
and the read marks it active so the next fan-out reaches it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from feedamp.config import Settings
from feedamp.feeds import FeedReader, FeedStore, Keys
from feedamp.feeds.connection import close, connect
from feedamp.feeds.dormancy import cutoff, interval_ms, left_out, now_ms, without_mark
from feedamp.feeds.keys import READ_FIELD
from feedamp.feeds.read_marks import ReadMarks
from feedamp.ops.verify import compare_namespaces

from .factory import Events

LAYOUTS = ("standalone", "cluster")

DAYS = 86_400
WINDOW = 14 * DAYS


def feed_keys(keys: Keys, user: str, buckets: int) -> list[str]:
    return [k(user, b) for b in range(buckets)
            for k in (keys.feed, keys.via, keys.for_you)]  # fmt: skip


async def written(redis, keys: Keys, user: str, buckets: int) -> int:
    """How many of ``user``'s feed keys exist (one EXISTS each: they may span nodes)."""
    return sum([await redis.exists(k) for k in feed_keys(keys, user, buckets)])


async def test_inactive_followers_are_skipped_and_rebuilt_by_their_next_read(
    redis, settings, uid, layout
):
    s = settings.with_(inactive_after=WINDOW,
                       caps=replace(settings.caps, frequently_forwarded_depth=2))  # fmt: skip
    store, keys = FeedStore(redis, s), Keys(s.key_prefix)
    marks = ReadMarks(redis, s)
    reader = FeedReader(redis, key_prefix=s.key_prefix, read_marks=marks)
    plain = FeedReader(redis, key_prefix=s.key_prefix)  # reads without marking
    alice, bob, carol, dave = uid("alice"), uid("bob"), uid("carol"), uid("dave")
    active, dormant, lapsed = uid("active"), uid("dormant"), uid("lapsed")
    readers = (active, dormant, lapsed)
    ev = Events()
    graph = [ev.follow(r, f) for r in readers for f in (alice, bob, carol, dave)]
    graph += [ev.hide("mute", r, carol) for r in readers]
    assert (await store.apply(graph)).failures == []
    await reader.following(active)  # a read now: active
    # a read 15 days ago: inactive, never skipped yet
    await ReadMarks(redis, s, clock=lambda: now_ms() - 15 * DAYS * 1000).on_read(lapsed, keys)
    assert await redis.hget(keys.pair(dormant), READ_FIELD) is None  # never read: inactive

    p1, p2, p3, p4 = (uid(f"p{n}") for n in range(1, 5))
    log = [
        ev.post(p1, alice, text="one"),
        ev.post(p2, alice),
        ev.post(p3, carol),  # muted: hidden from every reader
        ev.post(p4, alice),
        ev.repost(p1, alice, bob, comment="look", repost_id=uid("r1")),
        ev.repost(p1, alice, dave, via=uid("r1"), repost_id=uid("r2")),  # depth 2: labelled
        ev.repost(p2, alice, bob, repost_id=uid("r3")),
        ev.unrepost(p2, bob),
        ev.delete(p4, alice),
    ]
    applied = await store.apply(log)
    assert applied.failures == []
    # the same log with the filter off, in a namespace of its own: three readers reached
    off = FeedStore(redis, s.with_(inactive_after=0, key_prefix=f"{s.key_prefix}off:"))
    assert (await off.apply(graph)).failures == []
    assert (await off.apply(log)).deliveries == 3 * applied.deliveries == 18
    for user in (dormant, lapsed):
        assert await written(redis, keys, user, s.feed_buckets) == 0, user
    assert await written(redis, keys, active, s.feed_buckets) > 0
    assert (await redis.hget(keys.pair(lapsed), READ_FIELD)).startswith(b"-")  # skipped since

    want = (await reader.following(active, limit=100)).items
    want_fy = (await reader.for_you(active, limit=100)).items
    assert [i.post_id for i in want] == [p1, p2]
    assert want[0].reposted_by == (dave, bob) and want[0].comment is None
    if layout == "standalone":  # caps decide labels (off on the cluster layout)
        assert want[0].labels == ("forwarded_many_times",)
    assert [i.post_id for i in want_fy] == [p1]
    before = marks.rebuilt
    for user in (dormant, lapsed):
        assert (await reader.following(user, limit=100)).items == want, user
        assert (await reader.for_you(user, limit=100)).items == want_fy, user
        assert (await redis.hget(keys.pair(user), READ_FIELD)).isdigit()  # active now
    assert marks.rebuilt == before + 2

    # marked active: the next fan-out reaches them (seen without a read that could rebuild)
    p5 = uid("p5")
    assert (await store.apply([ev.post(p5, alice)])).deliveries == 3
    for user in readers:
        assert [i.post_id for i in (await plain.following(user, limit=100)).items] == [
            p5, p1, p2
        ]  # fmt: skip


async def test_a_read_writes_its_mark_at_most_once_per_interval(redis, settings, uid):
    s = settings.with_(inactive_after=WINDOW)
    keys, user = Keys(s.key_prefix), uid("reader")
    start = now_ms()
    clock = [start]
    marks = ReadMarks(redis, s, clock=lambda: clock[0])
    assert await marks.on_read(user, keys)  # never read: rebuilt (an empty feed)
    assert await redis.hget(keys.pair(user), READ_FIELD) == str(start).encode()
    clock[0] += interval_ms(WINDOW) - 1  # a read by another process within the interval
    assert not await ReadMarks(redis, s, clock=lambda: clock[0]).on_read(user, keys)
    assert await redis.hget(keys.pair(user), READ_FIELD) == str(start).encode()
    clock[0] += 1
    assert not await ReadMarks(redis, s, clock=lambda: clock[0]).on_read(user, keys)
    assert await redis.hget(keys.pair(user), READ_FIELD) == str(clock[0]).encode()


async def test_a_follower_mid_rebuild_is_delivered_to(redis, settings, uid):
    """A read that started rebuilding (``~``) counts as active: a fan-out running during
    the rebuild writes to the feed, so it is not lost."""
    s = settings.with_(inactive_after=WINDOW)
    store, keys = FeedStore(redis, s), Keys(s.key_prefix)
    ev, author, fan, post = Events(), uid("author"), uid("fan"), uid("p")
    assert (await store.apply([ev.follow(fan, author)])).failures == []
    await redis.hset(keys.pair(fan), READ_FIELD, f"~{now_ms()}")
    assert (await store.apply([ev.post(post, author)])).deliveries == 1
    page = await FeedReader(redis, key_prefix=s.key_prefix).following(fan)
    assert [i.post_id for i in page.items] == [post]


async def test_off_by_default_delivers_to_followers_who_never_read(store, reader, uid):
    ev, author, fan = Events(), uid("author"), uid("fan")
    assert store.settings.inactive_after == 0
    applied = await store.apply([ev.follow(fan, author), ev.post(uid("p"), author)])
    assert applied.deliveries == 1
    assert len((await reader.following(fan)).items) == 1
    assert await store.redis.hget(store.keys.pair(fan), READ_FIELD) is None  # reads write nothing


@pytest.mark.unit
def test_cutoff_and_what_verify_leaves_out():
    assert cutoff(0, now=10**12) == 0
    assert cutoff(WINDOW, now=10**12) == 10**12 - WINDOW * 1000
    assert interval_ms(WINDOW) == 3_600_000 and interval_ms(240) == 10_000
    names = {"feed:{a}:0", "via:{a}:1", "foryou:{b}:2", "fyvia:{b}:0", "post:{p}",
             "pair:{b}", "following:{b}"}  # fmt: skip
    assert left_out(names, {"a"}) == {"foryou:{b}:2", "fyvia:{b}:0"}
    assert without_mark({b"x": b"1|", READ_FIELD.encode(): b"5"}) == {b"x": b"1|"}


async def test_verify_compares_whole_feeds_and_leaves_out_skipped_ones(redis_server, uid):
    """``verify``'s comparison with the filter on: a live namespace whose fan-out skipped
    inactive readers against a replay that delivered to all (verify runs on a standalone
    Redis only) differs only in what it leaves out, and still catches a wrong feed."""
    redis = connect(f"redis://{redis_server.address}/0")
    try:
        tag = uid("ns").replace("-", "")
        live_settings = Settings(key_prefix=f"lv{tag}:", inactive_after=WINDOW)
        live, fresh = FeedStore(redis, live_settings), FeedStore(redis, Settings(
            key_prefix=f"fr{tag}:"))  # fmt: skip
        marks = ReadMarks(redis, live_settings)
        keys = Keys(live_settings.key_prefix)
        ev, alice, bob = Events(), uid("alice"), uid("bob")
        active, dormant, back = uid("active"), uid("dormant"), uid("back")
        # every reader is skipped at first; active and back read (rebuilt), dormant never
        first = [ev.follow(r, a) for r in (active, dormant, back) for a in (alice, bob)]
        first += [ev.post(uid("p1"), alice), ev.repost(uid("p1"), alice, bob, comment="c")]
        later = [ev.post(uid("p2"), bob)]
        assert (await live.apply(first)).failures == []  # every reader skipped
        assert await marks.on_read(active, keys)  # never read: rebuilt
        assert await marks.on_read(back, keys)
        assert (await live.apply(later)).failures == []  # reaches active and back
        assert (await fresh.apply(first)).failures == []  # the replay: filter off
        assert (await fresh.apply(later)).failures == []
        found = compare_namespaces(redis, live.keys.prefix, fresh.keys.prefix, inactive=True)
        assert (await found)[1] == []
        _, plain = await compare_namespaces(redis, live.keys.prefix, fresh.keys.prefix)
        assert {d.key.split(":")[1] for d in plain} >= {f"{{{dormant}}}", f"{{{active}}}"}
        await redis.zadd(keys.feed(back, 0), {"stray": 1})
        _, caught = await compare_namespaces(redis, live.keys.prefix, fresh.keys.prefix,
                                             inactive=True)  # fmt: skip
        assert [d.key for d in caught] == [f"feed:{{{back}}}:0"]
    finally:
        await close(redis)
