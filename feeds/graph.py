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

A run of graph events (:meth:`GraphSteps.run`) goes in **waves** (:func:`waves`): each
event in the first wave after every earlier event of the run that writes a user it
writes (a follow's or unfollow's follower: the followee's ``followers`` set only gains or
loses that follower; a mute's user; a block's user and target, both sides being hidden).
Events of one wave write no common key, and graph steps write no key another wave's
steps read (recent lists, post records, reposters and accounts are written by posts,
reposts and account events, never by graph events), so a wave's events may take their
steps together: every state step in one pipeline, then every mirror, every purge
(each user's feeds read once, the facts of their posts in one round trip, the steps in
one pipeline), every restore, and every backfill (each followee's recent lists read once,
the steps in one pipeline). Each event still takes its own steps in its own order
(state, mirror, purge, restore; or state, mirror, backfill), so a run in waves leaves
what its events one at a time, in the log's order, leave.

One exception to the waves: consecutive follows by one follower share a wave. A pair's
state only moves forward in event time, so within such a run a pair's answers go from
"not following" to "following", never back: purging first, then backfilling, is the
order one event at a time would take. Within those round trips the run costs what its
entities need, not what its events do: the state steps and the backfills are packed
into calls of the graph steps script (:func:`~feedamp.feeds.scripts.steps_source`,
answering as the calls one by one), the mirrors are one ``SADD`` (``SREM``) per followee
of each follower's last answer, and a follow whose followee has nothing recent to give,
or is pulled (readers merge a pulled author, :mod:`.pull`), has no backfill call.
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

__all__ = ["GraphEvent", "GraphSteps", "waves"]

GraphEvent = Follow | Unfollow | Block | Unblock | Mute | Unmute


def _scored(reply: Any) -> list[tuple[str, str]]:
    """A ``ZRANGE ... WITHSCORES`` reply as (member, score as Redis wrote it, so Lua
    parses the same digits) pairs; a cluster's pipeline pairs them already."""
    rows = reply if reply and isinstance(reply[0], tuple | list) else zip(
        reply[0::2], reply[1::2], strict=True)  # fmt: skip
    return [(text(m), text(v)) for m, v in rows]


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


def _failed(result: object) -> Exception | None:
    """A call's script error, which fails its event; None for an answer. A transient
    error is raised: the batch is retried whole."""
    if not isinstance(result, Exception):
        return None
    if isinstance(result, ResponseError) and not is_transient(result):
        return result
    raise result


def _writers(event: GraphEvent) -> tuple[str, ...]:
    """The users whose keys the event's steps write: a follow's or unfollow's follower (the
    followee's ``followers`` set only gains or loses that follower), a mute's user, a
    block's user and target (both sides are hidden)."""
    if isinstance(event, Follow | Unfollow):
        return (event.follower_id,)
    if isinstance(event, Mute | Unmute):
        return (event.user_id,)
    return (event.user_id, event.target_id)


