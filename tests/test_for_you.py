"""For You feeds (ranking, shape, cap, paging) and blocks and mutes, on a real Redis."""

from __future__ import annotations

import math

from feedamp.feeds import FeedReader, FeedStore

from .factory import Events

LAYOUTS = ("standalone", "cluster")

HOUR = 3_600_000


async def apply(store: FeedStore, *events) -> None:
    assert (await store.apply(list(events))).failures == []


async def ranked(reader: FeedReader, user: str) -> list[str]:
    return [i.post_id for i in (await reader.for_you(user, limit=100)).items]


async def following(reader: FeedReader, user: str) -> list[str]:
    return [i.post_id for i in (await reader.following(user, limit=100)).items]


async def test_a_followees_repost_enters_for_you_with_the_following_item_shape(store, reader):
    ev = Events()
    await apply(store, ev.follow("fan", "bob"), ev.post("p1", "alice", text="clip"),
                ev.repost("p1", "alice", "bob", comment="wow"))  # fmt: skip
    (item,) = (await reader.for_you("fan")).items
    assert (item.post_id, item.author_id, item.reposted_by, item.comment, item.text) == (
        "p1", "alice", ("bob",), "wow", "clip",
    )  # fmt: skip
    assert item.ts == ev.ts and item.labels == ()
    # posts alone never enter For You; nor does anything reach its author
    await apply(store, ev.post("p2", "bob"), ev.follow("alice", "bob"),
                ev.repost("p1", "alice", "bob"))  # fmt: skip
    assert await ranked(reader, "fan") == ["p1"]
    assert await ranked(reader, "alice") == []


async def test_social_proof_outranks_recency_until_it_decays(store, reader, settings):
    ev = Events()
    users = ["u1", "u2", "u3"]
    await apply(store, *[ev.follow("fan", u) for u in users])
    t = ev.ts
    await apply(
        store,
        ev.repost("two", "a", "u1", ts=t), ev.repost("two", "a", "u2", ts=t),  # 2 signals at t
        ev.repost("one", "a", "u3", ts=t + HOUR),  # 1 signal an hour later
        ev.repost("late", "a", "u1", ts=t + 7 * HOUR),  # 1 signal 7 hours later
    )  # fmt: skip
    # two at t weigh as one at t + half-life (6 h): above +1 h, below +7 h
    assert await ranked(reader, "fan") == ["late", "two", "one"]
    half_life = settings.for_you_half_life_ms
    score = await store.redis.zscore(store.keys.for_you("fan", _bucket("two", settings)), "two")
    assert math.isclose(score, t + half_life, rel_tol=0, abs_tol=1e-3)


def _bucket(post: str, settings) -> int:
    from feedamp.feeds.keys import bucket_of

    return bucket_of(post, settings.feed_buckets)


async def test_score_does_not_depend_on_arrival_order(redis, settings):
    ev = Events()
    t = ev.ts
    log = [ev.follow("fan", f"u{i}") for i in range(4)]
    reposts = [ev.repost("p", "a", f"u{i}", ts=t + i * 977_123) for i in range(4)]
    one, two = settings, settings.with_(key_prefix="b-" + settings.key_prefix)
    await apply(FeedStore(redis, one), *log, *reposts)
    await apply(FeedStore(redis, two), *log, *reposts[::-1])
    b = _bucket("p", settings)
    s1 = await redis.zscore(FeedStore(redis, one).keys.for_you("fan", b), "p")
    s2 = await redis.zscore(FeedStore(redis, two).keys.for_you("fan", b), "p")
    assert s1 == s2


async def test_unrepost_reranks_and_removes_the_last_signal(store, reader):
    ev = Events()
    await apply(store, ev.follow("fan", "u1"), ev.follow("fan", "u2"))
    t = ev.ts
    await apply(store, ev.repost("a", "x", "u1", ts=t), ev.repost("a", "x", "u2", ts=t),
                ev.repost("b", "x", "u1", ts=t + HOUR))  # fmt: skip
    assert await ranked(reader, "fan") == ["a", "b"]
    await apply(store, ev.unrepost("a", "u2"))
    assert await ranked(reader, "fan") == ["b", "a"]
    await apply(store, ev.unrepost("a", "u1"))
    assert await ranked(reader, "fan") == ["b"]


async def test_for_you_is_capped_and_pages_with_a_cursor(redis, settings):
    settings = settings.with_(for_you_cap=16, feed_buckets=2)
    store = FeedStore(redis, settings)
    reader = FeedReader(redis, key_prefix=settings.key_prefix, feed_buckets=2)
    ev = Events(step_ms=60_000)
    await apply(store, ev.follow("fan", "bob"))
    await apply(store, *[ev.repost(f"p{i:02}", "a", "bob") for i in range(40)])
    kept = await ranked(reader, "fan")
    assert len(kept) <= 16 and kept == sorted(kept, reverse=True)
    assert kept[:8] == [f"p{i:02}" for i in range(39, 31, -1)]
    pages, cursor = [], None
    while True:
        page = await reader.for_you("fan", limit=5, cursor=cursor)
        pages += [i.post_id for i in page.items]
        if not (cursor := page.next_cursor):
            break
    assert pages == kept


