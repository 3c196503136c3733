"""The Order Center's product sections against a real Redis, through the worker's pipeline:
products tagged in clips, products looked at, products recommended through the reposts of
the people a user follows, and conversions of tagged posts; deletes, suspensions, blocks,
restricted reposts and every arrival order."""

from __future__ import annotations

import itertools
from dataclasses import replace

import orjson
import pytest
from feedamp.config import Caps
from feedamp.feeds import FeedReader, FeedStore
from feedamp.streams import Pipeline, Record

from .factory import Events, record_of, to_json
from .snapshot import snapshot

#: Every test that writes runs on a standalone Redis and on a three-master cluster.
LAYOUTS = ("standalone", "cluster")


@pytest.fixture
def shop(redis, settings):
    return world(redis, settings)


def world(redis, settings):
    pipeline = Pipeline(FeedStore(redis, settings), settings)
    return settings, pipeline, FeedReader(redis, key_prefix=settings.key_prefix)


async def run(settings, pipeline, events) -> None:
    outcome = await pipeline.apply([record_of(settings, e, n) for n, e in enumerate(events)])
    assert outcome.dead_letters == []


async def tagged(reader: FeedReader, user: str, limit: int = 50) -> list[tuple[str, str]]:
    """Every (product, post) of the user's tagged section, read ``limit`` at a time."""
    out, cursor = [], None
    while True:
        page = await reader.tagged(user, limit=limit, cursor=cursor)
        out += [(t.product_id, t.post_id) for t in page.items]
        if not (cursor := page.next_cursor):
            return out


async def recommended(reader: FeedReader, user: str) -> list[str]:
    return [r.product_id for r in (await reader.recommended(user)).items]


def clips(ev: Events) -> list:
    """bob follows ava; ava posts three clips, two of them tagging products."""
    return [
        ev.follow("bob", "ava"),
        ev.post("p1", "ava", product_ids=("shoe", "hat")),
        ev.post("p2", "ava"),
        ev.post("p3", "ava", product_ids=("bag",)),
    ]


async def test_products_tagged_in_clips_of_the_following_feed_newest_first(shop):
    settings, pipeline, reader = shop
    ev = Events()
    await run(settings, pipeline, clips(ev))
    expected = [("bag", "p3"), ("hat", "p1"), ("shoe", "p1")]
    assert await tagged(reader, "bob") == expected
    for limit in (1, 2):  # cursors also cut a clip's products
        assert await tagged(reader, "bob", limit) == expected
    item = (await reader.tagged("bob")).items[0]
    assert (item.author_id, item.ts) == ("ava", clips(Events())[3].ts)
    assert await tagged(reader, "ava") == []  # her own clips are not in her feed


async def test_a_deleted_post_an_unfollow_and_a_block_take_the_tags_away(shop):
    settings, pipeline, reader = shop
    ev = Events()
    await run(settings, pipeline, [*clips(ev), ev.follow("cy", "ava"), ev.follow("di", "ava")])
    await run(settings, pipeline, [ev.delete("p3", "ava")])
    assert await tagged(reader, "bob") == [("hat", "p1"), ("shoe", "p1")]
    await run(settings, pipeline, [ev.unfollow("bob", "ava"), ev.hide("block", "cy", "ava")])
    assert await tagged(reader, "bob") == []
    assert await tagged(reader, "cy") == []
    assert await tagged(reader, "di") == [("hat", "p1"), ("shoe", "p1")]


def reposts(ev: Events) -> list:
    """bob follows rex and sam (not ava). rex and sam repost p1 (shoe, hat); rex reposts
    p3 (bag) earlier; p2 tags nothing."""
    return [
        ev.follow("bob", "rex"), ev.follow("bob", "sam"),
        ev.post("p1", "ava", product_ids=("shoe", "hat")), ev.post("p2", "ava"),
        ev.post("p3", "ava", product_ids=("bag",)),
        ev.repost("p3", "ava", "rex", comment="c", repost_id="r3"),
        ev.repost("p2", "ava", "rex", comment="c", repost_id="r2"),
        ev.repost("p1", "ava", "rex", comment="c", repost_id="r1"),
        ev.repost("p1", "ava", "sam", comment="c", repost_id="s1"),
    ]  # fmt: skip


