"""Writes: apply events to the Redis feed views.

Per-follower work runs inside Redis (Lua, see ``lua/``). Posts, deletions, reposts and
unreposts run as slot-local steps, the same code on a standalone Redis and a Redis
Cluster (README, *Redis Cluster*): an origin step per event on its post's slot (one
pipeline for a run of such events), the recent lists on the authors' and reposters'
slots, then delivery steps on the followers' slots (:mod:`.fanout`: followers read
``Settings.fanout_chunk`` at a time, grouped by node, calls of that many deliveries), given
the post's facts in ARGV. The origin steps of a post and a repost also return the orders
waiting for them (``awaiting_post`` / ``awaiting_repost``), which the order steps
reconcile (:class:`~feedamp.feeds.shop.order_steps.OrderSteps`), slot-local like the rest;
a deletion, which records the author of a post not recorded, settles the orders waiting
in ``awaiting_post`` of its post.
Follow, unfollow, block, mute and their undos are state steps, reads, then a step on the
user's slot, a run's events together in waves (:mod:`.graph`).

Order: events are applied in the order given: the batch is cut into runs of posts and
deletions, runs of reposts and unreposts, and runs of graph events, each run finished
before the next starts, and a run's reposts are decided when it starts (after the posts
given before them are written, so a repost of a followers-only post given after it is
refused). Within a run the origins run in order, then the deliveries in order (per
follower, a post pushed and then withdrawn or unpushed ends so). Consecutive runs of
posts and reposts without a deletion make a stretch: each run's decisions and origins in
turn, then the deliveries of the whole stretch in order, grouped together (a log of
posts and reposts interleaved delivers as one fan-out). That changes no result: the
decisions and origins read and write the posts' and reposts' keys (records, reposters,
decisions, rates), the deliveries only their followers' (pair state, feeds), with every
fact of the post given in their ARGV; a graph run or a deletion (whose reposters and
comments go after its deliveries) ends a stretch, its deliveries run first. These runs are the one
mechanism that keeps a batch's order; the pipeline only chooses the order it hands over
(:func:`feedamp.streams.pipeline.log_order`). Every step is idempotent, so a batch
retried after a failure at any point ends as one sequential application.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from feedamp.config import Settings
from feedamp.models.decisions import (
    DELIVERED,
    FORWARDED_MANY_TIMES,
    REFUSED,
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

from .batch import TRANSIENT_ERRORS, is_transient, run_scripts, text
from .connection import AnyRedis
from .dormancy import cutoff
from .fanout import Segment, deliver, followers_of
from .graph import GraphEvent, GraphSteps
from .keys import bucket_of
from .namespace import Namespace
from .pull import pulled_sources
from .repost_decisions import decide_reposts
from .scripts import argv
from .shop.order_steps import OrderSteps
from .writer import Applied, Failure, Writer

__all__ = ["TRANSIENT_ERRORS", "Applied", "Failure", "FeedStore", "is_transient"]


@dataclass(slots=True)
class _Pending:
    """Deliveries of prepared fan-out runs, in the log's order: each segment with the
    source whose followers it goes to, and the deletions whose keys go after them."""

    segments: list[Segment]
    sources: list[str]
    deletes: list[DeletePost]

    def extend(self, other: _Pending) -> None:
        """Add ``other``'s deliveries after these."""
        self.segments += other.segments
        self.sources += other.sources
        self.deletes += other.deletes


@dataclass(slots=True)
class _Tally:
    """What one :meth:`FeedStore.apply` call counts as it goes."""

    deliveries: int = 0


