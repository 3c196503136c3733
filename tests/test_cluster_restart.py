"""A Redis Cluster master restarting under a running worker is waited out like a Redis
outage: the batches that reach it fail, are retried whole (every write is idempotent) and
land once it is back (its scripts loaded again after ``NOSCRIPT``); ``feedamp verify`` is
then clean.

The cluster is a dedicated one with an append-only file per master, so the restarted
master comes back with its data, node id and slots (the session's cluster keeps nothing on
disk). The master is down for less than the cluster's node timeout, so no failover starts:
the restart, not a failover, is what is tested.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import orjson
import pytest
from feedamp.embedded.cluster import RedisClusterService, start_redis_cluster
from feedamp.embedded.services import Service
from feedamp.embedded.worker import worker_env
from feedamp.feeds import FeedReader
from feedamp.feeds.connection import close, connect
from feedamp.kafka.topics import ensure_topics

from .conftest import WorkerHandle, make_settings, wait_until
from .factory import Events
from .kafka import send_events
from .test_gifts import catalog_doc
from .test_replay import caught_up

#: Seconds the master stays down: long enough for the worker to meet it, shorter than the
#: cluster's node timeout (5 s).
DOWN = 2.0


@pytest.fixture
def persistent_cluster() -> Iterator[RedisClusterService]:
    cluster = start_redis_cluster(persistent=True)
    yield cluster
    cluster.stop()


async def test_a_master_restart_under_a_worker_is_waited_out(
    broker: Service, persistent_cluster: RedisClusterService, tmp_path, uid
) -> None:
    path = tmp_path / "campaigns.json"
    path.write_bytes(orjson.dumps(catalog_doc([])))
    s = make_settings(broker, persistent_cluster, campaigns=str(path))
    await ensure_topics(s)
    ev = Events()
    author, fans = uid("ava"), [uid(f"fan{n}") for n in range(30)]
    first = [*(ev.follow(f, author) for f in fans), ev.post(uid("p0"), author)]
    during = [ev.post(uid(f"p{n}"), author) for n in range(1, 6)]
    during += [ev.repost(uid("p1"), author, fans[0], repost_id=uid("r1")),
               ev.gift(uid("g1"), fans[1], fans[2], "mic"),
               ev.purchase(uid("o1"), fans[3], amount=900, via_post=uid("p2"),
                           via_repost=uid("r1"))]  # fmt: skip
    redis = connect(s.redis_url)
    worker = WorkerHandle(s, tmp_path / "worker.log")
    try:
        await send_events(s, first)
        await wait_until(lambda: caught_up(s), what="the worker to apply the first events")
        # Master 1 (not the node REDIS_URL names) goes down; events keep coming.
        await asyncio.to_thread(persistent_cluster.stop_node, 1)
        await send_events(s, during)

        async def retrying() -> bool:
            return "unavailable" in worker.log()

        await wait_until(retrying, what="the worker to retry while a master is down")
        await asyncio.sleep(DOWN)
        await asyncio.to_thread(persistent_cluster.start_node, 1)
        await wait_until(lambda: caught_up(s), timeout=120, what="the worker to catch up")
        reader = FeedReader(redis, key_prefix=s.key_prefix, campaigns=s.campaigns)
        want = [uid(f"p{n}") for n in range(5, -1, -1)]
        for fan in fans:
            assert [i.post_id for i in (await reader.following(fan)).items] == want
        stats = await reader.creator_stats(fans[0])
        assert (stats.orders, stats.revenue_cents) == (1, 900)
        assert [g.gift_id for g in (await reader.gift_inbox(fans[2])).items] == [uid("g1")]
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "feedamp.cli", "verify", "--wait", "20"],
            env=worker_env(s), capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert "no differences" in out.stdout
        assert worker.proc.poll() is None
    finally:
        worker.stop()
        await close(redis)