async def test_recommended_ranks_by_the_social_proof_of_delivered_reposts(shop):
    settings, pipeline, reader = shop
    ev = Events()
    await run(settings, pipeline, reposts(ev))
    page = await reader.recommended("bob")
    assert [(r.product_id, r.post_ids) for r in page.items] == [
        ("shoe", ("p1",)), ("hat", ("p1",)), ("bag", ("p3",))]  # fmt: skip
    assert page.items[0].reposted_by == ("sam", "rex")
    for_you = {i.post_id: i for i in (await reader.for_you("bob")).items}
    # One post ranks its products where For You ranks it (score of two reposts, rex's
    # and sam's, above bag's single signal).
    assert page.items[0].score > page.items[2].score
    assert set(for_you) == {"p1", "p2", "p3"}
    # A cursor continues the ranking.
    first = await reader.recommended("bob", limit=2)
    rest = await reader.recommended("bob", limit=2, cursor=first.next_cursor)
    assert [r.product_id for r in first.items + rest.items] == ["shoe", "hat", "bag"]
    assert rest.next_cursor is None


async def test_a_product_in_two_clips_sums_their_social_proof(shop):
    settings, pipeline, reader = shop
    ev = Events()
    await run(settings, pipeline, [
        ev.follow("bob", "rex"), ev.post("p1", "ava", product_ids=("cap",)),
        ev.post("p2", "ava", product_ids=("mug",)), ev.post("p3", "ava", product_ids=("cap",)),
        ev.repost("p1", "ava", "rex", repost_id="r1"),
        ev.repost("p3", "ava", "rex", repost_id="r3"),
        ev.repost("p2", "ava", "rex", repost_id="r2"),  # the newest single signal
    ])  # fmt: skip
    page = await reader.recommended("bob")
    assert [(r.product_id, r.post_ids) for r in page.items] == [
        ("cap", ("p3", "p1")), ("mug", ("p2",))]  # fmt: skip


async def test_bought_products_and_other_users_activity_stay_out(shop):
    settings, pipeline, reader = shop
    ev = Events()
    await run(settings, pipeline, reposts(ev))
    before = await recommended(reader, "bob")
    # Someone else's purchases and views never feed bob's recommendations.
    await run(settings, pipeline, [ev.purchase("o9", "zed", product="mug", via_post="p1"),
                                   ev.view("zed", "mug"), ev.view("zed", "shoe")])  # fmt: skip
    assert await recommended(reader, "bob") == before
    await run(settings, pipeline, [ev.purchase("o1", "bob", product="hat")])
    assert await recommended(reader, "bob") == ["shoe", "bag"]


async def test_a_deleted_post_leaves_tagged_and_recommended(shop):
    settings, pipeline, reader = shop
    ev = Events()
    await run(settings, pipeline, [*reposts(ev), ev.follow("bob", "ava")])
    assert {p for p, _ in await tagged(reader, "bob")} == {"shoe", "hat", "bag"}
    await run(settings, pipeline, [ev.delete("p1", "ava")])
    assert await recommended(reader, "bob") == ["bag"]
    assert await tagged(reader, "bob") == [("bag", "p3")]


async def test_a_suspended_reposters_reposts_recommend_nothing(shop):
    settings, pipeline, reader = shop
    ev = Events()
    await run(settings, pipeline, reposts(ev))
    await run(settings, pipeline, [ev.account("rex", "suspend")])
    # sam's repost of p1 still recommends shoe and hat; bag came only through rex.
    page = await reader.recommended("bob")
    assert [(r.product_id, r.reposted_by) for r in page.items] == [
        ("shoe", ("sam",)), ("hat", ("sam",))]  # fmt: skip
    await run(settings, pipeline, [ev.account("sam", "suspend")])
    assert await recommended(reader, "bob") == []
    # Reposts after the suspension are refused at the door: nothing new either.
    await run(settings, pipeline, [ev.post("p4", "ava", product_ids=("kit",)),
                                   ev.repost("p4", "ava", "rex", repost_id="r4")])  # fmt: skip
    assert await recommended(reader, "bob") == []