class FeedStore(Writer):
    """Applies feed events (post, delete_post, repost, unrepost, follow, unfollow, block,
    unblock, mute, unmute) to Redis, deciding every repost first."""

    def __init__(self, redis: AnyRedis, settings: Settings) -> None:
        super().__init__(redis, settings)
        self.orders = OrderSteps(redis, self.scripts)
        #: Followers re-grouped by slot after a cluster node refused a delivery call (a
        #: running total, for tests and benchmarks).
        self.regrouped = 0

    def _graph(self, ns: Namespace) -> GraphSteps:
        """The graph steps writing to ``ns``."""
        graph = GraphSteps(self.redis, self.scripts, ns, self.settings.feed_buckets)
        graph.pull = self.settings.fanout_pull_above > 0  # follow backfill skips pulled authors
        return graph

    async def apply(
        self,
        events: Sequence[Event],
        *,
        refused: Mapping[int, str] | None = None,
        namespace: Namespace | None = None,
    ) -> Applied:
        """Apply ``events`` in order to ``namespace`` (None: the settings' ``key_prefix``);
        return the failures, the repost decisions and the deliveries.

        ``refused`` maps the index of a repost stopped at the door (its reposter or the
        post's author is suspended) to the reason: it is decided ``refused`` and not
        applied. Events of types this store does not handle are skipped. Redis connection errors
        propagate: the caller retries the whole batch, which is safe because every write
        is idempotent and every decision is kept once made.
        """
        ns = self.at(namespace)
        # Per call, not on the store: the agent and the release timer share this store.
        tally = _Tally()
        failures: dict[int, Failure] = {}
        decisions: dict[int, Decision] = {}
        # Posts, deletions, reposts and unreposts run as slot-local steps (origin, then
        # delivery grouped by node); the others as one script call each, pipelined. Runs
        # keep the log's order (see the module docstring).
        runs: list[tuple[str, list[int]]] = []
        for i, ev in enumerate(events):
            kind = _run_kind(ev)
            if not runs or runs[-1][0] != kind:
                runs.append((kind, []))
            runs[-1][1].append(i)
        # Fan-out runs prepared whose deliveries wait (see the module: a stretch).
        pending = _Pending([], [], [])
        for kind, indexes in runs:
            if kind == "graph" or (kind == "posts" and any(
                    isinstance(events[i], DeletePost) for i in indexes)):  # fmt: skip
                await self._deliver(ns, events, pending, failures, tally)
                pending = _Pending([], [], [])
            if kind == "reposts":
                decisions.update(await self._decide_run(ns, events, indexes, failures,
                                                        refused or {}))  # fmt: skip
                indexes = [i for i in indexes if i not in failures]
            if kind in ("posts", "reposts"):
                pending.extend(await self._prepare(ns, events, indexes, decisions, failures))
                if pending.deletes:
                    await self._deliver(ns, events, pending, failures, tally)
                    pending = _Pending([], [], [])
            elif kind == "graph":
                await self._run_calls(ns, events, indexes, decisions, failures)
        await self._deliver(ns, events, pending, failures, tally)
        return Applied(
            [failures[i] for i in sorted(failures)], list(decisions.values()), tally.deliveries
        )

    async def _decide_run(
        self,
        ns: Namespace,
        events: Sequence[Event],
        indexes: Sequence[int],
        failures: dict[int, Failure],
        refused: Mapping[int, str],
    ) -> dict[int, Decision]:
        """:meth:`_decide` for the events at ``indexes`` (one run); by index in ``events``."""
        door = {n: refused[i] for n, i in enumerate(indexes) if i in refused}
        failed: dict[int, Failure] = {}
        found = await self._decide(ns, [events[i] for i in indexes], failed, door)
        for n, failure in failed.items():
            failures[indexes[n]] = Failure(indexes[n], failure.error)
        return {indexes[n]: decision for n, decision in found.items()}

    async def _run_calls(
        self,
        ns: Namespace,
        events: Sequence[Event],
        indexes: Sequence[int],
        decisions: Mapping[int, Decision],
        failures: dict[int, Failure],
    ) -> None:
        """Apply the graph events at ``indexes``, a run of the log, in waves
        (:meth:`GraphSteps.run`)."""
        run = [i for i in indexes if isinstance(events[i], GRAPH_EVENTS)]
        found = await self._graph(ns).run([cast(GraphEvent, events[i]) for i in run])
        for i, error in zip(run, found, strict=True):
            if error is not None:
                failures[i] = Failure(i, error)

    async def _fan_out(
        self,
        ns: Namespace,
        events: Sequence[Event],
        indexes: Sequence[int],
        decisions: Mapping[int, Decision],
        failures: dict[int, Failure],
        tally: _Tally,
    ) -> None:
        """Apply a run of posts, deletions, reposts and unreposts (README, *Redis
        Cluster*): :meth:`_prepare`, then :meth:`_deliver`."""
        pending = await self._prepare(ns, events, indexes, decisions, failures)
        await self._deliver(ns, events, pending, failures, tally)

    async def _prepare(
        self,
        ns: Namespace,
        events: Sequence[Event],
        indexes: Sequence[int],
        decisions: Mapping[int, Decision],
        failures: dict[int, Failure],
    ) -> _Pending:
        """The origin steps of a run of posts, deletions, reposts and unreposts on the
        posts' (and reposts') slots, one pipeline; the recent lists on the authors' and
        reposters' slots; the orders waiting for them; return the deliveries to make, in
        the log's order (each source's followers not read yet)."""
        k, ctx = ns.keys, ns.context
        jobs = [i for i in indexes if _reaches_feeds(events[i], decisions.get(i))]
        origins: list[tuple[AsyncScript, list[str | int]]] = []
        owner: list[int] = []
        for i in jobs:
            for call in self._origins(ns, events[i]):
                origins.append(call)
                owner.append(i)
        replies: dict[int, list[object]] = {}
        for i, result in zip(owner, await run_scripts(self.redis, origins), strict=True):
            replies.setdefault(i, []).append(result)
        # Pulled authors' posts and reposts are recorded but not delivered (feeds/pull.py).
        pulled = await pulled_sources(self.redis, k, [_source(events[i]) for i in jobs
                                      if isinstance(events[i], Post | Repost)],
                                      self.settings.fanout_pull_above)  # fmt: skip
        segments: list[Segment] = []
        sources: list[str] = []
        deletes: list[DeletePost] = []
        #: kind -> post or repost id -> the orders waiting for it, with the events that
        #: found them (for their errors).
        waiting: dict[str, dict[str, list[str]]] = {"awaiting_post": {}, "awaiting_repost": {}}
        found_by: dict[str, list[int]] = {}
        recent = self.settings.recent_per_author
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in jobs:
                ev, found = events[i], replies[i]
                if error := next((r for r in found if isinstance(r, Exception)), None):
                    failures[i] = Failure(i, error)
                    continue
                bucket = bucket_of(ev.post_id, self.settings.feed_buckets)  # type: ignore[attr-defined]
                if isinstance(ev, Post | Repost):
                    # The orders waiting for the post (and the repost): settled below.
                    head, *orders = (text(v) for v in cast(list, found[0]))
                    pending = [("awaiting_post", ev.post_id, orders)]
                    if isinstance(ev, Repost):
                        pending.append(("awaiting_repost", ev.repost_id,
                                        [text(v) for v in cast(list, found[1])]))  # fmt: skip
                    for kind, id_, ids in pending:
                        if ids:
                            waiting[kind].setdefault(id_, []).extend(ids)
                            for order in ids:
                                found_by.setdefault(order, []).append(i)
                    if head == "skip":
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
        # The orders waiting for these posts and reposts: reconciled by the order steps
        # (slot-local, idempotent), then taken out of the waiting sets.
        if found_by:
            failed = await self.orders.unwait_kinds(ctx, waiting)
            for order, error in failed.items():
                for i in found_by.get(order, ()):
                    failures.setdefault(i, Failure(i, error))
        if deletes:
            # A deletion names the author of a post never recorded (or refused at the
            # door): the orders waiting for that author are settled now, as those
            # arriving after the deletion find it at once.
            failed = await self.orders.settle_waiting(
                ctx, "awaiting_post", sorted({d.post_id for d in deletes})
            )
            if failed:
                error = next(iter(failed.values()))
                for i in jobs:
                    if isinstance(events[i], DeletePost):
                        failures.setdefault(i, Failure(i, error))
        if pulled:
            pushed = [(seg, src) for seg, src in zip(segments, sources, strict=True)
                      if seg.op not in ("post", "repost") or src not in pulled]  # fmt: skip
            segments, sources = [seg for seg, _ in pushed], [src for _, src in pushed]
        return _Pending(segments, sources, deletes)

    async def _deliver(
        self,
        ns: Namespace,
        events: Sequence[Event],
        pending: _Pending,
        failures: dict[int, Failure],
        tally: _Tally,
    ) -> None:
        """The deliveries of prepared fan-out runs (:meth:`_prepare`), in their order:
        every follower of each source, grouped by node
        (:func:`~feedamp.feeds.fanout.deliver`); last, a deleted post's reposters and
        comments go."""
        k, ctx, sc = ns.keys, ns.context, self.scripts
        segments, sources, deletes = pending.segments, pending.sources, pending.deletes
        if not segments and not deletes:
            return
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

    def _origins(self, ns: Namespace, ev: Event) -> list[tuple[AsyncScript, list[str | int]]]:
        """The origin step of a fan-out event: script calls on its post's (and repost's)
        slot."""
        ctx, sc = ns.context, self.scripts
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

    async def rebuild_feed(self, user_id: str, *, namespace: Namespace | None = None) -> int:
        """Regenerate ``user_id``'s Following and For You feeds from their followees' recent
        posts and reposts (as follow backfill does), in ``namespace`` (None: the settings'
        ``key_prefix``); return the number of followees."""
        ns = self.at(namespace)
        keys = ns.keys
        followees = sorted(text(m) for m in await self.redis.smembers(
            keys.following(user_id)))  # fmt: skip
        buckets = range(self.settings.feed_buckets)
        await self.redis.delete(
            *[k(user_id, b) for b in buckets for k in (
                keys.feed, keys.via, keys.for_you)]
        )  # fmt: skip
        await self._graph(ns).backfill(user_id, followees)
        return len(followees)

    async def _decide(
        self,
        ns: Namespace,
        events: Sequence[Event],
        failures: dict[int, Failure],
        refused: Mapping[int, str],
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
            self.redis, self.scripts, self.settings, ns.context, events, refused
        )
        for i, error in failed.items():
            failures[i] = Failure(i, error)
        return decisions


#: Events applied as state, reads and a feed step (:mod:`.graph`).
GRAPH_EVENTS = (Follow, Unfollow, Block, Unblock, Mute, Unmute)

#: Events applied as an origin step and delivery steps (:meth:`FeedStore._fan_out`).
FANOUT_EVENTS = (Post, DeletePost, Repost, Unrepost)


def _run_kind(event: Event) -> str:
    """The kind of run ``event`` belongs to (see the module docstring): ``posts`` (posts
    and deletions), ``reposts`` (reposts and unreposts, decided as their run starts),
    ``graph``, or ``""`` for an event this store does not handle."""
    if isinstance(event, Post | DeletePost):
        return "posts"
    if isinstance(event, Repost | Unrepost):
        return "reposts"
    return "graph" if isinstance(event, GRAPH_EVENTS) else ""


def _source(event: Event) -> str:
    """Whose followers a post or repost is fanned out to: its author or reposter."""
    return event.reposter_id if isinstance(event, Repost) else event.author_id  # type: ignore[attr-defined]


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
