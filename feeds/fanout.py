"""Fan-out as slot-local steps, the same code on a standalone Redis and a Redis Cluster
(README, *Redis Cluster*).

A fan-out is an **origin step** on the post's (and author's) slots, run by the store,
and **delivery steps** on the followers' slots, run here: the followers are read in chunks
(``SSCAN`` of ``followers:{source}``, ``FEEDAMP_FANOUT_CHUNK`` at a time), each chunk is
grouped by the node that serves each follower's slot (one group on a standalone Redis),
and each group gets ``lua/deliver.lua`` calls of at most ``cap`` deliveries (a follower
times an event), all nodes at once. A call is follower-major: the followers that receive
the same events are sent once with those events (:class:`Group`), and the script visits
each follower once for all of them (one read of its pair state, each bucket's keys and
size once), so a source posting several times in a batch, or sources sharing followers,
costs Redis less per delivery. Large fan-outs of many sources to overlapping followers
(a replayed log of large accounts) are grouped by follower a window of events at a time
(:func:`_iter_groups`), and a call sends each of its events' facts once, its groups
naming them by number (:func:`call_argv`). On a standalone Redis the calls go in round
trips of at most :data:`TRIP_DELIVERIES` deliveries on one connection, each made and
written while Redis runs the one before (:func:`~feedamp.feeds.batch.run_ahead`).
The script is flagged ``allow-cross-slot-keys``; it declares the first follower's key
(Redis refuses declared keys of several slots, flag or not) and reaches the others as
undeclared keys of its own node.

Invariants:

- a delivery call touches only keys tagged by its followers, all served by its node when
  the slot table is right; when it is not (slots moving), the node refuses the call
  before it runs (``MOVED``, ``ASK``, ``TRYAGAIN`` for the declared key) or the script
  stops at the first key it does not serve ("non local key"), after some deliveries;
- a refused group is re-grouped by slot after the slot table is refreshed, each slot
  group declaring all its feed keys and sent to the node serving its slot, again after a
  pause while that node refuses it (one slot is always served by one node), so a
  resharding delays a delivery and never loses one;
- a delivery call is never redirected to the node importing a moving slot: it declares
  feed buckets only, and reaches other keys of its followers' tags (their pair state,
  For You feeds and attributions, their followings for a withdrawal) that Redis does not
  check there, so a follower's keys not moved yet would read as absent (a delivery
  skipped as if the follower no longer followed) or be written on the wrong side of the
  move;
- every delivery is idempotent (``ZADD GT``, attribution merge, removal), so running a
  group again after a partial failure doubles nothing;
- a follower's segments keep their order: a group gives each of its followers its
  events in the order of the segments, and a follower's later events go in later groups
  of the call or later calls, which run after (one node runs its calls one after
  another: a standalone Redis's round trips share one connection); the calls of
  a node after a refused one are re-run with it, after it, and the re-run is one call per
  slot with all of that slot's segments; so a post pushed and then unpushed in one
  fan-out ends unpushed;
- groups are made per call from the slot table of that moment and never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict, deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterCrossSlotError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)

from .batch import NON_LOCAL, is_transient, run_ahead, text
from .connection import AnyRedis, is_cluster
from .keys import Keys

__all__ = [
    "EVENTS_PER_CALL",
    "REDIRECTS",
    "WINDOW_EVENTS",
    "Delivery",
    "Group",
    "Segment",
    "call_argv",
    "deliver",
    "followers_of",
]

_K = TypeVar("_K", bound=Hashable)

#: Answers of a node that does not serve the declared key of a group (right now).
REDIRECTS = (MovedError, AskError, TryAgainError, ClusterCrossSlotError)
#: Seconds a delivery waits for a slot that is moving before the batch is retried.
SLOT_WAIT = 10.0
#: Events one group of a call carries at most: a follower's pair state is read once per
#: group, so more events share that read; more also means fewer followers per call
#: (``cap`` deliveries) and more event facts sent per follower. 256 (was 64): a replayed
#: fan-out log costs Redis about a quarter fewer instructions a delivery
#: (``bench/instructions.py`` log shape, 35,238 -> 25,833), the live fan-out's shape 2%.
EVENTS_PER_CALL = 256
#: Deliveries sent in one round trip at most (in whole calls). Redis runs a round trip's
#: calls while it is still being written: a round trip of more work than Redis does in
#: the client's socket timeout fails to be written, and is sent again (a replay's batch of
#: thousands of large fan-outs did; at 100,000 deliveries/s this is under half a second).
TRIP_DELIVERIES = 40_000


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

    def facts(self) -> list[str | int]:
        """The event's facts in a delivery call's ARGV (``op`` to ``flags``)."""
        return [self.op, self.post_id, self.author_id, self.ts, self.reposter_id, self.flags]

    def part(self, followers: list[str]) -> Segment:
        """This segment for ``followers`` only."""
        return replace(self, followers=followers)


@dataclass(slots=True)
class Group:
    """Events delivered to the same followers in one call: each follower gets every one
    of ``events`` (segments, their own followers not sent), in order."""

    events: list[Segment]
    followers: list[str]

    def argv(self, numbers: dict[int, int]) -> list[str | int]:
        """The group's part of a delivery call's ARGV: its events by their number in the
        call's event table (``numbers``: ``id`` of a segment -> number), its followers."""
        out: list[str | int] = [len(self.events)]
        out += [numbers[id(seg)] for seg in self.events]
        out.append(len(self.followers))
        out += self.followers
        return out

    def parts(self) -> list[Segment]:
        """The group as segments, in order (each event for the group's followers)."""
        return [seg.part(self.followers) for seg in self.events]


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
    followers key is not a set (its event fails). A transient error is raised. A source
    named several times is read once, and its entries share one list."""
    distinct = list(dict.fromkeys(sources))
    if len(distinct) < len(sources):
        read = dict(zip(distinct, await followers_of(redis, keys, distinct, chunk), strict=True))
        return [read[source] for source in sources]
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
    ``cap`` deliveries in follower-major groups (:func:`_calls`), the calls of one node
    one after another and the nodes at once. A call refused by a cluster node is re-run
    by slot. A transient error is raised."""
    result = Delivery()
    segments = [seg for seg in segments if seg.followers]
    if not segments:
        return result
    if not is_cluster(redis):
        # EVALSHA, the script loaded once per client (deliver.lua reads no KEYS: the
        # declared key only routes a call on a cluster).
        # Each round trip is made while Redis runs the one before (run_ahead).
        made: deque[list[list[Group]]] = deque()

        def trips() -> Iterator[list[list[str | int]]]:
            for trip in _trips(_iter_calls(segments, cap), cap):
                made.append(trip)
                yield [[*context, *call_argv(call)] for call in trip]

        async with contextlib.aclosing(run_ahead(redis, script, trips())) as answers:
            async for replies in answers:
                for call, counts in zip(made.popleft(), replies, strict=True):
                    _record(result, _events(call), counts)
        return result
    assert isinstance(redis, RedisCluster)
    if not script.loaded:
        await script.load()
    await redis.initialize()
    nodes: dict[str, ClusterNode] = {}

    def node_name(follower: str) -> str:
        node = redis.get_node_from_key(keys.feed(follower, 0))
        assert node is not None  # every slot is served (cluster_state:ok)
        nodes[node.name] = node
        return str(node.name)

    per_node = [(nodes[name], parts) for name, parts in _split(segments, node_name).items()]

    async def run_node(node: ClusterNode, parts: list[Segment]) -> list[Segment]:
        refused: list[Segment] = []
        for call in _calls(parts, cap):
            if refused:  # keep the order: what follows a refused call runs after it
                refused += [seg for g in call for seg in g.parts()]
                continue
            first = call[0]
            key = keys.feed(first.followers[0], first.events[0].bucket)
            argv = [*context, *call_argv(call)]
            try:
                counts: object = await _evalsha(node, script, [key], argv)
            except ResponseError as exc:
                if _refused(exc):
                    refused += [seg for g in call for seg in g.parts()]
                    continue
                counts = exc
            _record(result, _events(call), counts)
        return refused

    refused_lists = await asyncio.gather(*(run_node(n, p) for n, p in per_node))
    refused = [seg for lst in refused_lists for seg in lst]
    if refused:
        result.regrouped = sum(len(seg.followers) for seg in refused)
        await _by_slot(redis, script, context, refused, keys, result)
    return result


