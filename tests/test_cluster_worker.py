"""The worker, ``replay --rebuild`` and ``verify`` on a real three-master Redis Cluster:
``REDIS_URL`` names one node, the commands detect the cluster and run the same slot-local
steps as on a standalone Redis."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import orjson
from feedamp.embedded.cluster import RedisClusterService
from feedamp.embedded.services import Service
from feedamp.embedded.worker import worker_env
from feedamp.feeds import FeedReader
from feedamp.feeds.connection import close, connect, is_cluster
from feedamp.feeds.namespace import generation_prefix
from feedamp.kafka.topics import ensure_topics

from .conftest import WorkerHandle, make_settings, wait_until
from .factory import Events
from .kafka import send_events
from .test_gifts import START, catalog_doc


def command(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "feedamp.cli", *args], env=worker_env(settings),
                          capture_output=True, text=True, timeout=180)  # fmt: skip


async def test_a_worker_replay_rebuild_and_verify_on_a_cluster(
    broker: Service, redis_cluster: RedisClusterService, tmp_path, uid
) -> None:
    """Follows, posts, reposts (decided, caps on), gifts and orders through a worker on a
    cluster, the orders sent before the post and repost they credit (they wait, then the
    origin steps hand them to the order steps); ``verify`` finds no difference, ``replay
    --rebuild`` switches to a new namespace the worker and readers follow, and ``verify``
    is still clean."""
    path = tmp_path / "campaigns.json"
    path.write_bytes(orjson.dumps(catalog_doc(["CODE-1"])))
    s = make_settings(broker, redis_cluster, campaigns=str(path))
    await ensure_topics(s)
    ev = Events(start_ms=START)
    ava, rex, bob, cat = uid("ava"), uid("rex"), uid("bob"), uid("cat")
    p1, r1 = uid("p1"), uid("r1")
    readers = [uid(f"fan{n}") for n in range(12)]
    log = [
        ev.purchase("o1", bob, amount=1500, via_post=p1),
        ev.purchase("o2", cat, amount=500, via_repost=r1),
        ev.status("o1", bob, "paid", seq=1),
        *(ev.follow(f, ava) for f in readers),
        ev.follow(bob, ava),
        ev.follow(cat, rex),
        ev.post(p1, ava, text="hello"),
        ev.repost(p1, ava, rex, comment="look", repost_id=r1),
        ev.gift(uid("g1"), ava, bob, "editor", message="thanks"),
        ev.post(uid("p2"), rex),
    ]
    await send_events(s, log)
    redis = connect(s.redis_url)
    assert is_cluster(redis)
    worker = WorkerHandle(s, tmp_path / "worker.log")
    try:
        reader = FeedReader(redis, key_prefix=s.key_prefix, campaigns=s.campaigns)

        async def applied() -> bool:
            stats = await reader.creator_stats(ava)
            inbox = (await reader.gift_inbox(bob)).items
            feed = [i.post_id for i in (await reader.following(cat)).items]
            return stats.orders == 2 and bool(inbox) and feed == [uid("p2"), p1]

        await wait_until(applied, timeout=120, what="the worker to apply the log on a cluster")
        assert [(g.code, g.message) for g in (await reader.gift_inbox(bob)).items] == [
            ("CODE-1", "thanks")
        ]
        rex_stats, ava_stats = await reader.creator_stats(rex), await reader.creator_stats(ava)
        assert (ava_stats.orders, ava_stats.revenue_cents) == (2, 2000)
        assert (rex_stats.orders, rex_stats.revenue_cents) == (1, 500)
        cat_feed = (await reader.following(cat)).items
        assert [(i.post_id, i.reposted_by) for i in cat_feed][1] == (p1, (rex,))
        for user in [bob, *readers]:
            assert [i.post_id for i in (await reader.following(user)).items] == [p1]
        assert (await reader.orders(bob)).items[0].status == "paid"

        out = await asyncio.to_thread(command, s, "verify", "--wait", "20")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "no differences" in out.stdout
        out = await asyncio.to_thread(command, s, "replay", "--rebuild", "--grace", "0")
        assert out.returncode == 0, out.stdout + out.stderr
        gen = generation_prefix(s.key_prefix, 1)
        assert f"switched the active namespace from {s.key_prefix!r} to {gen!r}" in out.stdout
        # The worker follows the pointer: a later event lands in the new namespace.
        await send_events(s, [ev.post(uid("p3"), ava)])

        async def in_new() -> bool:
            return uid("p3") in [i.post_id for i in (await reader.following(bob)).items]

        await wait_until(in_new, timeout=60, what="a post after the switch")
        out = await asyncio.to_thread(command, s, "verify", "--wait", "20")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "no differences" in out.stdout
    finally:
        worker.stop()
        await close(redis)