async def test_one_attribution_list_serves_both_feeds_across_their_caps(redis, settings):
    """The via list of an entry stays while either feed holds it, and goes with the last."""
    settings = settings.with_(feed_cap=2, for_you_cap=8, feed_buckets=1)
    store = FeedStore(redis, settings)
    reader = FeedReader(redis, key_prefix=settings.key_prefix, feed_buckets=1)
    ev = Events(step_ms=60_000)
    via = store.keys.via("fan", 0)
    await apply(store, ev.follow("fan", "bob"), ev.follow("fan", "ann"))
    await apply(store, ev.repost("old", "a", "bob"), ev.post("n1", "ann"), ev.post("n2", "ann"))
    # newer posts pushed "old" out of Following; For You still holds it, attributed
    assert await following(reader, "fan") == ["n2", "n1"]
    (item,) = (await reader.for_you("fan")).items
    assert (item.post_id, item.reposted_by) == ("old", ("bob",))
    assert await redis.hkeys(via) == [b"old"]
    # a second signal re-ranks it from both reposters' times, though Following lost it
    await apply(store, ev.follow("fan", "cat"), ev.repost("old", "a", "cat"))
    (item,) = (await reader.for_you("fan")).items
    assert item.reposted_by == ("cat", "bob")
    assert await following(reader, "fan") == ["old", "n2"]
    # withdrawing every signal takes the entry and its list out of both feeds
    await apply(store, ev.unrepost("old", "cat"), ev.unrepost("old", "bob"))
    assert await ranked(reader, "fan") == [] and await following(reader, "fan") == ["n2"]
    assert await redis.hkeys(via) == []


async def test_unfollow_withdraws_for_you_signals(store, reader):
    ev = Events()
    await apply(store, ev.follow("fan", "u1"), ev.follow("fan", "u2"),
                ev.repost("a", "x", "u1"), ev.repost("a", "x", "u2"),
                ev.repost("b", "x", "u1"))  # fmt: skip
    await apply(store, ev.unfollow("fan", "u1"))
    (item,) = (await reader.for_you("fan")).items
    assert (item.post_id, item.reposted_by) == ("a", ("u2",))


async def test_follow_backfills_for_you_as_the_fanout_would_have(store, reader, redis, settings):
    ev = Events()
    await apply(store, ev.follow("early", "bob"), ev.repost("p1", "a", "bob"))
    await apply(store, ev.follow("late", "bob"))
    early = (await reader.for_you("early")).items
    assert (await reader.for_you("late")).items == early != []


async def test_block_removes_authored_and_reposted_entries_and_future_ones(store, reader):
    ev = Events()
    await apply(
        store,
        ev.follow("fan", "troll"), ev.follow("fan", "bob"), ev.follow("fan", "carol"),
        ev.post("t1", "troll"),  # authored by the troll
        ev.repost("x1", "zed", "troll"),  # only the troll reposted it
        ev.repost("x2", "zed", "troll"), ev.repost("x2", "zed", "bob"),  # bob too
        ev.post("b1", "bob"), ev.repost("t2", "troll", "carol"),  # troll's post via carol
    )  # fmt: skip
    await apply(store, ev.hide("block", "fan", "troll"))
    items = (await reader.following("fan")).items
    assert [(i.post_id, i.reposted_by) for i in items] == [("b1", ()), ("x2", ("bob",))]
    assert await ranked(reader, "fan") == ["x2"]
    assert (await reader.for_you("fan")).items[0].reposted_by == ("bob",)
    # nothing the troll posts or reposts arrives later, not even through others
    await apply(store, ev.post("t3", "troll"), ev.repost("x3", "zed", "troll"),
                ev.repost("t3", "troll", "bob"))  # fmt: skip
    assert await following(reader, "fan") == ["b1", "x2"]


async def test_mute_then_unmute_ends_hiding_for_new_events_only(store, reader):
    ev = Events()
    await apply(store, ev.follow("fan", "bob"), ev.post("old", "bob"))
    await apply(store, ev.hide("mute", "fan", "bob"))
    assert await following(reader, "fan") == []
    await apply(store, ev.post("muted", "bob"))
    await apply(store, ev.hide("unmute", "fan", "bob"))
    await apply(store, ev.post("new", "bob"))
    assert await following(reader, "fan") == ["new"]


async def test_following_a_hidden_account_backfills_nothing(store, reader):
    ev = Events()
    await apply(store, ev.post("p", "bob"), ev.repost("q", "zed", "carol"))
    await apply(store, ev.hide("block", "fan", "bob"), ev.hide("mute", "fan", "zed"))
    await apply(store, ev.follow("fan", "bob"), ev.follow("fan", "carol"))
    assert await following(reader, "fan") == []


async def test_a_much_blocked_account_still_skips_every_blocker(store, reader):
    """Past 512 blockers the fan-out asks the blocked_by set per follower instead of
    loading it: the result must be the same."""
    ev = Events()
    fans = [f"fan{n}" for n in range(700)]
    await apply(store, *(ev.follow(f, "troll") for f in fans), ev.follow("zed", "bob"))
    await apply(store, *(ev.hide("block", f, "troll") for f in fans[:600]))
    await apply(store, ev.post("t1", "troll"), ev.repost("t1", "troll", "bob"))
    assert await following(reader, "fan599") == []
    assert await following(reader, "fan600") == ["t1"]
    assert await following(reader, "zed") == ["t1"]  # via bob: the author hides nothing here
    reached = [f for f in fans if await following(reader, f)]
    assert reached == fans[600:]
