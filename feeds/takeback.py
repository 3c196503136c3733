"""A late suspension takes back what the door would have refused.

The door (:mod:`feedamp.feeds.accounts`) refuses a suspended account's posts and reposts,
and reposts of its posts, by event time. A suspension that arrives after some of them
were applied (they came on other partitions, from other producers) finds their records
written; this takes back exactly those records, so that Redis ends as if the suspension
had come first.

Invariants:

- The window is the one the door judges by: from the account's latest suspension ``S``
  to its latest reinstatement ``R`` when ``R >= S``, else open. Taken back, for every
  post of the account and every repost by it or of its posts with event time in the
  window: the post's record (its author and deletion mark stay when it was deleted, as a
  deletion that passes the door writes them), its place in the author's recent list and
  its product tags; the repost's decision, rewritten to ``refused`` with the door's reason
  (``suspended`` for the reposter, else ``author_suspended``) and its depth kept, unless
  the door refused it already; the repost record; the reposter's place among the post's
  reposters, comment and recent-list entry when that repost set them. Its attempts in
  the rate, forwarded and brake windows stay: a door refusal records them too
  (:mod:`feedamp.feeds.repost_decisions`), so the windows, and every other repost's
  decision counted in them, are those of the suspension coming first.
- What it reads is a function of the log: the account's ``acts`` index (every post and
  repost it made, refused or not, the latest ``2 * FEEDAMP_RECENT_PER_AUTHOR`` by time)
  and the ``cascade`` of each of its posts (every repost of the post, refused or not), so
  it reaches the same events whatever order they came in.
- Orders: every order naming a taken-back post, any repost of such a post, or a
  taken-back repost (``orders_via_post`` / ``orders_via_repost``, written with the
  purchase) is settled afresh once the records are gone
  (:meth:`~feedamp.feeds.shop.order_steps.OrderSteps.forget`): its credits and
  conversions through them are taken back and it waits in ``awaiting_post`` /
  ``awaiting_repost`` / ``awaiting_tags`` exactly as if the records had never existed.
- It runs after the cleaning of the feeds (which reads the reposters it removes). Every
  command touches one key or is a slot-local step (cluster-safe) and the whole is
  idempotent.

The account's graph events, purchases and product views need nothing taken back: the
door lets them through whatever the suspension (:mod:`feedamp.feeds.accounts`). Not
taken back: decisions already published on ``decisions`` (outputs) and gifts in the
window (README, *What is guaranteed*).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from feedamp.models.decisions import AUTHOR_SUSPENDED, REFUSED, SUSPENDED
from feedamp.models.events import Event, Post, Repost

from .activity import Activity, ActivityKeys, parse_cascade
from .batch import read_commands, text
from .connection import AnyRedis
from .keys import Keys

__all__ = ["Settler", "cleaned_for", "remember", "take_back", "window_of"]

#: Post record fields a post event writes (``a`` is also written by a deletion).
POST_FIELDS = ("ts", "vis", "text", "media", "tg")
#: Reasons of a decision made at the door.
DOOR_REASONS = frozenset({SUSPENDED, AUTHOR_SUSPENDED})


@dataclass(frozen=True, slots=True)
class _Repost:
    post: str
    repost: str
    reposter: str
    ts: int
    reason: str
    event: str | None  # None when the reposter's index no longer holds it


def act_member(event: Post | Repost) -> str:
    """The ``acts`` member of a post (``<post>,,<event>``) or a repost
    (``<post>,<repost>,<event>``); ids never hold a comma."""
    repost = event.repost_id if isinstance(event, Repost) else ""
    return f"{event.post_id},{repost},{event.event_id}"


async def remember(redis: AnyRedis, keys: Keys, events: Iterable[Event], keep: int) -> None:
    """Add the posts and reposts among ``events`` to their actors' ``acts`` index (each
    trimmed to its ``keep`` latest by time, ties by member: the same set whatever order
    they came in). One pipeline."""
    by_user: dict[str, dict[str, int]] = {}
    for ev in events:
        if isinstance(ev, Post):
            by_user.setdefault(ev.author_id, {})[act_member(ev)] = ev.ts
        elif isinstance(ev, Repost):
            by_user.setdefault(ev.reposter_id, {})[act_member(ev)] = ev.ts
    if not by_user:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for user, members in by_user.items():
            pipe.zadd(keys.acts(user), members)
            pipe.zremrangebyrank(keys.acts(user), 0, -(keep + 1))
        await pipe.execute()


def window_of(state: Sequence[bytes | str | None]) -> tuple[int, float] | None:
    """``[start, end)`` of event time the door refuses for an account whose ``(susp,
    rein)`` fields are ``state`` (see ``suspended_at``); None if never suspended."""
    susp, rein = state
    if susp is None:
        return None
    start = int(susp)
    end = int(rein) if rein is not None and int(rein) >= start else float("inf")
    return start, end


def cleaned_for(state: Sequence[bytes | str | None], at: float) -> bool:
    """True if an account whose ``(susp, rein)`` fields are ``state`` has no content to
    give a follow (or an undo) of time ``at``: a suspension's cleaning takes the content
    it had before ``at`` out of feeds, or will when that suspension is applied (``at``
    before it), or the door refuses content of that time; only once reinstated
    (``at`` at or after the reinstatement) does a backfill bring it. So a backfill gives
    the same feeds whether the follow is applied before or after the suspension."""
    window = window_of(state)
    return window is not None and at < window[1]


async def take_back(
    redis: AnyRedis,
    keys: Keys,
    activity: Activity,
    user: str,
    orders: Settler | None = None,
    ctx: Sequence[str | int] = (),
) -> int:
    """Take back the records of ``user``'s posts and reposts, and of reposts of its posts,
    that the door refuses by event time (see the module's invariants), log them as
    refused in ``activity``'s decision logs, and settle afresh through ``orders`` (with
    the namespace's script context ``ctx``) the orders naming a taken-back post, a
    repost of one, or a taken-back repost; return how many posts and reposts were in the
    window."""
    window = window_of(await redis.hmget(keys.account(user), "susp", "rein"))
    if window is None:
        return 0
    start, end = window

    def inside(ts: float) -> bool:
        return start <= ts < end

    scored = cast(list[tuple[bytes, float]],
                  await redis.zrange(keys.acts(user), 0, -1, withscores=True))  # fmt: skip
    acts = [(_parts(member), int(score)) for member, score in scored]
    posts = [(post, event, ts) for (post, repost, event), ts in acts if not repost]
    reposts: dict[tuple[str, str], _Repost] = {}
    for (post, repost, event), ts in acts:
        if repost and inside(ts):
            reposts[(post, repost)] = _Repost(post, repost, user, ts, SUSPENDED, event)
    kept_a: set[str] = set()  # posts a repost outside the window still names an author for
    others: list[tuple[str, str, str, int]] = []  # reposts of its posts by other accounts
    reposts_of: dict[str, list[str]] = {}  # each post's reposts (the cascade), any time
    if posts:
        names = ActivityKeys(keys.prefix)
        async with redis.pipeline(transaction=False) as pipe:
            for post, _, _ in posts:
                pipe.hgetall(names.cascade(post))
            cascades = await pipe.execute()
        for (post, _, _), cascade in zip(posts, cascades, strict=True):
            for raw, value in cascade.items():
                _via, reposter, ts = parse_cascade(value)
                reposts_of.setdefault(post, []).append(text(raw))
                if not inside(ts):
                    kept_a.add(post)
                elif (post, text(raw)) not in reposts:
                    others.append((post, text(raw), reposter, ts))
    if others:
        # their event ids, from each reposter's own index
        async with redis.pipeline(transaction=False) as pipe:
            for _, _, reposter, ts in others:
                pipe.zrange(keys.acts(reposter), ts, ts, byscore=True)
            indexed = await pipe.execute()
        for (post, repost, reposter, ts), members in zip(others, indexed, strict=True):
            events = [m[2] for m in map(_parts, members) if m[:2] == (post, repost)]
            reason = SUSPENDED if reposter == user else AUTHOR_SUSPENDED
            reposts[(post, repost)] = _Repost(post, repost, reposter, ts, reason,
                                              events[0] if events else None)  # fmt: skip
    gone_posts = [(post, event, ts) for post, event, ts in posts if inside(ts)]
    if not reposts and not gone_posts:
        return 0
    items = sorted(reposts.values(), key=lambda r: (r.ts, r.post, r.repost))
    async with redis.pipeline(transaction=False) as pipe:
        for r in items:
            pipe.hget(keys.decided(r.post), r.repost)
            pipe.zscore(keys.reposters(r.post), r.reposter)
            pipe.zscore(keys.recent_reposts(r.reposter), r.post)
        for post, _, _ in gone_posts:
            pipe.hexists(keys.post(post), "del")
        found = await pipe.execute()
    refusals: list[tuple[str, int, str | None]] = []  # (event, ts, kind it was logged under)
    async with redis.pipeline(transaction=False) as pipe:
        for n, r in enumerate(items):
            decided, place, recent = found[3 * n : 3 * n + 3]
            logged: str | None = None
            if decided is not None:
                outcome, depth, reasons = text(decided).split("|")
                if DOOR_REASONS & set(reasons.split(",")):
                    continue  # refused at the door: only its attempts were written
                pipe.hset(keys.decided(r.post), r.repost, f"{REFUSED}|{depth}|{r.reason}")
                logged = outcome
            if r.event is not None:
                refusals.append((r.event, r.ts, logged))
            pipe.delete(keys.repost(r.repost))
            if place is not None and int(place) == r.ts:
                pipe.zrem(keys.reposters(r.post), r.reposter)
                pipe.hdel(keys.comments(r.post), r.reposter)
            if recent is not None and int(recent) == r.ts:
                pipe.zrem(keys.recent_reposts(r.reposter), r.post)
        for (post, event, ts), deleted in zip(gone_posts, found[3 * len(items) :], strict=True):
            refusals.append((event, ts, None))
            pipe.zrem(keys.recent_posts(user), post)
            pipe.delete(keys.products(post))
            if deleted or post in kept_a:
                pipe.hdel(keys.post(post), *POST_FIELDS)
            else:
                pipe.delete(keys.post(post))
        await pipe.execute()
    await activity.refused(keys.prefix, refusals)
    if orders is not None:
        await _settle_orders(redis, keys, orders, ctx, gone_posts, items, reposts_of)
    return len(items) + len(gone_posts)


class Settler(Protocol):
    """What settles orders afresh (:meth:`feedamp.feeds.shop.order_steps.OrderSteps.forget`)."""

    async def forget(
        self, ctx: Sequence[str | int], orders: Sequence[str]
    ) -> dict[str, Exception]: ...


async def _settle_orders(
    redis: AnyRedis,
    keys: Keys,
    orders: Settler,
    ctx: Sequence[str | int],
    gone_posts: Sequence[tuple[str, str, int]],
    items: Sequence[_Repost],
    reposts_of: dict[str, list[str]],
) -> None:
    """Settle afresh the orders naming a taken-back post or any repost of it (they learn
    the post's author and tags through it) or a taken-back repost (whether or not this
    run rewrote its decision: a repeated take-back finds the same orders). Raises the
    first order error (the suspension's batch is then retried)."""
    names: set[tuple[str, str]] = {("p", post) for post, _, _ in gone_posts}
    names |= {("r", repost) for post, _, _ in gone_posts for repost in reposts_of.get(post, ())}
    names |= {("r", r.repost) for r in items}
    if not names:
        return
    ordered = sorted(names)
    found = await read_commands(redis, [
        ("SMEMBERS", keys.orders_via_post(id_) if kind == "p" else keys.orders_via_repost(id_))
        for kind, id_ in ordered
    ])  # fmt: skip
    waiting = sorted({text(o) for members in found for o in members})
    if waiting and (failed := await orders.forget(ctx, waiting)):
        raise next(iter(failed.values()))


def _parts(member: bytes | str) -> tuple[str, str, str]:
    """``(post, repost, event)`` of an ``acts`` member (``repost`` empty for a post)."""
    post, repost, event = text(member).split(",")
    return post, repost, event