async def test_blocking_a_reposter_or_the_author_takes_their_recommendations_away(shop):
    settings, pipeline, reader = shop
    ev = Events()
    await run(settings, pipeline, reposts(ev))
    await run(settings, pipeline, [ev.hide("block", "bob", "rex")])
    assert await recommended(reader, "bob") == ["shoe", "hat"]  # sam's repost of p1 stays
    await run(settings, pipeline, [ev.hide("mute", "bob", "ava")])
    assert await recommended(reader, "bob") == []


async def test_a_suspended_author_s_tags_leave_every_section(shop):
    settings, pipeline, reader = shop
    ev = Events()
    await run(settings, pipeline, [*reposts(ev), ev.follow("bob", "ava")])
    await run(settings, pipeline, [ev.account("ava", "suspend")])
    assert await tagged(reader, "bob") == []
    assert await recommended(reader, "bob") == []


async def test_a_restricted_repost_recommends_nothing(redis, settings):
    settings = settings.with_(caps=replace(Caps(), friction=True))  # no comment: restricted
    settings, pipeline, reader = world(redis, settings)
    ev = Events()
    await run(settings, pipeline, [
        ev.follow("bob", "rex"), ev.post("p1", "ava", product_ids=("shoe",)),
        ev.post("p2", "ava", product_ids=("hat",)),
        ev.repost("p1", "ava", "rex", repost_id="r1"),  # restricted: Following only
        ev.repost("p2", "ava", "rex", comment="wear it", repost_id="r2"),  # delivered
    ])  # fmt: skip
    # Both reached bob's Following feed, so both are tagged in clips he saw...
    assert await tagged(reader, "bob") == [("hat", "p2"), ("shoe", "p1")]
    # ...but only the delivered repost recommends.
    assert await recommended(reader, "bob") == ["hat"]


async def test_looked_at_keeps_the_latest_view_of_each_product_capped(redis, settings):
    settings = settings.with_(viewed_cap=3)
    ev = Events()
    views = [ev.view("bob", "shoe", via_post="p1"), ev.view("bob", "hat"),
             ev.view("bob", "bag", via_post="p3", via_repost="r3"), ev.view("bob", "shoe"),
             ev.view("bob", "cap"), ev.view("bob", "mug")]  # fmt: skip
    states, pages = [], []
    orders = [views, views[::-1], [views[n] for n in (2, 5, 0, 3, 1, 4)]]
    for n, arrival in enumerate(orders):
        s = settings.with_(key_prefix=f"{settings.key_prefix}{n}:")
        _, pipeline, reader = world(redis, s)
        await run(s, pipeline, arrival)
        await run(s, pipeline, arrival[:2])  # redelivered
        pages.append((await reader.viewed("bob")).items)
        states.append(await snapshot(redis, s.key_prefix))
    assert states[0] == states[1] == states[2]
    assert [(v.product_id, v.ts, v.via_post_id) for v in pages[0]] == [
        ("mug", views[5].ts, None), ("cap", views[4].ts, None),
        ("shoe", views[3].ts, None)]  # fmt: skip
    assert pages[0] == pages[1] == pages[2]
    # A second view moves a product up; an older one arriving late does not move it down.
    s = settings.with_(key_prefix=f"{settings.key_prefix}x:")
    _, pipeline, reader = world(redis, s)
    await run(s, pipeline, views[:3])
    await run(s, pipeline, [ev.view("bob", "hat", via_post="p9"), views[1]])
    page = await reader.viewed("bob", limit=2)
    assert [(v.product_id, v.via_post_id) for v in page.items] == [("hat", "p9"), ("bag", "p3")]
    assert page.items[1].via_repost_id == "r3"
    rest = await reader.viewed("bob", limit=2, cursor=page.next_cursor)
    assert [v.product_id for v in rest.items] == ["shoe"] and rest.next_cursor is None


