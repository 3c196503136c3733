"""Pulled authors (feeds/pull.py) against a real Redis and a real Redis Cluster: a pulled
author's posts and reposts are not delivered, and every page a reader sees (items, order,
cursors, attribution, comments, labels, hiding) equals the page of a push-only store fed
the same events, whatever the arrival order and wherever the author crossed the
threshold."""

from __future__ import annotations

import random
from dataclasses import replace

from feedamp.config import Settings
from feedamp.feeds import FeedReader, FeedStore
from feedamp.feeds.accounts import AccountStore
from feedamp.feeds.batch import text
from feedamp.feeds.entries import Entry
from feedamp.feeds.pull import (
    following_pulled,
    for_you_score,
    load_pulled,
    merged_rows,
    pulled_followees,
    pulled_followers,
)
from feedamp.models.events import Account, Event
from feedamp.ops.verify import compare_namespaces, settle_pulled

from .factory import Events
from .test_log_order import USERS, arrival, story

LAYOUTS = ("standalone", "cluster")


class Pair:
    """A store pulling authors above ``above`` followers and a push-only reference store
    in another namespace of the same Redis, fed the same events."""

    def __init__(self, redis, settings: Settings, above: int, tag: str = "") -> None:
        pulling = replace(settings, key_prefix=f"{settings.key_prefix}pull{tag}:",
                          fanout_pull_above=above)  # fmt: skip
        pushing = replace(settings, key_prefix=f"{settings.key_prefix}push{tag}:")
        self.redis = redis
        self.stores = (FeedStore(redis, pulling), FeedStore(redis, pushing))
        self.accounts = (AccountStore(redis, pulling), AccountStore(redis, pushing))
        self.readers = tuple(FeedReader(redis, key_prefix=s.key_prefix) for s in
                             (pulling, pushing))  # fmt: skip
        self.deliveries = [0, 0]

    async def apply(self, *events: Event) -> None:
        for n in (0, 1):
            for e in events:
                if isinstance(e, Account):
                    result = await self.accounts[n].apply([e])
                else:
                    result = await self.stores[n].apply([e])
                    self.deliveries[n] += result.deliveries
                assert result.failures == [], (e, result.failures)

    async def pages(self, n: int, user: str, size: int, for_you: bool = False) -> list:
        """Every page of ``user``'s feed, ``size`` items a page, as (items, cursor)."""
        reader = self.readers[n]
        read = reader.for_you if for_you else reader.following
        out, cursor = [], None
        while True:
            page = await read(user, limit=size, cursor=cursor)
            out.append((page.items, page.next_cursor))
            if page.next_cursor is None or len(out) > 50:
                return out
            cursor = page.next_cursor

    async def same(self, users, sizes=(1, 3, 100)) -> None:
        """Every page of every user's feeds is the reference's."""
        for user in users:
            for for_you in (False, True):
                for size in sizes:
                    got = await self.pages(0, user, size, for_you)
                    want = await self.pages(1, user, size, for_you)
                    assert got == want, (user, for_you, size)

    async def feed(self, user: str) -> list[tuple[str, tuple[str, ...]]]:
        items = (await self.readers[0].following(user, limit=100)).items
        return [(i.post_id, i.reposted_by) for i in items]


async def test_pulled_posts_and_reposts_read_as_pushed(redis, settings, uid):
    pair = Pair(redis, settings, above=2)
    ev = Events()
    star, bob, fans = uid("star"), uid("bob"), [uid(f"fan{i}") for i in range(4)]
    late = uid("late")
    await pair.apply(*(ev.follow(f, star) for f in fans), ev.follow(fans[0], bob),
                     ev.follow(fans[1], bob), ev.follow(bob, star))  # fmt: skip
    s1, b1 = uid("s1"), uid("b1")
    await pair.apply(ev.post(s1, star, text="hi"), ev.post(b1, bob))
    assert pair.deliveries == [2, 7]  # bob's post pushed, star's pulled
    await pair.apply(ev.repost(b1, bob, star, comment="look"), ev.repost(s1, star, bob))
    assert await pair.feed(fans[0]) == [(s1, (bob,)), (b1, (star,))]
    assert await pair.feed(fans[2]) == [(b1, (star,)), (s1, ())]
    assert await pair.feed(bob) == [(s1, ())]  # never bob's own post, reposted by star
    # a follower who follows after the post sees it, at its time
    await pair.apply(ev.follow(late, star))
    assert [p for p, _ in await pair.feed(late)] == [b1, s1]
    # merged when read: the pulling store's follow backfilled nothing of the pulled
    # author (its post, its repost), the push-only store's both
    for store, want in zip(pair.stores, (set(), {s1, b1}), strict=True):
        held = {text(p) for b in range(settings.feed_buckets)
                for p in await redis.zrange(store.keys.feed(late, b), 0, -1)}  # fmt: skip
        assert held == want
    await pair.same([*fans, star, bob, late])
    keys = pair.stores[0].keys
    assert await redis.smembers(keys.pulled()) == {star.encode()}
    assert await pulled_followers(redis, keys, [*fans, bob, star]) == {*fans, bob}


