"""Benchmark: Redis instructions per delivery, counted by callgrind.

The timing benchmarks' figures move by half between runs on a shared machine (the ZADD
ceiling itself swung from 0.46 to 1.4 million ops/s in one hour here), so a change of a
few percent to the delivery path cannot be seen in them. An instruction count can: it
is the same for the same scripts and the same keys whatever else the machine does.

Starts ``redis-server`` (with ``REDIS_TUNING``) under ``valgrind --tool=callgrind`` on a
free port, writes a follow graph straight into its keys (``followers``, ``following``,
``pair``) and, for the ``full`` shape, fills the followers' feeds, then zeroes the
counters, applies the shape's posts and reposts through ``FeedStore.apply`` in batches
of :data:`BATCH` as a worker or a replay does (origin steps, then delivery calls; caps
off, For You on) and dumps them: Redis instructions per delivery. Shapes:

- ``log``: the fan-out log of ``bench/replay.py`` (10 sources of 1,000 followers drawn
  from 4,000 users, posts and reposts of recent posts): overlapping follower sets, a post
  and reposts of it reaching one follower in a group;
- ``wide``: ``bench/run.py``'s fan-out, reposts by 4 reposters of fresh posts, each to
  the same 1,000 followers, whose buckets start empty;
- ``half``: ``wide`` into feeds half full (every bucket of both feeds holds half its cap
  of older entries, For You's with attributions; the capacity plan's average): no
  delivery evicts, each scans the entries there;
- ``full``: ``wide`` into feeds at their caps: each delivery evicts, as into an active
  reader's feed.

Ids have 19 digits, as in production. Under callgrind Redis runs about 50 times slower:
``--events`` (default 200) posts and reposts take one and a half (log, wide) to six
minutes (full) a shape. ``--lua DIR`` measures the scripts of ``DIR/lua`` instead of the
package's (an A/B of a change in one checkout); ``--buckets`` sets the feed buckets (the
caps stay 800 and 500). The last line printed is machine-readable:

    instructions_per_delivery_<shape>=... deliveries_<shape>=...   (for each shape)
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cluster import write_graph
from feedamp.config import Caps, Settings
from feedamp.embedded.services import REDIS_TUNING, free_port
from feedamp.feeds import FeedStore, Keys
from feedamp.feeds import scripts as feed_scripts
from feedamp.feeds.keys import bucket_of
from feedamp.models.events import Event, Follow, Repost, parse_event
from redis.asyncio import Redis
from replay import ID_BASE, make_fanout_log

#: Events handed to the store at once.
BATCH = 500
#: The wide and full shapes: followers, and the reposters they all follow.
WIDE_FOLLOWERS, WIDE_REPOSTERS = 1_000, 4
SHAPES = ("log", "wide", "half", "full")
START_TIMEOUT = 120.0
#: The shapes whose followers' feeds are filled first, and to what share of their caps.
FILLED = {"half": 0.5, "full": 1.0}


def log_shape(events: int) -> tuple[list[Follow], list[Event]]:
    """The fan-out log's follows and its first ``events`` posts and reposts."""
    parsed = [parse_event(line) for line in make_fanout_log(10, events).lines]
    follows = [e for e in parsed if isinstance(e, Follow)]
    return follows, [e for e in parsed if not isinstance(e, Follow)]


def wide_shape(events: int) -> tuple[list[Follow], list[Event]]:
    """Reposts of fresh posts by :data:`WIDE_REPOSTERS` users followed by the same
    :data:`WIDE_FOLLOWERS` users."""
    ids = itertools.count(ID_BASE + 500_000_000)
    fans = [str(next(ids)) for _ in range(WIDE_FOLLOWERS)]
    reposters = [str(next(ids)) for _ in range(WIDE_REPOSTERS)]
    author = str(next(ids))
    follows = [Follow(event_id=str(next(ids)), ts=1, follower_id=fan, followee_id=r)
               for r in reposters for fan in fans]  # fmt: skip
    base = 1_790_000_000_000
    reposts: list[Event] = [
        Repost(event_id=str(next(ids)), ts=base + 15_000 * i, repost_id=str(next(ids)),
               post_id=str(next(ids)), post_author_id=author,
               reposter_id=reposters[i % WIDE_REPOSTERS])
        for i in range(events)
    ]  # fmt: skip
    return follows, reposts


