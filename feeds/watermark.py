"""Event-time order for the reposts topic, so that repost decisions do not depend on the
order in which partitions happen to be read.

Reposts are keyed by post, so one user's reposts are spread over partitions that different
workers read at different speeds; a rate cap counting a user's reposts in a window of
event time would otherwise see them in whatever order they arrived. Instead, every event
of the reposts topic (repost, unrepost) is first *parked* in Redis, and *released* once
the **watermark** has passed its event time; released events are decided and applied in
event-time order (ties by event id), whichever worker releases them.

The watermark is the lowest **progress** of all partitions of the posts and reposts
topics. Each worker raises the progress of the partitions it reads: to the latest event
time read, less the allowed lateness (``FEEDAMP_CAP_LATENESS_MS``), and, for a partition
it has read to the end, to the current time less the lateness (whatever arrives later is
assumed to be at most that late). Including the posts topic means a repost is decided
after its post was applied, so a followers-only post is refused whatever the arrival
order. Invariant: a partition's progress passes an event only once that event is in
Redis (the pipeline raises a batch's progress after writing the batch), so a release,
whenever it runs, never decides ahead of a write. Replay reads every partition merged in
time order itself and does not park.

An event that arrives later than the allowed lateness is still decided, at once; only
such late events can be decided differently from a replay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from feedamp.config import Settings
from redis.asyncio.lock import Lock

from .batch import context, run_scripts, text
from .connection import AnyRedis
from .keys import Keys
from .scripts import Scripts, argv

__all__ = ["Watermark", "progress_field"]

#: The released-by lock expires after this long (s), should its holder die.
LOCK_SECONDS = 30.0


def progress_field(topic: str, partition: int) -> str:
    """The name of a partition in the progress hash."""
    return f"{topic}:{partition}"


class Watermark:
    """Parks reposts-topic events and releases them, in event-time order, once the
    watermark has passed them."""

    def __init__(self, redis: AnyRedis, settings: Settings, prefix: str | None = None) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(prefix or settings.key_prefix)
        self.scripts = Scripts(redis)
        self._context = context(settings, prefix)

    async def park(self, events: Sequence[tuple[str, int, bytes]]) -> None:
        """Hold ``(event_id, event time, record)`` until the watermark passes it."""
        if not events:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.parked_events(), mapping={e: r for e, _, r in events})
            pipe.zadd(self.keys.parked(), {e: ts for e, ts, _ in events})
            await pipe.execute()

    async def advance(self, progress: Mapping[str, int]) -> None:
        """Raise the progress of partitions (``progress_field`` -> event time, ms)."""
        if progress:
            flat = [v for field, ts in sorted(progress.items()) for v in (field, ts)]
            args = argv("progress", self._context, *flat)
            await run_scripts(self.redis, [(self.scripts.progress, args)])

    async def release(
        self, limit: int, partitions: Sequence[str] | None
    ) -> tuple[float | None, list[tuple[str, bytes]]]:
        """The watermark and up to ``limit`` parked ``(event_id, record)`` it has passed,
        oldest first. ``partitions`` are the progress fields the watermark is the minimum
        of (None: no watermark, release everything)."""
        forced = "+inf" if partitions is None else ""
        args = argv("release", self._context, *(partitions or ()), limit=limit, forced=forced)
        (result,) = await run_scripts(self.redis, [(self.scripts.release, args)])
        if isinstance(result, Exception):
            raise result
        rows = list(result)  # type: ignore[call-overload]
        watermark = float(rows[0]) if rows and rows[0] else None
        items = [(text(rows[i]), rows[i + 1]) for i in range(1, len(rows), 2)]
        return watermark, items

    async def forget(self, event_ids: Sequence[str]) -> None:
        """Drop released events once applied."""
        if event_ids:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(self.keys.parked(), *event_ids)
                pipe.hdel(self.keys.parked_events(), *event_ids)
                await pipe.execute()

    def lock(self) -> Lock:
        """The lock one releaser holds at a time; ``acquire`` returns False at once when
        another holds it."""
        return self.redis.lock(self.keys.release_lock(), timeout=LOCK_SECONDS, blocking=False)
