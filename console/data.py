"""What the console shows, read from Kafka and Redis; nothing here writes.

- partitions: the worker group's lag per input partition (end minus committed offsets,
  as ``feedamp status`` reads them, without joining the group) and, for the posts and
  reposts partitions, the event-time progress the workers recorded in Redis
  (``progress:{order}``) and how far it is behind the clock;
- dead letters: the most recent records of the dead-letter topic (up to ``limit`` per
  partition) with their reasons, and how many the topic holds;
- decisions per minute by kind, the posts reposted most in the last window and each
  post's cascade, from the activity keys the worker writes (:mod:`feedamp.feeds.activity`);
- the feeds each repost reached: the reposter's followers whose Following feed holds the
  post attributed to the reposter (its ``via`` field), counted in Redis by a read-only
  script, :data:`REACH_CHUNK` followers a call, at most :data:`REACH_BUDGET` followers
  per page (a count cut short is shown as "at least"); on a Redis Cluster, whose
  followers' keys live on every master, each step is an ``SSCAN`` and a pipeline of
  ``HGET`` of the followers' ``via`` fields, counted here by the same rule (:func:`holds`);
- a user's Following and For You feeds, through :class:`~feedamp.feeds.FeedReader`;
- why a post is or is not in a user's feeds, through :func:`feedamp.feeds.explain.explain`
  (the engine of ``feedamp explain``, with the worker's feed sizes).

Every read is in the active key namespace, looked up once per page.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from feedamp.config import Settings
from feedamp.feeds import FeedReader, Keys
from feedamp.feeds.activity import WINDOW_MS, ActivityKeys, parse_cascade
from feedamp.feeds.connection import AnyRedis, is_cluster
from feedamp.feeds.entries import parse_via
from feedamp.feeds.explain import Explanation, explain
from feedamp.feeds.keys import bucket_of
from feedamp.feeds.namespace import Namespaces
from feedamp.feeds.reader import FeedItem
from feedamp.feeds.watermark import progress_field
from feedamp.kafka.config import kafka_client_kwargs
from feedamp.kafka.lag import PartitionLag, kafka_status
from feedamp.kafka.letters import Letter
from feedamp.kafka.offsets import end_offsets, partitions
from feedamp.models.decisions import ACCEPTED, DELIVERED, OUTCOMES

__all__ = ["Cascade", "ConsoleData", "Node", "Overview", "PartitionRow", "TopPost", "UserFeeds"]

#: Decision kinds shown per minute (reposts' outcomes, then gifts').
KINDS = (*OUTCOMES, ACCEPTED)
MINUTES = 15
MINUTE_MS = 60_000
TOP_CANDIDATES = 50
TOP_SHOWN = 10
#: Followers visited per call of the reach script, and per cascade page at most.
REACH_CHUNK = 2000
REACH_BUDGET = 200_000

#: Of one SSCAN step of a reposter's followers, how many hold the post attributed to the
#: reposter in their Following feed. Read-only. ARGV: followers key, via key head
#: ("<prefix>via:{"), bucket, post, reposter, cursor, count. Returns {cursor, held, seen}.
_REACH = """
local reply = redis.call('SSCAN', ARGV[1], ARGV[6], 'COUNT', ARGV[7])
local held = 0
local plain, labelled = ',' .. ARGV[5] .. '@', ',^' .. ARGV[5] .. '@'
for _, follower in ipairs(reply[2]) do
  local value = redis.call('HGET', ARGV[2] .. follower .. '}:' .. ARGV[3], ARGV[4])
  if value then
    value = ',' .. value
    if string.find(value, plain, 1, true) or string.find(value, labelled, 1, true) then
      held = held + 1
    end
  end
