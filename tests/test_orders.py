"""The order center and purchase attribution against a real Redis, through the worker's
pipeline: status races (late, repeated, out of order, illegal), attribution that lands
whatever the arrival order, once per order, and refunds that take it back; on a standalone
Redis and on a three-master Redis Cluster."""

from __future__ import annotations

import itertools

import pytest
from feedamp.config import Settings
from feedamp.feeds import FeedReader, FeedStore
from feedamp.feeds.connection import AnyRedis
from feedamp.streams import Pipeline

from .factory import Events, record_of
from .snapshot import snapshot

#: Every test that writes runs on a standalone Redis and on a three-master cluster.
LAYOUTS = ("standalone", "cluster")


def make_shop(redis, settings):
    pipeline = Pipeline(FeedStore(redis, settings), settings)
    return settings, pipeline, FeedReader(redis, key_prefix=settings.key_prefix)


@pytest.fixture
def shop(redis, settings):
    return make_shop(redis, settings)


@pytest.fixture
def anywhere(settings, redis) -> tuple[Settings, AnyRedis]:
    """The test's layout (both, see ``LAYOUTS``) and its client."""
    return settings, redis


@pytest.fixture
def shop_anywhere(anywhere):
    settings, redis = anywhere
    return make_shop(redis, settings)


async def run(settings, pipeline, events) -> None:
    outcome = await pipeline.apply([record_of(settings, e, n) for n, e in enumerate(events)])
    assert outcome.dead_letters == []


async def order(reader: FeedReader, buyer: str, order_id: str):
    return next(o for o in (await reader.orders(buyer)).items if o.order_id == order_id)


async def test_an_order_moves_through_its_statuses(shop_anywhere):
    settings, pipeline, reader = shop_anywhere
    ev = Events()
    buy = ev.purchase("o1", "bea", amount=2599, currency="USD")
    steps = [ev.status("o1", "bea", s, seq=n) for n, s in enumerate(("paid", "shipped",
                                                                      "delivered"), 1)]  # fmt: skip
    await run(settings, pipeline, [buy, *steps])
    o = await order(reader, "bea", "o1")
    assert (o.status, o.amount_cents, o.currency, o.product_id) == ("delivered", 2599, "USD",
                                                                    "prod-o1")  # fmt: skip
    assert o.history == [("placed", buy.ts)] + [(s.status, s.ts) for s in steps]
    assert o.flags == () and o.rejected == []


async def test_late_repeated_and_out_of_order_events_end_in_the_same_state(anywhere):
    settings, redis = anywhere
    ev = Events()
    buy = ev.purchase("o1", "bea")
    statuses = ("paid", "shipped", "delivered")
    paid, shipped, delivered = (ev.status("o1", "bea", s, seq=n) for n, s in enumerate(statuses, 1))
    repeat = ev.status("o1", "bea", "shipped", seq=2)  # the same status event, sent again
    in_order = [buy, paid, shipped, delivered]
    states = []
    for n, arrival in enumerate([in_order, [delivered, shipped, buy, paid, repeat],
                                 [paid, delivered, repeat, buy, shipped, repeat]]):  # fmt: skip
        s = settings.with_(key_prefix=f"{settings.key_prefix}{n}:")
        await run(s, Pipeline(FeedStore(redis, s), s), arrival)
        reader = FeedReader(redis, key_prefix=s.key_prefix)
        o = await order(reader, "bea", "o1")
        assert o.status == "delivered"
        assert [h[0] for h in o.history] == ["placed", "paid", "shipped", "delivered"]
        states.append(await snapshot(redis, s.key_prefix))
    assert states[0] == states[1] == states[2]


async def test_an_older_status_never_overwrites_a_newer_one(shop_anywhere):
    settings, pipeline, reader = shop_anywhere
    ev = Events()
    await run(settings, pipeline, [ev.purchase("o1", "bea"), ev.status("o1", "bea", "paid", 1),
                                   ev.status("o1", "bea", "shipped", 2)])  # fmt: skip
    # A "paid" sent before "shipped" (lower seq) but arriving after it changes nothing.
    late = ev.status("o1", "bea", "paid", seq=1)
    await run(settings, pipeline, [late])
    o = await order(reader, "bea", "o1")
    assert o.status == "shipped" and [h[0] for h in o.history] == ["placed", "paid", "shipped"]


async def test_an_illegal_jump_is_kept_flagged_not_applied(shop_anywhere):
    settings, pipeline, reader = shop_anywhere
    ev = Events()
    bad = ev.status("o1", "bea", "delivered", seq=1)  # placed -> delivered skips two steps
    await run(settings, pipeline, [ev.purchase("o1", "bea"), bad])
    o = await order(reader, "bea", "o1")
    assert o.status == "placed"
    assert o.flags == ("illegal_transition",)
    assert o.rejected == [("delivered", bad.ts, "illegal_transition")]
    after_cancel = ev.status("o2", "bea", "cancelled", seq=1), ev.status("o2", "bea", "paid", 2)
    await run(settings, pipeline, [ev.purchase("o2", "bea"), *after_cancel])
    o2 = await order(reader, "bea", "o2")
    assert o2.status == "cancelled" and o2.flags == ("illegal_transition",)


