"""``feedamp status``: what the workers have left to do and what Redis holds.

- consumer lag of the worker group (``FEEDAMP_APP_ID``) per input topic and partition:
  the end offset minus the group's committed offset (the whole partition when the group
  has committed nothing yet);
- dead letters: the sum over the dead-letter topic's partitions of end minus beginning
  offsets (what retention kept);
- Redis memory (``INFO memory``), and the number of Following and For You feeds and
  their entries in the active key namespace (see :mod:`feedamp.feeds.namespace`), found
  with ``SCAN`` (a full pass over the key space: seconds on a large Redis, never blocking
  it).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from feedamp.config import Settings
from feedamp.feeds import Keys
from feedamp.feeds.batch import text
from feedamp.feeds.cluster import human_bytes, info_per_master, scan_keys
from feedamp.feeds.connection import AnyRedis
from feedamp.feeds.namespace import Namespaces
from feedamp.feeds.watermark import progress_field
from feedamp.kafka.lag import PartitionLag, kafka_status

__all__ = [
    "FeedCount",
    "PartitionLag",
    "Status",
    "collect_status",
    "count_feeds",
    "format_status",
    "kafka_status",
]

SCAN_COUNT = 1000


@dataclass(frozen=True)
class FeedCount:
    """Feeds of one kind (users with at least one non-empty bucket) and their entries."""

    feeds: int = 0
    entries: int = 0


@dataclass
class Status:
    """Everything ``feedamp status`` reports."""

    group: str
    lag: list[PartitionLag] = field(default_factory=list)
    #: The active key namespace's prefix (what the counts below are of).
    namespace: str = ""
    dead_letters: int = 0
    redis_memory: str = ""
    following: FeedCount = field(default_factory=FeedCount)
    for_you: FeedCount = field(default_factory=FeedCount)
    #: Reposts waiting for the event-time watermark, and how far it is behind the clock
    #: (None before the workers reported every partition).
    parked: int = 0
    watermark_lag_ms: int | None = None

    @property
    def total_lag(self) -> int:
        """Records the group has not committed yet, over every input partition."""
        return sum(p.lag for p in self.lag)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable form (``feedamp status --json``)."""
        return {**asdict(self), "total_lag": self.total_lag}


async def count_feeds(redis: AnyRedis, buckets: str) -> FeedCount:
    """Count the feeds whose bucket keys match the glob ``buckets`` (such as
    :meth:`Keys.feed_pattern`): distinct users and the sum of ZCARD."""
    users: set[bytes] = set()
    entries = 0
    batch: list[bytes] = []

    async def flush() -> int:
        async with redis.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.zcard(key)
            sizes = await pipe.execute()
        users.update(Keys.tag(k) for k, n in zip(batch, sizes, strict=True) if n)
        batch.clear()
        return sum(sizes)

    async for key in scan_keys(redis, buckets, SCAN_COUNT):
        batch.append(key)
        if len(batch) >= SCAN_COUNT:
            entries += await flush()
    if batch:
        entries += await flush()
    return FeedCount(len(users), entries)


async def collect_status(settings: Settings, redis: AnyRedis) -> Status:
    """Gather lag, dead letters, Redis memory and feed counts."""
    status = Status(group=settings.app_id)
    status.lag, status.dead_letters = await kafka_status(settings)
    infos = await info_per_master(redis, "memory")
    if len(infos) == 1:
        status.redis_memory = str(next(iter(infos.values())).get("used_memory_human", "?"))
    else:  # a cluster: the sum over its masters
        used = sum(int(i.get("used_memory", 0)) for i in infos.values())
        status.redis_memory = f"{human_bytes(used)} on {len(infos)} masters"
    status.namespace = await Namespaces(redis, settings.key_prefix).active()
    keys = Keys(status.namespace)
    status.following = await count_feeds(redis, keys.feed_pattern())
    status.for_you = await count_feeds(redis, keys.for_you_pattern())
    status.parked = await redis.zcard(keys.parked())
    progress = await redis.hgetall(keys.progress())
    watched = settings.topics.watched
    expected = {progress_field(p.topic, p.partition) for p in status.lag if p.topic in watched}
    seen = {text(k): int(v) for k, v in progress.items()}
    if expected and expected <= set(seen):
        watermark = min(seen[f] for f in expected)
        status.watermark_lag_ms = max(0, int(time.time() * 1000) - watermark)
    return status


def format_status(status: Status) -> str:
    """Human-readable report."""
    lines = [f"consumer group {status.group}: lag {status.total_lag:,}"]
    lines.append(f"  {'topic':<32} {'partition':>9} {'end':>12} {'committed':>12} {'lag':>10}")
    for p in status.lag:
        committed = "-" if p.committed is None else f"{p.committed:,}"
        lines.append(f"  {p.topic:<32} {p.partition:>9} {p.end:>12,} {committed:>12} {p.lag:>10,}")
    lines.append(f"dead letters: {status.dead_letters:,}")
    lines.append(f"redis memory: {status.redis_memory}")
    lines.append(f"key namespace: {status.namespace}")
    lines.append(
        f"following feeds: {status.following.feeds:,} ({status.following.entries:,} entries)"
    )
    lines.append(f"for you feeds: {status.for_you.feeds:,} ({status.for_you.entries:,} entries)")
    behind = "-" if status.watermark_lag_ms is None else f"{status.watermark_lag_ms:,} ms"
    lines.append(f"parked events: {status.parked:,} (watermark behind the clock: {behind})")
    return "\n".join(lines)