end
return {reply[1], held, #reply[2]}
"""


def holds(value: bytes | str | None, reposter: str) -> bool:
    """True when a ``via`` value (:mod:`feedamp.feeds.entries`) lists ``reposter``, with
    its label mark or without (the rule of :data:`_REACH`)."""
    return value is not None and any(r == reposter for r, *_ in parse_via(_s(value)))


@dataclass(frozen=True)
class PartitionRow:
    """One input partition: lag, and event-time progress for posts and reposts."""

    lag: PartitionLag
    progress_ms: int | None = None
    behind_ms: int | None = None


@dataclass(frozen=True)
class TopPost:
    """A post being amplified: its reposts in the window, all its reposts (whatever their
    decision) and the feeds they reached."""

    post_id: str
    author: str
    recent: int
    reposts: int
    #: Followers of its reposters (the audience its reposts could reach), now.
    audience: int


@dataclass
class Overview:
    """The console's front page."""

    group: str
    namespace: str
    partitions: list[PartitionRow] = field(default_factory=list)
    watermark_behind_ms: int | None = None
    parked: int = 0
    dead_letters: int = 0
    letters: list[Letter] = field(default_factory=list)
    #: Start (ms) of each minute shown, oldest first, and the decisions of each kind in it.
    minutes: list[int] = field(default_factory=list)
    per_minute: dict[str, list[int]] = field(default_factory=dict)
    top: list[TopPost] = field(default_factory=list)


@dataclass
class Node:
    """One repost in a cascade."""

    repost_id: str
    via: str | None
    reposter: str
    ts: int
    #: Following feeds holding the post attributed to this reposter; ``exact`` False when
    #: counting stopped at the page's budget (then at least that many).
    reached: int = 0
    exact: bool = True
    depth: int = 0
    decision: str = DELIVERED
    reasons: tuple[str, ...] = ()
    children: list[Node] = field(default_factory=list)


@dataclass
class Cascade:
    """A post and the tree of its reposts (roots: reposts of the post itself)."""

    post_id: str
    author: str | None
    text: str
    deleted: bool
    roots: list[Node] = field(default_factory=list)
    count: int = 0

    @property
    def reached(self) -> int:
        """Feeds reached by every repost together."""
        return sum(n.reached for n in self.nodes())

    @property
    def exact(self) -> bool:
        """False when some count stopped at the page's budget."""
        return all(n.exact for n in self.nodes())

    def nodes(self) -> list[Node]:
        """Every node, depth first, children by time."""
        out: list[Node] = []
        stack = list(reversed(self.roots))
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(reversed(node.children))
        return out

    def by_depth(self) -> dict[int, tuple[int, int]]:
        """depth -> (reposts, feeds reached)."""
        out: dict[int, tuple[int, int]] = {}
        for n in self.nodes():
            count, reached = out.get(n.depth, (0, 0))
            out[n.depth] = (count + 1, reached + n.reached)
        return dict(sorted(out.items()))


@dataclass(frozen=True)
class UserFeeds:
    """A user's Following and For You feeds (first page of each)."""

    user_id: str
    following: list[FeedItem]
    for_you: list[FeedItem]


def _s(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


class ConsoleData:
    """Reads for the console pages, with the worker's settings and Redis client."""

    def __init__(self, settings: Settings, redis: AnyRedis) -> None:
        self.settings = settings
        self.redis = redis
        self.namespaces = Namespaces(redis, settings.key_prefix)
        self.reader = FeedReader(redis, key_prefix=settings.key_prefix,
                                 feed_buckets=settings.feed_buckets)  # fmt: skip
        self._reach = redis.register_script(_REACH)

    async def overview(self, letters: int = 20) -> Overview:
        """Lag and watermark per partition, dead letters, decisions per minute, top posts."""
        prefix = await self.namespaces.active()
        view = Overview(group=self.settings.app_id, namespace=prefix)
        (lag, view.dead_letters), view.letters = await asyncio.gather(
            kafka_status(self.settings), self.recent_letters(letters)
        )
        keys = Keys(prefix)
        progress = {_s(k): int(v) for k, v in (await self.redis.hgetall(keys.progress())).items()}
        now = int(time.time() * 1000)
        for p in lag:
            at = progress.get(progress_field(p.topic, p.partition))
            view.partitions.append(PartitionRow(p, at, None if at is None else max(0, now - at)))
        watched = self.settings.topics.watched
        expected = [progress_field(p.topic, p.partition) for p in lag if p.topic in watched]
        if expected and all(f in progress for f in expected):
            view.watermark_behind_ms = max(0, now - min(progress[f] for f in expected))
        view.parked = await self.redis.zcard(keys.parked())
        await self._decisions(view, ActivityKeys(prefix))
        view.top = await self.top_posts(prefix)
        return view

    async def recent_letters(self, per_partition: int) -> list[Letter]:
        """The last ``per_partition`` dead letters of each partition, newest first."""
        s = self.settings
        consumer = AIOKafkaConsumer(**kafka_client_kwargs(s), group_id=None,
                                    enable_auto_commit=False,
                                    fetch_max_wait_ms=s.fetch_max_wait_ms)  # fmt: skip
        await consumer.start()
        found: list[Letter] = []
        try:
            tps = await partitions(consumer, [s.topics.dead_letter], missing_ok=True)
            if not tps:
                return []
            consumer.assign(tps)
            ends = await end_offsets(consumer, tps)
            begins = await consumer.beginning_offsets(tps)
            active = {}
            for tp in tps:
                start = max(begins[tp], ends[tp] - per_partition)
                if start < ends[tp]:
                    consumer.seek(tp, start)
                    active[tp] = ends[tp]
            idle = set(tps) - set(active)
            if idle:
                consumer.pause(*idle)
            deadline = time.monotonic() + 10
            while active and time.monotonic() < deadline:
                fetched = await consumer.getmany(*active, timeout_ms=200)
                for tp, records in fetched.items():
                    found += [Letter.from_record(r) for r in records if r.offset < ends[tp]]
                for tp in list(active):
                    if await consumer.position(tp) >= active[tp]:
                        del active[tp]
                        consumer.pause(tp)
        finally:
            await consumer.stop()
        found.sort(key=lambda x: (x.offset, x.partition), reverse=True)
        return found

    async def _decisions(self, view: Overview, keys: ActivityKeys) -> None:
        """Decisions per minute by kind over the last :data:`MINUTES` minutes of event
        time before the newest decision."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for kind in KINDS:
                pipe.zrange(keys.decision_log(kind), -1, -1, withscores=True)
            tops = await pipe.execute()
        newest = max((int(t[0][1]) for t in tops if t), default=None)
        if newest is None:
            return
        last = newest - newest % MINUTE_MS
        view.minutes = [last - MINUTE_MS * i for i in reversed(range(MINUTES))]
        async with self.redis.pipeline(transaction=False) as pipe:
            for kind in KINDS:
                for start in view.minutes:
                    pipe.zcount(keys.decision_log(kind), start, f"({start + MINUTE_MS}")
            counts = iter(await pipe.execute())
        view.per_minute = {kind: [next(counts) for _ in view.minutes] for kind in KINDS}

    async def top_posts(self, prefix: str) -> list[TopPost]:
        """The posts with the most reposts (whatever their decision) in the window before
        the newest repost, from the most recently reposted :data:`TOP_CANDIDATES`."""
        akeys, keys = ActivityKeys(prefix), Keys(prefix)
        candidates: list[Any] = await self.redis.zrange(akeys.amplified(), 0, TOP_CANDIDATES - 1,
                                             desc=True, withscores=True)  # fmt: skip
        if not candidates:
            return []
        since = int(candidates[0][1]) - WINDOW_MS
        async with self.redis.pipeline(transaction=False) as pipe:
            for post, _ in candidates:
                pipe.hvals(akeys.cascade(_s(post)))
                pipe.hget(keys.post(_s(post)), "a")
            replies = await pipe.execute()
        reposts = [[parse_cascade(v) for v in replies[2 * n]] for n in range(len(candidates))]
        reposters = sorted({r[1] for post in reposts for r in post})
        async with self.redis.pipeline(transaction=False) as pipe:
            for user in reposters:
                pipe.scard(keys.followers(user))
            followers = dict(zip(reposters, await pipe.execute(), strict=True))
        top = []
        for n, (post, _) in enumerate(candidates):
            recent = sum(1 for r in reposts[n] if r[2] >= since)
            audience = sum(followers[u] for u in {r[1] for r in reposts[n]})
            top.append(TopPost(_s(post), _s(replies[2 * n + 1]), recent, len(reposts[n]),
                               audience))  # fmt: skip
        top.sort(key=lambda t: (-t.recent, -t.reposts, t.post_id))
        return top[:TOP_SHOWN]

    async def cascade(self, post_id: str) -> Cascade:
        """``post_id`` and the tree of its reposts, each with its decision and reach."""
        prefix = await self.namespaces.active()
        keys, akeys = Keys(prefix), ActivityKeys(prefix)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.post(post_id))
            pipe.hgetall(akeys.cascade(post_id))
            pipe.hgetall(keys.decided(post_id))
            post, entries, decided = await pipe.execute()
        post = {_s(k): _s(v) for k, v in post.items()}
        view = Cascade(post_id, post.get("a"), post.get("text", ""), "del" in post)
        nodes: dict[str, Node] = {}
        for repost_id, value in entries.items():
            via, reposter, ts = parse_cascade(value)
            nodes[_s(repost_id)] = Node(_s(repost_id), via, reposter, ts)
        for repost_id, value in decided.items():
            node = nodes.get(_s(repost_id))
            if node is not None:
                decision, depth, reasons = _s(value).split("|")
                node.decision, node.depth = decision, int(depth)
                node.reasons = tuple(r for r in reasons.split(",") if r)
        for node in sorted(nodes.values(), key=lambda n: (n.ts, n.repost_id)):
            parent = nodes.get(node.via) if node.via else None
            (parent.children if parent else view.roots).append(node)
        self._fill_depths(view)
        view.count = len(nodes)
        await self._count_reach(view, keys)
        return view

    async def _count_reach(self, view: Cascade, keys: Keys) -> None:
        """Fill each node's ``reached`` from the followers' feeds (see the module doc):
        every node one SSCAN step at a time, in rounds, until done or out of budget."""
        bucket = bucket_of(view.post_id, self.settings.feed_buckets)
        head = keys.via("\0", 0).split("\0", 1)[0]  # "<prefix>via:{"
        cursors = {id(n): "0" for n in view.nodes()}
        nodes = {id(n): n for n in view.nodes()}
        budget = REACH_BUDGET
        step = self._reach_nodes if is_cluster(self.redis) else self._reach_script
        while cursors and budget > 0:
            round_ = list(cursors)
            argvs: list[list[Any]] = [
                [keys.followers(nodes[key].reposter), head, bucket, view.post_id,
                 nodes[key].reposter, cursors[key], REACH_CHUNK]
                for key in round_
            ]  # fmt: skip
            replies = await step(argvs)
            for key, (cursor, held, seen) in zip(round_, replies, strict=True):
                nodes[key].reached += int(held)
                budget -= int(seen)
                if _s(cursor) == "0":
                    del cursors[key]
                else:
                    cursors[key] = _s(cursor)
        for key in cursors:
            nodes[key].exact = False

    async def _reach_script(self, argvs: list[list[Any]]) -> list[Any]:
        """One step of :data:`_REACH` per ARGV, one pipeline (a standalone Redis)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for argv in argvs:
                await self._reach(args=argv, client=pipe)  # type: ignore[arg-type]  # redis-py types omit pipelines as script clients
            return list(await pipe.execute())

    async def _reach_nodes(self, argvs: list[list[Any]]) -> list[Any]:
        """The same steps on a Redis Cluster: the ``SSCAN`` steps in one pipeline, then
        every follower's ``via`` field in another (each routed to its own master)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for followers, _, _, _, _, cursor, count in argvs:
                pipe.sscan(followers, cursor, count=count)
            pages = await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for (_, head, bucket, post, _, _, _), (_, members) in zip(argvs, pages, strict=True):
                for follower in members:
                    pipe.hget(f"{head}{_s(follower)}}}:{bucket}", post)
            values = iter(await pipe.execute())
        out = []
        for argv, (cursor, members) in zip(argvs, pages, strict=True):
            held = sum(holds(next(values), argv[4]) for _ in members)
            out.append((str(int(cursor)), held, len(members)))  # the client parsed it
        return out

    @staticmethod
    def _fill_depths(view: Cascade) -> None:
        """Depths for nodes without a decision on record (caps off): from the tree."""
        stack = [(n, 1) for n in view.roots]
        while stack:
            node, depth = stack.pop()
            if not node.depth:
                node.depth = depth
            stack.extend((c, node.depth + 1) for c in node.children)

    async def user(self, user_id: str, limit: int = 50) -> UserFeeds:
        """The first ``limit`` entries of the user's Following and For You feeds."""
        following = await self.reader.following(user_id, limit=limit)
        for_you = await self.reader.for_you(user_id, limit=limit)
        return UserFeeds(user_id, list(following.items), list(for_you.items))

    async def explain(self, user_id: str, post_id: str) -> Explanation:
        """Why ``post_id`` is or is not in ``user_id``'s feeds, as ``feedamp explain``
        finds it (the worker's key prefix and feed sizes)."""
        s = self.settings
        return await explain(self.redis, user_id, post_id, key_prefix=s.key_prefix,
                             feed_buckets=s.feed_buckets, feed_cap=s.feed_cap,
                             for_you_cap=s.for_you_cap)  # fmt: skip
