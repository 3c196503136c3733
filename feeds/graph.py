"""Graph writes (follow, unfollow, block, mute and their undos, rebuild-feed) as
slot-local steps, the same code on a standalone Redis and a Redis Cluster (README,
*Redis Cluster*).

Each event is a **state step** on its user's slot (and, for a block or mute, the mirror
on the target's slot: both sides merge the event time the same way, so they agree in any
order), then **reads** of other entities' keys in one pipeline per round trip (the
followee's recent lists, the authors and times of the posts in a feed, the reposters of
a post), then a **feed step** on the user's slot given those facts in ARGV
(``lua/purge.lua``, ``lua/backfill.lua``). So every script call touches one slot: the
one its routing key names.

Invariants:

- the state of a pair (follow, block, mute) is a function of its events' times, not of
  their order (``lua/lib.lua``, ``set_pair``); ``followers:{followee}`` mirrors the
  follower's state, written after it;
- a feed step gets the facts of every post in the feed when it was read; a post pushed
  after that read was delivered under the new state already, so the step leaves it;
- every step is idempotent: an event retried at any point ends as applied once.

A run of follows (:meth:`GraphSteps.follows`, the bulk of a log's graph events) takes the
same steps a step at a time for the whole run: every state step in one pipeline, every
mirror in one, the purges of follows a later unfollow beat, then every backfill's reads
and every backfill in one pipeline each. A pair's state only moves forward in event
time, so within a run a pair's answers go from "not following" to "following", never
back: purging first, then backfilling, is the order one event at a time would take.
Within those round trips the run costs what its entities need, not what its events do:
the state steps and the backfills are packed into calls of the graph steps script
(:func:`~feedamp.feeds.scripts.steps_source`, answering as the calls one by one), the
mirrors are one ``SADD`` (``SREM``) per followee of each follower's last answer, each
followee's recent lists are read once (the reads of one round trip all see the same),
and a follow whose followee has nothing recent to give has no backfill call (with no
rows the step writes nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from feedamp.models.events import Block, Follow, Mute, Unblock, Unfollow, Unmute
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from .batch import is_transient, read_commands, run_scripts, text
from .connection import AnyRedis
from .namespace import Namespace
from .pull import pulled_among
from .scripts import Scripts
from .takeback import cleaned_for, window_of

#: Later than any event: a backfill "now".
INF = float("inf")

__all__ = ["GraphEvent", "GraphSteps"]

GraphEvent = Follow | Unfollow | Block | Unblock | Mute | Unmute


def _raw(value: Any) -> str:
    """A score as Redis wrote it (so Lua parses the same digits)."""
    return text(value)


def _mirrors(
    followers: Callable[[str], str], answers: Sequence[tuple[str, str, bool]]
) -> list[tuple[str, ...]]:
    """The commands mirroring state steps' answers ``(followee, follower, following)``
    in ``followers:{followee}``: one ``SADD`` and one ``SREM`` at most per followee, each
    follower's last answer kept (what applying the answers one by one, in order, leaves)."""
    last: dict[str, dict[str, bool]] = {}
    for followee, follower, following in answers:
        members = last.setdefault(followee, {})
        members.pop(follower, None)  # ordered by the last answer
        members[follower] = following
    commands: list[tuple[str, ...]] = []
    for followee, members in last.items():
        key = followers(followee)
        added = [m for m, following in members.items() if following]
        removed = [m for m, following in members.items() if not following]
        if added:
            commands.append(("SADD", key, *added))
        if removed:
            commands.append(("SREM", key, *removed))
    return commands


