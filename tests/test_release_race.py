"""The release cannot get ahead of a batch's writes.

A worker's release timer runs on the same event loop as the batch in hand, so it can run
while a batch is between parking its reposts and writing its posts. Whatever it decides
there must already see that batch's posts: a partition's progress may only pass an event
once the event is in Redis. The test runs a release at exactly that point, through the
pipeline's ``before_write`` hook, instead of hoping a timer lands there.
"""

from __future__ import annotations

from dataclasses import replace

import orjson
from feedamp.feeds import FeedStore
from feedamp.models import key_of
from feedamp.streams import Outcome, Record
from feedamp.streams.pipeline import Pipeline, progress_field

from .factory import Events, to_json

LATENESS_MS = 200


def records(topic: str, events, first_offset: int = 0) -> list[Record]:
    """Events as records of partition 0 of ``topic``."""
    return [Record(topic, 0, first_offset + n, key_of(e).encode(), to_json(e), e.ts)
            for n, e in enumerate(events)]  # fmt: skip


async def test_a_release_during_a_batch_sees_the_batchs_posts(redis, settings, uid):
    s = settings.with_(caps=replace(settings.caps, lateness_ms=LATENESS_MS))
    posts, reposts = s.topics.posts, s.topics.reposts
    pipeline = Pipeline(FeedStore(redis, s), s, partitions=lambda: [
        progress_field(posts, 0), progress_field(reposts, 0)])  # fmt: skip
    assert pipeline.watermarked

    ev = Events(start_ms=1_700_000_000_000)
    t = ev.ts
    closed, star, fan = uid("closed"), uid("star"), uid("fan")
    # A followers-only post, and a later public one that moves the posts partition's
    # progress past the repost.
    post = ev.post(closed, star, ts=t - 100, visibility="followers")
    later_post = ev.post(uid("open"), star, ts=t + LATENESS_MS + 100)
    repost = ev.repost(closed, star, fan, ts=t, repost_id=uid("r"))
    # A later reposts-topic event, so the reposts partition's progress passes the repost.
    later_repost = ev.repost(uid("other"), star, fan, ts=t + LATENESS_MS + 300)

    decided: list[dict] = []

    async def publish(outcome: Outcome) -> None:
        decided.extend(orjson.loads(d.to_json()) for d in outcome.decisions)

    # The reposts arrive first: parked, and nothing is released (the posts partition has
    # not reported yet).
    await pipeline.apply(records(reposts, [repost, later_repost]))
    assert (await pipeline.release(publish)).decisions == []

    # The timer fires while the posts batch is in hand, after its progress could have
    # been raised and before its posts are written.
    in_gap: list[Outcome] = []

    async def release_in_the_gap() -> None:
        in_gap.append(await pipeline.release(publish))

    pipeline.before_write = release_in_the_gap
    await pipeline.apply(records(posts, [post, later_post]))
    pipeline.before_write = None
    assert len(in_gap) == 1, "the hook did not run"
    await pipeline.release(publish)  # what the worker does after each batch

    mine = [d for d in decided if d["repost_id"] == repost.repost_id]
    assert len(mine) == 1, decided
    assert (mine[0]["decision"], mine[0]["reasons"]) == ("refused", ["followers_only"])
    assert [d["repost_id"] for d in decided] == [repost.repost_id]  # the later one waits
