"""The Order Center's product sections end to end: tags, views and purchases through a
worker on the real broker and Redis, the ``feedamp orders`` command, dead letters from the
``product-views`` topic, a replay of the whole log that leaves every key as it was, and
``feedamp verify`` clean."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from feedamp.embedded.worker import worker_env
from feedamp.feeds import FeedReader
from feedamp.ops.replay import replay

from .conftest import wait_until
from .factory import Events
from .kafka import read_topic, send, send_events
from .snapshot import snapshot
from .test_replay import caught_up
from .test_verify import verify_command


async def test_tags_views_and_conversions_through_the_worker_and_a_replay(worker, redis, uid):
    s = worker.settings
    ev = Events()
    bob, ava, rex, shoe, hat = uid("bob"), uid("ava"), uid("rex"), uid("shoe"), uid("hat")
    p1, p2, r1 = uid("p1"), uid("p2"), uid("r1")
    view = ev.view(bob, hat, via_post=p2)  # before its post: it waits for nothing
    await send_events(s, [view])
    await send_events(s, [
        ev.follow(bob, rex), ev.follow(bob, ava),
        ev.post(p1, ava, product_ids=(shoe, hat)), ev.post(p2, ava, product_ids=(hat,)),
        ev.repost(p1, ava, rex, comment="yes", repost_id=r1),
        ev.purchase(uid("o1"), uid("cy"), 2500, via_repost=r1, product=shoe),
        ev.purchase(uid("o2"), bob, 900, via_post=p2, product=hat),
    ])  # fmt: skip
    bad = b'{"type": "product_view", "event_id": "bad", "ts": 1}'
    await send(s, [(s.topics.product_views, b"k", bad)])
    reader = FeedReader(redis, key_prefix=s.key_prefix, feed_buckets=s.feed_buckets)

    async def converted() -> bool:
        stats = await reader.creator_stats(ava)
        return len(stats.tagged) == 2 and bool((await reader.recommended(bob)).items)

    await wait_until(converted, what="the tagged posts to convert")
    await wait_until(lambda: caught_up(s), what="the worker to commit every record")
    center = await reader.order_center(bob)
    assert [(v.product_id, v.via_post_id) for v in center.viewed.items] == [(hat, p2)]
    assert [(t.product_id, t.post_id) for t in center.tagged.items] == [
        (hat, p1), (shoe, p1), (hat, p2)]  # fmt: skip
    assert [(r.product_id, r.reposted_by) for r in center.recommended.items] == [(shoe, (rex,))]
    stats = await reader.creator_stats(ava)
    assert {(t.kind, t.id, t.orders, t.revenue_cents) for t in stats.tagged} == {
        ("post", p1, 1, 2500), ("post", p2, 1, 900)}  # fmt: skip
    letters = await read_topic(s, s.topics.dead_letter, 1)
    views_topic = s.topics.product_views.encode()
    mine = [r for r in letters if dict(r.headers).get("feedamp-topic") == views_topic]
    assert [dict(r.headers)["feedamp-reason"] for r in mine] == [b"missing field 'user_id'"]

    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "feedamp.cli", "orders",
                                  bob], env=worker_env(s), capture_output=True, text=True,
                                  timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Looked at (1 products)" in out.stdout and f"  {hat}  from post {p2}" in out.stdout
    assert f"{shoe}  in post {p1} by {ava}" in out.stdout
    assert f"Recommended (1 products)\n  {shoe}  via posts {p1}  reposted by {rex}" in out.stdout

    before = await snapshot(redis, s.key_prefix)
    stats = await replay(s)  # the whole log again, through the same pipeline
    assert stats.events >= 8
    assert await snapshot(redis, s.key_prefix) == before
    # And a rebuild into a scratch namespace has the same keys: verify is clean.
    out = await asyncio.to_thread(verify_command, s)
    assert out.returncode == 0 and "no differences" in out.stdout, out.stdout + out.stderr
