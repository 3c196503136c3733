"""End to end: events on the real broker, the Faust worker, feeds read back from Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import orjson
import pytest
from feedamp.embedded.worker import worker_env
from feedamp.feeds import FeedReader

from .conftest import WorkerHandle, wait_until
from .factory import Events, to_json
from .kafka import read_topic, send, send_events


@pytest.fixture
async def feeds(worker: WorkerHandle, redis):
    return FeedReader(
        redis, key_prefix=worker.settings.key_prefix, feed_buckets=worker.settings.feed_buckets
    )


async def reposters(reader: FeedReader, user: str) -> dict[str, tuple[str, ...]]:
    return {i.post_id: i.reposted_by for i in (await reader.following(user)).items}


async def test_repost_reaches_followers_through_kafka(worker, feeds, uid):
    alice, bob, carol, dave = uid("alice"), uid("bob"), uid("carol"), uid("dave")
    p1 = uid("p1")
    ev = Events()
    await send_events(worker.settings, [
        ev.follow(bob, alice), ev.follow(carol, bob), ev.follow(dave, bob), ev.follow(dave, carol),
        ev.post(p1, alice, text="clip"), ev.repost(p1, alice, bob, comment="look"),
        ev.repost(p1, alice, carol),
    ])  # fmt: skip

    async def done() -> bool:
        return (await reposters(feeds, dave)).get(p1) == (carol, bob)

    await wait_until(done, what="dave's feed to show p1 reposted by carol and bob")
    (item,) = (await feeds.following(carol)).items
    assert (item.post_id, item.author_id, item.reposted_by, item.comment, item.text) == (
        p1, alice, (bob,), "look", "clip",
    )  # fmt: skip
    assert await reposters(feeds, bob) == {p1: ()}


async def test_duplicate_delivery_leaves_the_same_feed(worker, feeds, uid, redis):
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    ev = Events()
    log = [ev.follow(bob, alice), ev.follow(carol, bob), ev.post(uid("p1"), alice),
           ev.repost(uid("p1"), alice, bob), ev.post(uid("p2"), alice)]  # fmt: skip
    await send_events(worker.settings, log)

    async def both() -> bool:
        return len((await feeds.following(bob)).items) == 2 and bool(
            (await feeds.following(carol)).items
        )

    await wait_until(both, what="first delivery")
    before = [(await feeds.following(u)).items for u in (bob, carol)]
    marker = uid("marker")
    await send_events(worker.settings, [*log, ev.post(marker, alice)])  # all again, then a marker

    async def marker_seen() -> bool:
        return marker in [i.post_id for i in (await feeds.following(bob)).items]

    await wait_until(marker_seen, what="the marker after the duplicates")
    after = [(await feeds.following(u)).items for u in (bob, carol)]
    assert [i for i in after[0] if i.post_id != marker] == before[0]
    assert after[1] == before[1]


async def test_bad_input_is_dead_lettered_and_the_worker_goes_on(worker, feeds, uid):
    s = worker.settings
    t = s.topics
    author, reader_id, good = uid("author"), uid("reader"), uid("good")
    ev = Events()
    bad = [
        (t.posts, b"k1", b"{this is not json"),
        (t.posts, b"k2", orjson.dumps({"type": "post", "event_id": "e", "ts": 1, "post_id": "x"})),
        (t.posts, b"k3", orjson.dumps({"type": "hologram", "event_id": "e", "ts": 1})),
        (t.posts, b"k4", orjson.dumps({"type": "post", "event_id": "e", "ts": 1, "post_id": "x",
                                       "author_id": "a", "text": "x" * (s.max_event_bytes)})),
        (t.posts, b"k5", to_json(ev.follow(uid("a"), uid("b")))),  # right event, wrong topic
        (t.graph, b"k6", orjson.dumps({"type": "follow", "event_id": "e", "ts": 1,
                                       "follower_id": "evil:{x}", "followee_id": "b"})),
        (t.posts, b"k7", None),  # tombstone
    ]  # fmt: skip
    reasons = ["malformed JSON", "missing field 'author_id'", "unknown type 'hologram'",
               "event too large", "does not belong on topic", "forbidden character",
               "empty value"]  # fmt: skip
    await send_events(s, [ev.follow(reader_id, author)])
    sent = await send(s, bad)
    await send_events(s, [ev.post(good, author)])

    async def good_applied() -> bool:
        return [i.post_id for i in (await feeds.following(reader_id)).items] == [good]

    await wait_until(good_applied, what="the valid post after the bad ones")
    letters = await read_topic(s, t.dead_letter, len(bad))
    by_key = {r.key: r for r in letters}
    for (topic, key, value), meta, reason in zip(bad, sent, reasons, strict=True):
        letter = by_key[key]
        headers = {k: v.decode() for k, v in letter.headers}
        assert letter.value == value, "original bytes are kept"
        assert headers["feedamp-topic"] == topic
        assert headers["feedamp-partition"] == str(meta.partition)
        assert headers["feedamp-offset"] == str(meta.offset)
        assert reason in headers["feedamp-reason"], (reason, headers["feedamp-reason"])
    assert worker.proc.poll() is None, "the worker is still running"


async def test_produce_and_feed_commands(worker, uid, tmp_path):
    alice, bob, p1 = uid("alice"), uid("bob"), uid("p1")
    ev = Events()
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(to_json(e) for e in [ev.follow(bob, alice), ev.post(p1, alice)]))
    env = worker_env(worker.settings)
    cmd = [sys.executable, "-m", "feedamp.cli"]
    out = subprocess.run([*cmd, "produce", str(path)], env=env, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert b"published 2 events" in out.stdout

    async def shown() -> bool:
        result = await asyncio.to_thread(
            subprocess.run, [*cmd, "feed", bob], env=env, capture_output=True, timeout=60
        )
        return f"post {p1} by {alice}".encode() in result.stdout

    await wait_until(shown, what="feedamp feed to print the post")


def test_produce_refuses_a_line_it_cannot_route(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"type": "post", "post_id": "p"}\n{"type": "nope"}\n')
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    out = subprocess.run([sys.executable, "-m", "feedamp.cli", "produce", str(path)], env=env,
                         capture_output=True, timeout=60)  # fmt: skip
    assert out.returncode == 2
    assert b"line 2: not an event with a known 'type'" in out.stderr


async def test_feed_for_you_and_rebuild_feed_commands(worker, feeds, uid):
    alice, bob, fan, p1 = uid("alice"), uid("bob"), uid("fan"), uid("p1")
    ev = Events()
    await send_events(worker.settings, [ev.follow(fan, bob), ev.post(p1, alice),
                                        ev.repost(p1, alice, bob)])  # fmt: skip

    async def delivered() -> bool:
        return bool((await feeds.for_you(fan)).items)

    await wait_until(delivered, what="the repost in fan's For You feed")
    env = worker_env(worker.settings)
    cmd = [sys.executable, "-m", "feedamp.cli"]
    out = subprocess.run([*cmd, "feed", fan, "--for-you"], env=env, capture_output=True,
                         timeout=60, text=True)  # fmt: skip
    assert f"For You feed of {fan} (1 items)" in out.stdout
    assert f"reposted by {bob}" in out.stdout
    before = (await feeds.following(fan)).items
    out = subprocess.run([*cmd, "rebuild-feed", fan], env=env, capture_output=True,
                         timeout=60, text=True)  # fmt: skip
    assert out.returncode == 0 and "from 1 followees" in out.stdout, out.stderr
    assert (await feeds.following(fan)).items == before
