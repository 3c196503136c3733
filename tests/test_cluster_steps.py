"""The multi-entity writes that run as slot-local steps (repost decisions, gifts, orders
and attribution, product tags, account suspension) give the same results on a standalone
Redis and on a real three-master Redis Cluster: each story runs on both layouts and the
answers and views must be equal, and as expected.

Posts and reposts are written here through the key schema of the README (their fan-out
is not what is tested), so every other write runs on the cluster.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from feedamp.config import Caps
from feedamp.embedded.cluster import RedisClusterService
from feedamp.embedded.services import Service
from feedamp.feeds.accounts import AccountStore
from feedamp.feeds.batch import context
from feedamp.feeds.connection import close, connect, is_cluster
from feedamp.feeds.keys import SUSPENDED_SHARDS, suspended_shard
from feedamp.feeds.repost_decisions import decide_reposts
from feedamp.feeds.scripts import Scripts
from feedamp.feeds.shop.campaigns import load_campaigns
from feedamp.feeds.shop.gifts import GiftStore
from feedamp.feeds.shop.order_steps import OrderSteps
from feedamp.feeds.shop.orders import OrderStore
from feedamp.feeds.shop.products import ProductStore

from .conftest import make_settings
from .factory import Events
from .layouts import Layout
from .test_gifts import START, catalog_doc


@pytest.fixture
async def layouts(
    broker: Service, redis_server: Service, redis_cluster: RedisClusterService
) -> AsyncIterator[list[Layout]]:
    """The standalone Redis and the cluster, each with a fresh namespace."""
    out = []
    for name, server in (("standalone", redis_server), ("cluster", redis_cluster)):
        settings = make_settings(broker, server)
        out.append(Layout(name, settings, connect(settings.redis_url)))
    assert [is_cluster(layout.redis) for layout in out] == [False, True]
    yield out
    for layout in out:
        await close(layout.redis)


async def on_both(layouts: list[Layout], story: Callable[[Layout], Awaitable[Any]]) -> Any:
    """Run ``story`` on each layout; its results must be equal. Returns them."""
    standalone, cluster = [await story(layout) for layout in layouts]
    assert cluster == standalone
    return standalone


async def write_post(b: Layout, post: str, author: str, ts: int, vis: str = "public") -> None:
    await b.redis.hset(b.keys.post(post), mapping={"a": author, "ts": ts, "vis": vis})


async def write_repost(b: Layout, repost: str, post: str, reposter: str, ts: int) -> None:
    await b.redis.hset(b.keys.repost(repost), mapping={"u": reposter, "p": post, "ts": ts})


async def test_repost_decisions(layouts: list[Layout]) -> None:
    """Depth through reposts of the same batch, the forwarded label and hourly cap, the
    rate cap, the virality brake, followers-only, a door refusal, a redelivery and a copy
    in one batch: the same decisions on both layouts."""

    async def story(b: Layout) -> list[tuple[str, str, int, tuple[str, ...]]]:
        settings = b.settings.with_(caps=Caps(rate_max=2, frequently_forwarded_depth=3,
                                              forwarded_max=1, brake_reposts=4))  # fmt: skip
        scripts, ctx = Scripts(b.redis), context(settings)
        await write_post(b, "p1", "ava", 1)
        await write_post(b, "p2", "ava", 2, vis="followers")
        ev = Events(start_ms=1_000)
        first = [
            ev.repost("p1", "ava", "u1", repost_id="r1"),
            ev.repost("p1", "ava", "u2", repost_id="r2", via="r1"),
            ev.repost("p1", "ava", "u3", repost_id="r3", via="r2"),
            ev.repost("p1", "ava", "u3", repost_id="r4", via="r3"),
        ]
        second = [
            first[1],  # redelivered
            ev.repost("p1", "ava", "u4", repost_id="r5"),
            ev.repost("p2", "ava", "u1", repost_id="r6"),
            ev.repost("p1", "ava", "u5", repost_id="r7"),
            ev.repost("p1", "ava", "u1", repost_id="r8", comment="look"),
            ev.repost("p1", "ava", "u1", repost_id="r9"),
        ]
        second.append(second[-1])  # a copy in the same batch
        out = []
        for batch, refused in ((first, {}), (second, {3: "suspended"})):
            decided, failed = await decide_reposts(b.redis, scripts, settings, ctx, batch,
                                                   refused)  # fmt: skip
            assert failed == {}
            out += [(d.repost_id, d.decision, d.depth, d.reasons) for d in decided.values()]
        return out

    assert await on_both(layouts, story) == [
        ("r1", "delivered", 1, ()),
        ("r2", "delivered", 2, ()),
        ("r3", "restricted", 3, ("forwarded_many_times",)),
        ("r4", "rate_limited", 4, ("forwarded_many_times", "forwarded_hourly")),
        ("r2", "delivered", 2, ()),
        ("r5", "restricted", 1, ("virality_brake",)),
        ("r6", "refused", 1, ("followers_only",)),
        ("r7", "refused", 1, ("suspended",)),
        ("r8", "rate_limited", 1, ("user_rate", "virality_brake")),
        ("r9", "rate_limited", 1, ("user_rate", "virality_brake")),
        ("r9", "rate_limited", 1, ("user_rate", "virality_brake")),
    ]


async def test_gifts(layouts: list[Layout], tmp_path: Path) -> None:
    """Send limit, a pool running out (the claim given back, so the sender's later gift
    in the batch is judged on the sends really spent), a suspended recipient, a copy in
    the batch and a redelivered batch: the same outcomes, inboxes and codes on both."""
    path = tmp_path / "campaigns.json"
    path.write_bytes(orjson.dumps(catalog_doc(["C1", "C2"])))
    catalog = load_campaigns(str(path))

    async def story(b: Layout) -> tuple:
        settings = b.settings.with_(campaigns=str(path))
        gifts, accounts = GiftStore(b.redis, settings, catalog), AccountStore(b.redis, settings)
        ev = Events(start_ms=START)
        assert (await accounts.apply([ev.account("zed", "suspend")])).failures == []
        batch = [
            ev.gift("g1", "ann", "bob", "editor"),
            ev.gift("g2", "ann", "cat", "editor"),
            ev.gift("g3", "ann", "dan", "editor"),  # pool empty: the claim is given back
            ev.gift("g4", "ann", "eve", "music"),  # the third send of the campaign
            ev.gift("g5", "ann", "fay", "music"),  # send_limit
            ev.gift("g6", "bea", "zed", "music"),  # recipient suspended
            ev.gift("g7", "bea", "bea", "mic"),  # self gift
        ]
        batch.insert(2, batch[1])  # a copy in the batch
        first = await gifts.apply(batch)
        again = await gifts.apply(batch)  # redelivered: nothing spent twice
        assert first.failures == again.failures == []
        assert again.decisions == first.decisions
        reader = b.reader(campaigns=str(path))
        inboxes = {u: [(g.gift_id, g.code) for g in (await reader.gift_inbox(u)).items]
                   for u in ("bob", "cat", "dan", "eve", "zed")}  # fmt: skip
        sent = await reader.gifts_sent("ann")
        return ([(d.gift_id, d.decision, d.reasons) for d in first.decisions], inboxes,
                [g.gift_id for g in sent.items], sent.remaining)  # fmt: skip

    decisions, inboxes, sent, remaining = await on_both(layouts, story)
    assert decisions == [
        ("g1", "accepted", ()), ("g2", "accepted", ()), ("g2", "accepted", ()),
        ("g3", "refused", ("codes_exhausted",)), ("g4", "accepted", ()),
        ("g5", "refused", ("send_limit",)), ("g6", "refused", ("recipient_suspended",)),
        ("g7", "refused", ("self_gift",)),
    ]  # fmt: skip
    assert inboxes == {"bob": [("g1", "C1")], "cat": [("g2", "C2")], "dan": [],
                       "eve": [("g4", None)], "zed": []}  # fmt: skip
    assert sent == ["g4", "g2", "g1"] and remaining == {"spring": 0, "open": 3}


async def test_orders_credits_and_conversions(layouts: list[Layout]) -> None:
    """Purchases through a post and a repost, one before its repost is known (credited
    when it is), a tagged post's conversions, a refund taking credit and conversions
    back, a self-repost counted once, and a redelivery: the same on both layouts."""

    async def story(b: Layout) -> tuple:
        orders = OrderStore(b.redis, b.settings)
        products = ProductStore(b.redis, b.settings)
        steps, ctx = OrderSteps(b.redis, orders.scripts), context(b.settings)
        ev = Events()
        await write_post(b, "p1", "ava", 1)
        await write_repost(b, "r1", "p1", "rex", 2)
        await write_repost(b, "r-self", "p1", "ava", 3)
        log = [
            ev.purchase("o1", "bea", amount=1000, via_post="p1", via_repost="r1", product="cam"),
            ev.purchase("o2", "cal", amount=500, via_repost="r1", product="cam"),
            ev.purchase("o3", "dan", amount=200, currency="USD", via_post="p1"),
            ev.purchase("o4", "eli", amount=300, via_repost="r-late"),  # repost not known yet
            ev.purchase("o5", "fin", amount=700, via_repost="r-self"),
            ev.status("o2", "cal", "paid", seq=1),
            ev.status("o2", "cal", "refunded", seq=2),
        ]
        # The post's tags come after the orders that named it.
        tags = [ev.post("p1", "ava", product_ids=["cam"])]
        for batch in (log, tags, log):
            applied = await (orders if batch is log else products).apply(batch)
            assert applied.failures == []
        await write_repost(b, "r-late", "p1", "rex", 4)
        assert await steps.settle_waiting(ctx, "awaiting_repost", ["r-late"]) == {}
        assert await b.redis.exists(b.keys.awaiting_repost("r-late")) == 0
        reader = b.reader()
        stats = {u: ((s := await reader.creator_stats(u)).orders, s.revenue_cents,
                     s.revenue_by_currency,
                     [(t.kind, t.id, t.orders, t.revenue_cents) for t in s.tagged])
                 for u in ("ava", "rex", "bea")}  # fmt: skip
        o2 = (await reader.orders("cal")).items[0]
        return stats, (o2.status, [h[0] for h in o2.history])

    stats, o2 = await on_both(layouts, story)
    assert stats["ava"][:3] == (4, 2200, {"EUR": 2000, "USD": 200})
    assert stats["rex"][:2] == (2, 1300)
    assert stats["bea"][:2] == (0, 0)
    assert stats["ava"][3] == [("post", "p1", 1, 1000)]
    assert stats["rex"][3] == [("repost", "r1", 1, 1000)]
    assert o2 == ("refunded", ["placed", "paid", "refunded"])


async def test_suspension_index_is_sharded(layouts: list[Layout]) -> None:
    """A suspended account joins its shard of the index; the door finds it there, and an
    index left by an earlier version ({accounts}) is moved into the shards."""

    async def story(b: Layout) -> tuple:
        store, ev = AccountStore(b.redis, b.settings), Events()
        await b.redis.sadd(b.keys.legacy_suspended_index(), "old")
        await b.redis.hset(b.keys.account("old"), "susp", 1)
        assert (await store.apply([ev.account("sam", "suspend")])).failures == []
        later = [ev.post("x1", "sam"), ev.post("x2", "old"), ev.post("x3", "kim"),
                 ev.repost("x9", "sam", "kim")]  # fmt: skip
        refused = await store.door(later)
        members = {n: sorted(m.decode() for m in await b.redis.smembers(
            b.keys.suspended_index(n))) for n in range(SUSPENDED_SHARDS)}  # fmt: skip
        legacy = await b.redis.exists(b.keys.legacy_suspended_index())
        return refused, {n: m for n, m in members.items() if m}, legacy

    refused, shards, legacy = await on_both(layouts, story)
    assert refused == {0: "suspended", 1: "suspended", 3: "author_suspended"}
    assert legacy == 0
    assert shards == {n: sorted(u for u in ("old", "sam") if suspended_shard(u) == n)
                      for n in {suspended_shard("old"), suspended_shard("sam")}}  # fmt: skip