async def test_status_before_purchase_and_the_order_center_pages(shop_anywhere):
    settings, pipeline, reader = shop_anywhere
    ev = Events()
    early = ev.status("o0", "bea", "paid", seq=1)
    await run(settings, pipeline, [early])
    o = await order(reader, "bea", "o0")
    assert o.product_id is None and o.status == "paid"
    await run(settings, pipeline, [ev.purchase("o0", "bea", ts=early.ts - 500)])
    o = await order(reader, "bea", "o0")
    assert o.product_id == "prod-o0" and o.history == [("placed", early.ts - 500),
                                                       ("paid", early.ts)]  # fmt: skip
    await run(settings, pipeline, [ev.purchase(f"o{n}", "bea") for n in range(1, 6)])
    ids, cursor = [], None
    while True:
        page = await reader.orders("bea", limit=2, cursor=cursor)
        ids += [o.order_id for o in page.items]
        if not (cursor := page.next_cursor):
            break
    assert ids == ["o5", "o4", "o3", "o2", "o1", "o0"]


def shop_story(ev: Events) -> list:
    """A post, a repost of it, and purchases through them."""
    return [
        ev.post("p1", "ava"),
        ev.repost("p1", "ava", "rex", repost_id="r1"),
        ev.purchase("o1", "bea", amount=1000, via_post="p1", via_repost="r1"),
        ev.purchase("o2", "cal", amount=500, via_repost="r1"),  # the post found via the repost
        ev.purchase("o3", "dan", amount=200, currency="USD", via_post="p1"),
    ]


async def stats(reader: FeedReader, *users: str) -> list[tuple[int, int]]:
    return [((s := await reader.creator_stats(u)).orders, s.revenue_cents) for u in users]


async def test_attribution_credits_author_and_reposter_once(shop):
    settings, pipeline, reader = shop
    log = shop_story(Events())
    await run(settings, pipeline, log)
    await run(settings, pipeline, log)  # redelivered: counted once
    assert await stats(reader, "ava", "rex", "bea") == [(3, 1700), (2, 1500), (0, 0)]
    ava = await reader.creator_stats("ava")
    assert ava.revenue_by_currency == {"EUR": 1500, "USD": 200}


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
async def test_the_credit_lands_whatever_the_arrival_order(redis, settings, order):
    """Posts, reposts and purchases travel on different topics: any order gives the same
    credit as the natural one."""
    ev = Events()
    story = shop_story(ev)
    groups = [story[:1], story[1:2], story[2:]]  # post, repost, purchases
    s = settings.with_(key_prefix=f"{settings.key_prefix}{''.join(map(str, order))}:")
    pipeline = Pipeline(FeedStore(redis, s), s)
    for g in order:
        await run(s, pipeline, groups[g])
    reader = FeedReader(redis, key_prefix=s.key_prefix)
    assert await stats(reader, "ava", "rex") == [(3, 1700), (2, 1500)]


async def test_a_refund_or_cancel_takes_the_credit_back(shop):
    settings, pipeline, reader = shop
    ev = Events()
    await run(settings, pipeline, shop_story(ev))
    refund = [ev.status("o1", "bea", s, seq=n) for n, s in enumerate(("paid", "refunded"), 1)]
    await run(settings, pipeline, [*refund, ev.status("o2", "cal", "cancelled", seq=1)])
    assert await stats(reader, "ava", "rex") == [(1, 200), (0, 0)]
    # Replaying the purchases after the refund does not credit them again.
    await run(settings, pipeline, shop_story(Events()))
    assert await stats(reader, "ava", "rex") == [(1, 200), (0, 0)]


async def test_self_repost_counts_one_order_once(shop):
    settings, pipeline, reader = shop
    ev = Events()
    await run(settings, pipeline, [ev.post("p9", "ava"),
                                   ev.repost("p9", "ava", "ava", repost_id="self"),
                                   ev.purchase("o9", "bea", 700, via_post="p9",
                                               via_repost="self")])  # fmt: skip
    assert await stats(reader, "ava") == [(1, 700)]


async def test_a_refund_racing_a_post_that_settles_the_order_takes_the_credit_back(redis, settings):
    """A post settles the order waiting for it (post worker) while the order's own worker
    refunds it: the post's credit, decided from the state before the refund, lands after
    the refund's reconciliation took it back. The post's steps see that the order changed
    meanwhile and reconcile it again, so the refund wins, as in any sequential order."""
    from feedamp.feeds.batch import run_scripts
    from feedamp.feeds.scripts import argv
    from feedamp.feeds.shop.order_steps import OrderSteps

    ev = Events()
    store = FeedStore(redis, settings)
    other = Pipeline(FeedStore(redis, settings), settings)
    await run(settings, other, [ev.purchase("o1", "bea", amount=700, via_post="p1"),
                                ev.status("o1", "bea", "paid", seq=1)])  # fmt: skip

    class Racing(OrderSteps):
        raced = False

        async def reconcile(self, ctx, orders, seen=None):
            failed = await super().reconcile(ctx, orders, seen)
            if not self.raced:
                self.raced = True
                await run(settings, other, [ev.status("o1", "bea", "refunded", seq=2)])
                stale = argv("order_credit", ctx, "credit", "", "1", creator_id="ava",
                             order_id="o1", amount=700, currency="EUR")  # fmt: skip
                await run_scripts(redis, [(store.scripts.order_credit, stale)])
            return failed

    store.orders = racing = Racing(redis, store.scripts)
    # The feed store alone: the pipeline's tag step would reconcile the order once more.
    assert (await store.apply([ev.post("p1", "ava")])).failures == []
    assert racing.raced
    reader = FeedReader(redis, key_prefix=settings.key_prefix)
    assert await stats(reader, "ava") == [(0, 0)]
    assert (await order(reader, "bea", "o1")).status == "refunded"