def waves(events: Sequence[GraphEvent]) -> list[list[int]]:
    """The events' indexes in waves, in the log's order within each: an event goes in
    the first wave after every earlier event that shares a user it writes
    (:func:`_writers`), except that a follow joins the wave of its follower's previous
    event when that was a follow (a run of follows, see the module)."""
    last: dict[str, tuple[int, bool]] = {}  # user -> (wave of its latest event, a follow by it)
    out: list[list[int]] = []
    for n, event in enumerate(events):
        users = _writers(event)
        follow = isinstance(event, Follow)
        wave = 0
        for user in users:
            if user in last:
                at, followed = last[user]
                wave = max(wave, at if follow and followed else at + 1)
        for user in users:
            last[user] = (wave, follow)
        if wave == len(out):
            out.append([])
        out[wave].append(n)
    return out


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

    async def run(self, events: Sequence[GraphEvent]) -> list[Exception | None]:
        """Apply a run of graph events, in the log's order, a wave at a time (see the
        module); each event's script error (or None), in order. Transient errors
        propagate."""
        errors: list[Exception | None] = [None] * len(events)
        for wave in waves(events):
            found = await self._wave([events[n] for n in wave])
            for n, error in zip(wave, found, strict=True):
                errors[n] = error
        return errors

    async def _wave(self, events: Sequence[GraphEvent]) -> list[Exception | None]:
        """One wave: every state step, then every mirror, purge, restore and backfill,
        each kind in one go (see the module); each event's script error (or None). An
        event whose step failed takes no further step."""
        errors, answers = await self._states(events)
        ok = [errors[n] is None for n in range(len(events))]
        follows = [(n, e) for n, e in enumerate(events)
                   if ok[n] and isinstance(e, Follow | Unfollow)]  # fmt: skip
        following = {n: int(answers[n]) == 1 for n, _ in follows}  # type: ignore[call-overload]
        await read_commands(self.redis, _mirrors(self.keys.followers, [
            (e.followee_id, e.follower_id, following[n]) for n, e in follows
        ]))  # fmt: skip
        purges: list[tuple[int, str, str, bool, str]] = []
        restores: list[tuple[int, str, str, str]] = []
        for n, e in enumerate(events):
            if not ok[n]:
                continue
            if isinstance(e, Follow | Unfollow):
                if not following[n]:  # an unfollow, or a follow a later unfollow beat
                    purges.append((n, e.follower_id, e.followee_id, False, ""))
                continue
            pair = text(answers[n])
            on_ts, _, off_ts = pair.partition("|")
            if not on_ts:
                continue
            sides = [(e.user_id, e.target_id)]
            if isinstance(e, Block | Unblock):  # a block hides both ways
                sides.append((e.target_id, e.user_id))
            purges += [(n, viewer, other, True, pair) for viewer, other in sides]
            if off_ts and int(off_ts) >= int(on_ts):
                restores += [(n, viewer, other, off_ts) for viewer, other in sides]
        found = await self._purges([job[1:] for job in purges])
        for (n, *_), error in zip(purges, found, strict=True):
            errors[n] = errors[n] or error
        restores = [job for job in restores if errors[job[0]] is None]
        for (n, *_), error in zip(restores, await self._restores([job[1:] for job in restores]),
                                  strict=True):  # fmt: skip
            errors[n] = errors[n] or error
        ons = [(n, e) for n, e in follows if following[n] and isinstance(e, Follow)
               and errors[n] is None]  # fmt: skip
        for n, error in zip([n for n, _ in ons], await self._backfills(
                [(e.follower_id, e.followee_id, e.ts) for _, e in ons]), strict=True):  # fmt: skip
            errors[n] = error
        return errors

    async def _states(
        self, events: Sequence[GraphEvent]
    ) -> tuple[list[Exception | None], dict[int, object]]:
        """Every event's state step (``lua/follow.lua``, ``lua/hide.lua``: a block's on
        both sides) in one pipeline: each event's script error (or None), and by event
        its answer (for a block, its user's side's)."""
        ctx = self.context
        calls: list[tuple[AsyncScript, list[str | int]]] = []
        owners: list[int] = []
        for n, e in enumerate(events):
            if isinstance(e, Follow | Unfollow):
                on = "1" if isinstance(e, Follow) else "0"
                calls.append((self.scripts.follow, [*ctx, e.follower_id, e.followee_id, e.ts, on]))
                owners.append(n)
                continue
            kind = "mutes" if isinstance(e, Mute | Unmute) else "blocks"
            on = "1" if isinstance(e, Block | Mute) else "0"
            calls.append((self.scripts.hide, [*ctx, kind, e.user_id, e.target_id, e.ts, on]))
            owners.append(n)
            if kind == "blocks":  # the target's side: what it must not see
                calls.append((self.scripts.hide, [*ctx, "blocked_by", e.target_id, e.user_id,
                                                  e.ts, on]))  # fmt: skip
                owners.append(n)
        errors: list[Exception | None] = [None] * len(events)
        answers: dict[int, object] = {}
        for n, result in zip(owners, await run_scripts(self.redis, calls), strict=True):
            errors[n] = errors[n] or _failed(result)
            answers.setdefault(n, result)  # the user's side answers for a block
        return errors, answers

    async def _purges(self, jobs: Sequence[tuple[str, str, bool, str]]) -> list[Exception | None]:
        """Take each job's ``(user, target, authored, value)`` target's reasons out of the
        user's feeds (``lua/purge.lua``), in order, given the facts of every post in them:
        each user's feeds read once, the facts in one round trip, the steps in one
        pipeline. Each job's script error (or None)."""
        if not jobs:
            return []
        k = self.keys
        users = list(dict.fromkeys(user for user, *_ in jobs))
        per = 2 * self.buckets
        pages = await read_commands(self.redis, [
            ("ZRANGE", key, 0, -1) for user in users for b in range(self.buckets)
            for key in (k.feed(user, b), k.for_you(user, b))
        ])  # fmt: skip
        held = {user: sorted({text(p) for page in pages[u * per : (u + 1) * per] for p in page})
                for u, user in enumerate(users)}  # fmt: skip
        posts = sorted({post for held_posts in held.values() for post in held_posts})
        records = await read_commands(self.redis, [("HMGET", k.post(p), "a", "ts", "del")
                                                   for p in posts])  # fmt: skip
        facts_of = {post: [post, *(text(v) if v is not None else "" for v in record)]
                    for post, record in zip(posts, records, strict=True)}  # fmt: skip
        calls, owners = [], []
        for j, (user, target, authored, value) in enumerate(jobs):
            if held[user]:  # no entries: nothing to take out
                facts: list[str | int] = [len(held[user])]
                for post in held[user]:
                    facts += facts_of[post]
                argv = [*self.context, user, target, "1" if authored else "0", value, *facts]
                calls.append((self.scripts.purge, argv))
                owners.append(j)
        errors: list[Exception | None] = [None] * len(jobs)
        for j, result in zip(owners, await run_scripts(self.redis, calls), strict=True):
            errors[j] = _failed(result)
        return errors

    async def _backfills(self, follows: Sequence[tuple[str, str, float]]) -> list[Exception | None]:
        """Push each ``(follower, followee, ts)``'s followee's recent posts and reposts into
        the follower's feeds (``lua/backfill.lua``), for a follow of time ``ts``: every
        followee's reads together, the steps in one pipeline; a pulled followee gives
        nothing (readers merge it), nor a followee with nothing recent. Each follow's
        script error (or None)."""
        errors: list[Exception | None] = [None] * len(follows)
        if self.pull and follows:
            pulled = await pulled_among(self.redis, self.keys, sorted({f[1] for f in follows}))
            giving = [n for n, f in enumerate(follows) if f[1] not in pulled]
        else:
            giving = list(range(len(follows)))
        if not giving:
            return errors
        rows = await self._recent([follows[n][1] for n in giving], 0,
                                  [follows[n][2] for n in giving])  # fmt: skip
        calls, owners = [], []
        for n, (own, shared) in zip(giving, rows, strict=True):
            if len(own) > 1 or len(shared) > 1:  # no rows: the step would write nothing
                follower, followee, _ = follows[n]
                argv = [*self.context, follower, followee, "backfill", *own, *shared, 0]
                calls.append((self.scripts.backfill, argv))
                owners.append(n)
        for n, result in zip(owners, await run_scripts(self.redis, calls), strict=True):
            errors[n] = _failed(result)
        return errors

    async def _recent(
        self,
        targets: Sequence[str],
        since: int | str | Sequence[int | str],
        at: float | Sequence[float],
    ) -> list[tuple[list[str | int], list[str | int]]]:
        """Each target's recent posts and reposts of time ``since`` (one for all targets,
        or one per target) or later, as the backfill rows of ``lua/backfill.lua``
        (reposts with their authors), for an event of time ``at``: none of a target,
        and no repost of a post by an author, that a suspension's cleaning covers at
        ``at`` (:func:`~.takeback.cleaned_for`; one time for all targets, or one per
        target). Rows may be shared between targets: not to be changed."""
        k = self.keys
        ats = [float(at)] * len(targets) if isinstance(at, int | float) else list(at)
        sinces = [since] * len(targets) if isinstance(since, int | str) else list(since)
        # Each target read once per time (a run of follows names few followees many
        # times): the reads share one round trip, so every occurrence would read the same.
        distinct = list(dict.fromkeys(zip(targets, sinces, strict=True)))
        found = await read_commands(self.redis, [
            command for target, start in distinct for command in (
                ("ZRANGE", k.recent_posts(target), start, "+inf", "BYSCORE", "WITHSCORES"),
                ("ZRANGE", k.recent_reposts(target), start, "+inf", "BYSCORE", "WITHSCORES"),
                ("HMGET", k.account(target), "susp", "rein"),
            )
        ])  # fmt: skip
        read: dict[tuple[str, int | str], tuple[Any, list[Any], list[Any]]] = {}
        for n, key in enumerate(distinct):
            posts, reposts, state = found[3 * n : 3 * n + 3]
            read[key] = (state, _scored(posts), _scored(reposts))
        keyed = list(zip(targets, sinces, strict=True))
        cleaned = [cleaned_for(read[key][0], t) for key, t in zip(keyed, ats, strict=True)]
        giving = {key for key, off in zip(keyed, cleaned, strict=True) if not off}
        reposted = sorted({p for key in giving for p, _ in read[key][2]})
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
        made: dict[tuple[str, int | str], tuple[list[str | int], list[str | int]]] = {}
        for key, t, off in zip(keyed, ats, cleaned, strict=True):
            if off:
                rows.append(([0], [0]))
                continue
            _, posts, reposts = read[key]
            if windowed and any(p in windowed for p, _ in reposts):
                rows.append(row(posts, [(p, sc) for p, sc in reposts if not (
                    authors[p] and cleaned_for(state_of[authors[p]], t))]))  # fmt: skip
                continue
            if key not in made:
                made[key] = row(posts, reposts)
            rows.append(made[key])
        return rows

    async def backfill(self, user: str, targets: Sequence[str], *, at: float = INF) -> None:
        """Push each of ``targets``' recent posts and reposts into ``user``'s feeds, as
        the live fan-out delivered them (``lua/backfill.lua``), for a follow of time
        ``at`` (default: now, for a rebuild): what a suspension cleans is left out.
        Raises a step's script error."""
        for error in await self._backfills([(user, target, at) for target in targets]):
            if error is not None:
                raise error

    async def restore(self, viewer: str, target: str, since: str) -> None:
        """After an undo of time ``since``: give ``viewer`` back ``target``'s content of
        that time or later (``lua/backfill.lua``, restore). Raises the step's script
        error."""
        (error,) = await self._restores([(viewer, target, since)])
        if error is not None:
            raise error

    async def _restores(self, jobs: Sequence[tuple[str, str, str]]) -> list[Exception | None]:
        """Each ``(viewer, target, since)``'s restore (see :meth:`restore`), in order:
        the reads of every job together (a round trip each for the targets' recent
        items, their posts, those posts' reposters since the undo and those reposts'
        entries), the steps in one pipeline. Each job's script error (or None)."""
        if not jobs:
            return []
        k = self.keys
        rows = await self._recent([t for _, t, _ in jobs], [s for *_, s in jobs],
                                  [int(s) for *_, s in jobs])  # fmt: skip
        targets = list(dict.fromkeys(t for _, t, _ in jobs))
        pages = await read_commands(self.redis, [("ZRANGE", k.recent_posts(t), 0, -1)
                                                 for t in targets])  # fmt: skip
        posts_of = {t: [text(p) for p in page] for t, page in zip(targets, pages, strict=True)}
        # each (post, since) read once: the jobs of one target and undo time share it
        wanted = list(dict.fromkeys((p, s) for _, t, s in jobs for p in posts_of[t]))
        found = await read_commands(self.redis, [
            ("ZRANGE", k.reposters(p), s, "+inf", "BYSCORE", "WITHSCORES") for p, s in wanted
        ])  # fmt: skip
        reposts = {key: _scored(r) for key, r in zip(wanted, found, strict=True)}
        entries = list(dict.fromkeys((p, r) for (p, _), rs in reposts.items() for r, _ in rs))
        scores = await read_commands(self.redis, [("ZSCORE", k.recent_reposts(r), p)
                                                  for p, r in entries])  # fmt: skip
        score_of = dict(zip(entries, scores, strict=True))
        calls: list[tuple[AsyncScript, list[str | int]]] = []
        for (viewer, target, since), (own, shared) in zip(jobs, rows, strict=True):
            found_rows = [(p, r, at, repr(float(score_of[(p, r)])))
                          for p in posts_of[target] for r, at in reposts[(p, since)]
                          if score_of[(p, r)] is not None]  # fmt: skip
            others: list[str | int] = [len(found_rows), *(v for row in found_rows for v in row)]
            argv = [*self.context, viewer, target, "restore", *own, *shared, *others]
            calls.append((self.scripts.backfill, argv))
        return [_failed(result) for result in await run_scripts(self.redis, calls)]
