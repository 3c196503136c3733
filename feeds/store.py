"""Writes: apply events to the Redis feed views.

Per-follower work runs inside Redis (Lua, see ``lua/``). Posts, deletions, reposts and
unreposts run as slot-local steps, the same code on a standalone Redis and a Redis
Cluster (README, *Redis Cluster*): an origin step per event on its post's slot (one
pipeline for a run of such events), the recent lists on the authors' and reposters'
slots, then delivery steps on the followers' slots (:mod:`.fanout`: followers read
``Settings.fanout_chunk`` at a time, grouped by node, one call per node and chunk), given
the post's facts in ARGV. Follow, unfollow, block, mute and their undos are one script
event at a time: state steps, reads, then a step on the user's slot (:mod:`.graph`).

Order: events are applied in the order given: the batch is cut into runs of fan-out
events and runs of other events, each run finished before the next starts. Within a run
the origins run in order, then the deliveries in order (per follower, a post pushed and
then withdrawn or unpushed ends so). Every step is idempotent, so a batch retried after
a failure at any point ends as one sequential application.
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
from redis.exceptions import ResponseError

from .batch import TRANSIENT_ERRORS, is_transient, run_scripts, text
from .cluster import ClusterUnsupported
from .connection import AnyRedis, is_cluster
from .dormancy import cutoff
from .fanout import Segment, deliver, followers_of
from .graph import GraphSteps
from .keys import Keys, bucket_of
from .repost_decisions import decide_reposts
from .scripts import Scripts, argv

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


@dataclass(slots=True)
class _Tally:
    """What one :meth:`FeedStore.apply` call counts as it goes."""

    deliveries: int = 0


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
        self.graph = GraphSteps(redis, self.scripts, self.keys, self._context, s.feed_buckets)
        self._views: dict[str, FeedStore] = {}
        #: Followers re-grouped by slot after a cluster node refused a delivery call (a
        #: running total, for tests and benchmarks).
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
        # Per call, not on the store: the agent and the release timer share this store.
        tally = _Tally()
        failures: dict[int, Failure] = {}
        decisions = await self._decide(events, failures, refused or {})
        # Posts, deletions, reposts and unreposts run as slot-local steps (origin, then
        # delivery grouped by node); the others as one script call each, pipelined. Runs
        # keep the log's order.
        runs: list[tuple[bool, list[int]]] = []
        for i, ev in enumerate(events):
            if i in failures:
                continue
            fanout = isinstance(ev, FANOUT_EVENTS)
            if not runs or runs[-1][0] != fanout:
                runs.append((fanout, []))
            runs[-1][1].append(i)
        for fanout, indexes in runs:
            if fanout:
                await self._fan_out(events, indexes, decisions, failures, tally)
            else:
                await self._run_calls(events, indexes, decisions, failures)
        return Applied(
            [failures[i] for i in sorted(failures)], list(decisions.values()), tally.deliveries
        )

    async def _run_calls(
        self,
        events: Sequence[Event],
        indexes: Sequence[int],
        decisions: Mapping[int, Decision],
        failures: dict[int, Failure],
    ) -> None:
        """Apply the graph events at ``indexes`` one after another (:mod:`.graph`)."""
        for i in indexes:
            event = events[i]
            if not isinstance(event, GRAPH_EVENTS):
                continue
            try:
                await self.graph.apply(event)
            except ResponseError as exc:
                if is_transient(exc):
                    raise
                failures[i] = Failure(i, exc)

    async def _fan_out(
        self,
        events: Sequence[Event],
        indexes: Sequence[int],
        decisions: Mapping[int, Decision],
        failures: dict[int, Failure],
        tally: _Tally,
    ) -> None:
        """Apply a run of posts, deletions, reposts and unreposts (README, *Redis
        Cluster*): the origin steps on the posts' (and reposts') slots, one pipeline; the
        recent lists on the authors' and reposters' slots; then the delivery to every
        follower of each source, grouped by node (:func:`~feedamp.feeds.fanout.deliver`),
        in the log's order; last, a deleted post's reposters and comments go."""
        k, ctx, sc = self.keys, self._context, self.scripts
        jobs = [i for i in indexes if _reaches_feeds(events[i], decisions.get(i))]
        if is_cluster(self.redis):
            await self._refuse_awaiting([events[i] for i in jobs])
        origins: list[tuple[AsyncScript, list[str | int]]] = []
        owner: list[int] = []
        for i in jobs:
            for call in self._origins(events[i]):
                origins.append(call)
                owner.append(i)
        replies: dict[int, list[object]] = {}
        for i, result in zip(owner, await run_scripts(self.redis, origins), strict=True):
            replies.setdefault(i, []).append(result)
        segments: list[Segment] = []
        sources: list[str] = []
        deletes: list[DeletePost] = []
        recent = self.settings.recent_per_author
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in jobs:
                ev, found = events[i], replies[i]
                if error := next((r for r in found if isinstance(r, Exception)), None):
                    failures[i] = Failure(i, error)
                    continue
                bucket = bucket_of(ev.post_id, self.settings.feed_buckets)  # type: ignore[attr-defined]
                if isinstance(ev, Post | Repost) and text(found[0]) == "skip":
                    continue
                if isinstance(ev, Post):
                    pipe.zadd(k.recent_posts(ev.author_id), {ev.post_id: ev.ts})
                    pipe.zremrangebyrank(k.recent_posts(ev.author_id), 0, -(recent + 1))
                    segments.append(Segment("post", ev.post_id, ev.author_id, ev.ts, bucket,
                                            [], i))  # fmt: skip
                    sources.append(ev.author_id)
                elif isinstance(ev, Repost):
                    for_you, label = _delivery(decisions.get(i))
                    # the repost time, +0.25 For You too, +0.5 labelled (read back by
                    # lua/lib.lua, read_recent_score, for follow backfill)
                    score = ev.ts + (1 if for_you else 0) / 4 + (2 if label else 0) / 4
                    pipe.zadd(k.recent_reposts(ev.reposter_id), {ev.post_id: f"{score:.2f}"},
                              gt=True)  # fmt: skip
                    pipe.zremrangebyrank(k.recent_reposts(ev.reposter_id), 0, -(recent + 1))
                    flags = ("f" if for_you else "") + ("l" if label else "")
                    segments.append(Segment("repost", ev.post_id, ev.post_author_id, ev.ts,
                                            bucket, [], i, ev.reposter_id, flags))  # fmt: skip
                    sources.append(ev.reposter_id)
                elif isinstance(ev, Unrepost):
                    pipe.zrem(k.recent_reposts(ev.reposter_id), ev.post_id)
                    facts = cast(list, found[0])
                    author, ts, deleted = (text(v) if v is not None else "" for v in facts)
                    segments.append(Segment("withdraw", ev.post_id, author, ts, bucket, [], i,
                                            ev.reposter_id, "d" if deleted else ""))  # fmt: skip
                    sources.append(ev.reposter_id)
                else:
                    assert isinstance(ev, DeletePost)
                    deletes.append(ev)
                    reposters = [text(r) for r in cast(list, found[0])]
                    pipe.zrem(k.recent_posts(ev.author_id), ev.post_id)
                    for reposter in reposters[1:]:
                        pipe.zrem(k.recent_reposts(reposter), ev.post_id)
                    for source in reposters:
                        segments.append(Segment("unpush", ev.post_id, "", "", bucket, [], i))
                        sources.append(source)
            await pipe.execute()
        chunk = self.settings.fanout_chunk
        for seg, followers in zip(
            segments, await followers_of(self.redis, k, sources, chunk), strict=True
        ):
            if isinstance(followers, Exception):
                failures.setdefault(seg.index, Failure(seg.index, followers))
            else:
                seg.followers = followers
        segments = [seg for seg in segments if seg.index not in failures]
        # the delivery steps skip inactive followers (feeds/dormancy.py; 0: none)
        after = cutoff(self.settings.inactive_after)
        done = await deliver(self.redis, sc.deliver, [*ctx, after], segments, k, chunk)
        self.regrouped += done.regrouped
        for i, error in done.errors.items():
            failures.setdefault(i, Failure(i, error))
        tally.deliveries += sum(n for i, n in done.reached.items()
                                if isinstance(events[i], Post | Repost))  # fmt: skip
        if deletes:
            async with self.redis.pipeline(transaction=False) as pipe:
                for ev in deletes:
                    pipe.delete(k.reposters(ev.post_id), k.comments(ev.post_id))
                await pipe.execute()

    def _origins(self, ev: Event) -> list[tuple[AsyncScript, list[str | int]]]:
        """The origin step of a fan-out event: script calls on its post's (and repost's)
        slot."""
        ctx, sc = self._context, self.scripts
        match ev:
            case Post():
                return [(sc.post, argv("post", ctx, post_id=ev.post_id, author_id=ev.author_id,
                                       ts=ev.ts, visibility=ev.visibility, text=ev.text or "",
                                       media_url=ev.media_url or ""))]  # fmt: skip
            case DeletePost():
                return [(sc.delete_post, argv("delete_post", ctx, post_id=ev.post_id,
                                              author_id=ev.author_id, ts=ev.ts))]  # fmt: skip
            case Repost():
                return [
                    (sc.repost, argv("repost", ctx, post_id=ev.post_id,
                                     post_author_id=ev.post_author_id,
                                     reposter_id=ev.reposter_id, ts=ev.ts,
                                     comment=ev.comment or "")),
                    (sc.repost_record, argv("repost_record", ctx, repost_id=ev.repost_id,
                                            reposter_id=ev.reposter_id, post_id=ev.post_id,
                                            post_author_id=ev.post_author_id)),
                ]  # fmt: skip
            case Unrepost():
                return [(sc.unrepost, argv("unrepost", ctx, post_id=ev.post_id,
                                           reposter_id=ev.reposter_id))]  # fmt: skip
        raise TypeError(f"not a fan-out event: {ev.type}")

    async def _refuse_awaiting(self, events: Sequence[Event]) -> None:
        """On a cluster: :class:`ClusterUnsupported` before anything is written when
        orders wait for one of the posts or reposts (crediting them is not slot-local
        yet)."""
        waiting = [self.keys.awaiting_post(ev.post_id) for ev in events
                   if isinstance(ev, Post | Repost)]  # fmt: skip
        waiting += [self.keys.awaiting_repost(ev.repost_id) for ev in events
                    if isinstance(ev, Repost)]  # fmt: skip
        if not waiting:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in waiting:
                pipe.scard(key)
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
        followees = sorted(text(m) for m in await self.redis.smembers(
            self.keys.following(user_id)))  # fmt: skip
        buckets = range(self.settings.feed_buckets)
        await self.redis.delete(
            *[k(user_id, b) for b in buckets for k in (
                self.keys.feed, self.keys.via, self.keys.for_you, self.keys.for_you_via)]
        )  # fmt: skip
        await self.graph.backfill(user_id, followees)
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


#: Events applied as state, reads and a feed step (:mod:`.graph`).
GRAPH_EVENTS = (Follow, Unfollow, Block, Unblock, Mute, Unmute)

#: Events applied as an origin step and delivery steps (:meth:`FeedStore._fan_out`).
FANOUT_EVENTS = (Post, DeletePost, Repost, Unrepost)


def _reaches_feeds(event: Event, decision: Decision | None) -> bool:
    """False for a repost whose decision keeps it out of feeds (it writes nothing)."""
    return not isinstance(event, Repost) or decision is None or decision.reaches_feeds


def _delivery(decision: Decision | None) -> tuple[bool, bool]:
    """How a repost is delivered: (into For You too, labelled forwarded_many_times)."""
    for_you = decision is None or decision.decision == DELIVERED
    label = decision is not None and FORWARDED_MANY_TIMES in decision.reasons
    return for_you, label


def _refusal(event: Repost, reason: str) -> Decision:
    return Decision(
        event_id=event.event_id, repost_id=event.repost_id, reposter_id=event.reposter_id,
        post_id=event.post_id, depth=0, decision=REFUSED, reasons=(reason,), ts=event.ts,
    )  # fmt: skip


def _int_or_zero(value: object) -> int:
    return value if isinstance(value, int) else 0


def _flag(value: bool) -> str:
    return "1" if value else "0"
