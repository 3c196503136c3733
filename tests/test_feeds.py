"""The feed store and reader against a real Redis: fan-out, attribution, caps, idempotency."""

from __future__ import annotations

import pytest
from feedamp.feeds import FeedReader, FeedStore
from feedamp.feeds.keys import bucket_of

from .factory import Events
from .snapshot import snapshot

LAYOUTS = ("standalone", "cluster")


async def entries(reader: FeedReader, user: str, limit: int = 1000) -> list[tuple[str, tuple]]:
    page = await reader.following(user, limit=limit)
    return [(item.post_id, item.reposted_by) for item in page.items]


async def apply(store: FeedStore, *events) -> None:
    result = await store.apply(list(events))
    assert result.failures == []


async def test_post_reaches_followers_not_author_nor_strangers(store, reader):
    ev = Events()
    await apply(store, ev.follow("bob", "alice"), ev.follow("carol", "alice"),
                ev.post("p1", "alice", text="clip"))  # fmt: skip
    for user in ("bob", "carol"):
        page = await reader.following(user)
        assert [(i.post_id, i.author_id, i.ts, i.text) for i in page.items] == [
            ("p1", "alice", ev.ts, "clip")
        ]
        assert page.items[0].reposted_by == () and page.next_cursor is None
    assert await entries(reader, "alice") == []
    assert await entries(reader, "dave") == []


async def test_repost_delivers_to_reposters_followers_with_attribution(store, reader):
    ev = Events()
    await apply(store, ev.follow("carol", "bob"), ev.post("p1", "alice"),
                ev.repost("p1", "alice", "bob", comment="must watch"))  # fmt: skip
    page = await reader.following("carol")
    (item,) = page.items
    assert (item.post_id, item.author_id, item.reposted_by, item.comment) == (
        "p1", "alice", ("bob",), "must watch",
    )  # fmt: skip
    assert item.ts == ev.ts  # surfaced at repost time


async def test_one_entry_per_post_with_all_reposters_most_recent_first(store, reader):
    ev = Events()
    await apply(store, ev.follow("dave", "bob"), ev.follow("dave", "carol"),
                ev.follow("dave", "erin"), ev.post("p1", "alice"),
                ev.repost("p1", "alice", "bob", comment="first"),
                ev.repost("p1", "alice", "carol"),
                ev.repost("p1", "alice", "erin", comment="third"))  # fmt: skip
    (item,) = (await reader.following("dave")).items
    assert item.reposted_by == ("erin", "carol", "bob")
    assert item.comment == "third"
    assert item.ts == ev.ts


async def test_reposters_whose_ids_hold_at_signs_and_digits_keep_their_ids(store, reader):
    """An attribution item is ``<id>@<time>``, and an id may hold ``@`` followed by digits:
    the time is what follows the last ``@`` (lib.lua, parse), through merges and a
    withdrawal."""
    ev = Events()
    odd = ["b@1", "c@12@3", "d@"]
    await apply(store, *(ev.follow("dave", r) for r in odd), ev.post("p1", "alice"),
                *(ev.repost("p1", "alice", r) for r in odd))  # fmt: skip
    assert await entries(reader, "dave") == [("p1", ("d@", "c@12@3", "b@1"))]
    await apply(store, ev.unrepost("p1", "c@12@3"))
    assert await entries(reader, "dave") == [("p1", ("d@", "b@1"))]
    assert [item.reposted_by for item in (await reader.for_you("dave")).items] == [("d@", "b@1")]


async def test_repost_never_lands_in_the_authors_own_feed(store, reader):
    ev = Events()
    await apply(store, ev.follow("alice", "bob"), ev.post("p1", "alice"),
                ev.repost("p1", "alice", "bob"))  # fmt: skip
    assert await entries(reader, "alice") == []


