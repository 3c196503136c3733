"""A suspension gives the same Redis wherever it arrives among the account's later events.

The same log goes through the worker's pipeline (door, stores, activity) in several
arrival orders, on the real Redis of each layout: the suspension first, as in event-time
order, and then after some or all of the account's later posts and reposts (and others'
reposts of its posts), which are applied and must then be taken back. A reinstatement and
events after it close the log in every order. Every key of the namespace is compared.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import replace

import pytest
from feedamp.config import Caps, Settings
from feedamp.feeds import FeedStore
from feedamp.feeds.batch import run_scripts
from feedamp.feeds.connection import close, connect
from feedamp.feeds.scripts import argv
from feedamp.models.events import Account, Event, OrderStatus, Post, ProductView, Purchase, Repost
from feedamp.streams import Pipeline
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError

from .factory import Events, record_of
from .snapshot import snapshot
from .test_log_order import USERS
from .test_log_order import story as random_story

LAYOUTS = ("standalone", "cluster")


def story(ev: Events) -> tuple[list[Event], Event, list[Event], list[Event]]:
    """(before, the suspension, the events after it, the reinstatement and what follows):
    eve is suspended; kim, lou and fan follow and repost around her."""
    before = [
        ev.follow("fan", "eve"), ev.follow("fan", "kim"), ev.follow("pal", "kim"),
        ev.follow("kim", "lou"), ev.follow("lou", "eve"),
        ev.post("e0", "eve"), ev.post("k0", "kim"), ev.post("l0", "lou"),
        ev.repost("e0", "eve", "kim", repost_id="kim-e0", comment="look"),
        ev.repost("l0", "lou", "eve", repost_id="eve-l0"),
    ]  # fmt: skip
    suspend = ev.account("eve", "suspend")
    after = [
        ev.post("e1", "eve", text="spam"),
        ev.repost("k0", "kim", "eve", repost_id="eve-k0", comment="mine"),
        ev.repost("e1", "eve", "kim", repost_id="kim-e1", comment="wow"),
        ev.repost("e0", "eve", "lou", repost_id="lou-e0", via="kim-e0"),
        ev.repost("e1", "eve", "pal", repost_id="pal-e1", via="kim-e1"),
        ev.post("e2", "eve"),
        ev.follow("pal", "lou"),  # another account's graph event: applied in every order
        ev.purchase("o-e1", "fan", via_post="e1"),  # waits for e1's author in every order
        ev.purchase("o-kim-e1", "lou", via_repost="kim-e1"),  # waits for kim-e1
        # eve's own graph events, purchase and view pass the door in every order
        ev.follow("eve", "pal"), ev.hide("mute", "eve", "lou"),
        ev.purchase("o-eve", "eve", via_post="k0"), ev.view("eve", "shoe", via_post="k0"),
        ev.repost("l0", "lou", "kim", repost_id="kim-l0"),
        ev.unrepost("k0", "eve"),
        ev.delete("e2", "eve"),
        ev.post("k1", "kim"),
        ev.repost("k1", "kim", "eve", repost_id="eve-k1"),
    ]  # fmt: skip
    reinstate = ev.account("eve", "reinstate")
    tail = [reinstate, ev.post("e3", "eve"), ev.repost("e3", "eve", "kim", repost_id="kim-e3"),
            ev.repost("k1", "kim", "lou", repost_id="lou-k1")]  # fmt: skip
    return before, suspend, after, tail


async def apply(pipeline: Pipeline, settings, events: list[Event]) -> None:
    for n, e in enumerate(events):
        outcome = await pipeline.apply([record_of(settings, e, n)])
        assert outcome.dead_letters == [], (e, outcome.dead_letters)


async def test_a_late_suspension_gives_the_keys_of_one_that_came_first(redis, settings):
    before, suspend, after, tail = story(Events())
    orders = [0, len(after), *random.Random(11).sample(range(1, len(after)), 3)]
    dumps = {}
    for k in orders:
        prefix = f"{settings.key_prefix}{k}-{uuid.uuid4().hex[:4]}:"
        s = settings.with_(key_prefix=prefix)
        pipeline = Pipeline(FeedStore(redis, s), s, prefix=prefix)
        await apply(pipeline, s, [*before, *after[:k], suspend, *after[k:], *tail])
        dumps[k] = await snapshot(redis, prefix)
    first = dumps[0]
    # the door refused eve's later events in the first order, and kept her earlier ones
    names = set(first)
    assert "post:{e1}" not in names and "repost:{eve-k0}" not in names
    assert "post:{e0}" in names and "post:{e3}" in names
    assert first["awaiting_post:{e1}"] == ("set", [b"o-e1"])
    assert first["awaiting_repost:{kim-e1}"] == ("set", [b"o-kim-e1"])
    assert "credited:{eve}" not in names
    assert first["credited:{kim}"] == ("set", [b"o-eve"])  # eve's purchase, via kim's k0
    assert first["following:{eve}"] == ("set", [b"pal"])
    assert "viewed:{eve}" in names
    for k, got in dumps.items():
        diff = sorted(key for key in first.keys() | got.keys() if first.get(key) != got.get(key))
        assert not diff, f"suspension after {k} of eve's later events: {diff[:5]}"


async def test_a_suspension_landing_between_the_door_and_the_writes_is_taken_back(redis, settings):
    """Another worker applies the suspension after this batch passed the door and before
    its writes (run exactly there, not by timing): the batch takes it back itself."""
    before, suspend, after, _ = story(Events())
    tag = uuid.uuid4().hex[:4]
    ref = settings.with_(key_prefix=f"{settings.key_prefix}ref-{tag}:")
    reference = Pipeline(FeedStore(redis, ref), ref, prefix=ref.key_prefix)
    await apply(reference, ref, [*before, suspend, *after])
    s = settings.with_(key_prefix=f"{settings.key_prefix}race-{tag}:")
    pipeline = Pipeline(FeedStore(redis, s), s, prefix=s.key_prefix)
    other = Pipeline(FeedStore(redis, s), s, prefix=s.key_prefix)  # the other worker
    await apply(pipeline, s, before)
    door = pipeline.accounts.door
    landed = []

    async def door_then_suspension(events, *, namespace=None):  # type: ignore[no-untyped-def]
        refused = await door(events, namespace=namespace)
        if not landed:
            await other.apply([record_of(s, suspend)])
            landed.append(refused)
        return refused

    pipeline.accounts.door = door_then_suspension  # type: ignore[method-assign]
    batch = [record_of(s, e, n) for n, e in enumerate(after)]
    outcome = await pipeline.apply(batch)
    assert outcome.dead_letters == []
    assert landed == [{}]  # the door let the first segment pass: eve's posts, reposts
    expected, got = await snapshot(redis, ref.key_prefix), await snapshot(redis, s.key_prefix)
    diff = sorted(key for key in expected.keys() | got.keys() if expected.get(key) != got.get(key))
    assert not diff, diff[:5]


async def test_a_take_back_cut_short_after_orders_forget_ends_right_when_redelivered(
    redis, settings
):
    """The worker stops (a connection lost) after the orders forgot their creators and
    before their credits were taken back; the suspension, redelivered, ends as if it had
    come first: the credits are still listed on the orders, so they are found again."""
    before, suspend, after, _ = story(Events())
    tag = uuid.uuid4().hex[:4]
    ref = settings.with_(key_prefix=f"{settings.key_prefix}ref-{tag}:")
    await apply(Pipeline(FeedStore(redis, ref), ref, prefix=ref.key_prefix), ref,
                [*before, suspend, *after])  # fmt: skip
    s = settings.with_(key_prefix=f"{settings.key_prefix}cut-{tag}:")
    pipeline = Pipeline(FeedStore(redis, s), s, prefix=s.key_prefix)
    await apply(pipeline, s, [*before, *after])
    steps = pipeline.accounts.orders
    forgot: list[str] = []

    async def forget_then_stop(ctx, orders):  # type: ignore[no-untyped-def]
        calls = [(steps.scripts.order_forget, argv("order_forget", list(ctx), order_id=o))
                 for o in orders]  # fmt: skip
        assert all(not isinstance(r, Exception) for r in await run_scripts(steps.redis, calls))
        forgot.extend(orders)
        raise RedisConnectionError("connection lost")

    steps.forget = forget_then_stop  # type: ignore[method-assign]
    with pytest.raises(RedisConnectionError):
        await pipeline.apply([record_of(s, suspend)])
    assert "o-e1" in forgot and "o-kim-e1" in forgot
    del steps.forget  # the real one again, for the redelivery
    await apply(pipeline, s, [suspend])
    expected, got = await snapshot(redis, ref.key_prefix), await snapshot(redis, s.key_prefix)
    diff = sorted(key for key in expected.keys() | got.keys() if expected.get(key) != got.get(key))
    assert not diff, diff[:5]


async def test_windows_count_a_taken_back_attempt_as_the_door_counts_a_refusal(redis, settings):
    """kim reposts eve's post after eve's suspension (by event time), then lou's post;
    with one repost a minute, the second is rate-limited whether the suspension came
    first (the door refuses the first and counts its attempt) or last (the first is
    applied, then taken back, its attempt kept): same decisions, same keys."""
    ev = Events()
    before = [ev.follow("fan", "kim"), ev.post("e0", "eve"), ev.post("l0", "lou")]
    suspend = ev.account("eve", "suspend")
    after = [ev.repost("e0", "eve", "kim", repost_id="kim-e0"),
             ev.repost("l0", "lou", "kim", repost_id="kim-l0")]  # fmt: skip
    caps = replace(settings.caps, rate_max=1)
    dumps = []
    for log in ([*before, suspend, *after], [*before, *after, suspend]):
        prefix = f"{settings.key_prefix}w-{uuid.uuid4().hex[:6]}:"
        s = settings.with_(key_prefix=prefix, caps=caps)
        await apply(Pipeline(FeedStore(redis, s), s, prefix=prefix), s, log)
        dumps.append(await snapshot(redis, prefix))
    first, late = dumps
    assert first["decided:{l0}"][1][b"kim-l0"].startswith(b"rate_limited|")
    assert first["decided:{e0}"][1][b"kim-e0"] == b"refused|1|author_suspended"
    diff = sorted(k for k in first.keys() | late.keys() if first.get(k) != late.get(k))
    assert not diff, diff[:5]


def late_suspension(rng: random.Random) -> tuple[list[Event], Event, int]:
    """A random log (``test_log_order.story``, with product tags, purchases, status
    events and product views: :func:`with_shop`) in event-time order, a suspension of
    one of its users at a random time, and a random place where it arrives: anywhere
    after every event older than it. Nothing of the suspended user is left out: its own
    graph events, purchases and views in the window pass the door in every order, and
    orders naming its posts and reposts (or reposts of its posts) are settled afresh. Half
    the logs reinstate the user later; the suspension then arrives before that."""
    log = sorted(with_shop(rng, random_story(rng)), key=lambda e: e.ts)
    user = rng.choice(USERS)
    at = rng.randrange(len(log))
    suspend = Account(event_id="ev-suspend", ts=log[at].ts - 1, user_id=user, action="suspend")
    first = sum(1 for e in log if e.ts < suspend.ts)
    last = len(log)
    if rng.random() < 0.5 and at + 1 < len(log):
        # reinstated later, arriving in its place (after the suspension: README)
        ts = log[rng.randrange(at + 1, len(log))].ts - 1
        if ts > suspend.ts:
            last = sum(1 for e in log if e.ts < ts)
            log.insert(last, Account(event_id="ev-reinstate", ts=ts, user_id=user,
                                     action="reinstate"))  # fmt: skip
    return log, suspend, rng.randrange(first, last + 1)


PRODUCTS = ("pa", "pb", "pc")


def with_shop(rng: random.Random, log: list[Event]) -> list[Event]:
    """``log`` with product tags on some posts, and purchases (via a post, a repost, or
    both), cancellations, refunds and product views at random times in between, by any
    user (the one suspended too), naming any post or repost (the suspended user's too,
    and ones never made or made later)."""
    out: list[Event] = []
    posts: list[str] = []
    reposts: list[tuple[str, str]] = []  # (repost, its post)
    n = 0
    for e in log:
        if isinstance(e, Post):
            tags = tuple(sorted(rng.sample(PRODUCTS, rng.randrange(0, 3)))) or None
            e = replace(e, product_ids=tags)
            posts.append(e.post_id)
        elif isinstance(e, Repost):
            reposts.append((e.repost_id, e.post_id))
        out.append(e)
        if rng.random() < 0.35 and posts:
            n += 1
            out.extend(_shop_events(rng, n, e.ts + 500, posts, reposts))
    return out


def _shop_events(rng: random.Random, n: int, ts: int, posts: list[str],
                 reposts: list[tuple[str, str]]) -> list[Event]:  # fmt: skip
    """A purchase, maybe its cancellation or payment and refund, and a product view."""
    buyer, product = rng.choice(USERS), rng.choice(PRODUCTS)
    ghost = f"p{len(posts) + rng.randrange(3)}"  # a post made later, or never
    via_post = rng.choice([*posts, ghost, None])
    via_repost = None
    if reposts and rng.random() < 0.5:
        via_repost, of = rng.choice(reposts)
        via_post = rng.choice([of, None])
    order = f"o{n}"
    base = {"ts": ts}
    events: list[Event] = [
        Purchase(event_id=f"buy-{n}", order_id=order, buyer_id=buyer, product_id=product,
                 seller_id="shop", amount_cents=100 * (n % 7 + 1), currency="EUR",
                 via_post_id=via_post, via_repost_id=via_repost, **base),
    ]  # fmt: skip
    end = rng.choice([None, "cancelled", "refunded"])
    if end == "cancelled":
        events.append(OrderStatus(event_id=f"st-{n}-c", order_id=order, buyer_id=buyer,
                                  status="cancelled", seq=1, ts=ts + 100))  # fmt: skip
    elif end == "refunded":
        events += [OrderStatus(event_id=f"st-{n}-{s}", order_id=order, buyer_id=buyer,
                               status=s, seq=q, ts=ts + 100 * q)
                   for q, s in ((1, "paid"), (2, "refunded"))]  # fmt: skip
    viewer = rng.choice(USERS)
    events.append(ProductView(event_id=f"view-{n}", user_id=viewer, product_id=product,
                              via_post_id=via_post, via_repost_id=via_repost,
                              ts=ts + 50))  # fmt: skip
    return events


async def _compare_late(address: str, seed: int) -> None:
    log, suspend, place = late_suspension(random.Random(seed))
    first = sum(1 for e in log if e.ts < suspend.ts)
    redis = connect(f"redis://{address}/0")
    # Caps that bite in every story (its ~50 s fit in every window): decisions of other
    # reposts counted a taken-back attempt, as a door refusal counts it.
    caps = Caps(rate_max=2, frequently_forwarded_depth=2, forwarded_max=1, brake_reposts=2)
    dumps = []
    try:
        for where, again in ((first, []), (place, [suspend])):
            prefix = f"late{uuid.uuid4().hex[:8]}:"
            s = Settings(key_prefix=prefix, caps=caps)
            pipeline = Pipeline(FeedStore(redis, s), s, prefix=prefix)
            # the late one redelivered at once (its take-back is idempotent)
            await apply(pipeline, s, [*log[:where], suspend, *again, *log[where:]])
            dumps.append(await snapshot(redis, prefix))
    finally:
        await close(redis)
    expected, got = dumps
    diff = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
    assert not diff, f"seed {seed}, suspension of {suspend.user_id} at {place}: {diff[:5]}"


@hsettings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_random_logs_give_the_same_keys_wherever_the_suspension_arrives(layout, redis_service,
                                                                        seed):  # fmt: skip
    """On both layouts (``redis_service``: the session's server, or its cluster)."""
    asyncio.run(_compare_late(redis_service.address, seed))
