"""The console's reach of each repost (``ConsoleData.cascade``) counts the followers whose
Following feed lists the reposter, on a standalone Redis (one read-only script step at a
time) and on a Redis Cluster (the followers' keys on every master: ``SSCAN`` and
``HGET`` steps), labelled reposters included wherever they stand in the list."""

from __future__ import annotations

import asyncio
import uuid

from feedamp.config import Caps, Settings
from feedamp.console.data import ConsoleData
from feedamp.feeds import FeedStore
from feedamp.feeds.connection import close, connect
from feedamp.streams import Pipeline

from .factory import Events, record_of

LAYOUTS = ("standalone", "cluster")


async def _reach(address: str) -> tuple[dict[str, int], dict[str, bool]]:
    ev = Events()
    # fan follows a, b and c; bea only b; cat only c. b reposts through a at depth 2,
    # labelled forwarded_many_times, and c reposts last: fan's list is "c,^b,a".
    log = [
        ev.follow("fan", "a"), ev.follow("fan", "b"), ev.follow("fan", "c"),
        ev.follow("bea", "b"), ev.follow("cat", "c"),
        ev.post("p", "author"),
        ev.repost("p", "author", "a", repost_id="ra"),
        ev.repost("p", "author", "b", repost_id="rb", via="ra"),
        ev.repost("p", "author", "c", repost_id="rc"),
    ]  # fmt: skip
    prefix = f"reach{uuid.uuid4().hex[:8]}:"
    s = Settings(key_prefix=prefix, caps=Caps(frequently_forwarded_depth=2))
    redis = connect(f"redis://{address}/0")
    try:
        pipeline = Pipeline(FeedStore(redis, s), s, prefix=prefix)
        for n, e in enumerate(log):
            outcome = await pipeline.apply([record_of(s, e, n)])
            assert outcome.dead_letters == [], e
        view = await ConsoleData(s, redis).cascade("p")
    finally:
        await close(redis)
    nodes = list(view.nodes())
    return {n.reposter: n.reached for n in nodes}, {n.reposter: n.exact for n in nodes}


def test_reach_counts_every_follower_holding_the_reposter(layout, redis_service):
    """On both layouts (``redis_service``: the session's server, or its cluster)."""
    reached, exact = asyncio.run(_reach(redis_service.address))
    assert reached == {"a": 1, "b": 2, "c": 2}
    assert all(exact.values())
