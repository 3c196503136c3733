"""A batch of gifts is decided as each gift alone, in event-time order, whatever batches
they come in: on a standalone Redis in calls of the gifts script, every step of each
gift in turn (``lua/gifts.lua``), and on a Redis Cluster in rounds of slot-local steps
(a code pool running out releases a claim that a later gift of the sender may take).
Random gifts with every refusal reason (send limits, code pools running out and
releasing their claims, suspended senders and recipients, reinstatements, windows,
unknown offers, gifts to oneself), in random batches and redelivered, both ways,
against the same gifts one at a time through the steps: the same decisions and the same
keys."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence

import pytest
from feedamp.config import Settings
from feedamp.embedded.services import Service
from feedamp.feeds.accounts import AccountStore
from feedamp.feeds.connection import AnyRedis, close, connect
from feedamp.feeds.namespace import Namespace
from feedamp.feeds.shop.campaigns import parse_campaigns
from feedamp.feeds.shop.gifts import GIFTS_PER_CALL, GiftStore
from feedamp.models.events import Event, Gift

from .factory import Events
from .snapshot import snapshot

START, END = 1_700_000_000_000, 1_700_000_600_000
USERS = [f"u{n}" for n in range(6)]


def catalog():
    return parse_campaigns({"campaigns": [
        {"id": "spring", "send_limit": 2, "starts_at": START, "ends_at": END, "offers": [
            {"id": "editor", "partner": "CutPro", "title": "trial", "codes": ["E1", "E2", "E3"]},
            {"id": "music", "partner": "Beatbox", "title": "music", "codes": ["M1", "M2"]},
        ]},
        {"id": "open", "send_limit": 4, "offers": [
            {"id": "mic", "partner": "Lav", "title": "20% off a mic"},
        ]},
    ]})  # fmt: skip


@pytest.fixture
async def redis(redis_server: Service) -> AsyncIterator[AnyRedis]:
    client = connect(f"redis://{redis_server.address}/0")
    yield client
    await close(client)


def make_gifts(rng: random.Random, n: int) -> list[Gift]:
    """``n`` gifts: most inside the spring window, a few after it; offers with codes,
    without, and unknown; a few to oneself."""
    make = Events(START, id_prefix="g-")
    gifts = []
    for k in range(n):
        sender = rng.choice(USERS)
        recipient = sender if rng.random() < 0.05 else rng.choice(USERS)
        offer = rng.choices(["editor", "music", "mic", "nope"], [5, 3, 3, 1])[0]
        ts = START + rng.randrange(0, 700_000)  # some past the window's end
        gifts.append(make.gift(f"gift{k}", sender, recipient, offer, message=f"m{k}", ts=ts))
    return gifts


def accounts(rng: random.Random) -> list[Event]:
    """Suspensions, one reinstated later, at times inside the gifts' span."""
    make = Events(START, id_prefix="a-")
    one, two = rng.sample(USERS, 2)
    return [
        make.account(one, "suspend", ts=START + 200_000),
        make.account(one, "reinstate", ts=START + 400_000),
        make.account(two, "suspend", ts=START + 500_000),
    ]


def decided(applied) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {d.gift_id: (d.decision, tuple(d.reasons)) for d in applied.decisions}


async def apply_in(store: GiftStore, ns: Namespace, batches: Sequence[Sequence[Gift]]) -> dict:
    out: dict = {}
    for batch in batches:
        applied = await store.apply(batch, namespace=ns)
        assert applied.failures == []
        out.update(decided(applied))
    return out


@pytest.mark.parametrize("way", ["at_once", "in_steps"])
@pytest.mark.parametrize("seed", [1, 2, 3, 18, 19])
async def test_a_batch_decides_as_each_gift_alone_in_event_time_order(redis, seed, way):
    rng = random.Random(seed)
    tag = f"gao{seed}{way[3]}"
    settings = Settings(redis_url="redis://unused", key_prefix=f"{tag}:")
    at_once, alone = GiftStore(redis, settings, catalog()), GiftStore(redis, settings, catalog())
    assert at_once.scripts.gifts is not None  # a standalone Redis: the gifts script
    if way == "in_steps":
        at_once.scripts.gifts = None  # the slot-local steps, as on a cluster
    alone.scripts.gifts = None
    ns_at_once = Namespace.of(settings, f"{tag}a:")
    ns_alone = Namespace.of(settings, f"{tag}b:")
    account_events = accounts(rng)
    for ns in (ns_at_once, ns_alone):
        await AccountStore(redis, settings).apply(account_events, namespace=ns)
    gifts = make_gifts(rng, 3 * GIFTS_PER_CALL)
    in_order = sorted(gifts, key=lambda g: (g.ts, g.event_id))
    # At once: consecutive runs of the event-time order (as the watermark releases
    # them), each shuffled (a batch is decided in event-time order whatever its order),
    # of sizes up to more than one call's; one redelivered at once.
    batches, n = [], 0
    while n < len(in_order):
        size = rng.choice([1, 7, GIFTS_PER_CALL + 5, 2 * GIFTS_PER_CALL])
        batch = in_order[n : n + size]
        batches.append(rng.sample(batch, len(batch)))
        n += size
    batches.insert(2, batches[1])
    got = await apply_in(at_once, ns_at_once, batches)
    want = await apply_in(alone, ns_alone, [[g] for g in in_order])
    assert got == want
    reasons = {r for _, why in want.values() for r in why}
    # Every refusal reason came up, and some gifts were accepted.
    assert reasons == {"send_limit", "codes_exhausted", "suspended", "recipient_suspended",
                       "outside_window", "unknown_offer", "self_gift"}  # fmt: skip
    assert sum(d == "accepted" for d, _ in want.values()) > 10
    assert await snapshot(redis, ns_at_once.prefix) == await snapshot(redis, ns_alone.prefix)
    # And a whole redelivery changes nothing.
    before = await snapshot(redis, ns_at_once.prefix)
    assert await apply_in(at_once, ns_at_once, [in_order]) == want
    assert await snapshot(redis, ns_at_once.prefix) == before


async def test_a_gift_whose_step_fails_fails_alone(redis):
    settings = Settings(redis_url="redis://unused", key_prefix="gaf:")
    store = GiftStore(redis, settings, catalog())
    ns = Namespace.of(settings, "gaf:")
    make = Events(START + 1000, id_prefix="f-")
    gifts = [make.gift(f"f{k}", sender, "u5", "mic") for k, sender in enumerate("abc")]
    await redis.set(ns.keys.gift_claims("b"), "not a hash")  # b's claim step errs
    applied = await store.apply(gifts, namespace=ns)
    assert [f.index for f in applied.failures] == [1]
    assert "WRONGTYPE" in str(applied.failures[0].error)
    assert decided(applied) == {"f0": ("accepted", ()), "f2": ("accepted", ())}
    assert await redis.zrange(ns.keys.gift_inbox("u5"), 0, -1) == [b"f0", b"f2"]
