"""Fan-out as slot-local steps, the same code on a standalone Redis and a Redis Cluster
(README, *Redis Cluster*).

A fan-out is an **origin step** on the post's (and author's) slots, run by the store,
and **delivery steps** on the followers' slots, run here: the followers are read in chunks
(``SSCAN`` of ``followers:{source}``, ``FEEDAMP_FANOUT_CHUNK`` at a time), each chunk is
grouped by the node that serves each follower's slot (one group on a standalone Redis),
and each group gets one ``lua/deliver.lua`` call per ``cap`` followers, all nodes at once.
The script is flagged ``allow-cross-slot-keys``; it declares the first follower's key
(Redis refuses declared keys of several slots, flag or not) and reaches the others as
undeclared keys of its own node.

Invariants:

- a delivery call touches only keys tagged by its followers, all served by its node when
  the slot table is right; when it is not (slots moving), the node refuses the call
  before it runs (``MOVED``, ``ASK``, ``TRYAGAIN`` for the declared key) or the script
  stops at the first key it does not serve ("non local key"), after some deliveries;
- a refused group is re-grouped by slot after the slot table is refreshed, each slot
  group declaring all its keys and going through the client's own redirection handling
  (one slot is always served by one node), so a resharding delays a delivery and never
  loses one;
- every delivery is idempotent (``ZADD GT``, attribution merge, removal), so running a
  group again after a partial failure doubles nothing;
- the segments of one call run in order, and a follower's segments keep their order: the
  calls of a node after a refused one are re-run with it, after it, and the re-run is one
  call per slot with all of that slot's segments; so a post pushed and then unpushed in
  one fan-out ends unpushed;
- groups are made per call from the slot table of that moment and never stored.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterCrossSlotError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)

from .batch import NON_LOCAL, is_transient, run_scripts, text
from .connection import AnyRedis, is_cluster
from .keys import Keys

__all__ = ["REDIRECTS", "Delivery", "Segment", "deliver", "followers_of"]

#: Answers of a node that does not serve the declared key of a group (right now).
REDIRECTS = (MovedError, AskError, TryAgainError, ClusterCrossSlotError)
#: Seconds a delivery waits for a slot that is moving before the batch is retried.
SLOT_WAIT = 10.0


@dataclass(slots=True)
class Segment:
    """One delivery of an event to some followers: the operation (``post``, ``repost``,
    ``withdraw``, ``unpush``: see ``lua/deliver.lua``), the post's facts, the reposter and
    flags, the post's feed bucket, those followers and the index of the event."""

    op: str
    post_id: str
    author_id: str
    ts: int | str
    bucket: int
    followers: list[str]
    index: int = -1
    reposter_id: str = ""
    flags: str = ""

    def argv(self) -> list[str | int]:
        """The segment's part of a delivery call's ARGV."""
        head = [self.op, self.post_id, self.author_id, self.ts, self.reposter_id, self.flags,
                len(self.followers)]  # fmt: skip
        return [*head, *self.followers]

    def part(self, followers: list[str]) -> Segment:
        """This segment for ``followers`` only."""
        return replace(self, followers=followers)


@dataclass(slots=True)
class Delivery:
    """Followers reached per event index, the events a delivery call failed for (a script
    error, not a redirection), and how many followers had to be re-grouped by slot after
    their node refused a call (slots moving)."""

    reached: dict[int, int] = field(default_factory=dict)
    errors: dict[int, Exception] = field(default_factory=dict)
    regrouped: int = 0

    def add(self, segment: Segment, count: object) -> None:
        if isinstance(count, Exception):
            self.errors.setdefault(segment.index, count)
            return
        self.reached[segment.index] = self.reached.get(segment.index, 0) + int(count)  # type: ignore[call-overload]


async def followers_of(
    redis: AnyRedis, keys: Keys, sources: Sequence[str], chunk: int
) -> list[list[str] | Exception]:
    """Every follower of each of ``sources``, read ``chunk`` at a time (``SSCAN``, the
    sources' scans pipelined together); the error Redis answered for a source whose
    followers key is not a set (its event fails). A transient error is raised."""
    found: list[list[str] | Exception] = [[] for _ in sources]
    cursors = dict.fromkeys(range(len(sources)), 0)
    while cursors:
        pending = list(cursors)
        async with redis.pipeline(transaction=False) as pipe:
            for n in pending:
                pipe.sscan(keys.followers(sources[n]), cursors[n], count=chunk)
            pages = await pipe.execute(raise_on_error=False)
        for n, page in zip(pending, pages, strict=True):
            if isinstance(page, Exception):
                if is_transient(page):
                    raise page
                found[n] = page
                del cursors[n]
                continue
            cursor, members = page
            found[n] += [text(f) for f in members]  # type: ignore[operator]
            if int(cursor) == 0:
                del cursors[n]
            else:
                cursors[n] = int(cursor)
    return found