async def test_blocks_mutes_deletions_and_suspensions_hide_pulled_items(redis, settings, uid):
    pair = Pair(redis, settings, above=2)
    ev = Events()
    star, other = uid("star"), uid("other")
    blocker, muter, blocked, fan = uid("blocker"), uid("muter"), uid("blocked"), uid("fan")
    users = [blocker, muter, blocked, fan]
    await pair.apply(*(ev.follow(u, star) for u in users), ev.follow(fan, other),
                     ev.follow(muter, other))  # fmt: skip
    early, gone, o1 = uid("early"), uid("gone"), uid("o1")
    await pair.apply(ev.post(early, star), ev.post(gone, star), ev.post(o1, other))
    await pair.apply(ev.hide("block", blocker, star), ev.hide("block", star, blocked),
                     ev.hide("mute", muter, star))  # fmt: skip
    later = uid("later")
    await pair.apply(ev.post(later, star), ev.repost(o1, other, star), ev.delete(gone, star))
    assert await pair.feed(blocker) == []
    assert await pair.feed(blocked) == []
    assert await pair.feed(muter) == [(o1, ())]  # other's post, not star's repost of it
    assert [p for p, _ in await pair.feed(fan)] == [o1, later, early]
    # an unmute lets through what comes after it only
    await pair.apply(ev.hide("unmute", muter, star))
    after = uid("after")
    await pair.apply(ev.post(after, star))
    assert [p for p, _ in await pair.feed(muter)] == [after, o1]
    await pair.same([*users, star, other])
    # a suspension hides the pulled author's items at read time
    await pair.apply(Account(**ev._base(None), user_id=star, action="label", label="bot"))
    assert (await pair.readers[0].following(fan)).items[0].labels == ("bot",)
    await pair.same([fan])
    await redis.hset(pair.stores[0].keys.account(star), "susp", ev.ts + 1)
    await redis.hset(pair.stores[1].keys.account(star), "susp", ev.ts + 1)
    assert await pair.feed(fan) == [(o1, ())]
    await pair.same(users)


async def test_an_author_crossing_the_threshold_keeps_feeds_consistent(redis, settings, uid):
    """Pushed while below, pulled once above, still pulled after falling below (sticky):
    the same pages throughout, for old and new followers, with every cursor."""
    pair = Pair(redis, settings, above=2)
    ev = Events()
    author, fans = uid("author"), [uid(f"f{i}") for i in range(5)]
    posts = [uid(f"p{i}") for i in range(6)]
    await pair.apply(ev.follow(fans[0], author), ev.post(posts[0], author),
                     ev.post(posts[1], author))  # fmt: skip
    await pair.same(fans[:1])
    await pair.apply(*(ev.follow(f, author) for f in fans[1:3]), ev.post(posts[2], author))
    await pair.same(fans)
    await pair.apply(ev.unfollow(fans[1], author), ev.unfollow(fans[2], author),
                     ev.post(posts[3], author), ev.follow(fans[3], author),
                     ev.repost(posts[0], author, author + "x"),
                     ev.post(posts[4], author), ev.follow(fans[4], author))  # fmt: skip
    assert [p for p, _ in await pair.feed(fans[0])] == posts[4::-1]
    assert [p for p, _ in await pair.feed(fans[4])] == posts[4::-1]
    assert await pair.feed(fans[1]) == []
    await pair.same(fans)


