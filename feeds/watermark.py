"""Event-time order for the reposts and gifts topics, so that repost and gift decisions
do not depend on the order in which partitions happen to be read.

Reposts are keyed by post, so one user's reposts are spread over partitions that different
workers read at different speeds; a rate cap counting a user's reposts in a window of
event time would otherwise see them in whatever order they arrived. Gifts are keyed by
sender, but a code pool is shared by every sender of an offer, and producers with
different partitioners can split one sender's gifts over partitions: which gift gets the
last code, or the last send under a limit, would otherwise be the first to arrive.
Instead, every event of the parked topics (repost, unrepost, gift:
:attr:`~feedamp.config.Topics.parked`) is first *parked* in Redis, and *released* once
the **watermark** has passed its event time; released events are decided and applied in
event-time order (ties by event id), whichever worker releases them.

The watermark is the lowest **progress** of all partitions of the watched topics (posts,
reposts, gifts and accounts: :attr:`~feedamp.config.Topics.watched`). Each worker raises
the progress of the partitions it reads: to the latest event time read, less the allowed
lateness (``FEEDAMP_CAP_LATENESS_MS``), and, for a partition it has read to the end, to
the current time less the lateness (whatever arrives later is assumed to be at most that
late). Including the posts topic means a repost is decided after its post was applied,
so a followers-only post is refused whatever the arrival order; including the accounts
topic means a suspension within the lateness is on record before the reposts and gifts
it stops are decided. Invariant: a partition's progress passes an event only once that
event is in Redis (the pipeline raises a batch's progress after writing the batch), so a
release, whenever it runs, never decides ahead of a write. Replay does not park: it
holds these events behind a watermark of its own, computed the same way from what it
reads (:mod:`feedamp.ops.event_order`).

An event that arrives later than the allowed lateness is still decided, at once; only
such late events can be decided differently from a replay.

One worker releases at a time (the release lock, renewed while it releases): a worker
killed mid-release holds the others up for :data:`LOCK_SECONDS` at most, and what it
released but had not forgotten is released again (at least once; every effect is
idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence

from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from .batch import run_scripts, text
from .namespace import Namespace
from .scripts import argv
from .writer import Writer

__all__ = ["LOCK_SECONDS", "Watermark", "progress_field"]

log = logging.getLogger("feedamp.watermark")

#: The release lock expires after this long (s) unless its holder renews it: a holder
#: renews it every third of that while it releases, so a release of any length keeps it,
#: and a holder killed mid-release holds up the others' releases this long at most.
LOCK_SECONDS = 6.0


async def _renew(lock: Lock) -> None:
    """Renew ``lock`` every third of its time until cancelled; stop if it was lost (it
    lapsed while the loop stalled, and another releaser may hold it now)."""
    while True:
        await asyncio.sleep(LOCK_SECONDS / 3)
        try:
            await lock.reacquire()
        except LockError:
            log.warning(
                "the release lock lapsed while this worker released; another worker may "
                "release the same events (every effect is idempotent)"
            )
            return


def progress_field(topic: str, partition: int) -> str:
    """The name of a partition in the progress hash."""
    return f"{topic}:{partition}"


class Watermark(Writer):
    """Parks reposts and gifts and releases them, in event-time order, once the
    watermark has passed them. Every call works in the namespace it is given (None: the
    settings' ``key_prefix``)."""

    async def park(
        self, events: Sequence[tuple[str, int, bytes]], namespace: Namespace | None = None
    ) -> None:
        """Hold ``(event_id, event time, record)`` until the watermark passes it."""
        if not events:
            return
        keys = self.at(namespace).keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.parked_events(), mapping={e: r for e, _, r in events})
            pipe.zadd(keys.parked(), {e: ts for e, ts, _ in events})
            await pipe.execute()

    async def advance(
        self, progress: Mapping[str, int], namespace: Namespace | None = None
    ) -> None:
        """Raise the progress of partitions (``progress_field`` -> event time, ms)."""
        if progress:
            flat = [v for field, ts in sorted(progress.items()) for v in (field, ts)]
            args = argv("progress", self.at(namespace).context, *flat)
            await run_scripts(self.redis, [(self.scripts.progress, args)])

    async def release(
        self, limit: int, partitions: Sequence[str] | None, namespace: Namespace | None = None
    ) -> tuple[float | None, list[tuple[str, bytes]]]:
        """The watermark and up to ``limit`` parked ``(event_id, record)`` it has passed,
        oldest first. ``partitions`` are the progress fields the watermark is the minimum
        of (None: no watermark, release everything)."""
        forced = "+inf" if partitions is None else ""
        ctx = self.at(namespace).context
        args = argv("release", ctx, *(partitions or ()), limit=limit, forced=forced)
        (result,) = await run_scripts(self.redis, [(self.scripts.release, args)])
        if isinstance(result, Exception):
            raise result
        rows = list(result)  # type: ignore[call-overload]
        watermark = float(rows[0]) if rows and rows[0] else None
        items = [(text(rows[i]), rows[i + 1]) for i in range(1, len(rows), 2)]
        return watermark, items

    async def pending(self, namespace: Namespace | None = None) -> int:
        """How many events are parked (released or not)."""
        return int(await self.redis.zcard(self.at(namespace).keys.parked()))

    async def earliest(self, namespace: Namespace | None = None) -> int | None:
        """The event time (ms) of the oldest parked event (released or not); None when
        nothing is parked. Once the watermark reaches it, a release can pass it."""
        oldest = await self.redis.zrange(self.at(namespace).keys.parked(), 0, 0, withscores=True)
        return int(oldest[0][1]) if oldest else None

    async def forget(self, event_ids: Sequence[str], namespace: Namespace | None = None) -> None:
        """Drop released events once applied."""
        if event_ids:
            keys = self.at(namespace).keys
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(keys.parked(), *event_ids)
                pipe.hdel(keys.parked_events(), *event_ids)
                await pipe.execute()

    def lock(self, namespace: Namespace | None = None) -> Lock:
        """The lock one releaser holds at a time; ``acquire`` returns False at once when
        another holds it."""
        key = self.at(namespace).keys.release_lock()
        return self.redis.lock(key, timeout=LOCK_SECONDS, blocking=False)

    @contextlib.asynccontextmanager
    async def releasing(self, namespace: Namespace | None = None) -> AsyncIterator[bool]:
        """Hold the release lock for the body: True while held, renewed every third of
        :data:`LOCK_SECONDS` (a holder that dies lets it lapse within that), released
        after; False at once, the lock untouched, when another releaser holds it."""
        lock = self.lock(namespace)
        if not await lock.acquire():
            yield False
            return
        keeper = asyncio.create_task(_renew(lock))
        try:
            yield True
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            with contextlib.suppress(LockError):  # lapsed while we worked (a stalled loop)
                await lock.release()
