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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from feedamp.config import Settings
from feedamp.models.decisions import (
    DELIVERED,
    FORWARDED_MANY_TIMES,
    REFUSED,
    AnyDecision,
    Decision,
)
from feedamp.models.events import (
    Block,
    DeletePost,
    Event,
    Follow,
    Mute,
    Post,
    Repost,
    Unblock,
    Unfollow,
    Unmute,
    Unrepost,
)
from redis.commands.core import AsyncScript

from .batch import PIPELINE_CALLS, TRANSIENT_ERRORS, is_transient, run_scripts, text
from .connection import AnyRedis
from .keys import Keys
from .repost_decisions import decide_reposts
from .scripts import SIGNATURES, Scripts, argv

__all__ = ["TRANSIENT_ERRORS", "Applied", "Failure", "FeedStore", "is_transient"]


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
    decisions: list[AnyDecision] = field(default_factory=list)
    #: Feed entries pushed by post and repost fan-out (one per follower reached).
    deliveries: int = 0


#: Positions of (first, cursor) in a fan-out call's argv (post, repost and unrepost agree).
_FIRST, _CURSOR = SIGNATURES["post"].index("first"), SIGNATURES["post"].index("cursor")


@dataclass(slots=True)
class _Tally:
    """What one :meth:`FeedStore.apply` call counts as it goes."""

    deliveries: int = 0


def _cursor(result: object, tally: _Tally) -> str:
    """The next cursor of a fan-out call's reply ``cursor|deliveries``; counts them."""
    cursor, _, delivered = text(result).partition("|")
    tally.deliveries += int(delivered or 0)
    return cursor


@dataclass(slots=True)
class _Call:
    """One script call. A fan-out call visits ``source``'s followers; its
    ``argv[_FIRST]`` and ``argv[_CURSOR]`` say where it is."""

    index: int
    script: AsyncScript
    argv: list[str | int]
    source: str | None = None


