"""Reads, for feed services: pages of a user's Following (newest first) and For You
(highest ranked first) feeds.

Every public read resolves the active key namespace first (the pointer of
:mod:`feedamp.feeds.namespace`, or a copy of it cached for at most ``pointer_ttl``
seconds) and does all its round trips there, so a read never mixes two namespaces.

With ``FEEDAMP_INACTIVE_AFTER`` set (a reader built with ``read_marks``, or
``from_url(settings=...)``), a read of Following or For You first marks its user active
and, when fan-out skipped the user, rebuilds both feeds before reading the page
(:mod:`feedamp.feeds.read_marks`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from feedamp.config import Settings
from feedamp.feeds.shop.campaigns import Catalog, load_campaigns
from feedamp.models.decisions import FORWARDED_MANY_TIMES

from .accounts import suspended_at
from .connection import AnyRedis, connect
from .entries import Entry
from .keys import Keys
from .namespace import MAX_POINTER_TTL, Namespaces
from .pages import Page, check_limit, decode_cursor
from .pull import Pulled, ReadRows, following_pulled, load_pulled, merged_rows, pulled_followees
from .read_marks import ReadMarks
from .scripts import Scripts, argv
from .shop.product_reads import ProductReads
from .shop.reads import ShopReads

__all__ = ["FeedItem", "FeedPage", "FeedReader"]


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One feed entry.

    ``ts`` is when the entry last surfaced (the post, or its latest repost), in ms.
    ``reposted_by`` lists the reposters the reader follows, most recent first; empty for a
    post that reached the feed only because the reader follows its author.
    ``comment`` is the comment of ``reposted_by[0]``, if they wrote one.
    """

    post_id: str
    author_id: str
    ts: int
    reposted_by: tuple[str, ...] = ()
    comment: str | None = None
    labels: tuple[str, ...] = ()
    text: str | None = None
    media_url: str | None = None


#: A page of a feed (see :mod:`feedamp.feeds.pages`).
FeedPage = Page[FeedItem]


