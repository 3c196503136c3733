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
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from .batch import PIPELINE_CALLS, TRANSIENT_ERRORS, is_transient, run_scripts, text
from .cluster import ClusterUnsupported
from .connection import is_cluster
from .fanout import Segment, deliver, followers_of
from .keys import Keys, bucket_of
from .scripts import Scripts

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


#: Positions of (first, cursor) in a fan-out call's argv, after the shared context.
_FIRST, _CURSOR = 7, 8


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

    def __init__(self, redis: Redis, settings: Settings) -> None:
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
        self._deliveries = 0
        #: Followers re-grouped by slot after a cluster node refused a delivery call.
        self.regrouped = 0

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
        self._deliveries = 0
        failures: dict[int, Failure] = {}
        decisions = await self._decide(events, failures, refused or {})
        # Posts and deletions run as slot-local steps (origin, then delivery grouped by
        # node); the other events as one script call each. Runs keep the log's order.
        runs: list[tuple[bool, list[int]]] = []
        for i, ev in enumerate(events):
            if i in failures:
                continue
            fanout = isinstance(ev, Post | DeletePost)
            if not runs or runs[-1][0] != fanout:
                runs.append((fanout, []))
            runs[-1][1].append(i)
        for fanout, indexes in runs:
            if fanout:
                await self._fan_out(events, indexes, failures)
            else:
                await self._run_calls(events, indexes, decisions, failures)
        deliveries, self._deliveries = self._deliveries, 0
        return Applied(
            [failures[i] for i in sorted(failures)], list(decisions.values()), deliveries
        )

    async def _run_calls(
        self,
        events: Sequence[Event],
        indexes: Sequence[int],
        decisions: Mapping[int, Decision],
        failures: dict[int, Failure],
    ) -> None:
        """Apply the events at ``indexes`` with one script call each, pipelined; a big
        fan-out runs on its own."""
        calls = [
            call
            for i in indexes
            if (call := self._call(i, events[i], decisions.get(i))) is not None
        ]
        segment: list[_Call] = []
        for call, audience in zip(calls, await self._audiences(calls), strict=True):
            if audience > self.settings.fanout_chunk:  # a big fan-out runs on its own
                await self._run_segment(segment, events, failures)
                await self._run_segment([call], events, failures)
                segment = []
            else:
                segment.append(call)
        await self._run_segment(segment, events, failures)

    async def _fan_out(
        self, events: Sequence[Event], indexes: Sequence[int], failures: dict[int, Failure]
    ) -> None:
        """Apply a run of posts and deletions (README, *Redis Cluster*): the origin steps
        on the posts' slots (one pipeline), the recent lists on the authors' and
        reposters' slots, then the delivery to every follower of each source, grouped by
        node (:func:`~feedamp.feeds.fanout.deliver`), in the log's order; last, a
        deleted post's reposters and comments go."""
        k, ctx, sc = self.keys, self._context, self.scripts
        if is_cluster(self.redis):
            await self._refuse_awaiting([events[i] for i in indexes])
        origins: list[tuple[AsyncScript, list[str | int]]] = []
        for i in indexes:
            ev = events[i]
            if isinstance(ev, Post):
                origins.append((sc.post, [*ctx, ev.post_id, ev.author_id, ev.ts, ev.visibility,
                                          ev.text or "", ev.media_url or ""]))  # fmt: skip
            else:
                assert isinstance(ev, DeletePost)
                origins.append((sc.delete_post, [*ctx, ev.post_id, ev.author_id, ev.ts]))
        sources: dict[int, list[str]] = {}
        for i, result in zip(indexes, await run_scripts(self.redis, origins), strict=True):
            if isinstance(result, Exception):
                failures[i] = Failure(i, result)
            elif isinstance(events[i], Post):
                if text(result) == "ok":
                    sources[i] = [events[i].author_id]  # type: ignore[union-attr]
            else:
                sources[i] = [text(s) for s in result]  # type: ignore[union-attr]
        if not sources:
            return
        todo = list(sources)
        flat = [(i, source) for i in todo for source in sources[i]]
        found = await followers_of(self.redis, k, [s for _, s in flat], self.settings.fanout_chunk)
        recent = self.settings.recent_per_author
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in todo:
                ev = events[i]
                if isinstance(ev, Post):
                    pipe.zadd(k.recent_posts(ev.author_id), {ev.post_id: ev.ts})
                    pipe.zremrangebyrank(k.recent_posts(ev.author_id), 0, -(recent + 1))
                else:
                    assert isinstance(ev, DeletePost)
                    pipe.zrem(k.recent_posts(ev.author_id), ev.post_id)
                    for reposter in sources[i][1:]:
                        pipe.zrem(k.recent_reposts(reposter), ev.post_id)
            await pipe.execute()
        segments = []
        for (i, _), followers in zip(flat, found, strict=True):
            ev = events[i]
            bucket = bucket_of(ev.post_id, self.settings.feed_buckets)  # type: ignore[union-attr]
            if isinstance(ev, Post):
                segments.append(Segment("post", ev.post_id, ev.author_id, ev.ts, bucket,
                                        followers, i))  # fmt: skip
            else:
                assert isinstance(ev, DeletePost)
                segments.append(Segment("unpush", ev.post_id, "", "", bucket, followers, i))
        done = await deliver(self.redis, sc.deliver, ctx, segments, k, self.settings.fanout_chunk)
        self.regrouped += done.regrouped
        for i, error in done.errors.items():
            failures.setdefault(i, Failure(i, error))
        self._deliveries += sum(n for i, n in done.reached.items()
                                if isinstance(events[i], Post))  # fmt: skip
        deletes = [events[i] for i in todo if isinstance(events[i], DeletePost)]
        if deletes:
            async with self.redis.pipeline(transaction=False) as pipe:
                for ev in deletes:
                    pipe.delete(k.reposters(ev.post_id), k.comments(ev.post_id))  # type: ignore[union-attr]
                await pipe.execute()

    async def _refuse_awaiting(self, events: Sequence[Event]) -> None:
        """On a cluster: :class:`ClusterUnsupported` before anything is written when
        orders wait for one of the posts (crediting them is not slot-local yet)."""
        posts = [ev for ev in events if isinstance(ev, Post)]
        if not posts:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for post in posts:
                pipe.scard(self.keys.awaiting_post(post.post_id))
            if any(await pipe.execute()):
                raise ClusterUnsupported(
                    "crediting orders that wait for a post on Redis Cluster is not supported yet"
                )

    async def rebuild_feed(self, user_id: str, *, prefix: str | None = None) -> int:
        """Regenerate ``user_id``'s Following and For You feeds from their followees' recent
        posts and reposts (as follow backfill does), in the namespace ``prefix`` (None: the
        settings' ``key_prefix``); return the number of followees."""
        if (view := self._at(prefix)) is not self:
            return await view.rebuild_feed(user_id)
        followees = sorted(m.decode() for m in await self.redis.smembers(
            self.keys.following(user_id)))  # fmt: skip
        buckets = range(self.settings.feed_buckets)
        await self.redis.delete(
            *[k(user_id, b) for b in buckets for k in (
                self.keys.feed, self.keys.via, self.keys.for_you, self.keys.for_you_via)]
        )  # fmt: skip
        async with self.redis.pipeline(transaction=False) as pipe:
            for followee in followees:
                argv = [*self._context, user_id, followee, ""]  # backfill only
                await self.scripts.follow(args=argv, client=pipe)
            await pipe.execute()
        return len(followees)

    async def _decide(
        self, events: Sequence[Event], failures: dict[int, Failure], refused: Mapping[int, str]
    ) -> dict[int, Decision]:
        """Decide every repost of the batch, in event-time order, in one round trip.

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
        c = self.settings.caps
        limits = [c.frequently_forwarded_depth, c.rate_max, c.rate_window_ms, c.forwarded_max,
                  c.forwarded_window_ms, c.brake_reposts, c.brake_window_ms,
                  "1" if c.friction else "0"]  # fmt: skip
        async with self.redis.pipeline(transaction=False) as pipe:
            for i, ev in reposts:
                via, comment = ev.via_repost_id or "", _flag(bool(ev.comment))
                argv = [*self._context, ev.post_id, ev.repost_id, ev.reposter_id, via, ev.ts,
                        comment, *limits, refused.get(i, "")]  # fmt: skip
                await self.scripts.decide(args=argv, client=pipe)
            results = await pipe.execute(raise_on_error=False)
        decisions: dict[int, Decision] = {}
        for (i, ev), result in zip(reposts, results, strict=True):
            if is_transient(result):
                raise result  # type: ignore[misc]
            if isinstance(result, Exception):
                failures[i] = Failure(i, result)
                continue
            outcome, depth, reasons = text(result).split("|")
            decisions[i] = Decision(
                event_id=ev.event_id, repost_id=ev.repost_id, reposter_id=ev.reposter_id,
                post_id=ev.post_id, depth=int(depth), decision=outcome,
                reasons=tuple(r for r in reasons.split(",") if r), ts=ev.ts,
            )  # fmt: skip
        return dict(sorted(decisions.items()))

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
        return await run_scripts(self.redis, [(call.script, call.argv) for call in calls])

    def _call(self, index: int, event: Event, decision: Decision | None) -> _Call | None:
        """The first script call for ``event``, or None when it writes nothing."""
        ctx, sc = self._context, self.scripts
        match event:
            case Repost():
                if decision is not None and not decision.reaches_feeds:
                    return None
                for_you = decision is None or decision.decision == DELIVERED
                label = decision is not None and FORWARDED_MANY_TIMES in decision.reasons
                argv = [*ctx, "1", "0", event.post_id, event.post_author_id, event.reposter_id,
                        event.ts, event.comment or "", _flag(for_you), _flag(label),
                        event.repost_id]  # fmt: skip
                return _Call(index, sc.repost, argv, event.reposter_id)
            case Unrepost():
                argv = [*ctx, "1", "0", event.post_id, event.reposter_id]
                return _Call(index, sc.unrepost, argv, event.reposter_id)
            case Follow() | Unfollow():
                script = sc.follow if isinstance(event, Follow) else sc.unfollow
                argv = [*ctx, event.follower_id, event.followee_id, event.ts]
                return _Call(index, script, argv)
            case Block() | Unblock() | Mute() | Unmute():
                argv = [*ctx, event.type, event.user_id, event.target_id, event.ts]
                return _Call(index, sc.hide, argv)
        return None

    async def _finish(self, call: _Call, event: Event, result: object) -> bool:
        """Finish an event whose first call returned ``result``; True if more calls ran."""
        if call.source is not None:
            cursor = self._cursor(result)
            if cursor in ("0", "skip"):
                return False
            while cursor != "0":
                call.argv[_FIRST], call.argv[_CURSOR] = "0", cursor
                cursor = self._cursor(await call.script(args=call.argv))
            return True
        return False

    def _cursor(self, result: object) -> str:
        """The next cursor of a fan-out call's reply ``cursor|deliveries``; counts them."""
        cursor, _, delivered = text(result).partition("|")
        self._deliveries += int(delivered or 0)
        return cursor


def _refusal(event: Repost, reason: str) -> Decision:
    return Decision(
        event_id=event.event_id, repost_id=event.repost_id, reposter_id=event.reposter_id,
        post_id=event.post_id, depth=0, decision=REFUSED, reasons=(reason,), ts=event.ts,
    )  # fmt: skip


def _int_or_zero(value: object) -> int:
    return value if isinstance(value, int) else 0


def _flag(value: bool) -> str:
    return "1" if value else "0"
