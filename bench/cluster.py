"""Benchmark: fan-out on a three-master Redis Cluster against one standalone Redis.

Starts a standalone Redis and an embedded three-master cluster (``REDIS_TUNING`` on every
node), writes the same follow graph to both (authors with a skewed number of followers
drawn from one user pool), then applies the same posts and reposts (each repost of an
earlier post, by another author: Following with attribution and For You) through
``FeedStore.apply`` in batches, as a worker does: the same code on both layouts (origin
steps, then delivery steps grouped by node: one group on the standalone Redis). Caps are
off (the repost decision is not measured here).

The measure is **Redis CPU per delivery**: the sum over nodes of the ``used_cpu_user`` +
``used_cpu_sys`` deltas from ``INFO cpu`` across the deliveries, divided by the feed
entries pushed. Unlike wall time it holds up on a shared machine. Also the cluster's
balance: the busiest master's share of keys and of that CPU against the mean (targets:
cluster cost at most 1.25x standalone; busiest node at most 1.25x the mean).

Also the **fan-out ratio** of each layout: deliveries/s through ``FeedStore.apply`` (the
wall time of the deliveries, in this process, no Kafka) over the ZADD ceiling of
``bench/run.py`` (``redis-benchmark -P 64 -t zadd``, best of two) measured on the
standalone Redis in the same run, in two shapes:

- **N = 1,000** (``fanout_ratio_cluster``, ``fanout_ratio_standalone``): reposts by 4
  reposters of fresh posts, each reaching the same 1,000 followers, as ``bench/run.py``
  measures the live fan-out (``fanout_ratio``): the shape issue 14's target names;
- **mixed** (``fanout_ratio_cluster_mixed``, ``fanout_ratio_standalone_mixed``): the posts
  and reposts above, alternating, reaching about 150 followers each, mostly from
  different sources: bound by per-event steps more than by deliveries.

The cluster's figure is three masters on this machine's cores against one server's
ceiling. Caps off, For You on.

Run ``python bench/cluster.py`` (``--posts N``, default 2,000, and as many reposts, and
``--wide M`` reposts to 1,000 followers, default 400; ``--quick`` for 200 and 200). The
last line printed is machine-readable:

    cost_ratio=... standalone_us=... cluster_us=... busiest_keys=... busiest_cpu=...
    deliveries=... fanout_ratio_cluster=... fanout_ratio_standalone=...
    fanout_ratio_cluster_mixed=... fanout_ratio_standalone_mixed=... ceiling_ops_per_s=...
    (on one line; microseconds of Redis CPU per delivery, of the mixed shape)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from dataclasses import dataclass

from feedamp.config import Caps, Settings
from feedamp.embedded.cluster import start_redis_cluster
from feedamp.embedded.services import start_redis
from feedamp.feeds import FeedStore, Keys
from feedamp.feeds.cluster import info_per_master
from feedamp.feeds.connection import AnyRedis, close, connect
from feedamp.models.events import Event, Post, Repost
from run import redis_ceiling

#: ``redis-benchmark`` requests per ceiling run, and runs (the best counts).
CEILING_REQUESTS, CEILING_RUNS = 300_000, 2
USERS = 20_000
AUTHORS = 200
#: Posts handed to the store (standalone) or delivered concurrently (cluster) at once.
BATCH = 50
#: The N = 1,000 shape: followers, and the reposters they all follow.
WIDE_FOLLOWERS, WIDE_REPOSTERS = 1_000, 4


@dataclass
class Run:
    """Redis CPU seconds per master and deliveries of one layout."""

    cpu: dict[str, float]
    deliveries: int
    keys: dict[str, int]
    seconds: float

    @property
    def us_per_delivery(self) -> float:
        return 1e6 * sum(self.cpu.values()) / max(self.deliveries, 1)

    @property
    def per_s(self) -> float:
        """Deliveries per second of wall time."""
        return self.deliveries / self.seconds if self.seconds else 0.0

    def busiest(self, values: dict[str, float] | dict[str, int]) -> float:
        """The largest value over the mean (1.0 on one node)."""
        mean = sum(values.values()) / len(values)
        return max(values.values()) / mean if mean else 1.0


def graph(seed: int = 7) -> dict[str, list[str]]:
    """Author -> followers: follower counts skewed (a few large accounts)."""
    rng = random.Random(seed)
    users = [f"u{i}" for i in range(USERS)]
    return {
        f"a{a}": rng.sample(users, min(USERS, int(60 + 4_000 / (a + 1)))) for a in range(AUTHORS)
    }


async def write_graph(redis: AnyRedis, keys: Keys, followers: dict[str, list[str]]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for author, fans in followers.items():
            pipe.sadd(keys.followers(author), *fans)
            for fan in fans:
                pipe.sadd(keys.following(fan), author)
                pipe.hset(keys.pair(fan), author, keys.pair_value("1|"))
        await pipe.execute()


async def cpu(redis: AnyRedis) -> dict[str, float]:
    return {name: float(i["used_cpu_user"]) + float(i["used_cpu_sys"])
            for name, i in (await info_per_master(redis, "cpu")).items()}  # fmt: skip


async def dbsize(redis: AnyRedis) -> dict[str, int]:
    return {name: int(i.get("db0", {}).get("keys", 0))
            for name, i in (await info_per_master(redis, "keyspace")).items()}  # fmt: skip


def wide(n: int) -> tuple[list[Event], dict[str, list[str]]]:
    """The N = 1,000 shape: ``n`` reposts of fresh posts by :data:`WIDE_REPOSTERS`
    reposters, and the graph: each reposter followed by the same
    :data:`WIDE_FOLLOWERS` users."""
    fans = [f"w{i}" for i in range(WIDE_FOLLOWERS)]
    reposters = [f"wr{k}" for k in range(WIDE_REPOSTERS)]
    base = 1_700_000_000_000
    events: list[Event] = [
        Repost(event_id=f"we{i}", ts=base + i, repost_id=f"wr{i}", post_id=f"wp{i}",
               post_author_id="wsrc", reposter_id=reposters[i % WIDE_REPOSTERS])
        for i in range(n)
    ]  # fmt: skip
    return events, dict.fromkeys(reposters, fans)


async def measure(
    url: str, posts: list[Event], followers: dict[str, list[str]], prefix: str = "bench:"
) -> Run:
    redis = connect(url)
    settings = Settings(redis_url=url, key_prefix=prefix, caps=Caps(enabled=False))
    keys = Keys(settings.key_prefix)
    try:
        await write_graph(redis, keys, followers)
        before, started, delivered = await cpu(redis), time.perf_counter(), 0
        store = FeedStore(redis, settings)
        for i in range(0, len(posts), BATCH):
            delivered += (await store.apply(posts[i : i + BATCH])).deliveries
        if store.regrouped:
            print(f"re-grouped by slot: {store.regrouped:,} followers", file=sys.stderr)
        seconds = time.perf_counter() - started
        after = await cpu(redis)
        used = {name: after[name] - before[name] for name in after}
        return Run(used, delivered, await dbsize(redis), seconds)
    finally:
        await close(redis)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the figures and the machine-readable line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=2_000)
    parser.add_argument(
        "--wide", type=int, default=400, help="reposts to 1,000 followers (default 400)"
    )
    parser.add_argument("--quick", action="store_true", help="200 posts, 200 wide reposts")
    args = parser.parse_args(argv)
    n = 200 if args.quick else args.posts
    wide_events, wide_graph = wide(200 if args.quick else args.wide)
    followers = graph()
    rng = random.Random(11)
    authors = list(followers)
    base = 1_700_000_000_000
    posts: list[Event] = []
    for i in range(n):
        author = rng.choice(authors)
        posts.append(Post(event_id=f"e{i}", ts=base + 2 * i, post_id=f"p{i}", author_id=author))
        j = rng.randrange(i + 1)
        original = posts[2 * j] if 2 * j < len(posts) else posts[0]
        assert isinstance(original, Post)
        reposter = rng.choice([a for a in authors if a != original.author_id])
        posts.append(Repost(event_id=f"r{i}", ts=base + 2 * i + 1, repost_id=f"r{i}",
                            post_id=original.post_id, post_author_id=original.author_id,
                            reposter_id=reposter))  # fmt: skip
    standalone, cluster = start_redis(), start_redis_cluster()
    try:
        single = asyncio.run(measure(f"redis://{standalone.address}/0", posts, followers))
        multi = asyncio.run(measure(cluster.url, posts, followers))
        single_wide = asyncio.run(measure(f"redis://{standalone.address}/0", wide_events,
                                          wide_graph, "wide:"))  # fmt: skip
        multi_wide = asyncio.run(measure(cluster.url, wide_events, wide_graph, "wide:"))
        ceiling = redis_ceiling(int(standalone.address.rsplit(":", 1)[1]), CEILING_REQUESTS,
                                CEILING_RUNS)  # fmt: skip
    finally:
        cluster.stop()
        standalone.stop()
    if single.deliveries != multi.deliveries or single_wide.deliveries != multi_wide.deliveries:
        print(f"deliveries differ: {single.deliveries} vs {multi.deliveries}, "
              f"{single_wide.deliveries} vs {multi_wide.deliveries}", file=sys.stderr)  # fmt: skip
        return 1
    if single_wide.deliveries != len(wide_events) * WIDE_FOLLOWERS:
        print(f"N = 1,000: {single_wide.deliveries} deliveries", file=sys.stderr)
        return 1
    ratio = multi.us_per_delivery / single.us_per_delivery
    print(f"{n:,} posts and {n:,} reposts, {single.deliveries:,} deliveries")
    print(f"standalone: {single.us_per_delivery:.2f} us Redis CPU per delivery "
          f"({single.seconds:.1f} s)")  # fmt: skip
    print(f"cluster:    {multi.us_per_delivery:.2f} us Redis CPU per delivery "
          f"({multi.seconds:.1f} s), {ratio:.2f}x standalone (target <= 1.25)")  # fmt: skip
    for name in sorted(multi.cpu):
        print(f"  {name}: {multi.cpu[name]:.2f} s CPU, {multi.keys.get(name, 0):,} keys")
    keys_share, cpu_share = multi.busiest(multi.keys), multi.busiest(multi.cpu)
    print(f"busiest master: {keys_share:.2f}x the mean keys, {cpu_share:.2f}x the mean CPU "
          "(target <= 1.25)")  # fmt: skip
    on_cluster, alone = multi_wide.per_s / ceiling, single_wide.per_s / ceiling
    mixed_cluster, mixed_alone = multi.per_s / ceiling, single.per_s / ceiling
    print(f"fan-out / ZADD ceiling ({ceiling:,.0f} ops/s, standalone server), N = 1,000 "
          f"({len(wide_events):,} reposts): cluster {multi_wide.per_s:,.0f} deliveries/s = "
          f"{on_cluster:.3f} (target >= 0.15; {multi_wide.us_per_delivery:.2f} us Redis CPU "
          f"a delivery), standalone {single_wide.per_s:,.0f} deliveries/s = {alone:.3f} "
          f"({single_wide.us_per_delivery:.2f} us)")  # fmt: skip
    print(f"fan-out / ZADD ceiling, mixed: cluster {multi.per_s:,.0f} deliveries/s = "
          f"{mixed_cluster:.3f}, standalone {single.per_s:,.0f} deliveries/s = "
          f"{mixed_alone:.3f}")  # fmt: skip
    print(f"cost_ratio={ratio:.3f} standalone_us={single.us_per_delivery:.3f} "
          f"cluster_us={multi.us_per_delivery:.3f} busiest_keys={keys_share:.3f} "
          f"busiest_cpu={cpu_share:.3f} deliveries={single.deliveries} "
          f"fanout_ratio_cluster={on_cluster:.3f} fanout_ratio_standalone={alone:.3f} "
          f"fanout_ratio_cluster_mixed={mixed_cluster:.3f} "
          f"fanout_ratio_standalone_mixed={mixed_alone:.3f} "
          f"ceiling_ops_per_s={ceiling:.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