async def test_unrepost_withdraws_attribution_and_lone_entries(store, reader):
    ev = Events()
    await apply(
        store,
        ev.follow("dave", "bob"), ev.follow("dave", "carol"),  # dave: reposts only
        ev.follow("erin", "alice"), ev.follow("erin", "bob"),  # erin: also follows author
        ev.post("p1", "alice"),
        ev.repost("p1", "alice", "bob"), ev.repost("p1", "alice", "carol"),
    )  # fmt: skip
    await apply(store, ev.unrepost("p1", "carol"))
    assert await entries(reader, "dave") == [("p1", ("bob",))]
    await apply(store, ev.unrepost("p1", "bob"))
    assert await entries(reader, "dave") == []  # bob was the only reason left
    assert await entries(reader, "erin") == [("p1", ())]  # still follows alice


async def test_delete_post_removes_it_from_every_feed(store, reader, redis, settings):
    ev = Events()
    await apply(store, ev.follow("bob", "alice"), ev.follow("carol", "bob"),
                ev.follow("dave", "carol"), ev.post("p1", "alice"), ev.post("p2", "alice"),
                ev.repost("p1", "alice", "bob"), ev.repost("p1", "alice", "carol"))  # fmt: skip
    await apply(store, ev.delete("p1", "alice"))
    assert await entries(reader, "bob") == [("p2", ())]
    assert await entries(reader, "carol") == []
    assert await entries(reader, "dave") == []
    keys = store.keys
    assert await redis.zscore(keys.recent_posts("alice"), "p1") is None
    assert await redis.zscore(keys.recent_reposts("bob"), "p1") is None
    assert not await redis.exists(keys.reposters("p1"))
    # A repost of a deleted post, handled late (another topic), delivers nothing.
    await apply(store, ev.repost("p1", "alice", "bob"))
    assert await entries(reader, "carol") == []


async def test_reader_hides_a_deleted_post_before_cleanup_finishes(store, reader, redis):
    ev = Events()
    await apply(store, ev.follow("bob", "alice"), ev.post("p1", "alice"), ev.post("p2", "alice"))
    await redis.hset(store.keys.post("p2"), "del", ev.ts)  # tombstone only, entries remain
    assert await redis.zscore(store.keys.feed("bob", bucket_of("p2", 8)), "p2") is not None
    assert await entries(reader, "bob") == [("p1", ())]


async def test_follow_backfills_recent_posts_and_reposts(store, reader):
    ev = Events()
    await apply(store, ev.post("p1", "alice"), ev.post("p2", "zed"),
                ev.repost("p2", "zed", "alice"), ev.post("p3", "bob"))  # fmt: skip
    await apply(store, ev.follow("carol", "alice"))
    assert await entries(reader, "carol") == [("p2", ("alice",)), ("p1", ())]


async def test_follow_backfill_is_bounded_by_recent_per_author(redis, settings, uid):
    store = FeedStore(redis, settings.with_(recent_per_author=3))
    reader = FeedReader(redis, key_prefix=settings.key_prefix, feed_buckets=settings.feed_buckets)
    ev = Events()
    await apply(store, *[ev.post(f"p{i}", "alice") for i in range(10)])
    await apply(store, ev.follow("bob", "alice"))
    assert [p for p, _ in await entries(reader, "bob")] == ["p9", "p8", "p7"]


async def test_unfollow_removes_followees_posts_and_attributions(store, reader):
    ev = Events()
    await apply(
        store,
        ev.follow("dave", "alice"), ev.follow("dave", "bob"), ev.follow("dave", "carol"),
        ev.post("p1", "alice"), ev.post("p2", "alice"), ev.post("p3", "zed"), ev.post("p4", "zed"),
        ev.repost("p3", "zed", "alice"),  # only alice reposted p3
        ev.repost("p4", "zed", "alice"), ev.repost("p4", "zed", "carol"),  # p4: alice and carol
        ev.repost("p1", "alice", "bob"),  # p1: alice's own post, also reposted by bob
    )  # fmt: skip
    await apply(store, ev.unfollow("dave", "alice"))
    assert await entries(reader, "dave") == [("p1", ("bob",)), ("p4", ("carol",))]
    # alice's later posts no longer reach dave
    await apply(store, ev.post("p5", "alice"))
    assert "p5" not in [p for p, _ in await entries(reader, "dave")]


