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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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

__all__ = ["REDIRECTS", "ClusterPostFanout", "Delivery", "deliver"]

#: Answers of a node that does not serve the declared key of a group (right now).
REDIRECTS = (MovedError, AskError, TryAgainError, ClusterCrossSlotError)
#: What a script hears when it reaches an undeclared key another node serves.
NON_LOCAL = "non local key"


@dataclass(frozen=True, slots=True)
class Delivery:
    """Followers a delivery reached, and how many of them were re-grouped by slot after
    their node refused the group (slots moving)."""

    delivered: int = 0
    regrouped: int = 0


async def deliver(
    redis: RedisCluster,
    script: ClusterScript,
    head: Sequence[Any],
    followers: Sequence[str],
    key_of: Callable[[str], str],
) -> Delivery:
    """Run the delivery ``script`` over ``followers``: one call per node with ``head`` and
    that node's followers as ARGV and ``key_of(follower)`` for each as KEYS; returns the
    sum of the calls' results (followers delivered to) and how many followers had to be
    re-grouped by slot."""
    if not followers:
        return Delivery()
    if not script.loaded:
        await script.load()
    await redis.initialize()
    groups: dict[str, tuple[ClusterNode, list[str]]] = {}
    for follower in followers:
        node = redis.get_node_from_key(key_of(follower))
        groups.setdefault(node.name, (node, []))[1].append(follower)
    calls = [_on_node(node, script, head, group, key_of) for node, group in groups.values()]
    results = await asyncio.gather(*calls, return_exceptions=True)
    total, refused = 0, []
    for (_, group), result in zip(groups.values(), results, strict=True):
        if _refused(result):
            refused += group
        elif isinstance(result, BaseException):
            raise result
        else:
            total += int(result)
    if refused:
        total += await _by_slot(redis, script, head, refused, key_of)
    return Delivery(total, len(refused))


def _refused(result: object) -> bool:
    """True when a node did not serve every follower of a group (redirected before the
    call ran, or an undeclared key of another node reached while it ran)."""
    return isinstance(result, REDIRECTS) or (
        isinstance(result, ResponseError) and NON_LOCAL in str(result)
    )


async def _on_node(
    node: ClusterNode,
    script: ClusterScript,
    head: Sequence[Any],
    group: list[str],
    key_of: Callable[[str], str],
) -> Any:
    """One delivery call sent to ``node`` itself (no redirection followed). It declares
    the first follower's key only: Redis refuses declared keys of several slots even to
    a script flagged ``allow-cross-slot-keys``, which may only reach the others as
    undeclared keys of its own node."""
    keys = [key_of(group[0])]
    command = ("EVALSHA", script.sha, len(keys), *keys, *head, *group)
    try:
        return await node.execute_command(*command)
    except NoScriptError:
        await script.load()
        return await node.execute_command(*command)


async def _by_slot(
    redis: RedisCluster,
    script: ClusterScript,
    head: Sequence[Any],
    followers: list[str],
    key_of: Callable[[str], str],
) -> int:
    """After a refusal: refresh the slot table and run one call per slot in one cluster
    pipeline, each routed by the client (which follows MOVED and ASK and retries
    TRYAGAIN)."""
    await redis.nodes_manager.initialize()
    slots: dict[int, list[str]] = defaultdict(list)
    for follower in followers:
        slots[redis.keyslot(key_of(follower))].append(follower)

    async with redis.pipeline(transaction=False) as pipe:  # a connection per node
        for group in slots.values():
            keys = [key_of(f) for f in group]
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *head, *group)
        return sum(int(n) for n in await pipe.execute())


class ClusterPostFanout:
    """A post on a cluster: the origin step (the post record on the post's slot, the
    author's recent list on the author's slot), then the delivery to every follower of the
    author, chunk by chunk, grouped by node."""

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
        """Record ``post`` and deliver it; returns the followers delivered to (0 for a
        deleted post). Idempotent; :class:`ClusterUnsupported` when orders wait for the
        post (crediting them is not slot-local yet)."""
        k = self.keys
        record = k.post(post.post_id)
        if await self.redis.hexists(record, "del"):
            return 0
        if await self.redis.scard(k.awaiting_post(post.post_id)):
            raise ClusterUnsupported("crediting orders that wait for a post on Redis Cluster "
                                     "is not supported yet")  # fmt: skip
        fields: dict[str, Any] = {"a": post.author_id, "ts": post.ts, "vis": post.visibility}
        if post.text:
            fields["text"] = post.text
        if post.media_url:
            fields["media"] = post.media_url
        await self.redis.hset(record, mapping=fields)
        recent = k.recent_posts(post.author_id)
        await self.redis.zadd(recent, {post.post_id: post.ts})
        await self.redis.zremrangebyrank(recent, 0, -(self.settings.recent_per_author + 1))
        bucket = bucket_of(post.post_id, self.settings.feed_buckets)
        head = [*self.context, post.post_id, post.author_id, post.ts]
        delivered, cursor = 0, 0
        while True:
            cursor, chunk = await self.redis.sscan(k.followers(post.author_id), cursor,
                                                   count=self.settings.fanout_chunk)  # fmt: skip
            followers = [text(f) for f in chunk]
            done = await deliver(self.redis, self.script, head, followers,
                                 lambda f: k.feed(f, bucket))  # fmt: skip
            delivered += done.delivered
            self.regrouped += done.regrouped
            if int(cursor) == 0:
                return delivered
