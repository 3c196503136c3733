"""Benchmark: which single-slot keys take the traffic of a worker's batches.

Runs the worker's pipeline (``Pipeline.apply`` and ``release``, event-time order on, four
posts and four reposts partitions) over a mixed load on a standalone Redis: posts fanned
out to a skewed follow graph, reposts parked and released by the watermark, product views,
purchases and status events, gifts. Every command Redis executes (script bodies included)
is read from ``MONITOR`` after the set-up, and counted by the slot its key hashes to.

Reported: each hash tag's share of all key commands (the top ones, and the keys that are
one slot by design: the pointer, the suspended index shards, the event-time order), and,
with the slots spread over three masters as ``redis-cli --cluster create`` does, the
busiest master's share of commands against the mean (target <= 1.25). Commands are a
proxy for load (a fan-out script's commands are counted one by one, as they run).

Run ``python bench/hotspots.py`` (``--batches N``, default 60). The last line printed is
machine-readable: ``busiest_node=... top_tag=... top_share=... order_share=...
pointer_share=... suspended_share=... commands=...``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from feedamp.config import Settings
from feedamp.embedded.services import start_redis
from feedamp.feeds import FeedStore
from feedamp.models import topic_of
from feedamp.models.events import Account, Event, Gift
from feedamp.streams import Record
from feedamp.streams.pipeline import Pipeline, progress_field
from redis.asyncio import Redis
from redis.crc import key_slot

PARTITIONS = 4
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SKIP = {"EVALSHA", "EVAL", "SCRIPT", "PING", "INFO", "CLIENT", "SELECT", "HELLO", "MULTI",
         "EXEC", "FLUSHALL", "MONITOR", "COMMAND"}  # fmt: skip


def record(settings: Settings, event: Event, n: int) -> Record:
    """``event`` as the record a worker reads (partition by its subject)."""
    from tests.factory import to_json  # the wire form the tests use

    topic = topic_of(event.type, settings.topics)
    return Record(topic, n % PARTITIONS, n, b"k", to_json(event), event.ts)


def workload(batches: int, users: int, seed: int = 7) -> tuple[list[Event], list[list[Event]]]:
    """The follow graph (set-up) and the measured batches of 100 events."""
    from tests.factory import Events

    rnd = random.Random(seed)
    ev = Events(start_ms=1_700_000_000_000, step_ms=5)
    authors = [f"u{n}" for n in range(users // 10)]
    # Skewed: the first authors are followed by many (a random prefix of the list).
    setup: list[Event] = [
        ev.follow(f"u{u}", rnd.choice(authors[: 1 + rnd.randrange(len(authors))]))
        for u in range(users) for _ in range(20)
    ]  # fmt: skip
    setup.append(Account(**ev._base(None), user_id="u-banned", action="suspend", label=None))
    posts: list[str] = []
    author_of: dict[str, str] = {}
    out: list[list[Event]] = []
    for b in range(batches):
        batch: list[Event] = []
        for k in range(100):
            n, roll = b * 100 + k, rnd.random()
            user = f"u{rnd.randrange(users)}"
            if roll < 0.35 or not posts:
                posts.append(f"p{n}")
                author = author_of[posts[-1]] = rnd.choice(authors)
                tags = ["cam"] if n % 5 == 0 else None
                batch.append(ev.post(posts[-1], author, product_ids=tags))
            elif roll < 0.65:
                post = rnd.choice(posts[-200:])
                batch.append(ev.repost(post, author_of[post], user, repost_id=f"r{n}"))
            elif roll < 0.8:
                batch.append(ev.view(user, "cam", via_post=rnd.choice(posts[-200:])))
            elif roll < 0.9:
                batch.append(ev.purchase(f"o{n}", user, via_post=rnd.choice(posts[-200:]),
                                         product="cam"))  # fmt: skip
            elif roll < 0.95:
                batch.append(ev.status(f"o{n - 10}", user, "paid", seq=1))
            else:
                batch.append(Gift(**ev._base(None), gift_id=f"g{n}", sender_id=user,
                                  recipient_id=f"u{rnd.randrange(users)}", offer_id="mic",
                                  message=None))  # fmt: skip
        out.append(batch)
    return setup, out


def tag_of(key: str) -> str:
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start >= 0 and end > start + 1 else key


def kind_of(key: str, prefix: str) -> str:
    rest = key[len(prefix) :] if key.startswith(prefix) else key
    return rest.split(":{")[0]


def node_of(slot: int, nodes: int = 3) -> int:
    """The master a slot falls to when ``redis-cli --cluster create`` splits them evenly."""
    return min(slot * nodes // 16384, nodes - 1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--users", type=int, default=2_000)
    args = parser.parse_args()
    redis_service = start_redis()
    log = Path(tempfile.mkdtemp()) / "monitor.log"
    try:
        settings = Settings(
            redis_url=f"redis://{redis_service.address}/0",
            key_prefix="h:",
            campaigns="config/campaigns.sample.json",
            partitions=PARTITIONS,
        )
        redis = Redis.from_url(settings.redis_url)
        pipeline = Pipeline(FeedStore(redis, settings), settings)
        fields = [progress_field(t, p) for t in settings.topics.watched
                  for p in range(PARTITIONS)]  # fmt: skip
        pipeline.partitions = lambda: fields
        setup, batches = workload(args.batches, args.users)
        for start in range(0, len(setup), 500):
            await pipeline.apply([record(settings, e, n) for n, e in
                                  enumerate(setup[start : start + 500], start)])  # fmt: skip
        host, port = redis_service.address.split(":")
        with log.open("w") as out:
            monitor = subprocess.Popen(["redis-cli", "-h", host, "-p", port, "monitor"],
                                       stdout=out)  # fmt: skip
            time.sleep(0.5)
            offset = len(setup)
            for batch in batches:
                outcome = await pipeline.apply([record(settings, e, offset + n)
                                                for n, e in enumerate(batch)])  # fmt: skip
                assert not outcome.dead_letters, outcome.dead_letters[:1]
                offset += len(batch)

                async def publish(_):
                    return None

                await pipeline.release(publish)
            await redis.ping()
            time.sleep(0.5)
            monitor.terminate()
            monitor.wait()
        await redis.aclose()
    finally:
        redis_service.stop()
    by_tag: Counter[str] = Counter()
    kinds: dict[str, Counter[str]] = {}
    for line in log.read_text(errors="replace").splitlines():
        words = _QUOTED.findall(line)
        if len(words) < 2 or words[0].upper() in _SKIP:
            continue
        key = words[1]
        tag = tag_of(key)
        by_tag[tag] += 1
        kinds.setdefault(tag, Counter())[kind_of(key, "h:")] += 1
    total = sum(by_tag.values())
    nodes = Counter()
    for tag, n in by_tag.items():
        nodes[node_of(key_slot(tag.encode()))] += n
    busiest = max(nodes.values()) / (total / 3)

    def share(pred) -> float:
        return sum(n for t, n in by_tag.items() if pred(t)) / total

    print(f"{total:,} key commands over {len(by_tag):,} hash tags, {args.batches} batches")
    print("top hash tags (share of commands; kinds of keys):")
    for tag, n in by_tag.most_common(12):
        print(f"  {tag:<22} {n / total:7.2%}  {dict(kinds[tag].most_common(4))}")
    order = share(lambda t: t == "order")
    pointer = share(lambda t: t.endswith(".active"))
    suspended = share(lambda t: t.startswith("accounts"))
    print(f"event-time order {{order}}: {order:.2%}; pointer: {pointer:.3%}; suspended "
          f"index (16 shards): {suspended:.3%}")  # fmt: skip
    print(f"three masters: commands per node {sorted(nodes.values())}; busiest / mean "
          f"{busiest:.2f}")  # fmt: skip
    top, top_n = by_tag.most_common(1)[0]
    print(
        f"busiest_node={busiest:.2f} top_tag={top} top_share={top_n / total:.4f} "
        f"order_share={order:.4f} pointer_share={pointer:.5f} "
        f"suspended_share={suspended:.5f} commands={total}"
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
