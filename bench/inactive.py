"""Benchmark: fan-out that skips inactive followers (``FEEDAMP_INACTIVE_AFTER``).

One Redis, one follow graph (``USERS`` readers each following ``FOLLOWS`` of ``AUTHORS``
accounts, drawn with a skew: a few large accounts), and the same kind of load in every
run (posts, and reposts of earlier posts with For You on, caps off) applied through
``FeedStore.apply`` in batches as a worker does, fresh post ids per run. The runs, all
in the same process and on the same Redis:

- ``off``, first and again last: ``FEEDAMP_INACTIVE_AFTER=0``, today's behaviour (the
  reference: Redis CPU drifts on a shared machine, so CPU ratios are to the mean of the
  two, and their spread is printed);
- one run per inactive share (``--shares``, default 0.3 and 0.7): that share of the
  readers has not read for 14 days (half of them never read, half read 15 to 90 days
  ago), the rest read an hour ago;
- ``active``: the filter on, every reader read an hour ago (the filter's own cost: the
  mark comes in the pair state's read, no extra command).

Measured per run: deliveries written (feed entries pushed, ``Applied.deliveries``) and
Redis CPU (``used_cpu_user`` + ``used_cpu_sys`` deltas from ``INFO cpu``, summed over the
masters), and the ratios to ``off``. Then the price on the other side: the Redis CPU of
the rebuild a returning inactive reader's next read costs (``ReadMarks.on_read``, a
sample of ``--returning`` readers).

Why those shares: Mastodon's own counts put monthly active users at 15 % of registered
accounts (478,046 of 3,116,319 on 2022-05-12, posted by its lead developer) and about
30 % after the late-2022 wave (about 2.5 of 8.5 million); a 14-day window is stricter
than a month. Large commercial networks report daily/monthly active ratios of 0.5 to
0.66, so even among monthly actives a third or more do not read on a given day. Follower
lists skew towards engaged accounts, so 0.3 is the conservative end and 0.7 the
Mastodon-like one.

Run ``python bench/inactive.py`` (``--posts N``, default 300 posts and as many reposts;
``--quick``: 30 posts and 10,000 readers; ``--cluster`` runs the same on a three-master
cluster too). The last line printed is machine-readable:

    inactive_deliveries_<share>=... inactive_cpu_<share>=... active_cpu=...
    off_spread=... rebuild_us=...   (ratios to off; rebuild Redis CPU per returning reader;
    with --cluster the same again, suffixed _cluster)
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
from feedamp.feeds.dormancy import now_ms
from feedamp.feeds.keys import READ_FIELD
from feedamp.feeds.read_marks import ReadMarks
from feedamp.models.events import Event, Post, Repost

USERS = 20_000
AUTHORS = 200
FOLLOWS = 20
#: Events handed to the store at once.
BATCH = 50
DAY_MS = 86_400_000
WINDOW = 14 * 86_400


@dataclass
class Run:
    """One run: its name, deliveries written, Redis CPU seconds, wall seconds."""

    name: str
    deliveries: int
    cpu: float
    seconds: float


def graph(users: int = USERS, seed: int = 7) -> dict[str, list[str]]:
    """Author -> followers: each of ``users`` readers follows ``FOLLOWS`` authors, drawn
    with weight 1 / (rank + 1) (a few large accounts)."""
    rng = random.Random(seed)
    authors = [f"a{a}" for a in range(AUTHORS)]
    weights = [1 / (a + 1) for a in range(AUTHORS)]
    followers: dict[str, list[str]] = {a: [] for a in authors}
    for u in range(users):
        for author in set(rng.choices(authors, weights, k=FOLLOWS)):
            followers[author].append(f"u{u}")
    return followers


async def write_graph(redis: AnyRedis, keys: Keys, followers: dict[str, list[str]]) -> None:
    """The follow graph as the graph steps leave it (followers, following, pair state),
    one author per pipeline."""
    for author, fans in followers.items():
        async with redis.pipeline(transaction=False) as pipe:
            pipe.sadd(keys.followers(author), *fans)
            for fan in fans:
                pipe.sadd(keys.following(fan), author)
                pipe.hset(keys.pair(fan), author, keys.pair_value("1|"))
            await pipe.execute()


async def mark(redis: AnyRedis, keys: Keys, users: int, share: float, seed: int = 3) -> list[str]:
    """Read marks for ``users`` readers with ``share`` inactive; return the inactive."""
    rng = random.Random(seed)
    now = now_ms()
    inactive = []
    async with redis.pipeline(transaction=False) as pipe:
        for u in range(users):
            user = f"u{u}"
            if rng.random() >= share:
                pipe.hset(keys.pair(user), READ_FIELD, now - 3_600_000)
                continue
            inactive.append(user)
            if rng.random() < 0.5:  # read 15 to 90 days ago; else never read
                pipe.hset(keys.pair(user), READ_FIELD, now - rng.randint(15, 90) * DAY_MS)
            else:
                pipe.hdel(keys.pair(user), READ_FIELD)
        await pipe.execute()
    return inactive


def load(run: str, n: int, authors: list[str], seed: int = 11) -> list[Event]:
    """``n`` posts and ``n`` reposts of earlier posts (ids unique to ``run``)."""
    rng = random.Random(seed)
    base = 1_700_000_000_000
    events: list[Event] = []
    posts: list[Post] = []
    for i in range(n):
        post = Post(event_id=f"{run}e{i}", ts=base + 2 * i, post_id=f"{run}p{i}",
                    author_id=rng.choice(authors))  # fmt: skip
        posts.append(post)
        events.append(post)
        original = posts[rng.randrange(len(posts))]
        reposter = rng.choice([a for a in authors if a != original.author_id])
        events.append(Repost(event_id=f"{run}r{i}", ts=base + 2 * i + 1, repost_id=f"{run}r{i}",
                             post_id=original.post_id, post_author_id=original.author_id,
                             reposter_id=reposter))  # fmt: skip
    return events


async def cpu(redis: AnyRedis) -> float:
    return sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"])
               for i in (await info_per_master(redis, "cpu")).values())  # fmt: skip


async def clear_feeds(redis: AnyRedis, keys: Keys) -> None:
    """Drop every feed key (each run starts from empty feeds)."""
    from feedamp.feeds.cluster import scan_keys

    for kind in ("feed", "via", "foryou", "fyvia"):
        batch = []
        async for key in scan_keys(redis, f"{keys.prefix}{kind}:*", 5000):
            batch.append(key)
            if len(batch) >= 500:
                await _unlink(redis, batch)
                batch = []
        await _unlink(redis, batch)


async def _unlink(redis: AnyRedis, names: list[bytes]) -> None:
    """UNLINK ``names`` (split by slot on a cluster by the client)."""
    if names:
        await redis.unlink(*names)


async def fan_out(redis: AnyRedis, settings: Settings, name: str, events: list[Event]) -> Run:
    store = FeedStore(redis, settings)
    before, started, delivered = await cpu(redis), time.perf_counter(), 0
    for i in range(0, len(events), BATCH):
        applied = await store.apply(events[i : i + BATCH])
        assert not applied.failures, applied.failures[:1]
        delivered += applied.deliveries
    seconds = time.perf_counter() - started
    return Run(name, delivered, await cpu(redis) - before, seconds)


async def measure(
    url: str, n: int, users: int, shares: list[float], sample_size: int
) -> tuple[list[Run], float]:
    """Every run on the Redis at ``url``; and the Redis CPU (µs) of one rebuild."""
    redis = connect(url)
    base = Settings(redis_url=url, key_prefix="benchin:", caps=Caps(enabled=False))
    keys = Keys(base.key_prefix)
    followers = graph(users)
    authors = list(followers)
    try:
        await write_graph(redis, keys, followers)
        runs = []
        # the reference runs first and last (Redis CPU drifts on a shared machine: the
        # ratios are to their mean, and their spread is printed)
        plan = [("off", 0.0, 0)]
        plan += [(f"{share:g}", share, WINDOW) for share in shares]
        plan += [("active", 0.0, WINDOW), ("off again", 0.0, 0)]
        inactive: list[str] = []
        returning: list[str] = []
        for name, share, after in plan:
            await clear_feeds(redis, keys)
            inactive = await mark(redis, keys, users, share)
            returning = inactive or returning
            events = load(name.replace(".", "_").replace(" ", "_"), n, authors)
            runs.append(await fan_out(redis, base.with_(inactive_after=after), name, events))
        # the last share's inactive readers come back, marked as fan-out leaves them
        # (skipped since a read 15 days ago): their next read rebuilds
        marks = ReadMarks(redis, base.with_(inactive_after=WINDOW))
        sample = random.Random(5).sample(returning, min(sample_size, len(returning)))
        async with redis.pipeline(transaction=False) as pipe:
            for user in sample:
                pipe.hset(keys.pair(user), READ_FIELD, f"-{now_ms() - 15 * DAY_MS}")
            await pipe.execute()
        before = await cpu(redis)
        for user in sample:
            await marks.on_read(user, keys)
        rebuild_us = 1e6 * (await cpu(redis) - before) / max(len(sample), 1)
        assert marks.rebuilt == len(sample)
        return runs, rebuild_us
    finally:
        await close(redis)


def report(layout: str, runs: list[Run], rebuild_us: float, n: int, users: int) -> dict[str, float]:
    """Print one layout's table; return its figures for the last line."""
    off, again = runs[0], runs[-1]
    reference = (off.cpu + again.cpu) / 2
    print(f"{layout}: {n:,} posts and {n:,} reposts per run, {users:,} readers following "
          f"{FOLLOWS} of {AUTHORS} authors; CPU to the mean of the two off runs")  # fmt: skip
    print(f"  {'run':<10} {'deliveries':>11} {'vs off':>7} {'Redis CPU s':>12} {'vs off':>7} "
          f"{'us/follower':>12}")  # fmt: skip
    visits = off.deliveries  # followers visited: the same in every run
    figures: dict[str, float] = {}
    for run in runs:
        d, c = run.deliveries / off.deliveries, run.cpu / reference
        print(f"  {run.name:<10} {run.deliveries:>11,} {d:>7.3f} {run.cpu:>12.2f} {c:>7.3f} "
              f"{1e6 * run.cpu / visits:>12.2f}")  # fmt: skip
        if run.name == "active":
            figures["active_cpu"] = c
        elif run.name == "off again":
            figures["off_spread"] = abs(off.cpu - again.cpu) / reference
        elif run.name != "off":
            key = run.name.replace(".", "")
            figures[f"inactive_deliveries_{key}"] = d
            figures[f"inactive_cpu_{key}"] = c
    print(f"  a returning reader's rebuild: {rebuild_us:,.0f} us Redis CPU "
          f"({rebuild_us / (1e6 * reference / visits):,.0f} deliveries' worth)")  # fmt: skip
    figures["rebuild_us"] = rebuild_us
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the figures and the machine-readable line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="30 posts, 10,000 readers")
    parser.add_argument("--shares", default="0.3,0.7", help="inactive shares to run")
    parser.add_argument("--returning", type=int, default=200, help="rebuilds measured")
    parser.add_argument("--cluster", action="store_true", help="also on a 3-master cluster")
    args = parser.parse_args(argv)
    n, users = (30, 10_000) if args.quick else (args.posts, USERS)
    shares = [float(s) for s in args.shares.split(",") if s]
    line: dict[str, float] = {}
    standalone = start_redis()
    try:
        runs, rebuild_us = asyncio.run(
            measure(f"redis://{standalone.address}/0", n, users, shares, args.returning)
        )
    finally:
        standalone.stop()
    line.update(report("standalone", runs, rebuild_us, n, users))
    if args.cluster:
        cluster = start_redis_cluster()
        try:
            runs, rebuild_us = asyncio.run(measure(cluster.url, n, users, shares, args.returning))
        finally:
            cluster.stop()
        figures = report("cluster", runs, rebuild_us, n, users)
        line.update({f"{k}_cluster": v for k, v in figures.items()})
    print(" ".join(f"{k}={v:.3f}" for k, v in line.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