async def test_feed_is_ordered_by_event_time_whatever_the_arrival_order(store, reader):
    ev = Events()
    await apply(store, ev.follow("bob", "alice"))
    t = ev.ts
    late, early = ev.post("late", "alice", ts=t + 3000), ev.post("early", "alice", ts=t + 1000)
    await apply(store, late, early, ev.post("middle", "alice", ts=t + 2000))
    assert [p for p, _ in await entries(reader, "bob")] == ["late", "middle", "early"]


async def test_feed_keeps_the_newest_cap_entries(redis, settings):
    settings = settings.with_(feed_cap=5, for_you_cap=5, feed_buckets=1)
    store = FeedStore(redis, settings)
    reader = FeedReader(redis, key_prefix=settings.key_prefix, feed_buckets=1)
    ev = Events(step_ms=60_000)  # carol's reposts stay under the rate cap
    await apply(store, ev.follow("bob", "alice"), ev.follow("bob", "carol"))
    events = []
    for i in range(12):
        events.append(ev.post(f"p{i}", "alice"))
        events.append(ev.repost(f"p{i}", "alice", "carol"))
    await apply(store, *events)
    assert [p for p, _ in await entries(reader, "bob")] == ["p11", "p10", "p9", "p8", "p7"]
    # attribution of entries evicted from both feeds is cleaned with them
    assert sorted(await redis.hkeys(store.keys.via("bob", 0))) == [
        b"p10",
        b"p11",
        b"p7",
        b"p8",
        b"p9",
    ]
    # an old post arriving late does not push out newer ones
    await apply(store, ev.post("ancient", "alice", ts=1))
    assert [p for p, _ in await entries(reader, "bob")] == ["p11", "p10", "p9", "p8", "p7"]


async def test_bucketed_feed_keeps_at_most_cap_entries_newest_per_bucket(redis, settings):
    settings = settings.with_(feed_cap=80, feed_buckets=8)
    store = FeedStore(redis, settings)
    reader = FeedReader(redis, key_prefix=settings.key_prefix, feed_buckets=8)
    ev = Events()
    await apply(store, ev.follow("bob", "alice"))
    posts = [ev.post(f"p{i}", "alice") for i in range(400)]
    await apply(store, *posts)
    kept = [p for p, _ in await entries(reader, "bob")]
    assert 60 <= len(kept) <= 80
    # each bucket holds exactly the newest 10 posts of its hash class
    by_bucket: dict[int, list[str]] = {}
    for post in reversed(posts):
        by_bucket.setdefault(bucket_of(post.post_id, 8), []).append(post.post_id)
    expected = sorted((p for ids in by_bucket.values() for p in ids[:10]),
                      key=lambda p: -int(p[1:]))  # fmt: skip
    assert kept == expected
    for b in range(8):
        assert await redis.zcard(store.keys.feed("bob", b)) <= 10
        assert (await redis.object("encoding", store.keys.feed("bob", b))) == b"listpack"
    # the newest posts are always there: the newest 40 of 400 here
    assert kept[:40] == [f"p{i}" for i in range(399, 359, -1)]


async def test_chunked_fanout_reaches_every_follower_and_keeps_order(redis, settings):
    store = FeedStore(redis, settings.with_(fanout_chunk=7))
    reader = FeedReader(redis, key_prefix=settings.key_prefix, feed_buckets=settings.feed_buckets)
    ev = Events()
    followers = [f"f{i}" for i in range(300)]
    await apply(store, *[ev.follow(f, "bob") for f in followers])
    # repost then unrepost in one batch: the unrepost must win everywhere even though the
    # repost needs many chunks.
    await apply(store, ev.post("p1", "alice"), ev.repost("p1", "alice", "bob"),
                ev.post("p2", "alice"), ev.repost("p2", "alice", "bob"),
                ev.unrepost("p1", "bob"))  # fmt: skip
    for f in followers:
        assert await entries(reader, f) == [("p2", ("bob",))], f