async def test_a_product_view_arriving_before_its_post(shop):
    settings, pipeline, reader = shop
    ev = Events()
    view = ev.view("bob", "shoe", via_post="p1", via_repost="r1")
    await run(settings, pipeline, [view])
    assert [(v.product_id, v.via_post_id) for v in (await reader.viewed("bob")).items] == [
        ("shoe", "p1")]  # fmt: skip
    before = await snapshot(redis_of(reader), settings.key_prefix)
    await run(settings, pipeline, [ev.follow("bob", "rex"),
                                   ev.post("p1", "ava", product_ids=("shoe",), ts=view.ts - 5000),
                                   ev.repost("p1", "ava", "rex", repost_id="r1", ts=view.ts - 10),
                                   ev.purchase("o1", "bob", product="shoe", via_post="p1",
                                               via_repost="r1")])  # fmt: skip
    viewed = (await reader.viewed("bob")).items
    assert [(v.product_id, v.ts, v.via_post_id, v.via_repost_id) for v in viewed] == [
        ("shoe", view.ts, "p1", "r1")]  # fmt: skip
    after = await snapshot(redis_of(reader), settings.key_prefix)
    assert {k: v for k, v in after.items() if k.startswith("viewed")} == {
        k: v for k, v in before.items() if k.startswith("viewed")}  # fmt: skip
    # bob bought it: no longer recommended to him; the post and repost converted.
    assert await recommended(reader, "bob") == []
    assert [(t.kind, t.id, t.orders) for t in (await reader.creator_stats("rex")).tagged] == [
        ("repost", "r1", 1)]  # fmt: skip


def redis_of(reader: FeedReader):
    return reader.redis


def conversions_story(ev: Events) -> list[list]:
    """The post (tagging shoe), a repost of it, and purchases: o1 of the shoe through the
    repost, o2 of the shoe through the post, o3 of another product through the post."""
    return [
        [ev.post("p1", "ava", product_ids=("shoe",))],
        [ev.repost("p1", "ava", "rex", comment="c", repost_id="r1")],
        [ev.purchase("o1", "bea", 1000, via_repost="r1", product="shoe"),
         ev.purchase("o2", "cal", 500, currency="USD", via_post="p1", product="shoe"),
         ev.purchase("o3", "dan", 200, via_post="p1", product="mug")],
    ]  # fmt: skip


async def tagged_sales(reader: FeedReader, user: str) -> list[tuple[str, str, int, int]]:
    return [(t.kind, t.id, t.orders, t.revenue_cents)
            for t in (await reader.creator_stats(user)).tagged]  # fmt: skip


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
async def test_conversions_of_tagged_posts_whatever_the_arrival_order(redis, settings, order):
    ev = Events()
    groups = conversions_story(ev)
    s = settings.with_(key_prefix=f"{settings.key_prefix}{''.join(map(str, order))}:")
    _, pipeline, reader = world(redis, s)
    for g in order:
        await run(s, pipeline, groups[g])
    for g in order:  # redelivered
        await run(s, pipeline, groups[g])
    assert await tagged_sales(reader, "ava") == [("post", "p1", 2, 1500)]
    assert await tagged_sales(reader, "rex") == [("repost", "r1", 1, 1000)]
    assert (await reader.creator_stats("ava")).orders == 3  # credit counts every order
    if order == (0, 1, 2):
        return
    reference = settings.with_(key_prefix=f"{settings.key_prefix}012:")
    _, pipeline, _ = world(redis, reference)
    for g in groups:
        await run(reference, pipeline, g)
    mine = await snapshot(redis, s.key_prefix)
    assert mine == await snapshot(redis, reference.key_prefix)