class GraphSteps:
    """Applies graph events and rebuilds feeds with slot-local steps, in one namespace
    (made per call: it holds nothing but what it is given)."""

    def __init__(self, redis: AnyRedis, scripts: Scripts, ns: Namespace, buckets: int) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = ns.keys
        self.context = list(ns.context)
        self.buckets = buckets
        #: Follow backfill skips pulled authors: readers merge their recent items
        #: (:mod:`.pull`).
        self.pull = False

    async def _run(self, calls: list[tuple[AsyncScript, list[str | int]]]) -> list[object]:
        """Run script calls pipelined; a script error is raised (it fails the event)."""
        results = await run_scripts(self.redis, calls)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    async def apply(self, event: GraphEvent) -> None:
        """Apply one graph event; raises a script's error (the caller dead-letters)."""
        if isinstance(event, Follow | Unfollow):
            await self.follow(event)
        else:
            await self.hide(event)

    async def follow(self, event: Follow | Unfollow) -> None:
        """A follow or unfollow: the follower's state, its mirror in the followee's
        followers, then the backfill (following now) or the purge (a follow an unfollow
        later in event time beat, or an unfollow)."""
        on = isinstance(event, Follow)
        follower, followee = event.follower_id, event.followee_id
        argv = [*self.context, follower, followee, event.ts, "1" if on else "0"]
        (state,) = await self._run([(self.scripts.follow, argv)])
        following = int(state) == 1  # type: ignore[call-overload]
        if following:
            await self.redis.sadd(self.keys.followers(followee), follower)
            if on:
                await self.backfill(follower, [followee], at=event.ts)
        else:
            await self.redis.srem(self.keys.followers(followee), follower)
            await self.purge(follower, followee, authored=False, value="")

    async def follows(self, events: Sequence[Follow]) -> list[Exception | None]:
        """Apply a run of follows step by step for all of them (see the module); each
        event's script error (or None), in order. Transient errors propagate."""
        ctx = self.context
        results = await run_scripts(self.redis, [
            (self.scripts.follow, [*ctx, e.follower_id, e.followee_id, e.ts, "1"])
            for e in events
        ])  # fmt: skip
        errors: list[Exception | None] = [r if isinstance(r, Exception) else None
                                          for r in results]  # fmt: skip
        live = [n for n, error in enumerate(errors) if error is None]
        on = {n for n in live if int(results[n]) == 1}  # type: ignore[call-overload]
        await read_commands(self.redis, _mirrors(self.keys.followers, [
            (events[n].followee_id, events[n].follower_id, n in on) for n in live
        ]))  # fmt: skip
        for n in live:
            if n not in on:  # a later unfollow beat this follow
                try:
                    await self.purge(events[n].follower_id, events[n].followee_id,
                                     authored=False, value="")  # fmt: skip
                except Exception as exc:  # a script's error fails its event
                    if isinstance(exc, ResponseError) and not is_transient(exc):
                        errors[n] = exc
                    else:
                        raise
        backfills = sorted(on)
        if backfills:
            targets = [events[n].followee_id for n in backfills]
            rows = await self._recent(targets, 0, [events[n].ts for n in backfills])
            # A follow of a followee with nothing recent to give has no backfill call:
            # with no rows the step writes nothing.
            calls, owners = [], []
            for n, target, (own, shared) in zip(backfills, targets, rows, strict=True):
                if len(own) > 1 or len(shared) > 1:
                    argv = [*ctx, events[n].follower_id, target, "backfill", *own, *shared, 0]
                    calls.append((self.scripts.backfill, argv))
                    owners.append(n)
            for n, result in zip(owners, await run_scripts(self.redis, calls), strict=True):
                if isinstance(result, Exception):
                    errors[n] = result
        return errors

    async def hide(self, event: Block | Unblock | Mute | Unmute) -> None:
        """A block, mute or undo: both sides' state, then the purges (blocks both ways,
        mutes the muter's feeds) and, after an undo, the restores."""
        mute = isinstance(event, Mute | Unmute)
        on = "1" if isinstance(event, Block | Mute) else "0"
        user, target = event.user_id, event.target_id
        calls = [(self.scripts.hide, [*self.context, "mutes" if mute else "blocks", user,
                                      target, event.ts, on])]  # fmt: skip
        if not mute:  # the target's side: what it must not see
            calls.append((self.scripts.hide, [*self.context, "blocked_by", target, user,
                                              event.ts, on]))  # fmt: skip
        value, *_ = await self._run(calls)
        pair = text(value)
        on_ts, _, off_ts = pair.partition("|")
        if not on_ts:
            return
        sides = [(user, target)] if mute else [(user, target), (target, user)]
        for viewer, other in sides:
            await self.purge(viewer, other, authored=True, value=pair)
        if off_ts and int(off_ts) >= int(on_ts):
            for viewer, other in sides:
                await self.restore(viewer, other, off_ts)

    async def purge(self, user: str, target: str, *, authored: bool, value: str) -> None:
        """Take ``target``'s reasons out of ``user``'s feeds (``lua/purge.lua``), given
        the facts of every post in them."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for b in range(self.buckets):
                pipe.zrange(k.feed(user, b), 0, -1)
                pipe.zrange(k.for_you(user, b), 0, -1)
            posts = sorted({text(p) for page in await pipe.execute() for p in page})
        if not posts:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for post in posts:
                pipe.hmget(k.post(post), "a", "ts", "del")
            records = await pipe.execute()
        facts: list[str | int] = [len(posts)]
        for post, record in zip(posts, records, strict=True):
            facts += [post, *(text(v) if v is not None else "" for v in record)]
        argv = [*self.context, user, target, "1" if authored else "0", value, *facts]
        await self._run([(self.scripts.purge, argv)])

    async def _recent(
        self, targets: Sequence[str], since: int | str, at: float | Sequence[float]
    ) -> list[tuple[list[str | int], list[str | int]]]:
        """Each target's recent posts and reposts of time ``since`` or later, as the
        backfill rows of ``lua/backfill.lua`` (reposts with their authors), for an event
        of time ``at``: none of a target, and no repost of a post by an author, that a
        suspension's cleaning covers at ``at`` (:func:`~.takeback.cleaned_for`; one time
        for all targets, or one per target). Rows may be shared between targets: not to
        be changed."""
        k = self.keys
        ats = [float(at)] * len(targets) if isinstance(at, int | float) else list(at)
        # Each target read once (a run of follows names few followees many times): the
        # reads share one round trip, so every occurrence would read the same.
        distinct = list(dict.fromkeys(targets))
        found = await read_commands(self.redis, [
            command for target in distinct for command in (
                ("ZRANGE", k.recent_posts(target), since, "+inf", "BYSCORE", "WITHSCORES"),
                ("ZRANGE", k.recent_reposts(target), since, "+inf", "BYSCORE", "WITHSCORES"),
                ("HMGET", k.account(target), "susp", "rein"),
            )
        ])  # fmt: skip
        read: dict[str, tuple[Any, list[Any], list[Any]]] = {}
        for n, target in enumerate(distinct):
            posts, reposts, state = found[3 * n : 3 * n + 3]
            # (member, score as Redis wrote it) pairs; a cluster's pipeline pairs them already
            read[target] = (state, *(
                [(text(m), _raw(v)) for m, v in (r if r and isinstance(r[0], tuple | list)
                                                 else zip(r[0::2], r[1::2], strict=True))]
                for r in (posts, reposts)))  # fmt: skip
        cleaned = [cleaned_for(read[target][0], t) for target, t in zip(targets, ats, strict=True)]
        giving = {target for target, off in zip(targets, cleaned, strict=True) if not off}
        reposted = sorted({p for target in giving for p, _ in read[target][2]})
        authors: dict[str, str] = {}
        # Reposted posts whose author a suspension covers at some time: only their
        # reposts depend on the follow's time.
        windowed: set[str] = set()
        state_of: dict[str, Any] = {}
        if reposted:
            found = await read_commands(self.redis, [("HGET", k.post(p), "a") for p in reposted])
            authors = {p: text(a) if a is not None else ""
                       for p, a in zip(reposted, found, strict=True)}  # fmt: skip
            named = sorted(set(authors.values()) - {""})
            async with self.redis.pipeline(transaction=False) as pipe:
                for author in named:
                    pipe.hmget(k.account(author), "susp", "rein")
                states = await pipe.execute()
            state_of = dict(zip(named, states, strict=True))
            windowed = {p for p, a in authors.items() if a and window_of(state_of[a]) is not None}

        def row(posts: list[Any], reposts: list[Any]) -> tuple[list[str | int], list[str | int]]:
            own: list[str | int] = [len(posts), *(v for p, ts in posts for v in (p, ts))]
            shared: list[str | int] = [len(reposts)]
            shared += (v for p, sc in reposts for v in (p, sc, authors[p]))
            return own, shared

        # A target's row is the same for every follow it is given to unless it is cleaned
        # at that time or one of its reposts is of a windowed post: made once, shared.
        rows: list[tuple[list[str | int], list[str | int]]] = []
        made: dict[str, tuple[list[str | int], list[str | int]]] = {}
        for target, t, off in zip(targets, ats, cleaned, strict=True):
            if off:
                rows.append(([0], [0]))
                continue
            _, posts, reposts = read[target]
            if windowed and any(p in windowed for p, _ in reposts):
                rows.append(row(posts, [(p, sc) for p, sc in reposts if not (
                    authors[p] and cleaned_for(state_of[authors[p]], t))]))  # fmt: skip
                continue
            if target not in made:
                made[target] = row(posts, reposts)
            rows.append(made[target])
        return rows

    async def backfill(self, user: str, targets: Sequence[str], *, at: float = INF) -> None:
        """Push each of ``targets``' recent posts and reposts into ``user``'s feeds, as
        the live fan-out delivered them (``lua/backfill.lua``), for a follow of time
        ``at`` (default: now, for a rebuild): what a suspension cleans is left out."""
        if self.pull and targets:
            pulled = await pulled_among(self.redis, self.keys, targets)
            targets = [t for t in targets if t not in pulled]
        if not targets:
            return
        calls = []
        recent = await self._recent(targets, 0, at)
        for target, (own, shared) in zip(targets, recent, strict=True):
            if len(own) > 1 or len(shared) > 1:  # no rows: the step would write nothing
                argv = [*self.context, user, target, "backfill", *own, *shared, 0]
                calls.append((self.scripts.backfill, argv))
        await self._run(calls)

    async def restore(self, viewer: str, target: str, since: str) -> None:
        """After an undo of time ``since``: give ``viewer`` back ``target``'s content of
        that time or later (``lua/backfill.lua``, restore)."""
        k = self.keys
        ((own, shared),) = await self._recent([target], since, int(since))
        posts = [text(p) for p in await self.redis.zrange(k.recent_posts(target), 0, -1)]
        others: list[str | int] = [0]
        if posts:
            async with self.redis.pipeline(transaction=False) as pipe:
                for post in posts:
                    pipe.zrange(k.reposters(post), since, "+inf", byscore=True,
                                withscores=True, score_cast_func=_raw)  # fmt: skip
                found = [(post, text(r), at) for post, rows in zip(
                    posts, await pipe.execute(), strict=True) for r, at in rows]  # fmt: skip
            if found:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for post, reposter, _ in found:
                        pipe.zscore(k.recent_reposts(reposter), post)
                    scores = await pipe.execute()
                rows = [(post, reposter, at, repr(score)) for (post, reposter, at), score
                        in zip(found, scores, strict=True) if score is not None]  # fmt: skip
                others = [len(rows), *(v for row in rows for v in row)]
        argv = [*self.context, viewer, target, "restore", *own, *shared, *others]
        await self._run([(self.scripts.backfill, argv)])
