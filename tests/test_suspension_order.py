"""A suspension gives the same Redis wherever it arrives among the account's later events.

The same log goes through the worker's pipeline (door, stores, activity) in several
arrival orders, on the real Redis of each layout: the suspension first, as in event-time
order, and then after some or all of the account's later posts and reposts (and others'
reposts of its posts), which are applied and must then be taken back. A reinstatement and
events after it close the log in every order. Every key of the namespace is compared.
"""

from __future__ import annotations

import random
import uuid

from feedamp.feeds import FeedStore
from feedamp.models.events import Event
from feedamp.streams import Pipeline

from .factory import Events, record_of
from .snapshot import snapshot

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

    async def door_then_suspension(events, *, prefix=None):  # type: ignore[no-untyped-def]
        refused = await door(events, prefix=prefix)
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