async def test_any_arrival_order_reads_as_the_push_only_log(redis, settings):
    """Random logs (tests/test_log_order.py's stories), applied in several arrival orders
    with a threshold the authors cross back and forth: every page equals a push-only
    store's applying the log in event-time order."""
    for seed in range(4):
        rng = random.Random(seed)
        log = story(rng, length=60)
        reference = Pair(redis, settings, above=1, tag=f"r{seed}")
        for e in sorted(log, key=lambda e: e.ts):
            await reference.apply(e)
        for n in range(2):
            tag = f"s{seed}a{n}"
            pulling = replace(settings, key_prefix=f"{settings.key_prefix}{tag}:",
                              fanout_pull_above=1)  # fmt: skip
            store, accounts = FeedStore(redis, pulling), AccountStore(redis, pulling)
            for e in arrival(rng, log):
                target = accounts if isinstance(e, Account) else store
                assert (await target.apply([e])).failures == []
            assert await redis.scard(store.keys.pulled()) > 0  # authors were pulled
            reader = FeedReader(redis, key_prefix=pulling.key_prefix)
            reference.readers = (reader, reference.readers[1])
            await reference.same(USERS, sizes=(2, 1000))


def _view(e: Entry) -> tuple:
    return (e.post_id, e.text, e.reposters, e.labelled)


async def whole_following(redis, reader: FeedReader, keys, user: str) -> list[tuple]:
    """``user``'s Following entries as the unbounded merge gives them: every pulled list
    read whole, every repost resolved, every bucket read to its end."""
    n, half = reader.feed_buckets, reader.for_you_half_life_ms
    followees = await pulled_followees(redis, keys, user)
    buckets = [keys.feed(user, b) for b in range(n)] + [keys.via(user, b) for b in range(n)]
    rows = reader._row_reader(buckets, ranked=False)
    whole = await load_pulled(redis, keys, user, followees, n, half)
    await whole.resolve(whole.unresolved(list(whole.entries)))
    return [_view(e) for e in await merged_rows(rows, whole, "+inf", None, 10**6, n)]


async def bounded_following(
    redis, reader: FeedReader, keys, user: str, size: int, shared: bool = False
) -> list[list[tuple]]:
    """``user``'s Following pages of ``size`` entries read bounded, walking the cursors
    to the end: each page with a reader state of its own, as a request reads it
    (``shared``: one state across the pages, as a page whose hydration dropped items
    keeps it)."""
    n, half = reader.feed_buckets, reader.for_you_half_life_ms
    followees = await pulled_followees(redis, keys, user)
    buckets = [keys.feed(user, b) for b in range(n)] + [keys.via(user, b) for b in range(n)]
    rows = reader._row_reader(buckets, ranked=False)
    state = following_pulled(redis, keys, user, followees, n, half)
    pages: list[list[tuple]] = []
    after: Entry | None = None
    while len(pages) < 1000:  # a walk that never ends fails the comparison
        bounded = state if shared else following_pulled(redis, keys, user, followees, n, half)
        top = "+inf" if after is None else after.text
        page = (await merged_rows(rows, bounded, top, after, size, n))[:size]
        pages.append([_view(e) for e in page])
        if len(page) < size:
            break
        after = page[-1]
    return pages


async def test_bounded_following_pages_are_the_whole_merge(redis, settings):
    """Following pages read the pulled lists bounded (``Pulled.read_lists`` from the
    cursor down, ``Pulled.check`` for every post read): walking the cursors to the end,
    at page sizes that make the bounds bite, gives exactly the entries (order, scores,
    attribution) of the unbounded merge, every pulled list read whole and every repost
    resolved."""
    pulled_users = merged_entries = 0
    for seed in range(18):
        rng = random.Random(100 + seed)
        log = story(rng, length=120)
        # thresholds of 1 to 3 followers: a mix of pushed entries and pulled items
        pulling = replace(settings, key_prefix=f"{settings.key_prefix}b{seed}:",
                          fanout_pull_above=1 + seed % 3)  # fmt: skip
        store, accounts = FeedStore(redis, pulling), AccountStore(redis, pulling)
        for e in arrival(rng, log):
            target = accounts if isinstance(e, Account) else store
            assert (await target.apply([e])).failures == []
        reader = FeedReader(redis, key_prefix=pulling.key_prefix)
        for user in USERS:
            if not await pulled_followees(redis, store.keys, user):
                continue
            pulled_users += 1
            expected = await whole_following(redis, reader, store.keys, user)
            merged_entries += len(expected)
            for size in (1, 2, 3, 5):
                # odd sizes keep one reader state across cursors, as a page whose
                # hydration dropped items does; even sizes start afresh each page
                pages = await bounded_following(redis, reader, store.keys, user, size,
                                                shared=bool(size % 2))  # fmt: skip
                assert [e for page in pages for e in page] == expected, (seed, user, size)
    assert pulled_users >= 6 and merged_entries >= 100