class FeedStore:
    """Applies feed events (post, delete_post, repost, unrepost, follow, unfollow, block,
    unblock, mute, unmute) to Redis, deciding every repost first."""

    def __init__(self, redis: AnyRedis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.scripts = Scripts(redis)
        s = settings
        #: The seven settings every script reads first (see lib.lua).
        self._context: list[str | int] = [
            s.key_prefix, s.feed_buckets, s.bucket_cap, s.for_you_bucket_cap,
            s.for_you_half_life_ms, s.recent_per_author, s.fanout_chunk,
        ]  # fmt: skip
        self._views: dict[str, FeedStore] = {}

    def _at(self, prefix: str | None) -> FeedStore:
        """This store writing to the namespace ``prefix`` (None: ``settings.key_prefix``):
        the script context (``ARGV[1]`` is the prefix) and key names follow the prefix."""
        if prefix is None or prefix == self.settings.key_prefix:
            return self
        view = self._views.get(prefix)
        if view is None:
            if len(self._views) >= 8:  # old generations: never written to again
                self._views.clear()
            view = self._views[prefix] = FeedStore(
                self.redis, self.settings.with_(key_prefix=prefix)
            )
        return view

    async def apply(
        self,
        events: Sequence[Event],
        *,
        refused: Mapping[int, str] | None = None,
        prefix: str | None = None,
    ) -> Applied:
        """Apply ``events`` in order to the namespace ``prefix`` (None: the settings'
        ``key_prefix``); return the failures, the repost decisions and the deliveries.

        ``refused`` maps the index of a repost stopped at the door (its reposter or the
        post's author is suspended) to the reason: it is decided ``refused`` and not
        applied. Events of types this store does not handle are skipped. Redis connection errors
        propagate: the caller retries the whole batch, which is safe because every write
        is idempotent and every decision is kept once made.
        """
        if (view := self._at(prefix)) is not self:
            return await view.apply(events, refused=refused)
        # Per call, not on the store: the agent and the release timer share this store.
        tally = _Tally()
        failures: dict[int, Failure] = {}
        decisions = await self._decide(events, failures, refused or {})
        calls = [
            call
            for i, ev in enumerate(events)
            if i not in failures and (call := self._call(i, ev, decisions.get(i))) is not None
        ]
        segment: list[_Call] = []
        for call, audience in zip(calls, await self._audiences(calls), strict=True):
            if audience > self.settings.fanout_chunk:  # a big fan-out runs on its own
                await self._run_segment(segment, events, failures, tally)
                await self._run_segment([call], events, failures, tally)
                segment = []
            else:
                segment.append(call)
        await self._run_segment(segment, events, failures, tally)
        return Applied(
            [failures[i] for i in sorted(failures)], list(decisions.values()), tally.deliveries
        )

    async def rebuild_feed(self, user_id: str, *, prefix: str | None = None) -> int:
        """Regenerate ``user_id``'s Following and For You feeds from their followees' recent
        posts and reposts (as follow backfill does), in the namespace ``prefix`` (None: the
        settings' ``key_prefix``); return the number of followees."""
        if (view := self._at(prefix)) is not self:
            return await view.rebuild_feed(user_id)
        followees = sorted(text(m) for m in await self.redis.smembers(
            self.keys.following(user_id)))  # fmt: skip
        buckets = range(self.settings.feed_buckets)
        await self.redis.delete(
            *[k(user_id, b) for b in buckets for k in (
                self.keys.feed, self.keys.via, self.keys.for_you, self.keys.for_you_via)]
        )  # fmt: skip
        async with self.redis.pipeline(transaction=False) as pipe:
            for followee in followees:
                args = argv("follow", self._context, follower_id=user_id, followee_id=followee,
                            ts="")  # backfill only  # fmt: skip
                await self.scripts.follow(args=args, client=pipe)  # type: ignore[arg-type]  # redis-py types omit pipelines as script clients
            await pipe.execute()
        return len(followees)

    async def _decide(
        self, events: Sequence[Event], failures: dict[int, Failure], refused: Mapping[int, str]
    ) -> dict[int, Decision]:
        """Decide every repost of the batch, in event-time order, in three slot-local
        steps (:mod:`feedamp.feeds.repost_decisions`), one round trip each.

        Decisions are made once and kept in Redis (``decided:{post}``), so a redelivered
        repost gets the decision it had. With caps off every repost is delivered and no
        decision is recorded or published, except for reposts refused at the door (depth
        0: not computed).
        """
        reposts = sorted(
            ((i, ev) for i, ev in enumerate(events) if isinstance(ev, Repost)),
            key=lambda item: (item[1].ts, item[1].event_id),
        )
        if not self.settings.caps.enabled:
            return {i: _refusal(ev, refused[i]) for i, ev in reposts if i in refused}
        if not reposts:
            return {}
        decisions, failed = await decide_reposts(
            self.redis, self.scripts, self.settings, self._context, events, refused
        )
        for i, error in failed.items():
            failures[i] = Failure(i, error)
        return decisions

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
        self,
        calls: Sequence[_Call],
        events: Sequence[Event],
        failures: dict[int, Failure],
        tally: _Tally,
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
                if await self._finish(call, events[call.index], result, tally):
                    pos -= len(window) - offset - 1
                    break

    async def _run(self, calls: Sequence[_Call]) -> list[object]:
        return await run_scripts(self.redis, [(call.script, call.argv) for call in calls])

    def _call(self, index: int, event: Event, decision: Decision | None) -> _Call | None:
        """The first script call for ``event``, or None when it writes nothing."""
        ctx, sc = self._context, self.scripts
        match event:
            case Post():
                args = argv("post", ctx, first="1", cursor="0", post_id=event.post_id,
                            author_id=event.author_id, ts=event.ts, visibility=event.visibility,
                            text=event.text or "", media_url=event.media_url or "")  # fmt: skip
                return _Call(index, sc.post, args, event.author_id)
            case Repost():
                if decision is not None and not decision.reaches_feeds:
                    return None
                for_you = decision is None or decision.decision == DELIVERED
                label = decision is not None and FORWARDED_MANY_TIMES in decision.reasons
                args = argv("repost", ctx, first="1", cursor="0", post_id=event.post_id,
                            post_author_id=event.post_author_id, reposter_id=event.reposter_id,
                            ts=event.ts, comment=event.comment or "", for_you=_flag(for_you),
                            label=_flag(label), repost_id=event.repost_id)  # fmt: skip
                return _Call(index, sc.repost, args, event.reposter_id)
            case Unrepost():
                args = argv("unrepost", ctx, first="1", cursor="0", post_id=event.post_id,
                            reposter_id=event.reposter_id)  # fmt: skip
                return _Call(index, sc.unrepost, args, event.reposter_id)
            case DeletePost():
                args = argv("delete_post", ctx, post_id=event.post_id,
                            author_id=event.author_id, ts=event.ts)  # fmt: skip
                return _Call(index, sc.delete_post, args)
            case Follow() | Unfollow():
                name = "follow" if isinstance(event, Follow) else "unfollow"
                args = argv(name, ctx, follower_id=event.follower_id,
                            followee_id=event.followee_id, ts=event.ts)  # fmt: skip
                return _Call(index, getattr(sc, name), args)
            case Block() | Unblock() | Mute() | Unmute():
                args = argv("hide", ctx, action=event.type, user_id=event.user_id,
                            target_id=event.target_id, ts=event.ts)  # fmt: skip
                return _Call(index, sc.hide, args)
        return None

    async def _finish(self, call: _Call, event: Event, result: object, tally: _Tally) -> bool:
        """Finish an event whose first call returned ``result``; True if more calls ran."""
        if call.source is not None:
            cursor = _cursor(result, tally)
            if cursor in ("0", "skip"):
                return False
            while cursor != "0":
                call.argv[_FIRST], call.argv[_CURSOR] = "0", cursor
                cursor = _cursor(await call.script(args=call.argv), tally)
            return True
        if isinstance(event, DeletePost):
            await self._unpush_everywhere(event.post_id, [text(s) for s in cast(list, result)])
            return True
        return False

    async def _unpush_everywhere(self, post_id: str, sources: list[str]) -> None:
        """Remove a post from the feeds of every follower of every source, chunk by chunk."""
        for n, source in enumerate(sources):
            last = "1" if n == len(sources) - 1 else "0"
            cursor = "0"
            while True:
                args = argv("unpush", self._context, cursor=cursor, post_id=post_id,
                            source_id=source, last=last)  # fmt: skip
                cursor = text(await self.scripts.unpush(args=args))
                if cursor == "0":
                    break


def _refusal(event: Repost, reason: str) -> Decision:
    return Decision(
        event_id=event.event_id, repost_id=event.repost_id, reposter_id=event.reposter_id,
        post_id=event.post_id, depth=0, decision=REFUSED, reasons=(reason,), ts=event.ts,
    )  # fmt: skip


def _int_or_zero(value: object) -> int:
    return value if isinstance(value, int) else 0


def _flag(value: bool) -> str:
    return "1" if value else "0"
