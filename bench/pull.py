"""Benchmark: pulled authors (celebrity accounts, ``FEEDAMP_FANOUT_PULL_ABOVE``).

Starts a Redis (``REDIS_TUNING``) and measures, in the same run:

1. **A post by a big account**, ``--followers`` of them (1,000,000; ``--quick``
   100,000): applied through ``FeedStore.apply`` with the account pulled (threshold
   100,000 below its followers) and, as the reference, pushed (pulling off) in another
   namespace of the same Redis. For each: deliveries written (feed entries), and the
   time until readable: from the call until a follower's page shows the post (pulled:
   at once, the read merges it; pushed: when the last follower has it, the end of the
   fan-out).
2. **The read cost of a page**: a user following 20 pulled accounts (each with
   ``FEEDAMP_RECENT_PER_AUTHOR`` = 100 recent posts and 100 reposts) and 40 pushed
   ones (their posts fill the user's Following feed to its cap), against a plain page:
   a user following the same 40 pushed accounts only, in the same namespace (the pulled
   set is not empty, so the plain read pays its check). First pages of 50 items and
   pages after a cursor, read alternately; p50 and p99 wall time of ``FeedReader.
   following`` and the ratio.

The last line printed is machine-readable:

    pull_deliveries=... push_deliveries=... pull_readable_ms=... push_readable_ms=...
    page_plain_p50_ms=... page_plain_p99_ms=... page_pulled_p50_ms=...
    page_pulled_p99_ms=... page_p50_ratio=... page_p99_ratio=...   (one line)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from feedamp.config import Caps, Settings
from feedamp.embedded.services import start_redis
from feedamp.feeds import FeedReader, FeedStore, Keys
from feedamp.feeds.connection import AnyRedis, close, connect
from feedamp.models.events import Event, Follow, Post, Repost
from redis.exceptions import RedisError

BASE = 1_700_000_000_000
PULLED, PUSHED = 20, 40
#: Followers of each of the 20 pulled accounts of the read part, above its threshold.
READ_THRESHOLD = 10
#: Members written per pipeline.
CHUNK = 20_000


async def big_account(redis: AnyRedis, keys: Keys, star: str, followers: int) -> None:
    """``followers`` followers of ``star``, with the follow state a delivery reads."""
    pair = keys.pair_value("1|")
    for start in range(0, followers, CHUNK):
        fans = [f"f{i}" for i in range(start, min(start + CHUNK, followers))]
        async with redis.pipeline(transaction=False) as pipe:
            pipe.sadd(keys.followers(star), *fans)
            for fan in fans:
                pipe.sadd(keys.following(fan), star)
                pipe.hset(keys.pair(fan), star, pair)
            await pipe.execute()


async def post_once(url: str, prefix: str, followers: int, pull_above: int) -> tuple[int, float]:
    """Deliveries written by one post of an account with ``followers`` and the ms until
    a follower (the last one written) reads it."""
    redis = connect(url)
    settings = Settings(redis_url=url, key_prefix=prefix, caps=Caps(enabled=False),
                        fanout_pull_above=pull_above)  # fmt: skip
    keys = Keys(prefix)
    try:
        await big_account(redis, keys, "star", followers)
        store = FeedStore(redis, settings)
        reader = FeedReader(redis, key_prefix=prefix)
        warm = Post(event_id="w", ts=BASE - 1, post_id="warm", author_id="nobody")
        await store.apply([warm])
        post = Post(event_id="e", ts=BASE, post_id="big", author_id="star")
        started = time.perf_counter()
        applied = await store.apply([post])
        page = await reader.following(f"f{followers - 1}", limit=10)
        readable = (time.perf_counter() - started) * 1000
        assert [i.post_id for i in page.items] == ["big"], page.items
        return applied.deliveries, readable
    finally:
        await redis.flushdb(asynchronous=True)
        await close(redis)


def read_log() -> list[Event]:
    """The read part's log: 20 pulled and 40 pushed accounts, followed by ``puller``
    (all) and ``plain`` (the pushed ones); each pulled account has 10 more followers, 100
    posts and 100 reposts of pushed accounts' posts; the pushed ones post enough to fill
    a feed."""
    events: list[Event] = []
    n = iter(range(10**9))

    def ts() -> int:
        return BASE + next(n)

    pulled = [f"star{i}" for i in range(PULLED)]
    pushed = [f"acct{i}" for i in range(PUSHED)]
    for a in pulled + pushed:
        events.append(Follow(event_id=f"fp{a}", ts=ts(), follower_id="puller", followee_id=a))
    for a in pushed:
        events.append(Follow(event_id=f"fq{a}", ts=ts(), follower_id="plain", followee_id=a))
    for a in pulled:
        for k in range(READ_THRESHOLD):
            events.append(Follow(event_id=f"fx{a}{k}", ts=ts(), follower_id=f"x{k}",
                                 followee_id=a))  # fmt: skip
    originals: list[tuple[str, str]] = []
    for round_ in range(100):
        for a in pushed:
            pid = f"{a}-p{round_}"
            originals.append((pid, a))
            events.append(Post(event_id=pid, ts=ts(), post_id=pid, author_id=a))
        for i, a in enumerate(pulled):
            pid = f"{a}-p{round_}"
            events.append(Post(event_id=pid, ts=ts(), post_id=pid, author_id=a))
            post, author = originals[(round_ * PULLED + i * 7) % len(originals)]
            events.append(Repost(event_id=f"{a}-r{round_}", ts=ts(), repost_id=f"{a}-r{round_}",
                                 post_id=post, post_author_id=author, reposter_id=a,
                                 comment="look"))  # fmt: skip
    return events


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def read_cost(url: str, reads: int) -> dict[str, dict[str, float]]:
    """p50 and p99 (ms) of a Following page for ``puller`` and for ``plain``."""
    redis = connect(url)
    prefix = "read:"
    settings = Settings(redis_url=url, key_prefix=prefix, caps=Caps(enabled=False),
                        fanout_pull_above=READ_THRESHOLD)  # fmt: skip
    try:
        store = FeedStore(redis, settings)
        log = read_log()
        for i in range(0, len(log), 500):
            assert (await store.apply(log[i : i + 500])).failures == []
        reader = FeedReader(redis, key_prefix=prefix)
        times: dict[str, list[float]] = {"plain": [], "pulled": []}
        cursors = {}
        for user in ("plain", "puller"):
            first = await reader.following(user, limit=50)
            assert len(first.items) == 50
            cursors[user] = first.next_cursor
        pulled_items = {i.author_id for i in (await reader.following("puller", 50)).items}
        assert any(a.startswith("star") for a in pulled_items), pulled_items
        for r in range(reads):
            for user, name in (("plain", "plain"), ("puller", "pulled")):
                cursor = cursors[user] if r % 2 else None
                started = time.perf_counter()
                page = await reader.following(user, limit=50, cursor=cursor)
                times[name].append((time.perf_counter() - started) * 1000)
                assert len(page.items) == 50
        return {name: {"p50": statistics.median(t), "p99": pct(t, 0.99)}
                for name, t in times.items()}  # fmt: skip
    finally:
        await redis.flushdb(asynchronous=True)
        await close(redis)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the figures and the machine-readable line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--followers", type=int, default=1_000_000)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="100,000 followers, 60 reads")
    args = parser.parse_args(argv)
    followers = 100_000 if args.quick else args.followers
    reads = 60 if args.quick else args.reads
    redis = start_redis()
    url = f"redis://{redis.address}/0"
    try:
        above = min(100_000, followers - 1)
        pull_n, pull_ms = asyncio.run(post_once(url, "pull:", followers, above))
        try:
            push_n, push_ms = asyncio.run(post_once(url, "push:", followers, 0))
        except RedisError as exc:  # the pushed reference can fail at this size: say so
            print(f"pushed reference failed: {type(exc).__name__}: {exc}")
            push_n, push_ms = -1, -1.0
        cost = asyncio.run(read_cost(url, reads))
    finally:
        redis.stop()
    plain, pulled = cost["plain"], cost["pulled"]
    r50, r99 = pulled["p50"] / plain["p50"], pulled["p99"] / plain["p99"]
    print(f"a post by an account with {followers:,} followers:")
    print(f"  pulled (threshold {above:,}): {pull_n:,} deliveries, readable after "
          f"{pull_ms:.1f} ms")  # fmt: skip
    print(f"  pushed (reference):      {push_n:,} deliveries, readable by the last "
          f"follower after {push_ms:,.0f} ms")  # fmt: skip
    print(f"a page of 50 (first pages and pages after a cursor, {reads:,} reads each):")
    print(f"  plain (40 pushed followees):               p50 {plain['p50']:.2f} ms, "
          f"p99 {plain['p99']:.2f} ms")  # fmt: skip
    print(f"  following 20 pulled accounts (+40 pushed): p50 {pulled['p50']:.2f} ms, "
          f"p99 {pulled['p99']:.2f} ms ({r50:.2f}x / {r99:.2f}x plain)")  # fmt: skip
    print(f"pull_deliveries={pull_n} push_deliveries={push_n} pull_readable_ms={pull_ms:.2f} "
          f"push_readable_ms={push_ms:.1f} page_plain_p50_ms={plain['p50']:.3f} "
          f"page_plain_p99_ms={plain['p99']:.3f} page_pulled_p50_ms={pulled['p50']:.3f} "
          f"page_pulled_p99_ms={pulled['p99']:.3f} page_p50_ratio={r50:.2f} "
          f"page_p99_ratio={r99:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