async def test_a_cancel_or_refund_takes_a_conversion_back(shop):
    settings, pipeline, reader = shop
    ev = Events()
    for group in conversions_story(ev):
        await run(settings, pipeline, group)
    await run(settings, pipeline, [ev.status("o1", "bea", "cancelled", seq=1)])
    assert await tagged_sales(reader, "ava") == [("post", "p1", 1, 500)]
    assert await tagged_sales(reader, "rex") == []
    await run(settings, pipeline, [ev.status("o2", "cal", "paid", seq=1),
                                   ev.status("o2", "cal", "refunded", seq=2)])  # fmt: skip
    assert await tagged_sales(reader, "ava") == []
    assert await redis_of(reader).exists(reader.keys.conversions("ava")) == 0


async def test_the_order_center_has_four_sections_with_cursors(shop):
    settings, pipeline, reader = shop
    ev = Events()
    await run(settings, pipeline, [*reposts(ev), ev.follow("bob", "ava"),
                                   ev.purchase("o1", "bob", product="hat"),
                                   ev.view("bob", "shoe", via_post="p1"),
                                   ev.view("bob", "bag")])  # fmt: skip
    center = await reader.order_center("bob", limit=1)
    assert [o.order_id for o in center.orders.items] == ["o1"]
    assert [v.product_id for v in center.viewed.items] == ["bag"]
    # p1 surfaced last (sam's repost), so its products come first.
    assert [(t.product_id, t.post_id) for t in center.tagged.items] == [("hat", "p1")]
    assert [r.product_id for r in center.recommended.items] == ["shoe"]
    assert center.orders.next_cursor is None
    assert None not in (center.viewed.next_cursor, center.tagged.next_cursor,
                        center.recommended.next_cursor)  # fmt: skip
    more = await reader.tagged("bob", limit=10, cursor=center.tagged.next_cursor)
    assert [t.product_id for t in more.items] == ["shoe", "bag"]
    with pytest.raises(ValueError, match="invalid cursor"):
        await reader.tagged("bob", cursor="nonsense")


def raw(settings, topic: str, obj: dict) -> Record:
    return Record(topic, 0, 0, b"k", orjson.dumps(obj), 1)


async def test_bad_tags_and_views_are_dead_lettered_with_a_reason(shop):
    settings, pipeline, _ = shop
    t = settings.topics
    ev = Events()
    post = orjson.loads(to_json(ev.post("p1", "ava")))
    view = orjson.loads(to_json(ev.view("bob", "shoe")))
    records = [
        raw(settings, t.posts, {**post, "product_ids": [f"x{n}" for n in range(11)]}),
        raw(settings, t.posts, {**post, "product_ids": ["ok", "not ok"]}),
        raw(settings, t.posts, {**post, "product_ids": "shoe"}),
        raw(settings, t.product_views, {**view, "product_id": None}),
        raw(settings, t.posts, view),
        raw(settings, t.product_views, {**view, "via_post_id": "a:b"}),
    ]
    outcome = await pipeline.apply(records)
    assert [(d.record.value, d.reason) for d in outcome.dead_letters] == [
        (records[0].value, "field 'product_ids' has too many ids (11 > 10)"),
        (records[1].value, "field 'product_ids[1]' contains forbidden character ' '"),
        (records[2].value, "field 'product_ids' must be a list of ids, got str"),
        (records[3].value, "missing field 'product_id'"),
        (records[4].value, f"type 'product_view' does not belong on topic {t.posts!r}"),
        (records[5].value, "field 'via_post_id' contains forbidden character ':'"),
    ]


async def test_a_suspended_users_views_pass_the_door(shop):
    """The door stops content only: a suspended user's view is kept, with no decision
    (only that user reads its viewed list), as it would be had the suspension come later."""
    settings, pipeline, reader = shop
    ev = Events()
    await run(settings, pipeline, [ev.account("bob", "suspend")])
    view = ev.view("bob", "shoe")
    outcome = await pipeline.apply([record_of(settings, view)])
    assert outcome.decisions == [] and outcome.dead_letters == []
    assert [i.product_id for i in (await reader.viewed("bob")).items] == ["shoe"]