def call_argv(call: Sequence[Group]) -> list[str | int]:
    """A delivery call's ARGV after the context and cutoff: the call's event table (each
    event once, however many groups carry it: its facts are sent and read once a call),
    then its groups (see ``lua/deliver.lua``)."""
    numbers: dict[int, int] = {}
    table: list[str | int] = []
    for group in call:
        for seg in group.events:
            if id(seg) not in numbers:
                numbers[id(seg)] = len(numbers) + 1
                table += seg.facts()
    out: list[str | int] = [len(numbers), *table]
    for group in call:
        out += group.argv(numbers)
    return out


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


def _events(call: list[Group]) -> list[Segment]:
    """A call's events in ARGV order: the order of its reply's counts."""
    return [seg for g in call for seg in g.events]


def _groups(parts: list[Segment]) -> list[Group]:
    """:func:`_iter_groups` as a list."""
    return list(_iter_groups(parts))


def _iter_groups(parts: list[Segment]) -> Iterator[Group]:
    """``parts`` (in order) as groups, a window at a time: every follower gets each of
    its parts' events once, in order, and a follower's pair state is read once per group
    (per :data:`EVENTS_PER_CALL` of its events), so the fewer groups a follower is in,
    the less Redis reads.

    Runs of parts with equal follower lists (one source's events, read once) are taken
    together first: a group each. When runs share followers, the followers in the same
    runs may form one group instead, with those runs' events in order. The runs are cut
    into windows of consecutive runs, each of about as many parts as brings the average
    follower :data:`WINDOW_EVENTS` events (the whole list when that is more), and each
    window is grouped by follower when that costs less by :func:`_work` than a group per
    run: a few sources of the same followers (one group), many large fan-outs to
    overlapping follower sets (a group per follower set in each window: each follower's
    reads shared by its window's events, and a window's events sent once a call, see
    :func:`call_argv`). A window's groups come before the next window's, so every
    follower's events keep their order."""
    blocks: list[tuple[list[Segment], list[str]]] = []
    for seg in parts:
        if blocks and (seg.followers is blocks[-1][1] or seg.followers == blocks[-1][1]):
            blocks[-1][0].append(seg)
        else:
            blocks.append(([seg], seg.followers))
    if len(blocks) == 1:
        yield Group(*blocks[0])
        return
    deliveries = sum(len(followers) * len(segs) for segs, followers in blocks)
    lists = {id(followers): followers for _, followers in blocks}  # a source's, read once
    reached = len(set().union(*lists.values()))
    width = max(1, WINDOW_EVENTS * len(parts) * reached // max(deliveries, 1))
    window: list[tuple[list[Segment], list[str]]] = []
    size = 0
    for block in blocks:
        window.append(block)
        size += len(block[0])
        if size >= width:
            yield from _window(window)
            window, size = [], 0
    if window:
        yield from _window(window)


def _window(blocks: list[tuple[list[Segment], list[str]]]) -> list[Group]:
    """A window of runs (see :func:`_groups`) as a group per run, or by follower."""
    runs = [Group(*block) for block in blocks]
    if len(runs) == 1:
        return runs
    member: dict[str, list[int]] = defaultdict(list)
    for n, (_, followers) in enumerate(blocks):
        for follower in followers:
            member[follower].append(n)
    by_blocks: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for follower, ns in member.items():
        by_blocks[tuple(ns)].append(follower)
    shared = [Group([seg for n in ns for seg in blocks[n][0]], followers)
              for ns, followers in by_blocks.items()]  # fmt: skip
    return runs if _work(runs) <= _work(shared) else shared


#: Events a window of runs brings the average follower (see :func:`_groups`): under
#: :data:`EVENTS_PER_CALL`, so that most followers' events of a window fit one visit.
WINDOW_EVENTS = 192
#: Redis work of a follower's visit in a delivery call (the read of its pair state, its
#: buckets' keys), in units of an event a group carries (its number in ARGV, the fields
#: it needs): what :func:`_work` weighs, measured on replayed fan-out logs.
READ_WORK = 4


def _work(groups: list[Group]) -> int:
    """The delivery calls' work for ``groups`` beyond the deliveries themselves (the same
    whatever the grouping): each follower's visits (one per group and per
    :data:`EVENTS_PER_CALL` events) and each event of each group."""
    return sum(READ_WORK * len(g.followers) * -(-len(g.events) // EVENTS_PER_CALL)
               + len(g.events) for g in groups)  # fmt: skip


def _calls(parts: list[Segment], cap: int) -> list[list[Group]]:
    """:func:`_iter_calls` as a list."""
    return list(_iter_calls(parts, cap))


def _iter_calls(parts: list[Segment], cap: int) -> Iterator[list[Group]]:
    """``parts`` as calls of at most ``cap`` deliveries (one follower and one event; at
    least one follower a call), each made when asked for: their groups
    (:func:`_iter_groups`), split into at most :data:`EVENTS_PER_CALL` events (in order)
    and as many followers as fit."""
    call: list[Group] = []
    room = cap
    for group in _iter_groups(parts):
        for start in range(0, len(group.events), EVENTS_PER_CALL):
            events = group.events[start : start + EVENTS_PER_CALL]
            followers = group.followers
            while followers:
                fit = room // len(events)
                if fit <= 0 and call:
                    yield call
                    call, room = [], cap
                    continue
                take, followers = followers[: max(fit, 1)], followers[max(fit, 1) :]
                call.append(Group(events, take))
                room -= len(events) * len(take)
    if call:
        yield call


def _trips(calls: Iterable[list[Group]], cap: int) -> Iterator[list[list[Group]]]:
    """``calls`` (in order) cut into round trips of at most :data:`TRIP_DELIVERIES`
    deliveries (at least one call each), each made when asked for."""
    per_trip = max(1, TRIP_DELIVERIES // max(cap, 1))
    trip: list[list[Group]] = []
    for call in calls:
        trip.append(call)
        if len(trip) == per_trip:
            yield trip
            trip = []
    if trip:
        yield trip


def _split(segments: Iterable[Segment], place: Callable[[str], _K]) -> dict[_K, list[Segment]]:
    """``segments`` split by where ``place`` puts each follower (its node or its slot),
    each place's parts in the segments' order. ``place`` is asked once per follower: a
    follower's keys all carry its hash tag, so one slot and one node serve every bucket
    of it."""
    where: dict[str, _K] = {}
    out: dict[_K, list[Segment]] = defaultdict(list)
    for seg in segments:
        split: dict[_K, list[str]] = defaultdict(list)
        for follower in seg.followers:
            at = where.get(follower)
            if at is None:
                at = where[follower] = place(follower)
            split[at].append(follower)
        for at, followers in split.items():
            out[at].append(seg.part(followers))
    return out


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
    their order) in one cluster pipeline, each declaring all its feed keys and sent to
    the node serving its slot, redirections not followed (see the module: ``ASK`` would
    run it where its followers' pair states may not have moved yet). A slot still moving
    (some of a follower's keys already on the new owner) is refused again: it is retried,
    after a pause, until the move ends; past ``SLOT_WAIT`` seconds the error is raised
    for the batch to be retried whole."""
    # one call per slot: its segments run in order
    calls = list(_split(segments, lambda f: redis.keyslot(keys.feed(f, 0))).values())
    deadline = time.monotonic() + SLOT_WAIT
    pause = 0.01
    while calls:
        await redis.nodes_manager.initialize()
        grouped = [_groups(call) for call in calls]
        async with redis.pipeline(transaction=False) as pipe:  # a connection per node
            for call, groups in zip(calls, grouped, strict=True):
                declared = list(dict.fromkeys(keys.feed(f, part.bucket) for part in call
                                              for f in part.followers))  # fmt: skip
                argv = call_argv(groups)
                pipe.execute_command("EVALSHA", script.sha, len(declared), *declared,
                                     *context, *argv)  # fmt: skip
            replies = await pipe.execute(raise_on_error=False, allow_redirections=False)
        again = []
        for call, groups, counts in zip(calls, grouped, replies, strict=True):
            if _refused(counts) and time.monotonic() < deadline:
                again.append(call)
            else:
                _record(result, _events(groups), counts)
        calls = again
        if calls:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)
