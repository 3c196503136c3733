"""The repost decision, as slot-local idempotent steps (the same steps on a standalone
Redis and on a Redis Cluster).

A repost is decided from keys of two entities: its post (kept decisions and depth in
``decided:{post}``, visibility, the virality brake in ``brake:{post}``) and its reposter
(the rate and forwarded windows). A batch runs three steps, each one pipeline for the
whole batch (one round trip per node on a cluster):

1. post slot (``decide_post.lua``): a kept decision, else the depth of the repost it came
   through, the followers-only flag and the brake attempt with its count;
2. reposter slot (``decide_user.lua``): the rate attempt and, at the forwarded depth, the
   forwarded attempt, with their counts;
3. post slot (``decide_commit.lua``): ``HSETNX`` of the decision, the commit point.

Invariants: each attempt is a ``ZADD`` of the repost id (idempotent) and a count covers
only attempts at or before the repost's time, recorded first by the event-time order, so
a redelivery at any step, or a replay, decides the same; the first decision committed
for a repost is the one every copy returns. A repost refused at the door (a suspended
reposter or author) records its attempts like any other: windows count attempts
whatever their decision, so a suspension arriving late, which turns an applied repost
into a refusal (:mod:`feedamp.feeds.takeback`), leaves every window, and so every other
repost's decision, as the suspension coming first would have. Reasons come in the order
the single script gave them: followers_only, user_rate, forwarded_many_times,
forwarded_hourly, virality_brake, no_comment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from feedamp.config import Settings
from feedamp.models.decisions import Decision
from feedamp.models.events import Event, Repost

from .batch import run_scripts, text
from .scripts import argv

__all__ = ["decide_reposts"]


async def decide_reposts(
    redis: Any,
    scripts: Any,
    settings: Settings,
    context: Sequence[str | int],
    events: Sequence[Event],
    refused: Mapping[int, str],
) -> tuple[dict[int, Decision], dict[int, Exception]]:
    """Decide every repost of ``events`` (caps on), in event-time order; return the
    decisions and the script errors, both by index. ``refused`` maps a repost stopped at
    the door to its reason. Transient Redis errors propagate (the batch is retried)."""
    c = settings.caps
    reposts = sorted(
        ((i, ev) for i, ev in enumerate(events) if isinstance(ev, Repost)),
        key=lambda item: (item[1].ts, item[1].event_id),
    )
    failed: dict[int, Exception] = {}
    ctx = list(context)

    # A copy of a repost met earlier in the batch records no attempt (its first copy
    # does) and gets the first copy's decision, as a kept decision would be returned.
    origin: dict[tuple[str, str], int] = {}  # (post, repost) -> index of its first copy
    copies: list[tuple[int, int]] = []  # (index, index of the first copy)
    firsts: list[tuple[int, Repost]] = []
    for i, ev in reposts:
        seen = origin.setdefault((ev.post_id, ev.repost_id), i)
        if seen == i:
            firsts.append((i, ev))
        else:
            copies.append((i, seen))

    # 1. Post slot: kept decisions, via depth, visibility, brake.
    first = await run_scripts(redis, [(scripts.decide_post, argv(
        "decide_post", ctx, post_id=ev.post_id, repost_id=ev.repost_id,
        via_repost_id=ev.via_repost_id or "", ts=ev.ts, brake_window=c.brake_window_ms,
        door=refused.get(i, ""))) for i, ev in firsts])  # fmt: skip
    values: dict[int, str] = {}  # decided here or before, by index
    batch: dict[tuple[str, str], str] = {}  # (post, repost) -> decision made in this batch
    pending: list[tuple[int, Repost, int, str, str]] = []  # (i, ev, depth, followers, brake)
    for (i, ev), result in zip(firsts, first, strict=True):
        if isinstance(result, Exception):
            failed[i] = result
            continue
        reply = text(result)
        if reply.startswith("="):
            values[i] = reply[1:]
            continue
        via_depth, followers, brake = reply.split("|")
        earlier = batch.get((ev.post_id, ev.via_repost_id or ""))
        if earlier is not None:  # came through a repost decided earlier in this batch
            via_depth = earlier.split("|")[1]
        depth = int(via_depth) + 1 if via_depth else 1
        if i in refused:
            batch[(ev.post_id, ev.repost_id)] = f"refused|{depth}|{refused[i]}"
        else:
            # Placeholder so that later reposts through this one see its depth.
            batch[(ev.post_id, ev.repost_id)] = f"?|{depth}|"
        pending.append((i, ev, depth, followers, brake))

    # 2. Reposter slot: the rate and forwarded windows (a door refusal's attempts too).
    second = await run_scripts(redis, [(scripts.decide_user, argv(
        "decide_user", ctx, reposter_id=ev.reposter_id, repost_id=ev.repost_id, ts=ev.ts,
        rate_window=c.rate_window_ms,
        forwarded="1" if depth >= c.frequently_forwarded_depth else "0",
        forwarded_window=c.forwarded_window_ms)) for _, ev, depth, _, _ in pending])  # fmt: skip
    for (i, ev, depth, followers, brake), result in zip(pending, second, strict=True):
        if isinstance(result, Exception):
            failed[i] = result
            continue
        if i in refused:
            values[i] = batch[(ev.post_id, ev.repost_id)]
            continue
        rate, fwd = text(result).split("|")
        values[i] = batch[(ev.post_id, ev.repost_id)] = _decision(
            settings, depth, followers == "1", int(rate), int(fwd) if fwd else None,
            int(brake), bool(ev.comment))  # fmt: skip

    for i, seen in copies:
        if seen in failed:
            failed[i] = failed[seen]
        else:
            values[i] = values[seen]

    # 3. Post slot: commit (the first decision kept wins).
    commits = [(i, ev) for i, ev in reposts if i in values and i not in failed]
    kept = await run_scripts(redis, [(scripts.decide_commit, argv(
        "decide_commit", ctx, post_id=ev.post_id, repost_id=ev.repost_id,
        decision=values[i])) for i, ev in commits])  # fmt: skip
    decisions: dict[int, Decision] = {}
    for (i, ev), result in zip(commits, kept, strict=True):
        if isinstance(result, Exception):
            failed[i] = result
            continue
        outcome, depth_text, reasons = text(result).split("|")
        decisions[i] = Decision(
            event_id=ev.event_id, repost_id=ev.repost_id, reposter_id=ev.reposter_id,
            post_id=ev.post_id, depth=int(depth_text), decision=outcome,
            reasons=tuple(r for r in reasons.split(",") if r), ts=ev.ts,
        )  # fmt: skip
    return dict(sorted(decisions.items())), failed


def _decision(
    settings: Settings, depth: int, followers_only: bool, rate_others: int,
    forwarded_others: int | None, brake_others: int, has_comment: bool,
) -> str:  # fmt: skip
    """``decision|depth|reasons`` from the counts the two slots returned."""
    c = settings.caps
    reasons: list[str] = []
    refused = limited = restricted = False
    if followers_only:
        refused = True
        reasons.append("followers_only")
    if rate_others >= c.rate_max:
        limited = True
        reasons.append("user_rate")
    if depth >= c.frequently_forwarded_depth:
        restricted = True
        reasons.append("forwarded_many_times")
        if forwarded_others is not None and forwarded_others >= c.forwarded_max:
            limited = True
            reasons.append("forwarded_hourly")
    if brake_others >= c.brake_reposts:
        restricted = True
        reasons.append("virality_brake")
    if c.friction and not has_comment:
        restricted = True
        reasons.append("no_comment")
    outcome = ("refused" if refused else "rate_limited" if limited
               else "restricted" if restricted else "delivered")  # fmt: skip
    return f"{outcome}|{depth}|{','.join(reasons)}"
