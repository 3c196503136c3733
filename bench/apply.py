"""Benchmark: CPU per light event of ``Pipeline.apply`` in process (no Kafka).

Starts a Redis server (tuned with ``REDIS_TUNING``) on a free port, makes a log of gifts,
one of order events and one of graph events (follows, unfollows, mutes, blocks and their
undos) with ``bench/shop.py``'s log maker (creators' posts and reposts applied first, so
purchases are credited and follows backfill), and applies each log through
:class:`~feedamp.streams.Pipeline` in batches of ``--batch`` records, as the worker and
replay do. Per kind it prints the process CPU per event (``time.process_time``, the least
noisy figure on a shared machine), Redis CPU per event (``INFO cpu`` deltas, user plus
system) and wall time per event; ``--profile`` prints the cProfile of the gift run.

Run ``python bench/apply.py`` (``--gifts N --orders N --graph N``, defaults 5,000, 2,000
orders, about 7,000 order events, and 5,000). The last line printed is machine-readable:

    gift_cpu_us=... gift_redis_us=... gift_wall_us=... order_cpu_us=... ... graph_wall_us=...
    (per event)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

import orjson
from feedamp.config import Settings
from feedamp.embedded.services import start_redis
from feedamp.feeds import FeedStore
from feedamp.feeds.connection import close, connect
from feedamp.streams import Pipeline, Record
from redis.asyncio import Redis
from run import fill_feeds
from shop import SMALL_POOL_PER_GIFT, Ids, LogMaker, campaigns_doc, make_creators


async def redis_cpu(redis: Redis) -> float:
    """Seconds of CPU the Redis server used so far (user plus system)."""
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def timed(
    pipeline: Pipeline, records: list[Record], batch: int, profile: cProfile.Profile | None
) -> tuple[float, float, float]:
    """Apply ``records`` in batches; return (process CPU s, Redis CPU s, wall s)."""
    probe = Redis.from_url(pipeline.settings.redis_url)
    try:
        server, cpu, wall = await redis_cpu(probe), time.process_time(), time.perf_counter()
        if profile is not None:
            profile.enable()
        for start in range(0, len(records), batch):
            outcome = await pipeline.apply(records[start : start + batch])
            assert not outcome.dead_letters, outcome.dead_letters[:1]
        if profile is not None:
            profile.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return cpu, await redis_cpu(probe) - server, wall
    finally:
        await probe.aclose()


def as_records(messages: list[tuple[str, bytes, bytes]]) -> list[Record]:
    """Messages of the log maker as consumed records (in log order, one partition)."""
    now = int(time.time() * 1000)
    return [Record(topic=topic, partition=0, offset=n, key=key, value=value, timestamp=now)
            for n, (topic, key, value) in enumerate(messages)]  # fmt: skip


async def run(gifts: int, orders: int, graph: int, batch: int, profile: bool) -> dict[str, float]:
    """Make the logs, apply them, print and return the figures per event (µs)."""
    server = start_redis()
    try:
        with tempfile.TemporaryDirectory(prefix="feedamp-bench-apply-") as scratch:
            now = int(time.time() * 1000)
            campaigns = Path(scratch) / "campaigns.json"
            pool = int(gifts * SMALL_POOL_PER_GIFT)
            campaigns.write_bytes(orjson.dumps(campaigns_doc(now, gifts + 10, pool)))
            settings = Settings(redis_url=f"redis://{server.address}/0", key_prefix="ba:",
                                campaigns=str(campaigns))  # fmt: skip
            ids = Ids()
            creators = make_creators(ids, random.Random(5), now - 86_400_000)
            redis = connect(settings.redis_url)
            try:
                await fill_feeds(FeedStore(redis, settings), creators.events)
                maker = LogMaker(settings, ids, creators)
                logs = {"gift": maker.gifts(gifts).messages, "order": maker.orders(orders).messages,
                        "graph": maker.graph(graph).messages}  # fmt: skip
                pipeline = Pipeline(FeedStore(redis, settings), settings, prefix="ba:")
                figures: dict[str, float] = {}
                for kind, messages in logs.items():
                    records = as_records(messages)
                    prof = cProfile.Profile() if profile and kind == "gift" else None
                    cpu, server_cpu, wall = await timed(pipeline, records, batch, prof)
                    n = len(records)
                    print(f"{kind}: {n:,} events, process CPU {cpu / n * 1e6:.0f} µs/event, "
                          f"Redis CPU {server_cpu / n * 1e6:.0f} µs/event, "
                          f"wall {wall / n * 1e6:.0f} µs/event")  # fmt: skip
                    figures[f"{kind}_cpu_us"] = round(cpu / n * 1e6, 1)
                    figures[f"{kind}_redis_us"] = round(server_cpu / n * 1e6, 1)
                    figures[f"{kind}_wall_us"] = round(wall / n * 1e6, 1)
                    if prof is not None:
                        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
                return figures
            finally:
                await close(redis)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gifts", type=int, default=5_000)
    parser.add_argument("--orders", type=int, default=2_000)
    parser.add_argument("--graph", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args.gifts, args.orders, args.graph, args.batch, args.profile))
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
