"""The activity keys the console reads (cascade, decision logs, amplified posts): written
through the pipeline, idempotent, independent of batch boundaries and arrival order."""

from __future__ import annotations

from feedamp.console import ConsoleData
from feedamp.feeds import FeedStore
from feedamp.feeds.activity import WINDOW_MS, Activity, ActivityKeys
from feedamp.models.decisions import Decision
from feedamp.streams.pipeline import Pipeline

from .factory import Events, record_of
from .snapshot import snapshot


def story(ev: Events) -> list:
    """alice posts; r1 reposts it to 3 followers, r2 (following r1) through r1's repost
    to 2, r3 through r2's to 1; a followers-only post's repost is refused."""
    events = [ev.follow(f, "r1") for f in ("x1", "x2", "x3", "r2")]
    events += [ev.follow(f, "r2") for f in ("y1", "y2", "r3")]
    events += [ev.follow("z1", "r3")]
    events += [ev.post("p1", "alice"), ev.post("p2", "alice", visibility="followers")]
    events += [
        ev.repost("p1", "alice", "r1"),
        ev.repost("p1", "alice", "r2", via="r-p1-r1"),
        ev.repost("p1", "alice", "r3", via="r-p1-r2"),
        ev.repost("p2", "alice", "r1"),
    ]
    return events


async def test_cascade_tree_decisions_and_reach(redis, settings):
    pipeline = Pipeline(FeedStore(redis, settings), settings)
    records = [record_of(settings, e, n) for n, e in enumerate(story(Events()))]
    outcome = await pipeline.apply(records)
    assert not outcome.dead_letters
    cascade = await ConsoleData(settings, redis).cascade("p1")
    (root,) = cascade.roots
    assert (root.reposter, root.depth, root.decision, root.reached) == ("r1", 1, "delivered", 4)
    (second,) = root.children
    assert (second.reposter, second.depth, second.via, second.reached) == ("r2", 2, "r-p1-r1", 3)
    (third,) = second.children
    assert (third.reposter, third.depth, third.reached) == ("r3", 3, 1)
    assert cascade.by_depth() == {1: (1, 4), 2: (1, 3), 3: (1, 1)} and cascade.reached == 8
    # the reach is the feeds that hold the post through that reposter
    for user in ("x1", "x2", "x3", "r2"):
        assert any(i.post_id == "p1" for i in (await pipeline_reader(redis, settings, user)))
    refused = await ConsoleData(settings, redis).cascade("p2")
    (node,) = refused.roots
    assert (node.decision, node.reasons, node.reached) == ("refused", ("followers_only",), 0)
    keys = ActivityKeys(settings.key_prefix)
    assert await redis.zcard(keys.decision_log("delivered")) == 3
    assert await redis.zcard(keys.decision_log("refused")) == 1
    top = await ConsoleData(settings, redis).top_posts(settings.key_prefix)
    # audience: followers of r1, r2, r3 (4 + 3 + 1) for p1; of r1 for p2
    assert [(t.post_id, t.recent, t.reposts, t.audience) for t in top] == [
        ("p1", 3, 3, 8), ("p2", 1, 1, 4),
    ]  # fmt: skip


async def pipeline_reader(redis, settings, user: str) -> list:
    data = ConsoleData(settings, redis)
    return (await data.user(user)).following


async def test_replayed_in_other_batches_gives_the_same_keys(redis, settings, uid):
    records = [record_of(settings, e, n) for n, e in enumerate(story(Events()))]
    await Pipeline(FeedStore(redis, settings), settings).apply(records)
    once = await snapshot(redis, settings.key_prefix)
    again = Pipeline(FeedStore(redis, settings), settings)
    for record in records:  # a redelivery, one record at a time
        await again.apply([record])
    assert await snapshot(redis, settings.key_prefix) == once
    other = settings.with_(key_prefix=uid("other") + ":")
    pipeline = Pipeline(FeedStore(redis, other), other)
    await pipeline.apply([record_of(other, e, n) for n, e in enumerate(story(Events()))][:9])
    await pipeline.apply([record_of(other, e, n) for n, e in enumerate(story(Events()))][9:])
    assert await snapshot(redis, other.key_prefix) == once


async def test_decision_log_keeps_the_window_before_the_newest_whatever_the_order(redis, settings):
    def decision(n: int, ts: int) -> Decision:
        return Decision(f"e{n}", f"r{n}", "u", "p", 1, "delivered", (), ts)

    times = [0, 10, WINDOW_MS + 10, WINDOW_MS + 20, 2 * WINDOW_MS + 10]
    forward = ActivityKeys("fwd:").decision_log("delivered")
    backward = ActivityKeys("bwd:").decision_log("delivered")
    activity = Activity(redis)
    for n, ts in enumerate(times):
        await activity.record("fwd:", [], [decision(n, ts)])
    for n, ts in reversed(list(enumerate(times))):
        await activity.record("bwd:", [], [decision(n, ts)])
    kept = await redis.zrange(forward, 0, -1, withscores=True)
    assert kept == await redis.zrange(backward, 0, -1, withscores=True)
    assert kept == [(b"e2", WINDOW_MS + 10), (b"e3", WINDOW_MS + 20), (b"e4", 2 * WINDOW_MS + 10)]
    await redis.delete(forward, backward)


async def test_reach_counts_backfilled_feeds_and_follows_withdrawals(redis, settings):
    """The reach is read from the feeds: a follow after the repost (backfilled) counts,
    an unfollow takes it back; the order of follow and repost changes nothing."""
    ev = Events()
    pipeline = Pipeline(FeedStore(redis, settings), settings)
    events = [ev.post("p1", "alice"), ev.repost("p1", "alice", "r1")]
    events += [ev.follow(f, "r1") for f in ("x1", "x2", "x3")]
    await pipeline.apply([record_of(settings, e, n) for n, e in enumerate(events)])
    data = ConsoleData(settings, redis)
    (node,) = (await data.cascade("p1")).roots
    assert (node.reached, node.exact) == (3, True)
    await pipeline.apply([record_of(settings, ev.unfollow("x2", "r1"), 99)])
    (node,) = (await data.cascade("p1")).roots
    assert node.reached == 2


async def test_reach_stops_at_the_page_budget(redis, settings, monkeypatch):
    ev = Events()
    events = [ev.follow(f"f{n}", "r1") for n in range(600)]
    events += [ev.post("p1", "alice"), ev.repost("p1", "alice", "r1")]
    await Pipeline(FeedStore(redis, settings), settings).apply(
        [record_of(settings, e, n) for n, e in enumerate(events)]
    )
    data = ConsoleData(settings, redis)
    (node,) = (await data.cascade("p1")).roots
    assert (node.reached, node.exact) == (600, True)
    monkeypatch.setattr("feedamp.console.data.REACH_CHUNK", 50)
    monkeypatch.setattr("feedamp.console.data.REACH_BUDGET", 150)
    cascade = await data.cascade("p1")
    (node,) = cascade.roots
    assert not node.exact and not cascade.exact and 150 <= node.reached < 600
