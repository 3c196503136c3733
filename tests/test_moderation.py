"""Account moderation against a real Redis, through the worker's pipeline: suspension
refuses content at the door, hides at read time and cleans the stored entries; reinstatement
lets new events through; labels mark what a synthetic account authored."""

from __future__ import annotations

import pytest
from feedamp.feeds import FeedReader, FeedStore
from feedamp.feeds.keys import Keys, bucket_of
from feedamp.models.decisions import Decision, Refusal
from feedamp.streams import Pipeline

from .factory import Events, record_of

#: Every test that writes runs on a standalone Redis and on a three-master cluster.
LAYOUTS = ("standalone", "cluster")


@pytest.fixture
def world(redis, settings):
    pipeline = Pipeline(FeedStore(redis, settings), settings)
    return settings, pipeline, FeedReader(redis, key_prefix=settings.key_prefix)


async def run(settings, pipeline, events):
    outcome = await pipeline.apply([record_of(settings, e, n) for n, e in enumerate(events)])
    assert outcome.dead_letters == []
    return outcome.decisions


async def feed(reader: FeedReader, user: str) -> dict[str, tuple[str, ...]]:
    return {i.post_id: i.reposted_by for i in (await reader.following(user)).items}


def story(ev: Events) -> list:
    """eve posts and reposts; fans follow her and others; others repost her post."""
    return [
        ev.follow("fan", "eve"), ev.follow("fan", "kim"), ev.follow("pal", "kim"),
        ev.follow("fan", "lou"),
        ev.post("e1", "eve"), ev.post("k1", "kim"), ev.post("l1", "lou"),
        ev.repost("e1", "eve", "kim", repost_id="kim-e1"),  # reaches pal, who does not follow eve
        ev.repost("k1", "kim", "eve", repost_id="eve-k1"),  # eve's repost of kim's post
        ev.repost("l1", "lou", "eve", repost_id="eve-l1"),
        ev.repost("l1", "lou", "kim", repost_id="kim-l1"),  # l1 has another reposter
    ]  # fmt: skip


async def stored(redis, settings, user: str, post: str) -> bool:
    key = Keys(settings.key_prefix).feed(user, bucket_of(post, settings.feed_buckets))
    return await redis.zscore(key, post) is not None


async def test_suspension_hides_and_cleans_posts_and_reposts(world, redis):
    settings, pipeline, reader = world
    ev = Events()
    await run(settings, pipeline, story(ev))
    assert await feed(reader, "pal") == {"k1": (), "e1": ("kim",), "l1": ("kim",)}
    assert await feed(reader, "fan") == {"k1": ("eve",), "e1": ("kim",), "l1": ("kim", "eve")}
    await run(settings, pipeline, [ev.account("eve", "suspend")])
    assert await feed(reader, "pal") == {"k1": (), "l1": ("kim",)}
    # fan follows kim and lou: their posts stay, without eve's attribution.
    assert await feed(reader, "fan") == {"k1": (), "l1": ("kim",)}
    assert not await stored(redis, settings, "pal", "e1")  # cleaned, not only hidden
    assert not await stored(redis, settings, "fan", "e1")
    via = Keys(settings.key_prefix).via("fan", bucket_of("k1", settings.feed_buckets))
    assert await redis.hget(via, "k1") is None


async def test_reads_hide_a_suspended_account_before_cleaning(world, redis):
    """The filter at read time works on its own: state written without the cleaning."""
    settings, pipeline, reader = world
    ev = Events()
    await run(settings, pipeline, story(ev))
    suspend = ev.account("eve", "suspend")
    await pipeline.accounts.scripts.account(
        args=[settings.key_prefix, *_ctx(settings)[1:], "suspend", "eve", "", suspend.ts]
    )
    assert await stored(redis, settings, "pal", "e1")  # still stored...
    assert await feed(reader, "pal") == {"k1": (), "l1": ("kim",)}  # ...but not shown
    assert (await reader.following("fan")).items[0].comment is None
    fan = await feed(reader, "fan")
    assert fan == {"k1": (), "l1": ("kim",)}


def _ctx(settings):
    from feedamp.feeds.batch import context

    return context(settings)


