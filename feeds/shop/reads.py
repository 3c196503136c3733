"""Reads of the shop views: gift inbox, gifts sent, order center, creator stats.

:class:`ShopReads` is mixed into :class:`~feedamp.feeds.reader.FeedReader`; it reads the
keys that ``gift.lua``, ``purchase.lua`` and ``order_status.lua`` write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import orjson
from feedamp.feeds.batch import text
from feedamp.feeds.connection import AnyRedis
from feedamp.feeds.keys import Keys
from feedamp.feeds.pages import Page, check_limit, decode_cursor, encode_cursor
from feedamp.feeds.shop.campaigns import Catalog

__all__ = [
    "CreatorStats",
    "GiftItem",
    "GiftPage",
    "OrderItem",
    "OrderPage",
    "SentGifts",
    "ShopReads",
    "TaggedSales",
]

_GIFT_FIELDS = ("sender", "recipient", "offer", "campaign", "message", "code", "ts")
_ORDER_FIELDS = ("b", "prod", "seller", "amt", "cur", "status", "hist", "rej", "flags", "vp",
                 "vr", "ts")  # fmt: skip


@dataclass(frozen=True, slots=True)
class GiftItem:
    """One accepted gift. ``code`` is the offer code it carries (None for an offer
    without codes); ``ts`` is when it was sent (ms)."""

    gift_id: str
    sender_id: str
    recipient_id: str
    offer_id: str
    campaign_id: str
    message: str | None
    code: str | None
    ts: int


#: A page of gifts, newest first (see :mod:`feedamp.feeds.pages`).
GiftPage = Page[GiftItem]


@dataclass(frozen=True, slots=True)
class SentGifts:
    """What a user sent (newest first) and the sends left per campaign of the catalog."""

    items: list[GiftItem]
    remaining: dict[str, int]


@dataclass(frozen=True, slots=True)
class OrderItem:
    """One order of the order center.

    ``history`` lists the applied statuses with their event times, from ``placed``;
    ``flags`` marks anomalies (``illegal_transition``); ``rejected`` keeps the status
    events that were not applied, with the flag saying why. Before its purchase event
    arrives an order has only what its status events said (``product_id`` None).
    """

    order_id: str
    buyer_id: str
    product_id: str | None
    seller_id: str | None
    amount_cents: int
    currency: str | None
    status: str
    history: list[tuple[str, int]]
    flags: tuple[str, ...] = ()
    rejected: list[tuple[str, int, str]] = field(default_factory=list)
    via_post_id: str | None = None
    via_repost_id: str | None = None
    ts: int = 0


#: A page of orders, newest first (see :mod:`feedamp.feeds.pages`).
OrderPage = Page[OrderItem]


@dataclass(frozen=True, slots=True)
class TaggedSales:
    """Conversions of one tagged post (``kind`` ``post``) or of one repost of a tagged post
    (``repost``): orders bought through it of a product the post tags, and their revenue
    (cents, all currencies added up). Cancelled and refunded orders are out."""

    kind: str
    id: str
    orders: int
    revenue_cents: int


@dataclass(frozen=True, slots=True)
class CreatorStats:
    """Orders attributed to a creator's posts and reposts, and their revenue (cents, all
    currencies added up, and per currency). Cancelled and refunded orders are out.
    ``tagged`` lists the conversions of the creator's tagged posts and reposts, most
    revenue first."""

    orders: int
    revenue_cents: int
    revenue_by_currency: dict[str, int] = field(default_factory=dict)
    tagged: list[TaggedSales] = field(default_factory=list)


class ShopReads:
    """Gift and order reads; needs ``redis`` and ``campaigns`` attributes and an
    ``active_keys()`` coroutine (the keys of the active namespace, resolved per read)."""

    redis: AnyRedis
    campaigns: Catalog
    active_keys: Callable[[], Awaitable[Keys]]

    async def gift_inbox(
        self, user_id: str, limit: int = 50, cursor: str | None = None
    ) -> GiftPage:
        """A page of the gifts ``user_id`` received, newest first."""
        keys = await self.active_keys()
        ids, next_cursor = await self._zpage(keys.gift_inbox(user_id), limit, cursor)
        return GiftPage(await self._gifts(ids, keys), next_cursor)

    async def gifts_sent(self, user_id: str, limit: int = 50) -> SentGifts:
        """The newest ``limit`` gifts ``user_id`` sent, and how many sends they have left in
        each campaign of the reader's catalog."""
        keys = await self.active_keys()
        ids, _ = await self._zpage(keys.gifts_sent(user_id), limit, None)
        sends = await self.redis.hgetall(keys.gift_sends(user_id))
        used = {text(k): int(v) for k, v in sends.items()}
        remaining = {c.id: max(0, c.send_limit - used.get(c.id, 0))
                     for c in self.campaigns.campaigns}  # fmt: skip
        return SentGifts(await self._gifts(ids, keys), remaining)

    async def orders(self, user_id: str, limit: int = 50, cursor: str | None = None) -> OrderPage:
        """A page of ``user_id``'s order center, newest first."""
        return await self._orders(user_id, limit, cursor, await self.active_keys())

    async def _orders(self, user_id: str, limit: int, cursor: str | None, keys: Keys) -> OrderPage:
        ids, next_cursor = await self._zpage(keys.orders(user_id), limit, cursor)
        async with self.redis.pipeline(transaction=False) as pipe:
            for order_id in ids:
                pipe.hmget(keys.order(order_id), *_ORDER_FIELDS)
            rows = await pipe.execute()
        items = []
        for order_id, row in zip(ids, rows, strict=True):
            b, prod, seller, amt, cur, status, hist, rej, flags, vp, vr, ts = (
                v.decode() if v is not None else None for v in row
            )
            items.append(OrderItem(
                order_id=order_id, buyer_id=b or "", product_id=prod, seller_id=seller,
                amount_cents=int(amt or 0), currency=cur, status=status or "placed",
                history=[(s, int(t)) for s, t in _json_list(hist)],
                flags=tuple(flags.split(",")) if flags else (),
                rejected=[(s, int(t), f) for s, t, f in _json_list(rej)],
                via_post_id=vp, via_repost_id=vr, ts=int(ts or 0),
            ))  # fmt: skip
        return OrderPage(items, next_cursor)

    async def creator_stats(self, user_id: str) -> CreatorStats:
        """Orders and revenue attributed to ``user_id``'s posts and reposts."""
        keys = await self.active_keys()
        stats = {text(k): int(v) for k, v in
                 (await self.redis.hgetall(keys.creator(user_id))).items()}  # fmt: skip
        by_currency = {k[4:]: v for k, v in stats.items() if k.startswith("rev:") and v}
        conversions = await self.redis.hgetall(keys.conversions(user_id))
        return CreatorStats(stats.get("orders", 0), stats.get("revenue", 0), by_currency,
                            _tagged_sales(conversions))  # fmt: skip

    async def _gifts(self, ids: list[str], keys: Keys) -> list[GiftItem]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for gift_id in ids:
                pipe.hmget(keys.gift(gift_id), *_GIFT_FIELDS)
            rows = await pipe.execute()
        items = []
        for gift_id, row in zip(ids, rows, strict=True):
            sender, recipient, offer, campaign, message, code, ts = (
                v.decode() if v is not None else "" for v in row
            )
            items.append(GiftItem(gift_id, sender, recipient, offer, campaign, message or None,
                                  code or None, int(ts or 0)))  # fmt: skip
        return items

    async def _zpage(
        self, key: str, limit: int, cursor: str | None
    ) -> tuple[list[str], str | None]:
        """Members of sorted set ``key``, highest score first, after ``cursor``
        (``score:member``), and the cursor of the next page."""
        check_limit(limit)
        top, after = "+inf", None
        if cursor:
            score, member = decode_cursor(cursor)
            after = (float(score), member)
            top = score
        async with self.redis.pipeline(transaction=False) as pipe:
            if after is not None:  # ties at the cursor's score, then what is below it
                pipe.zrange(key, top, top, byscore=True, desc=True, withscores=True)
                top = f"({top}"
            pipe.zrange(key, top, "-inf", byscore=True, desc=True, offset=0, num=limit + 1,
                        withscores=True)  # fmt: skip
            results = await pipe.execute()
        rows = [(m.decode(), s) for part in results for m, s in part]
        if after is not None:  # ties come in member order, descending
            rows = [(m, s) for m, s in rows if s < after[0] or m < after[1]]
        page = rows[: limit + 1]
        more = len(page) > limit
        page = page[:limit]
        last = page[-1] if more and page else None
        next_cursor = encode_cursor(_score_text(last[1]), last[0]) if last else None
        return [m for m, _ in page], next_cursor


def _tagged_sales(fields: Mapping[bytes | str, bytes | str]) -> list[TaggedSales]:
    """The ``conversions`` hash (``p:<post>`` / ``r:<repost>`` -> orders, with ``:rev``
    -> cents) as a list, most revenue first."""
    values = {text(k): int(v) for k, v in fields.items()}
    sales = [TaggedSales("post" if name[0] == "p" else "repost", name[2:], orders,
                         values.get(f"{name}:rev", 0))
             for name, orders in values.items() if not name.endswith(":rev")]  # fmt: skip
    return sorted(sales, key=lambda t: (-t.revenue_cents, -t.orders, t.kind, t.id))


def _json_list(text: str | None) -> list:
    """A JSON list written by Lua's cjson (which writes an empty list as ``{}``)."""
    value = orjson.loads(text) if text else []
    return value if isinstance(value, list) else []


def _score_text(score: float) -> str:
    return str(int(score)) if score == int(score) else repr(score)