async def fill(
    redis: Redis, keys: Keys, settings: Settings, follows: list[Follow], share: float
) -> None:
    """Every bucket of both feeds of every follower at ``share`` of its cap, with entries
    older than the shape's (For You's attributed to a reposter the follower follows): the
    first follower's buckets written, then copied to the others (``DUMP`` /
    ``RESTORE``)."""
    fans = sorted({f.follower_id for f in follows})
    via = follows[0].followee_id
    feed_cap = round(share * -(-settings.feed_cap // settings.feed_buckets))
    fy_cap = round(share * -(-settings.for_you_cap // settings.feed_buckets))
    per_bucket = max(feed_cap, fy_cap)
    posts: dict[int, list[str]] = {b: [] for b in range(settings.feed_buckets)}
    for n in itertools.count(ID_BASE + 900_000_000):
        b = bucket_of(str(n), settings.feed_buckets)
        if len(posts[b]) < per_bucket:
            posts[b].append(str(n))
        if all(len(p) == per_bucket for p in posts.values()):
            break
    first = fans[0]
    for b, members in posts.items():
        times = {p: 1_700_000_000_000 + i for i, p in enumerate(members)}
        newest = dict(list(times.items())[-fy_cap:])
        await redis.zadd(keys.feed(first, b), dict(list(times.items())[-feed_cap:]))
        await redis.zadd(keys.for_you(first, b), newest)
        await redis.hset(keys.via(first, b), mapping={p: f"{via}@{t}" for p, t in newest.items()})
    for b in posts:
        for name in (keys.feed, keys.for_you, keys.via):
            dump = await redis.dump(name(first, b))
            async with redis.pipeline(transaction=False) as pipe:
                for fan in fans[1:]:
                    pipe.restore(name(fan, b), 0, dump, replace=True)
                await pipe.execute()


def total(out: str) -> int:
    """The instructions of callgrind's dump made after the counters were zeroed."""
    counts = [int(line.split()[1]) for path in sorted(glob.glob(f"{out}.*"))
              for line in Path(path).read_text().splitlines()
              if line.startswith("totals:")]  # fmt: skip
    if not counts:
        raise RuntimeError(f"no callgrind dump at {out}.*")
    return counts[-1]


async def measure(shape: str, events: int, buckets: int, scratch: Path) -> tuple[int, int]:
    """(instructions, deliveries) of ``shape``'s posts and reposts."""
    port, out = free_port(), str(scratch / f"callgrind.{shape}")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "redis-server",
         "--port", str(port), "--save", "", "--appendonly", "no", *REDIS_TUNING],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    redis = Redis(port=port, socket_timeout=None)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                await redis.ping()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("redis-server under callgrind did not start") from None
                await asyncio.sleep(0.2)
        settings = Settings(redis_url=f"redis://127.0.0.1:{port}/0", key_prefix="in:",
                            caps=Caps(enabled=False), feed_buckets=buckets)  # fmt: skip
        keys = Keys(settings.key_prefix)
        follows, fanouts = log_shape(events) if shape == "log" else wide_shape(events)
        fans: dict[str, list[str]] = {}
        for f in follows:
            fans.setdefault(f.followee_id, []).append(f.follower_id)
        await write_graph(redis, keys, fans)
        if shape in FILLED:
            await fill(redis, keys, settings, follows, FILLED[shape])
        store = FeedStore(redis, settings)
        await store.apply(fanouts[:1])  # scripts loaded, connection made: not counted
        subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True,
                       capture_output=True)  # fmt: skip
        deliveries = 0
        for start in range(1, len(fanouts), BATCH):
            deliveries += (await store.apply(fanouts[start : start + BATCH])).deliveries
        subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True,
                       capture_output=True)  # fmt: skip
    finally:
        await redis.aclose()
        server.terminate()
        server.wait()
    return total(out), deliveries


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--shape``, ``--events``, ``--lua``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=SHAPES, action="append",
                        help="shape to measure (repeatable; default all)")  # fmt: skip
    parser.add_argument("--events", type=int, default=200, help="posts and reposts a shape")
    parser.add_argument("--lua", type=Path, help="measure the scripts of DIR/lua instead")
    parser.add_argument("--buckets", type=int, default=Settings().feed_buckets,
                        help="FEEDAMP_FEED_BUCKETS (default %(default)s)")  # fmt: skip
    args = parser.parse_args(argv)
    for tool in ("valgrind", "callgrind_control", "redis-server"):
        if not shutil.which(tool):
            print(f"bench/instructions.py: {tool} is not on PATH", file=sys.stderr)
            return 2
    if args.lua:
        root = args.lua.resolve()
        feed_scripts.files = lambda _package: root  # type: ignore[assignment]
    figures: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="feedamp-bench-instructions-") as scratch:
        for shape in args.shape or SHAPES:
            started = time.monotonic()
            instructions, deliveries = asyncio.run(
                measure(shape, args.events, args.buckets, Path(scratch))
            )
            per = instructions / max(deliveries, 1)
            print(f"{shape}: {deliveries:,} deliveries, {instructions:,} Redis instructions, "
                  f"{per:,.0f} a delivery ({time.monotonic() - started:.0f} s under callgrind)",
                  flush=True)  # fmt: skip
            figures[f"instructions_per_delivery_{shape}"] = round(per)
            figures[f"deliveries_{shape}"] = deliveries
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