async def test_the_door_refuses_a_suspended_accounts_content_only(world):
    """Posts and reposts (its own, and others' of its posts) are refused; its follows,
    blocks and purchases pass (facts about the account, seen by it alone while it is
    suspended), so they do not depend on when the suspension arrives."""
    settings, pipeline, reader = world
    ev = Events()
    await run(settings, pipeline, [ev.follow("fan", "eve"), ev.follow("fan", "kim"),
                                   ev.post("k1", "kim"), ev.post("e0", "eve")])  # fmt: skip
    before = ev.post("e-before", "eve")  # sent before the suspension, arrives after it
    suspend = ev.account("eve", "suspend")
    attempts = [
        ev.post("e1", "eve"),
        ev.repost("k1", "kim", "eve", repost_id="eve-k1"),
        ev.repost("e0", "eve", "kim", repost_id="kim-e0"),
        ev.follow("eve", "kim"),
        ev.purchase("o1", "eve", via_post="k1"),
        ev.hide("block", "eve", "lou"),
    ]
    decisions = await run(settings, pipeline, [suspend, *attempts, before])
    refusals = {d.type: d.reasons for d in decisions if isinstance(d, Refusal)}
    assert refusals == {"post": ("suspended",)}
    reposts = {d.repost_id: (d.decision, d.reasons) for d in decisions
               if isinstance(d, Decision)}  # fmt: skip
    assert reposts == {"eve-k1": ("refused", ("suspended",)),
                       "kim-e0": ("refused", ("author_suspended",))}  # fmt: skip
    assert all(d.to_json() for d in decisions)
    # her purchase is in her order center and credits kim (the sale happened)
    assert [o.order_id for o in (await reader.orders("eve")).items] == ["o1"]
    assert (await reader.creator_stats("kim")).orders == 1
    # her follow fills her own feed; her content reaches nobody
    assert set(await feed(reader, "eve")) == {"k1"}
    assert "e1" not in await feed(reader, "fan")
    assert before.event_id not in {d.event_id for d in decisions}  # by event time
    # Reinstated: new content passes; what was cleaned (e0) stays cleaned.
    reinstate = ev.account("eve", "reinstate")
    decisions = await run(settings, pipeline, [reinstate, ev.post("e2", "eve")])
    assert decisions == []
    assert await feed(reader, "fan") == {"e2": (), "e-before": (), "k1": ()}


async def test_suspension_follows_event_time(world):
    """An account event that arrives late still judges events by their own time."""
    settings, pipeline, reader = world
    ev = Events()
    suspend = ev.account("eve", "suspend", ts=1_800_000_000_000)
    reinstate = ev.account("eve", "reinstate", ts=1_800_000_100_000)
    await run(settings, pipeline, [ev.follow("fan", "eve"), reinstate, suspend])
    during = ev.post("during", "eve", ts=1_800_000_050_000)
    after = ev.post("after", "eve", ts=1_800_000_100_000)
    decisions = await run(settings, pipeline, [during, after])
    assert [(d.type, d.event_id) for d in decisions] == [("post", during.event_id)]
    assert set(await feed(reader, "fan")) == {"after"}


async def test_virtual_influencer_label_marks_every_entry_it_authored(world):
    settings, pipeline, reader = world
    ev = Events()
    await run(settings, pipeline, [
        ev.follow("fan", "bot"), ev.follow("fan", "kim"), ev.account("bot", "label",
                                                                      "virtual_influencer"),
        ev.post("b1", "bot"), ev.post("k1", "kim"), ev.repost("k1", "kim", "bot"),
    ])  # fmt: skip
    labels = {i.post_id: i.labels for i in (await reader.following("fan")).items}
    assert labels == {"b1": ("virtual_influencer",), "k1": ()}
    # unlabel, then a late label with an older time: the newer change wins.
    unlabel = ev.account("bot", "unlabel", "virtual_influencer")
    late = ev.account("bot", "label", "virtual_influencer", ts=unlabel.ts - 10)
    await run(settings, pipeline, [unlabel, late])
    assert all(i.labels == () for i in (await reader.following("fan")).items)
