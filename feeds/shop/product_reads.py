"""Reads of the Order Center's product sections: Looked at, Tagged in clips you saw,
Recommended, and the whole Order Center in one call.

:class:`ProductReads` is mixed into :class:`~feedamp.feeds.reader.FeedReader`.

- **Looked at** reads ``viewed:{user}`` (written by ``view.lua``): newest view first.
- **Tagged in clips you saw** is derived at read time from the user's Following feed and
  each post's ``products:{post}``: the feed page already hides deleted posts, suspended
  accounts, blocked and muted ones and unfollowed authors, so the tags follow without a
  write of their own.
- **Recommended** is derived at read time from the user's For You feed, which holds only
  reposts decided ``delivered`` by people the user follows (restricted, rate-limited and
  refused reposts never enter it). A product's score sums the decayed social proof of
  every For You post tagging it (the post scores combined as ``H * log2(sum 2^(s / H))``,
  H the For You half-life), so one post ranks a product exactly where For You ranks the
  post. Products the user has an order for are left out. Nobody else's purchases or views
  are read.

Invariants: these reads write nothing; each resolves the active namespace once and does
all its round trips there.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from feedamp.feeds.connection import AnyRedis
from feedamp.feeds.entries import Entry
from feedamp.feeds.keys import Keys
from feedamp.feeds.pages import MAX_LIMIT
from feedamp.feeds.shop.reads import OrderPage

__all__ = [
    "OrderCenter",
    "ProductReads",
    "RecommendedItem",
    "RecommendedPage",
    "TaggedItem",
    "TaggedPage",
    "ViewedItem",
    "ViewedPage",
]

#: Following entries read per round trip while collecting tagged products.
FEED_STEP = 100
#: For You entries read for recommendations (at least the For You cap).
FOR_YOU_READ = 1000


@dataclass(frozen=True, slots=True)
class ViewedItem:
    """A product the user looked at: ``ts`` of their latest view (ms), and the clip that
    view came from (``via_post_id``, ``via_repost_id``), if it named one."""

    product_id: str
    ts: int
    via_post_id: str | None = None
    via_repost_id: str | None = None


@dataclass(frozen=True, slots=True)
class ViewedPage:
    """A page of the Looked at list, newest first; ``next_cursor`` None at the end."""

    items: list[ViewedItem] = field(default_factory=list)
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class TaggedItem:
    """A product tagged in a clip of the user's Following feed: the post (its author, when
    it surfaced in ms, and the followees who reposted it, most recent first)."""

    product_id: str
    post_id: str
    author_id: str
    ts: int
    reposted_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TaggedPage:
    """A page of tagged products, newest clip first (a clip's products by id); a product
    tagged in several clips appears with each."""

    items: list[TaggedItem] = field(default_factory=list)
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class RecommendedItem:
    """A recommended product: its ``score`` (ms-equivalent, as For You), the For You posts
    tagging it (best ranked first) and the followees whose reposts brought them."""

    product_id: str
    score: float
    post_ids: tuple[str, ...]
    reposted_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RecommendedPage:
    """A page of recommendations, best first; ``next_cursor`` None at the end."""

    items: list[RecommendedItem] = field(default_factory=list)
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class OrderCenter:
    """The four sections of a user's Order Center, each a first page with its cursor
    (continue with :meth:`ProductReads.viewed`, ``tagged``, ``recommended`` or
    ``orders``)."""

    orders: OrderPage
    viewed: ViewedPage
    tagged: TaggedPage
    recommended: RecommendedPage


class ProductReads:
    """Product section reads; needs what :class:`~feedamp.feeds.reader.FeedReader` has:
    ``redis``, ``feed_buckets``, ``for_you_half_life_ms``, ``active_keys()``, the page
    and hydration helpers, and :class:`~feedamp.feeds.shop.reads.ShopReads`."""

    redis: AnyRedis
    feed_buckets: int
    for_you_half_life_ms: int
    active_keys: Callable[[], Awaitable[Keys]]
    _page: Callable[..., Awaitable[Any]]
    _hydrate: Callable[..., Awaitable[list[Any]]]
    _zpage: Callable[..., Awaitable[tuple[list[str], str | None]]]
    _orders: Callable[..., Awaitable[OrderPage]]
    _scripts: Any

    async def order_center(self, user_id: str, limit: int = 20) -> OrderCenter:
        """The first ``limit`` items of each section of ``user_id``'s Order Center."""
        keys = await self.active_keys()
        return OrderCenter(
            await self._orders(user_id, limit, None, keys),
            await self._viewed(user_id, limit, None, keys),
            await self._tagged(user_id, limit, None, keys),
            await self._recommended(user_id, limit, None, keys),
        )

    async def viewed(self, user_id: str, limit: int = 50, cursor: str | None = None) -> ViewedPage:
        """A page of the products ``user_id`` looked at, latest view first."""
        return await self._viewed(user_id, limit, cursor, await self.active_keys())

    async def tagged(self, user_id: str, limit: int = 50, cursor: str | None = None) -> TaggedPage:
        """A page of the products tagged in clips of ``user_id``'s Following feed, newest
        clip first."""
        return await self._tagged(user_id, limit, cursor, await self.active_keys())

    async def recommended(
        self, user_id: str, limit: int = 50, cursor: str | None = None
    ) -> RecommendedPage:
        """A page of products recommended to ``user_id`` through the reposts of the people
        they follow, best first."""
        return await self._recommended(user_id, limit, cursor, await self.active_keys())

    async def _viewed(self, user_id: str, limit: int, cursor: str | None, keys: Keys) -> ViewedPage:
        ids, next_cursor = await self._zpage(keys.viewed(user_id), limit, cursor)
        if not ids:
            return ViewedPage([], next_cursor)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zmscore(keys.viewed(user_id), ids)
            pipe.hmget(keys.viewed_via(user_id), ids)
            times, vias = await pipe.execute()
        items = []
        for product, ts, via in zip(ids, times, vias, strict=True):
            post, _, repost = (via or b",").decode().partition(",")
            items.append(ViewedItem(product, int(ts or 0), post or None, repost or None))
        return ViewedPage(items, next_cursor)

    async def _tagged(self, user_id: str, limit: int, cursor: str | None, keys: Keys) -> TaggedPage:
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}, got {limit}")
        # Cursor: "<Following cursor before the clip>/<products of it already shown>".
        feed_cursor, skip = None, 0
        if cursor:
            before, sep, shown = cursor.rpartition("/")
            if not sep or not shown.isdigit():
                raise ValueError(f"invalid cursor {cursor!r}")
            feed_cursor, skip = before or None, int(shown)
        items: list[TaggedItem] = []
        prev = feed_cursor
        while True:
            page = await self._page(user_id, FEED_STEP, feed_cursor, keys, keys.feed, keys.via)
            async with self.redis.pipeline(transaction=False) as pipe:
                for item in page.items:
                    pipe.smembers(keys.products(item.post_id))
                tags = await pipe.execute()
            for item, products in zip(page.items, tags, strict=True):
                for n, product in enumerate(sorted(p.decode() for p in products)[skip:], skip):
                    if len(items) == limit:
                        return TaggedPage(items, f"{prev or ''}/{n}")
                    items.append(TaggedItem(product, item.post_id, item.author_id, item.ts,
                                            item.reposted_by))  # fmt: skip
                skip = 0
                prev = f"{item.ts}:{item.post_id}"
            if page.next_cursor is None:
                return TaggedPage(items, None)
            feed_cursor = page.next_cursor

    async def _recommended(
        self, user_id: str, limit: int, cursor: str | None, keys: Keys
    ) -> RecommendedPage:
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}, got {limit}")
        after = _parse_cursor(cursor) if cursor else None

        buckets = range(self.feed_buckets)
        zsets = [keys.for_you(user_id, b) for b in buckets]
        rows = await self._scripts.page(
            keys=zsets + [keys.via(user_id, b) for b in buckets],
            args=["+inf", FOR_YOU_READ],
        )
        entries = [Entry(rows[i], rows[i + 1], rows[i + 2], True) for i in range(0, len(rows), 3)]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(keys.bought(user_id))
            for e in entries:
                pipe.smembers(keys.products(e.post_id.decode()))
            bought, *tags = await pipe.execute()
        tagging = [(e, t) for e, t in zip(entries, tags, strict=True) if t - bought]
        tagging.sort(key=lambda et: (et[0].score, et[0].post_id), reverse=True)
        # Deleted posts, suspended authors and suspended reposters drop out here.
        shown = await self._hydrate(user_id, [e for e, _ in tagging], True, keys)
        visible = {item.post_id: item for item in shown if item.reposted_by}
        half_life = self.for_you_half_life_ms
        found: dict[str, list[tuple[float, str]]] = {}
        for e, products in tagging:
            post_id = e.post_id.decode()
            if post_id in visible:
                for product in products - bought:
                    found.setdefault(product.decode(), []).append((e.score, post_id))
        items = []
        for product, posts in found.items():
            top = max(s for s, _ in posts)
            score = top + half_life * math.log2(sum(2 ** ((s - top) / half_life) for s, _ in posts))
            reposters = dict.fromkeys(r for _, p in posts for r in visible[p].reposted_by)
            items.append(RecommendedItem(product, score, tuple(p for _, p in posts),
                                         tuple(reposters)))  # fmt: skip
        items.sort(key=lambda i: (i.score, i.product_id), reverse=True)
        if after is not None:
            items = [i for i in items if (i.score, i.product_id) < after]
        more = len(items) > limit
        items = items[:limit]
        next_cursor = f"{items[-1].score!r}:{items[-1].product_id}" if more else None
        return RecommendedPage(items, next_cursor)


def _parse_cursor(cursor: str) -> tuple[float, str]:
    score, sep, product = cursor.partition(":")
    try:
        if not sep or not product:
            raise ValueError
        return float(score), product
    except ValueError:
        raise ValueError(f"invalid cursor {cursor!r}") from None
