"""Decisions end to end: one per repost on the `decisions` topic, and the same log
replayed by a second worker into a fresh Redis namespace gives the same decisions and
identical feeds."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from feedamp.embedded.services import Service
from feedamp.feeds import FeedReader
from feedamp.kafka.topics import ensure_topics

from .conftest import WorkerHandle, make_settings, wait_until
from .factory import Events
from .kafka import read_topic, send_events
from .snapshot import snapshot


def story(ev: Events) -> list:
    """Follows, posts, a forwarding chain, a burst that hits the rate cap, a refusal."""
    users = [f"u{i}" for i in range(7)]
    log = [ev.follow(f, u) for f in ("fan1", "fan2") for u in users]
    log += [ev.post("p1", "star"), ev.post("p2", "star", visibility="followers")]
    via = None
    for n, u in enumerate(users[:6]):  # chain: depths 1..6
        log.append(ev.repost("p1", "star", u, via=via, repost_id=f"chain{n}"))
        via = log[-1].repost_id
    log += [ev.repost(f"burst{i}", "star", "u6", repost_id=f"burst{i}") for i in range(7)]
    log.append(ev.repost("p2", "star", "u0", repost_id="closed"))
    log += [ev.hide("block", "fan2", "u1"), ev.unrepost("p1", "u2")]
    return log


@pytest.fixture(scope="module")
def log_settings(broker: Service, redis_server: Service):
    settings = make_settings(broker, redis_server)
    asyncio.run(ensure_topics(settings))
    return settings


async def test_decisions_are_published_once_per_repost_and_replay_agrees(
    log_settings, redis, tmp_path
):
    s = log_settings
    log = story(Events())
    reposts = [e for e in log if e.type == "repost"]
    await send_events(s, log)

    reader = FeedReader(redis, key_prefix=s.key_prefix)

    async def story_applied() -> bool:  # the block and the unrepost came last
        fan1 = {i.post_id: i.reposted_by for i in (await reader.following("fan1")).items}
        fan2 = (await reader.following("fan2")).items
        return (
            "p1" in fan1
            and "u2" not in fan1["p1"]
            and all("u1" not in i.reposted_by for i in fan2)
            and bool(fan2)
        )

    first = WorkerHandle(s, tmp_path / "first.log")
    try:
        records = await read_topic(s, s.topics.decisions, len(reposts), timeout=90)
        await wait_until(story_applied, what="the whole story to be applied")
    finally:
        first.stop()
    decisions = [orjson.loads(r.value) for r in records]
    assert sorted(d["repost_id"] for d in decisions) == sorted(e.repost_id for e in reposts)
    for d, r in zip(decisions, records, strict=True):
        assert set(d) == {"event_id", "repost_id", "reposter_id", "post_id", "depth",
                          "decision", "reasons", "ts"}  # fmt: skip
        assert r.key == d["post_id"].encode()
    by_id = {d["repost_id"]: d for d in decisions}
    assert [by_id[f"chain{n}"]["depth"] for n in range(6)] == [1, 2, 3, 4, 5, 6]
    assert by_id["chain3"]["decision"] == "delivered"
    assert by_id["chain4"]["decision"] == "restricted"
    assert "forwarded_many_times" in by_id["chain4"]["reasons"]
    assert [by_id[f"burst{i}"]["decision"] for i in range(7)] == ["delivered"] * 5 + [
        "rate_limited"
    ] * 2
    assert by_id["closed"]["decision"] == "refused"

    live = await snapshot(redis, s.key_prefix)
    fresh = s.with_(app_id=s.app_id + "-replay", key_prefix="replay-" + s.key_prefix)
    second = WorkerHandle(fresh, tmp_path / "second.log")
    try:
        records = await read_topic(s, s.topics.decisions, 2 * len(reposts), timeout=90)

        async def same_feeds() -> bool:
            return await snapshot(redis, fresh.key_prefix) == live

        try:
            await wait_until(same_feeds, what="the replayed namespace to equal the live one")
        except BaseException:
            replay = await snapshot(redis, fresh.key_prefix)
            diff = {k: (live.get(k), replay.get(k)) for k in set(live) | set(replay)
                    if live.get(k) != replay.get(k)}  # fmt: skip
            print("live vs replay differ:", diff)
            raise
    finally:
        second.stop()
    replayed = [orjson.loads(r.value) for r in records][len(reposts) :]
    assert sorted(replayed, key=lambda d: d["repost_id"]) == sorted(
        decisions, key=lambda d: d["repost_id"]
    )
