"""Writes: apply events to the Redis feed views.

Per-follower work runs inside Redis (Lua, see ``lua/``); Python sends one script call per
event and pipelines the calls of a batch into one round trip. A fan-out larger than one
chunk (``Settings.fanout_chunk`` followers) continues chunk by chunk so that no single call
holds Redis for long.

Order: events are applied in the order given. When an event needs more chunks, the calls
already sent after it in the same pipeline ran too early; they are sent again once the
event is finished. Every script is idempotent, so running them again is harmless and the
result is the same as strictly sequential application.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from feedamp.config import Settings
from feedamp.models.decisions import Decision
from feedamp.models.events import (
    DeletePost,
    Event,
    Follow,
    Post,
    Repost,
    Unfollow,
    Unrepost,
)
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .keys import Keys
from .scripts import Scripts

__all__ = ["Failure", "FeedStore"]

#: Script calls sent per pipeline round trip.
PIPELINE_CALLS = 256


@dataclass(frozen=True, slots=True)
class Failure:
    """An event Redis refused (a script error); the caller dead-letters it."""

    index: int
    error: Exception


@dataclass(slots=True)
class Applied:
    """The result of :meth:`FeedStore.apply`: events a script rejected, and the decision
    made for each repost."""

    failures: list[Failure] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


@dataclass(slots=True)
class _Call:
    """One script call. A fan-out call visits ``source``'s followers; its ``argv[1:3]``
    are (first, cursor)."""

    index: int
    script: AsyncScript
    argv: list[str | int]
    source: str | None = None


class FeedStore:
    """Applies feed events (post, delete_post, repost, unrepost, follow, unfollow) to Redis."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.scripts = Scripts(redis)

    async def apply(self, events: Sequence[Event]) -> Applied:
        """Apply ``events`` in order; return the failures and the repost decisions.

        Events of types this store does not handle are skipped. Redis connection errors
        propagate: the caller retries the whole batch, which is safe because every write
        is idempotent.
        """
        calls = [call for i, ev in enumerate(events) if (call := self._call(i, ev)) is not None]
        failures: dict[int, Failure] = {}
        segment: list[_Call] = []
        for call, audience in zip(calls, await self._audiences(calls), strict=True):
            if audience > self.settings.fanout_chunk:  # a big fan-out runs on its own
                await self._run_segment(segment, events, failures)
                await self._run_segment([call], events, failures)
                segment = []
            else:
                segment.append(call)
        await self._run_segment(segment, events, failures)
        return Applied([failures[i] for i in sorted(failures)], [])

    async def _audiences(self, calls: Sequence[_Call]) -> list[int]:
        """Follower count of each fan-out call's source (0 for other calls), one round trip."""
        fanouts = [c for c in calls if c.source is not None]
        if not fanouts:
            return [0] * len(calls)
        async with self.redis.pipeline(transaction=False) as pipe:
            for call in fanouts:
                pipe.scard(self.keys.followers(call.source))  # type: ignore[arg-type]
            # An error here (say WRONGTYPE) resurfaces from the script call itself.
            sizes = iter(await pipe.execute(raise_on_error=False))
        return [_int_or_zero(next(sizes)) if c.source is not None else 0 for c in calls]

    async def _run_segment(
        self, calls: Sequence[_Call], events: Sequence[Event], failures: dict[int, Failure]
    ) -> None:
        """Pipeline ``calls``; finish any that needs more round trips, then re-send the
        calls after it (they ran too early; running them again is harmless)."""
        pos = 0
        while pos < len(calls):
            window = calls[pos : pos + PIPELINE_CALLS]
            results = await self._run(window)
            pos += len(window)
            for offset, (call, result) in enumerate(zip(window, results, strict=True)):
                if isinstance(result, Exception):
                    failures[call.index] = Failure(call.index, result)
                    continue
                if await self._finish(call, events[call.index], result):
                    pos -= len(window) - offset - 1
                    break

    async def _run(self, calls: Sequence[_Call]) -> list[object]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for call in calls:
                await call.script(args=call.argv, client=pipe)
            results = await pipe.execute(raise_on_error=False)
        for result in results:
            if is_transient(result):
                raise result  # type: ignore[misc]
        return results

    def _call(self, index: int, event: Event) -> _Call | None:
        s, p = self.settings, self.settings.key_prefix
        sc = self.scripts
        chunk, recent = s.fanout_chunk, s.recent_per_author
        buckets, cap = s.feed_buckets, s.bucket_cap
        match event:
            case Post():
                argv = [p, "1", "0", chunk, buckets, cap, recent, event.post_id,
                        event.author_id, event.ts, event.visibility, event.text or "",
                        event.media_url or ""]  # fmt: skip
                return _Call(index, sc.post, argv, event.author_id)
            case Repost():
                argv = [p, "1", "0", chunk, buckets, cap, recent, event.post_id,
                        event.post_author_id, event.reposter_id, event.ts,
                        event.comment or ""]  # fmt: skip
                return _Call(index, sc.repost, argv, event.reposter_id)
            case Unrepost():
                argv = [p, "1", "0", chunk, buckets, event.post_id, event.reposter_id]
                return _Call(index, sc.unrepost, argv, event.reposter_id)
            case DeletePost():
                argv = [p, event.post_id, event.author_id, event.ts]
                return _Call(index, sc.delete_post, argv)
            case Follow():
                argv = [p, buckets, cap, event.follower_id, event.followee_id]
                return _Call(index, sc.follow, argv)
            case Unfollow():
                argv = [p, buckets, event.follower_id, event.followee_id]
                return _Call(index, sc.unfollow, argv)
        return None

    async def _finish(self, call: _Call, event: Event, result: object) -> bool:
        """Finish an event whose first call returned ``result``; True if more calls ran."""
        if call.source is not None:
            cursor = _text(result)
            if cursor in ("0", "skip"):
                return False
            while cursor != "0":
                call.argv[1], call.argv[2] = "0", cursor
                cursor = _text(await call.script(args=call.argv))
            return True
        if isinstance(event, DeletePost):
            await self._unpush_everywhere(event.post_id, [_text(s) for s in result])  # type: ignore[union-attr]
            return True
        return False

    async def _unpush_everywhere(self, post_id: str, sources: list[str]) -> None:
        """Remove a post from the feeds of every follower of every source, chunk by chunk."""
        s = self.settings
        p, chunk, buckets = s.key_prefix, s.fanout_chunk, s.feed_buckets
        for n, source in enumerate(sources):
            last = "1" if n == len(sources) - 1 else "0"
            cursor = "0"
            while True:
                argv = [p, cursor, chunk, buckets, post_id, source, last]
                cursor = _text(await self.scripts.unpush(args=argv))
                if cursor == "0":
                    break


#: Errors that mean "Redis cannot serve right now", not "this event is bad": outages,
#: failovers, loading, out of memory, a script still running.
TRANSIENT_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError,
                    BusyLoadingError, OutOfMemoryError, ReadOnlyError, TryAgainError,
                    ClusterDownError, MasterDownError)  # fmt: skip


def is_transient(error: object) -> bool:
    """True for errors worth waiting out, which are retried instead of dead-lettered."""
    return isinstance(error, TRANSIENT_ERRORS) or (
        isinstance(error, ResponseError) and str(error).startswith(("BUSY", "OOM", "LOADING"))
    )


def _int_or_zero(value: object) -> int:
    return value if isinstance(value, int) else 0


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