async def test_replaying_the_same_events_changes_nothing(store, redis, settings):
    ev = Events()
    log = [
        ev.follow("bob", "alice"), ev.follow("carol", "bob"), ev.follow("dave", "carol"),
        ev.post("p1", "alice"), ev.post("p2", "alice"), ev.repost("p1", "alice", "bob", "hey"),
        ev.repost("p1", "alice", "carol"), ev.repost("p2", "alice", "carol"),
        ev.unrepost("p2", "carol"), ev.delete("p2", "alice"), ev.follow("erin", "carol"),
        ev.unfollow("carol", "bob"),
    ]  # fmt: skip
    await apply(store, *log)
    first = await snapshot(redis, settings.key_prefix)
    assert first  # something was written
    await apply(store, *log)  # whole log redelivered
    assert await snapshot(redis, settings.key_prefix) == first
    for event in log:  # each event redelivered on its own
        await apply(store, event)
    assert await snapshot(redis, settings.key_prefix) == first


async def test_replay_into_a_fresh_namespace_gives_the_same_state(redis, settings):
    ev = Events()
    log = [ev.follow("bob", "alice"), ev.post("p1", "alice"), ev.follow("carol", "bob"),
           ev.repost("p1", "alice", "bob"), ev.post("p2", "alice")]  # fmt: skip
    one, two = settings, settings.with_(key_prefix="replay-" + settings.key_prefix)
    await apply(FeedStore(redis, one), *log)
    for event in log:  # one event per batch this time
        await apply(FeedStore(redis, two), event)
    live = await snapshot(redis, one.key_prefix)
    assert live and await snapshot(redis, two.key_prefix) == live


async def test_pages_are_stable_while_new_items_arrive(store, reader):
    ev = Events()
    await apply(store, ev.follow("bob", "alice"))
    t = ev.ts
    # 7 posts, three of them sharing one timestamp (ties are ordered by post id)
    posts = [("a", t + 1), ("b", t + 2), ("c", t + 3), ("d", t + 3), ("e", t + 3), ("f", t + 4),
             ("g", t + 5)]  # fmt: skip
    await apply(store, *[ev.post(p, "alice", ts=ts) for p, ts in posts])
    first = await reader.following("bob", limit=3)
    assert [i.post_id for i in first.items] == ["g", "f", "e"]
    await apply(store, ev.post("new", "alice", ts=t + 10))  # arrives between page reads
    second = await reader.following("bob", limit=3, cursor=first.next_cursor)
    assert [i.post_id for i in second.items] == ["d", "c", "b"]
    third = await reader.following("bob", limit=3, cursor=second.next_cursor)
    assert [i.post_id for i in third.items] == ["a"]
    assert third.next_cursor is None


async def test_page_skips_deleted_posts_and_still_fills_up(store, reader, redis):
    ev = Events()
    await apply(store, ev.follow("bob", "alice"), *[ev.post(f"p{i}", "alice") for i in range(6)])
    for gone in ("p5", "p4", "p2"):
        await redis.hset(store.keys.post(gone), "del", 1)
    page = await reader.following("bob", limit=2)
    assert [i.post_id for i in page.items] == ["p3", "p1"]
    rest = await reader.following("bob", limit=2, cursor=page.next_cursor)
    assert [i.post_id for i in rest.items] == ["p0"] and rest.next_cursor is None


@pytest.mark.parametrize("limit", [0, 1001])
async def test_limit_out_of_range_is_refused(reader, limit):
    with pytest.raises(ValueError, match="limit"):
        await reader.following("bob", limit=limit)


async def test_bad_cursor_is_refused(reader):
    with pytest.raises(ValueError, match="invalid cursor"):
        await reader.following("bob", cursor="garbage")


async def test_rebuild_feed_regenerates_a_lost_feed(store, reader, redis):
    ev = Events()
    await apply(store, ev.follow("fan", "alice"), ev.follow("fan", "bob"), ev.post("p1", "alice"),
                ev.repost("p2", "zed", "bob"), ev.post("p3", "alice"))  # fmt: skip
    following = (await reader.following("fan")).items
    for_you = (await reader.for_you("fan")).items
    assert following and for_you
    keys = [k async for k in redis.scan_iter(match=store.keys.prefix + "*{fan}:*")]
    await redis.delete(*keys)  # the feed is lost
    assert (await reader.following("fan")).items == []
    assert await store.rebuild_feed("fan") == 2
    assert (await reader.following("fan")).items == following
    assert (await reader.for_you("fan")).items == for_you