async def test_a_page_a_resolve_shortened_reads_further(redis, settings, uid):
    """A bounded page full until a resolve dropped a repost (a pulled repost of the
    reader's own post, ranking first) reads further instead of ending short: the walk
    equals the whole merge. The page of two reads two items a list first: the pulled
    author's list is full (a bound at its lowest item) and the repost with the newest
    post fill the page; the repost dropped, only the deeper read finds the second."""
    pair = Pair(redis, settings, above=1)
    ev = Events()
    star, reader_id, other = uid("star"), uid("reader"), uid("other")
    mine, posts = uid("mine"), [uid(f"s{i}") for i in range(3)]
    await pair.apply(ev.follow(reader_id, star), ev.follow(other, star),
                     ev.post(mine, reader_id), *(ev.post(p, star) for p in posts),
                     ev.repost(mine, reader_id, star))  # fmt: skip
    keys = pair.stores[0].keys
    assert await pulled_followees(redis, keys, reader_id) == [star]
    assert [p.decode() for p in await redis.zrange(keys.recent_reposts(star), 0, -1)] == [mine]
    reader = pair.readers[0]
    expected = await whole_following(redis, reader, keys, reader_id)
    # the repost of the reader's own post is merged by no page; the posts are, newest first
    assert [text(e[0]) for e in expected] == posts[::-1]
    for size in (2, 3):
        for shared in (False, True):
            pages = await bounded_following(redis, reader, keys, reader_id, size, shared)
            assert [e for page in pages for e in page] == expected, (size, shared)
            assert len(pages[0]) == min(size, len(expected))
    await pair.same([reader_id], sizes=(1, 2, 3))


async def test_a_flagged_repost_at_the_cursor_time_is_read(redis, settings, uid):
    """A pulled repost's score has a fraction (its For You and label flags) above its
    time: one at exactly the time of the cursor's entry, ranking after it (same time,
    lower post id), is on the next page, read fresh from the cursor (the bounded read
    takes the list below the next integer, not below the cursor's score)."""
    pair = Pair(redis, settings, above=1)
    ev = Events()
    star, reader_id, other, author = uid("star"), uid("reader"), uid("other"), uid("author")
    older, low, high = uid("p0"), uid("p1"), uid("p9")  # low < high: ties rank high first
    at = ev.ts + 100_000
    await pair.apply(ev.follow(reader_id, star), ev.follow(other, star),
                     ev.post(older, star, ts=at - 10), ev.post(low, author, ts=at - 5),
                     ev.post(high, star, ts=at), ev.repost(low, author, star, ts=at))  # fmt: skip
    keys = pair.stores[0].keys
    flagged = await redis.zscore(keys.recent_reposts(star), low)
    assert flagged is not None and int(flagged) == at and flagged != at  # a flag's fraction
    reader = pair.readers[0]
    expected = await whole_following(redis, reader, keys, reader_id)
    assert [(text(e[0]), text(e[1])) for e in expected] == [
        (high, str(at)), (low, str(at)), (older, str(at - 10))]  # fmt: skip
    for size in (1, 2):
        pages = await bounded_following(redis, reader, keys, reader_id, size)
        assert [e for page in pages for e in page] == expected, size
    await pair.same([reader_id], sizes=(1, 2))


def test_for_you_score_matches_lua_arithmetic():
    h = 21_600_000
    assert for_you_score([1_700_000_000_000], h) == "1700000000000"
    assert float(for_you_score([1_700_000_000_000] * 2, h)) == 1_700_000_000_000 + h


async def test_verify_compares_pulled_followers_feeds_by_pages(redis, settings, uid):
    """The keys of a namespace that pulled an author differ from a push-only one's; verify
    settles them by pages, and still reports a feed that reads differently."""
    pair = Pair(redis, settings, above=1)
    ev = Events()
    star, fans = uid("star"), [uid("a"), uid("b")]
    await pair.apply(*(ev.follow(f, star) for f in fans), ev.post(uid("p"), star))
    live, fresh = (s.keys.prefix for s in pair.stores)
    _, differences = await compare_namespaces(redis, live, fresh)
    assert {d.key.split(":")[0] for d in differences} >= {"feed", "pulled"}
    assert await settle_pulled(redis, live, fresh, differences, 8) == []
    await redis.zadd(pair.stores[0].keys.feed(fans[0], 0), {"extra": ev.ts})
    _, differences = await compare_namespaces(redis, live, fresh)
    settled = await settle_pulled(redis, live, fresh, differences, 8)
    assert [(d.key, d.kind) for d in settled] == [(f"feed:{{{fans[0]}}}", "page")]