async def deliver(
    redis: AnyRedis,
    script: Any,
    context: Sequence[str | int],
    segments: Sequence[Segment],
    keys: Keys,
    cap: int,
) -> Delivery:
    """Run the delivery ``script`` over ``segments``: their followers grouped by the node
    serving each follower's feed key (one group on a standalone Redis), calls of at most
    ``cap`` followers, the calls of one node one after another and the nodes at once. A
    call refused by a cluster node is re-run by slot. A transient error is raised."""
    result = Delivery()
    segments = [seg for seg in segments if seg.followers]
    if not segments:
        return result
    if not is_cluster(redis):
        # EVALSHA, the script loaded once per client (deliver.lua reads no KEYS: the
        # declared key only routes a call on a cluster).
        calls = _calls(segments, cap)
        replies = await run_scripts(
            redis,
            [(script, [*context, *(v for seg in call for v in seg.argv())]) for call in calls],
        )
        for call, counts in zip(calls, replies, strict=True):
            _record(result, call, counts)
        return result
    assert isinstance(redis, RedisCluster)
    if not script.loaded:
        await script.load()
    await redis.initialize()
    per_node: dict[str, tuple[ClusterNode, list[Segment]]] = {}
    for seg in segments:
        split: dict[str, list[str]] = defaultdict(list)
        for follower in seg.followers:
            node = redis.get_node_from_key(keys.feed(follower, seg.bucket))
            assert node is not None  # every slot is served (cluster_state:ok)
            per_node.setdefault(node.name, (node, []))
            split[node.name].append(follower)
        for name, followers in split.items():
            per_node[name][1].append(seg.part(followers))

    async def run_node(node: ClusterNode, parts: list[Segment]) -> list[Segment]:
        refused: list[Segment] = []
        for call in _calls(parts, cap):
            if refused:  # keep the order: what follows a refused call runs after it
                refused += call
                continue
            first = call[0]
            key = keys.feed(first.followers[0], first.bucket)
            argv = [*context, *(v for seg in call for v in seg.argv())]
            try:
                counts: object = await _evalsha(node, script, [key], argv)
            except ResponseError as exc:
                if _refused(exc):
                    refused += call
                    continue
                counts = exc
            _record(result, call, counts)
        return refused

    refused_lists = await asyncio.gather(*(run_node(n, p) for n, p in per_node.values()))
    refused = [seg for lst in refused_lists for seg in lst]
    if refused:
        result.regrouped = sum(len(seg.followers) for seg in refused)
        await _by_slot(redis, script, context, refused, keys, result)
    return result


def _record(result: Delivery, call: list[Segment], counts: object) -> None:
    """Count one call's reply (a count per segment) or charge its error to its events."""
    if isinstance(counts, Exception):
        if is_transient(counts):
            raise counts
        for seg in call:
            result.add(seg, counts)
        return
    for seg, count in zip(call, counts, strict=True):  # type: ignore[call-overload]
        result.add(seg, count)


def _calls(parts: list[Segment], cap: int) -> list[list[Segment]]:
    """``parts`` packed into calls of at most ``cap`` followers (a segment is split when
    it does not fit)."""
    calls: list[list[Segment]] = [[]]
    room = cap
    for seg in parts:
        followers = seg.followers
        while followers:
            if room == 0:
                calls.append([])
                room = cap
            take, followers = followers[:room], followers[room:]
            calls[-1].append(seg.part(take))
            room -= len(take)
    return [call for call in calls if call]


def _refused(error: object) -> bool:
    """True when a node did not serve every follower of a call (redirected before the
    call ran, or an undeclared key of another node reached while it ran)."""
    return isinstance(error, REDIRECTS) or (
        isinstance(error, ResponseError) and NON_LOCAL in str(error)
    )


async def _evalsha(node: ClusterNode, script: Any, keys: list[str], argv: list[str | int]) -> Any:
    """One delivery call sent to ``node`` itself (no redirection followed). It declares
    the first follower's key only: Redis refuses declared keys of several slots even to
    a script flagged ``allow-cross-slot-keys``, which may only reach the others as
    undeclared keys of its own node."""
    command = ("EVALSHA", script.sha, len(keys), *keys, *argv)
    try:
        return await node.execute_command(*command)
    except NoScriptError:
        await script.load()
        return await node.execute_command(*command)


async def _by_slot(
    redis: RedisCluster,
    script: Any,
    context: Sequence[str | int],
    segments: list[Segment],
    keys: Keys,
    result: Delivery,
) -> None:
    """After a refusal: refresh the slot table and run one call per slot (its segments in
    their order) in one cluster pipeline, each declaring all its feed keys and routed by
    the client (which follows MOVED and ASK and retries TRYAGAIN). A slot still moving (some of a
    follower's keys already on the new owner) is refused again: it is retried, after a
    pause, until the move ends; past ``SLOT_WAIT`` seconds the error is raised for the
    batch to be retried whole."""
    by_slot: dict[int, list[Segment]] = defaultdict(list)  # each slot's parts, in order
    for seg in segments:
        followers: dict[int, list[str]] = defaultdict(list)
        for follower in seg.followers:
            followers[redis.keyslot(keys.feed(follower, seg.bucket))].append(follower)
        for slot, fs in followers.items():
            by_slot[slot].append(seg.part(fs))
    calls = list(by_slot.values())  # one call per slot: its segments run in order
    deadline = time.monotonic() + SLOT_WAIT
    pause = 0.01
    while calls:
        await redis.nodes_manager.initialize()
        async with redis.pipeline(transaction=False) as pipe:  # a connection per node
            for call in calls:
                declared = list(dict.fromkeys(keys.feed(f, part.bucket) for part in call
                                              for f in part.followers))  # fmt: skip
                argv = [v for part in call for v in part.argv()]
                pipe.execute_command("EVALSHA", script.sha, len(declared), *declared,
                                     *context, *argv)  # fmt: skip
            replies = await pipe.execute(raise_on_error=False)
        again = []
        for call, counts in zip(calls, replies, strict=True):
            if _refused(counts) and time.monotonic() < deadline:
                again.append(call)
            else:
                _record(result, call, counts)
        calls = again
        if calls:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)