class FeedReader(ShopReads, ProductReads):
    """Reads feed views from Redis (and, from :class:`ShopReads` and
    :class:`ProductReads`, gift inboxes, order centers with their product sections and
    creator stats). Safe to share between tasks of one event loop."""

    def __init__(
        self,
        redis: AnyRedis,
        *,
        key_prefix: str = "fa:",
        feed_buckets: int = 8,
        campaigns: Catalog | str | None = None,
        pointer_ttl: float = 0.0,
        for_you_half_life_ms: int = 6 * 3_600_000,
        read_marks: ReadMarks | None = None,
    ) -> None:
        """Read with ``redis``; ``key_prefix`` and ``feed_buckets`` must match the workers'
        ``FEEDAMP_KEY_PREFIX`` and ``FEEDAMP_FEED_BUCKETS`` (``for_you_half_life_ms``
        their ``FEEDAMP_FOR_YOU_HALF_LIFE_MS``, for recommendations), ``campaigns`` (a catalog or
        the path of the campaigns file) their ``FEEDAMP_CAMPAIGNS``: it is needed only by
        :meth:`gifts_sent` to count the sends left. ``pointer_ttl`` (0 to
        :data:`~feedamp.feeds.namespace.MAX_POINTER_TTL` seconds) caches the active
        namespace; 0 resolves it at every read (one GET). ``read_marks`` (built with the
        workers' settings) marks readers active and rebuilds the feeds of inactive ones
        (:mod:`feedamp.feeds.dormancy`); None: reads write nothing."""
        if not 0 <= pointer_ttl <= MAX_POINTER_TTL:
            raise ValueError(f"pointer_ttl must be 0..{MAX_POINTER_TTL}s, got {pointer_ttl}")
        self.redis = redis
        #: Keys of the base namespace; reads use :meth:`active_keys`.
        self.keys = Keys(key_prefix)
        self.feed_buckets = feed_buckets
        self.for_you_half_life_ms = for_you_half_life_ms
        self.pointer_ttl = pointer_ttl
        self._namespaces = Namespaces(redis, key_prefix)
        self._active: tuple[float, Keys] | None = None
        self.campaigns = campaigns if isinstance(campaigns, Catalog) else load_campaigns(campaigns)
        self._scripts = Scripts(redis)
        self.read_marks = read_marks

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str = "fa:",
        feed_buckets: int = 8,
        campaigns: Catalog | str | None = None,
        max_connections: int = 32,
        pointer_ttl: float = 0.0,
        for_you_half_life_ms: int = 6 * 3_600_000,
        settings: Settings | None = None,
    ) -> FeedReader:
        """A reader with its own connections to ``url``: a blocking pool on a standalone
        Redis, a ``RedisCluster`` when ``url`` names a node of a cluster (detected).
        ``settings`` (the workers') with ``inactive_after`` set give it read marks."""
        redis = connect(url, max_connections=max_connections)
        marks = None
        if settings is not None and settings.inactive_after > 0:
            marks = ReadMarks(redis, settings)
        return cls(redis, key_prefix=key_prefix,
                   feed_buckets=feed_buckets, campaigns=campaigns,
                   pointer_ttl=pointer_ttl,
                   for_you_half_life_ms=for_you_half_life_ms, read_marks=marks)  # fmt: skip

    async def active_keys(self) -> Keys:
        """Keys of the active namespace; every public read starts here and uses them for
        all its round trips."""
        now = time.monotonic()
        if self._active is not None and now - self._active[0] < self.pointer_ttl:
            return self._active[1]
        keys = Keys(await self._namespaces.active())
        self._active = (now, keys)
        return keys

    async def close(self) -> None:
        """Close the reader's connections."""
        await self.redis.aclose()

    async def following(self, user_id: str, limit: int = 50, cursor: str | None = None) -> FeedPage:
        """A page of ``user_id``'s Following feed, newest first.

        ``cursor`` is the ``next_cursor`` of the previous page; pages stay consistent while
        new items arrive at the top. ``limit`` is 1 to 1000.
        """
        check_limit(limit)
        keys = await self.active_keys()
        await self._mark_read(user_id, keys)
        return await self._page(user_id, limit, cursor, keys, keys.feed, keys.via)

    async def for_you(self, user_id: str, limit: int = 50, cursor: str | None = None) -> FeedPage:
        """A page of ``user_id``'s For You feed, highest ranked first.

        Items have the same shape as :meth:`following`; ``ts`` is the time of the latest
        repost among ``reposted_by``. ``limit`` is 1 to 1000.
        """
        check_limit(limit)
        keys = await self.active_keys()
        await self._mark_read(user_id, keys)
        return await self._page(user_id, limit, cursor, keys, keys.for_you, keys.via, ranked=True)

    async def _mark_read(self, user_id: str, keys: Keys) -> None:
        """A read of ``user_id``: marked active, feeds rebuilt first if fan-out skipped
        them (with read marks; otherwise nothing)."""
        if self.read_marks is not None:
            await self.read_marks.on_read(user_id, keys)

    async def _page(
        self,
        user_id: str,
        limit: int,
        cursor: str | None,
        ns: Keys,
        zset_key: Callable[[str, int], str],
        via_key: Callable[[str, int], str],
        ranked: bool = False,
    ) -> FeedPage:
        check_limit(limit)
        after = _parse_cursor(cursor) if cursor else None
        buckets = range(self.feed_buckets)
        keys = [zset_key(user_id, b) for b in buckets] + [via_key(user_id, b) for b in buckets]
        items: list[FeedItem] = []

        read = self._row_reader(keys, ranked)

        # Pulled followees' recent items are merged into the page (feeds/pull.py).
        merged: Pulled | None = None
        pulled_read = False
        while True:
            want = limit - len(items)
            max_score = "+inf" if after is None else after.text
            first: list[Entry] | None = None
            if not pulled_read:
                pulled_read = True
                first, pulled = await asyncio.gather(
                    read(max_score, want), pulled_followees(self.redis, ns, user_id)
                )
                if pulled and ranked:
                    merged = await load_pulled(self.redis, ns, user_id, pulled, self.feed_buckets,
                                               self.for_you_half_life_ms, ranked)  # fmt: skip
                elif pulled:
                    merged = following_pulled(self.redis, ns, user_id, pulled, self.feed_buckets,
                                              self.for_you_half_life_ms)  # fmt: skip
            if merged is not None:
                entries = await merged_rows(read, merged, max_score, after, want,
                                            self.feed_buckets, first)  # fmt: skip
            else:
                entries = first if first is not None else await read(max_score, want)
                if after is not None:  # drop ties at or before the cursor
                    entries = [e for e in entries if e.after(after)]
                # Merge the buckets: highest first, ties by post id descending (Redis'
                # own order).
                entries.sort(key=lambda e: (e.score, e.post_id), reverse=True)
            exhausted = len(entries) < want
            items.extend(await self._hydrate(user_id, entries[:want], ranked, ns))
            if exhausted:
                return FeedPage(items, None)
            after = entries[want - 1]
            if len(items) >= limit:
                return FeedPage(items, after.cursor())

    def _row_reader(self, keys: list[str], ranked: bool) -> ReadRows:
        """Reads a feed's rows (``page.lua``) from its bucket and attribution ``keys``."""

        async def read(max_score: str, take: int) -> list[Entry]:
            rows = await self._scripts.page(
                keys=keys, args=argv("page", max_score=max_score, limit=take)
            )
            return [
                Entry(rows[i], rows[i + 1], rows[i + 2], ranked) for i in range(0, len(rows), 3)
            ]

        return read

    async def _hydrate(
        self, user_id: str, entries: list[Entry], ranked: bool, keys: Keys
    ) -> list[FeedItem]:
        """Join entries with their post records and comments; hide deleted posts and what
        suspended accounts authored or reposted; add account labels."""
        if not entries:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for e in entries:
                pid = e.post_id.decode()
                pipe.hmget(keys.post(pid), "a", "del", "text", "media")
                if e.reposters:
                    pipe.hget(keys.comments(pid), e.reposters[0])
                    if ranked:
                        pipe.zmscore(keys.reposters(pid), list(e.reposters))
            results = iter(await pipe.execute())
        rows = []
        for e in entries:
            record = next(results)
            comment = next(results) if e.reposters else None
            times = next(results) if ranked and e.reposters else None
            if record[1] is None:  # not deleted
                rows.append((e, record, comment, times))
        authors = [_str(row[1][0]) for row in rows]
        reposters = [r for row in rows for r in row[0].reposters]
        accounts = await self._accounts(user_id, authors, reposters, keys)
        items = []
        for (e, (_, _, text, media), comment, times), author in zip(rows, authors, strict=True):
            state = accounts.get(author)
            if state is not None and state.suspended:
                continue
            reposted_by = tuple(r for r in e.reposters if not accounts[r].suspended)
            if reposted_by != e.reposters:
                if not reposted_by and author not in accounts.followed:
                    continue
                comment = None
                if reposted_by:
                    comments = keys.comments(_str(e.post_id))
                    comment = await self.redis.hget(comments, reposted_by[0])
            ts = int(e.score)
            if times is not None:
                ts = int(max((t for t in times if t is not None), default=0))
            labels: tuple[str, ...] = (FORWARDED_MANY_TIMES,) if e.labelled else ()
            if state is not None:
                labels += state.labels
            items.append(
                FeedItem(
                    post_id=e.post_id.decode(),
                    author_id=author,
                    ts=ts,
                    reposted_by=reposted_by,
                    comment=(comment.decode() if isinstance(comment, bytes) else comment) or None,
                    labels=labels,
                    text=text.decode() if text else None,
                    media_url=media.decode() if media else None,
                )
            )
        return items

    async def _accounts(
        self, user_id: str, authors: list[str], reposters: list[str], keys: Keys
    ) -> _Accounts:
        """Moderation state of every author and reposter of a page, and which authors
        ``user_id`` follows; one round trip."""
        ids = sorted(set(authors) | set(reposters))
        authors = sorted(set(authors))
        async with self.redis.pipeline(transaction=False) as pipe:
            for id_ in ids:
                pipe.hgetall(keys.account(id_))
            if authors:
                pipe.smismember(keys.following(user_id), authors)
            results = await pipe.execute()
        found = _Accounts({id_: _AccountState.of(h) for id_, h in zip(ids, results, strict=False)})
        if authors:
            found.followed = {a for a, yes in zip(authors, results[-1], strict=True) if yes}
        return found


@dataclass(slots=True)
class _AccountState:
    """What a page needs of an account: suspended now, and its labels."""

    suspended: bool = False
    labels: tuple[str, ...] = ()

    @classmethod
    def of(cls, fields: dict[bytes, bytes]) -> _AccountState:
        """From the ``account`` hash (see :meth:`Keys.account`)."""
        if not fields:
            return cls()
        susp, rein = fields.get(b"susp"), fields.get(b"rein")
        suspended = suspended_at((susp, rein), math.inf)  # at any time from now on
        labels = tuple(sorted(k.decode()[6:] for k, v in fields.items()
                              if k.startswith(b"label:") and v.startswith(b"+")))  # fmt: skip
        return cls(suspended, labels)


class _Accounts(dict[str, _AccountState]):
    """Account states by id, and the authors the reader follows."""

    followed: set[str]

    def __init__(self, states: dict[str, _AccountState]) -> None:
        super().__init__(states)
        self.followed = set()


def _str(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _parse_cursor(cursor: str) -> Entry:
    score, post_id = decode_cursor(cursor)
    return Entry(post_id.encode(), score, None)
