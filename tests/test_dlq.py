"""``feedamp dlq list`` and ``feedamp dlq replay`` against a running worker."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import orjson
from aiokafka import AIOKafkaProducer
from feedamp.embedded.worker import worker_env
from feedamp.feeds import FeedReader
from feedamp.ops.dlq import REPLAY_HEADER, Letter, list_letters, replay_letters

from .conftest import wait_until
from .factory import Events, to_json
from .kafka import read_topic, send, send_events


def test_letter_line_and_preview():
    letter = Letter(2, 7, "posts", 1, 42, "missing field 'author_id'", b"k",
                    b'{"type": "post",\n"text": "' + b"x" * 200 + b'"}')  # fmt: skip
    line = letter.line()
    assert line.startswith('2/7  posts[1]@42  missing field \'author_id\'  {"type": "post",\\n')
    assert line.endswith("...") and "\n" not in line
    assert Letter(0, 0, None, None, None, "", None, None).line() == "0/0  ?[?]@?    <no value>"


async def test_dead_letters_round_trip(worker, redis, uid):
    s = worker.settings
    ev = Events()
    alice, bob, good = uid("alice"), uid("bob"), uid("good")
    bad = orjson.dumps({"type": "post", "event_id": uid("e"), "ts": 1, "post_id": uid("bad")})
    await send_events(s, [ev.follow(bob, alice)])
    await send(s, [(s.topics.posts, uid("bad").encode(), bad)])  # no author: fails for good

    async def letters(n: int) -> bool:
        return len(await list_letters(s)) >= n

    await wait_until(lambda: letters(1), what="the bad post to be dead-lettered")
    # A record that failed for a passing reason (Redis out of memory, say): valid now.
    fixed = to_json(ev.post(good, alice))
    dead_letter_headers = [("feedamp-reason", b"redis rejected: OOM command not allowed"),
                           ("feedamp-topic", s.topics.posts.encode()),
                           ("feedamp-partition", b"0"), ("feedamp-offset", b"0")]  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(s.topics.dead_letter, fixed, good.encode(),
                                     headers=dead_letter_headers)  # fmt: skip
    finally:
        await producer.stop()

    dlq = [sys.executable, "-m", "feedamp.cli", "dlq"]
    out = await asyncio.to_thread(
        subprocess.run, [*dlq, "list"], env=worker_env(s), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and "2 dead letter(s)" in out.stderr
    assert any(f"{s.topics.posts}[" in x and "missing field 'author_id'" in x
               and uid("bad") in x for x in lines)  # fmt: skip
    assert any("redis rejected: OOM" in x and good in x for x in lines)
    out = await asyncio.to_thread(
        subprocess.run, [*dlq, "list", "--json"], env=worker_env(s), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    listed = [orjson.loads(x) for x in out.stdout.splitlines()]
    assert sorted(x["value"] for x in listed) == sorted([bad.decode(), fixed.decode()])

    # A dry run runs the worker's checks, sends nothing and remembers nothing.
    out = await asyncio.to_thread(
        subprocess.run, [*dlq, "replay", "--dry-run"], env=worker_env(s), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"would re-send 1 dead letter(s): {s.topics.posts} 1" in out.stdout
    assert "kept 1 that would fail again" in out.stdout
    assert "1  missing field 'author_id'" in out.stdout

    # Only the letter that passes the checks now is re-sent; the other is kept.
    stats = await replay_letters(s)
    assert (stats.total, dict(stats.sent)) == (1, {s.topics.posts: 1})
    assert dict(stats.kept) == {"missing field 'author_id'": 1}

    reader = FeedReader(redis, key_prefix=s.key_prefix, feed_buckets=s.feed_buckets)

    async def fixed_applied() -> bool:
        return [i.post_id for i in (await reader.following(bob)).items] == [good]

    await wait_until(fixed_applied, what="the re-sent valid post to reach bob's feed")
    # Run again with nothing fixed: nothing is sent, the dead-letter count stays.
    stats = await replay_letters(s)
    assert (stats.total, stats.skipped) == (0, 0)
    assert len(await list_letters(s)) == 2
    # From the beginning: every letter is checked again; the valid one is re-sent (applying
    # it again changes nothing), the bad one is still kept.
    stats = await replay_letters(s, from_beginning=True)
    assert (stats.total, stats.skipped) == (1, 1)
    posts = await read_topic(s, s.topics.posts, 3)  # the bad post, then 2 re-sent
    tags = [dict(r.headers)[REPLAY_HEADER].decode() for r in posts
            if REPLAY_HEADER in dict(r.headers)]  # fmt: skip
    assert len(tags) == 2 and len(set(tags)) == 1, tags
    assert await reader.following(bob) and len(await list_letters(s)) == 2
