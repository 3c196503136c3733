"""Fan-out on a Redis Cluster: delivery steps grouped by node (README, *Redis Cluster*).

A fan-out is an **origin step** on the post's (and author's) slots and **delivery steps**
on the followers' slots. The orchestrator reads the followers in chunks (``SSCAN`` of
``followers:{source}``, ``FEEDAMP_FANOUT_CHUNK`` at a time), groups each chunk by the node
that serves each follower's slot in the client's slot table, and runs one delivery call
per node, all nodes at once: a ``#!lua flags=allow-cross-slot-keys`` script that declares
the first follower's key (Redis refuses declared keys of several slots, flag or not) and
reaches the others as undeclared keys, which the flag allows on the node serving them.

Invariants:

- a delivery call touches only keys tagged by its followers, all served by its node when
  the slot table is right; when it is not (slots moving), the node refuses the call
  before it runs (``MOVED``, ``ASK``, ``TRYAGAIN`` for the declared key) or the script
  stops at the first key it does not serve ("non local key"), after some pushes;
- a refused group is re-grouped by slot after the slot table is refreshed, each slot
  group declaring all its keys and going through the client's own redirection handling
  (one slot is always served by one node), so a resharding delays a delivery and never
  loses one;
- every delivery is idempotent (``ZADD GT``, attribution merge), so running a group again
  after a partial failure doubles nothing;
- groups are made per call from the slot table of that moment and never stored.

Implemented for posts (:class:`ClusterPostFanout`); reposts, unreposts, deletions, follow
backfill and the clean-ups of block, unfollow and suspend follow the same shape.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from feedamp.config import Settings
from feedamp.models.events import Post
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterCrossSlotError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)

from .batch import context, text
from .cluster import ClusterScript, ClusterUnsupported
from .keys import Keys, bucket_of
from .scripts import Scripts

__all__ = ["REDIRECTS", "ClusterPostFanout", "Delivery", "Segment", "deliver"]

#: Answers of a node that does not serve the declared key of a group (right now).
REDIRECTS = (MovedError, AskError, TryAgainError, ClusterCrossSlotError)
#: What a script hears when it reaches an undeclared key another node serves.
NON_LOCAL = "non local key"


@dataclass(slots=True)
class Segment:
    """One post's delivery to some of its author's followers: the post's facts, its feed
    bucket and those followers."""

    post_id: str
    author_id: str
    ts: int
    bucket: int
    followers: list[str]

    def argv(self) -> list[str | int]:
        """The segment's part of a delivery call's ARGV."""
        return [self.post_id, self.author_id, self.ts, len(self.followers), *self.followers]


@dataclass(slots=True)
class Delivery:
    """Followers reached per post id, and how many followers had to be re-grouped by slot
    after their node refused a call (slots moving)."""

    delivered: dict[str, int] = field(default_factory=dict)
    regrouped: int = 0

    def add(self, segment: Segment, count: object) -> None:
        self.delivered[segment.post_id] = self.delivered.get(segment.post_id, 0) + int(count)  # type: ignore[call-overload]


async def deliver(
    redis: RedisCluster,
    script: ClusterScript,
    context: Sequence[str | int],
    segments: Sequence[Segment],
    keys: Keys,
    cap: int,
) -> Delivery:
    """Run the delivery ``script`` over ``segments``: their followers grouped by the node
    serving each follower's feed key, calls of at most ``cap`` followers, the calls of one
    node one after another and the nodes at once. A refused call is re-run by slot."""
    result = Delivery()
    if not script.loaded:
        await script.load()
    await redis.initialize()
    per_node: dict[str, tuple[ClusterNode, list[Segment]]] = {}
    for seg in segments:
        split: dict[str, list[str]] = defaultdict(list)
        for follower in seg.followers:
            node = redis.get_node_from_key(keys.feed(follower, seg.bucket))
            per_node.setdefault(node.name, (node, []))
            split[node.name].append(follower)
        for name, followers in split.items():
            part = Segment(seg.post_id, seg.author_id, seg.ts, seg.bucket, followers)
            per_node[name][1].append(part)

    async def run_node(node: ClusterNode, parts: list[Segment]) -> list[Segment]:
        refused: list[Segment] = []
        for call in _calls(parts, cap):
            first = call[0]
            key = keys.feed(first.followers[0], first.bucket)
            argv = [*context, *(v for seg in call for v in seg.argv())]
            try:
                counts = await _evalsha(node, script, [key], argv)
            except ResponseError as exc:
                if not _refused(exc):
                    raise
                refused += call
                continue
            for seg, count in zip(call, counts, strict=True):
                result.add(seg, count)
        return refused

    refused_lists = await asyncio.gather(*(run_node(n, p) for n, p in per_node.values()))
    refused = [seg for lst in refused_lists for seg in lst]
    if refused:
        result.regrouped = sum(len(seg.followers) for seg in refused)
        await _by_slot(redis, script, context, refused, keys, result)
    return result


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
            calls[-1].append(Segment(seg.post_id, seg.author_id, seg.ts, seg.bucket, take))
            room -= len(take)
    return [call for call in calls if call]


def _refused(error: object) -> bool:
    """True when a node did not serve every follower of a call (redirected before the
    call ran, or an undeclared key of another node reached while it ran)."""
    return isinstance(error, REDIRECTS) or (
        isinstance(error, ResponseError) and NON_LOCAL in str(error)
    )


async def _evalsha(
    node: ClusterNode, script: ClusterScript, keys: list[str], argv: list[str | int]
) -> list[Any]:
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
    script: ClusterScript,
    context: Sequence[str | int],
    segments: list[Segment],
    keys: Keys,
    result: Delivery,
) -> None:
    """After a refusal: refresh the slot table and run one call per segment and slot in
    one cluster pipeline, each declaring all its keys and routed by the client (which
    follows MOVED and ASK and retries TRYAGAIN)."""
    await redis.nodes_manager.initialize()
    parts: list[Segment] = []
    for seg in segments:
        slots: dict[int, list[str]] = defaultdict(list)
        for follower in seg.followers:
            slots[redis.keyslot(keys.feed(follower, seg.bucket))].append(follower)
        parts += [Segment(seg.post_id, seg.author_id, seg.ts, seg.bucket, fs)
                  for fs in slots.values()]  # fmt: skip
    async with redis.pipeline(transaction=False) as pipe:  # a connection per node
        for part in parts:
            declared = [keys.feed(f, part.bucket) for f in part.followers]
            pipe.execute_command("EVALSHA", script.sha, len(declared), *declared, *context,
                                 *part.argv())  # fmt: skip
        for part, (count,) in zip(parts, await pipe.execute(), strict=True):
            result.add(part, count)


class ClusterPostFanout:
    """Posts on a cluster, a batch at a time: the origin step (the post record on the
    post's slot, the author's recent list on the author's slot: one pipeline), the
    followers (``SSCAN`` of every author at once, chunk by chunk), then the delivery,
    grouped by node (:func:`deliver`)."""

    def __init__(self, redis: RedisCluster, settings: Settings, prefix: str | None = None) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(prefix or settings.key_prefix)
        self.context = context(settings, prefix)
        scripts = Scripts(redis)
        assert isinstance(scripts.deliver_post, ClusterScript)
        self.script = scripts.deliver_post
        #: Followers re-grouped by slot after a refusal, over this object's life.
        self.regrouped = 0

    async def apply(self, post: Post) -> int:
        """Record ``post`` and deliver it; the followers delivered to (see
        :meth:`apply_batch`)."""
        return (await self.apply_batch([post]))[0]

    async def apply_batch(self, posts: Sequence[Post]) -> list[int]:
        """Record ``posts`` and deliver them; the followers each reached (0 for a deleted
        post). Idempotent; :class:`ClusterUnsupported` before anything is written when
        orders wait for one of the posts (crediting them is not slot-local yet)."""
        k, r = self.keys, self.redis
        async with r.pipeline(transaction=False) as pipe:
            for post in posts:
                pipe.hexists(k.post(post.post_id), "del")
                pipe.scard(k.awaiting_post(post.post_id))
            found = await pipe.execute()
        if any(found[1::2]):
            raise ClusterUnsupported("crediting orders that wait for a post on Redis Cluster "
                                     "is not supported yet")  # fmt: skip
        live = [post for post, deleted in zip(posts, found[0::2], strict=True) if not deleted]
        async with r.pipeline(transaction=False) as pipe:
            for post in live:
                fields: dict[str, Any] = {"a": post.author_id, "ts": post.ts,
                                          "vis": post.visibility}  # fmt: skip
                if post.text:
                    fields["text"] = post.text
                if post.media_url:
                    fields["media"] = post.media_url
                pipe.hset(k.post(post.post_id), mapping=fields)
                recent = k.recent_posts(post.author_id)
                pipe.zadd(recent, {post.post_id: post.ts})
                pipe.zremrangebyrank(recent, 0, -(self.settings.recent_per_author + 1))
            await pipe.execute()
        delivered = dict.fromkeys((p.post_id for p in posts), 0)
        cursors = {post.post_id: 0 for post in live}
        while cursors:
            pending = [post for post in live if post.post_id in cursors]
            async with r.pipeline(transaction=False) as pipe:
                for post in pending:
                    pipe.sscan(k.followers(post.author_id), cursors[post.post_id],
                               count=self.settings.fanout_chunk)  # fmt: skip
                pages = await pipe.execute()
            segments = []
            for post, (cursor, chunk) in zip(pending, pages, strict=True):
                bucket = bucket_of(post.post_id, self.settings.feed_buckets)
                segments.append(Segment(post.post_id, post.author_id, post.ts, bucket,
                                        [text(f) for f in chunk]))  # fmt: skip
                if int(cursor) == 0:
                    del cursors[post.post_id]
                else:
                    cursors[post.post_id] = int(cursor)
            done = await deliver(r, self.script, self.context, segments, k,
                                 self.settings.fanout_chunk)  # fmt: skip
            self.regrouped += done.regrouped
            for post_id, n in done.delivered.items():
                delivered[post_id] += n
        return [delivered[p.post_id] for p in posts]
