"""Account moderation: suspend, reinstate, label, unlabel; and the door every other event
passes, which stops the content a suspended account publishes.

The door stops **content** only: posts and reposts of a suspended account, and reposts of
a suspended account's posts. Its graph events (follow, unfollow, block, mute and their
undos), purchases and product views pass whatever its suspension: they are facts about
the account that only it sees while suspended (its own feeds, its order center, its
viewed list; readers hide its content from everyone else; a purchase credits the
creators it names, as the shop's ``order_status`` events always passed: the sale
happened), and are right if it is reinstated, so their keys do not depend on when the
suspension arrived.

Suspension works by event time: a post or repost is refused when its actor's latest
suspension is at or before the event and not followed by a reinstatement at or before it
(the same rule as ``suspended_at`` in ``lua/lib_account.lua``). A suspension also takes the
account's posts and reposts out of every feed they reached; readers hide them at once
(see :class:`~feedamp.feeds.reader.FeedReader`), and the cleaning runs behind that,
chunk by chunk. Reinstating lets new content through; what was cleaned stays cleaned. A
suspension that arrives after some of the posts and reposts it judges were applied takes
back their records, and settles afresh the orders credited through them
(:mod:`.takeback`), so Redis ends as if it had come first.

Withdrawals (``delete_post``, ``unrepost``) are let through, so that what a suspended
user takes down stays down; ``order_status`` comes from the shop, not the user, and
gifts are judged by the gift store (sender or recipient suspended).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from feedamp.config import Settings
from feedamp.models.decisions import AUTHOR_SUSPENDED, SUSPENDED
from feedamp.models.events import (
    Account,
    Event,
    Post,
    Repost,
)

from .activity import Activity
from .batch import read_commands, run_scripts, text
from .connection import AnyRedis
from .dormancy import cutoff
from .fanout import Segment, deliver, followers_of
from .keys import Keys, bucket_of, suspended_shard
from .namespace import Namespace
from .scripts import argv
from .shop.order_steps import OrderSteps
from .takeback import remember, take_back
from .writer import Applied, Failure, Writer

__all__ = ["AccountStore", "actor_of", "suspended_at"]


def actor_of(event: Event) -> str | None:
    """The user whose suspension stops ``event`` at the door: the author of a post, the
    reposter of a repost; None for every other event (the door stops content only)."""
    match event:
        case Post():
            return event.author_id
        case Repost():
            return event.reposter_id
    return None


#: Later than any event: ``suspended_at(state, INF)`` is "suspended now".
INF = float("inf")


def suspended_at(state: Sequence[bytes | str | None], ts: float) -> bool:
    """True if an account whose ``(susp, rein)`` fields are ``state`` was suspended at
    event time ``ts``."""
    susp, rein = state
    if susp is None or ts < int(susp):
        return False
    return not (rein is not None and int(susp) <= int(rein) <= ts)


class AccountStore(Writer):
    """Applies ``account`` events and judges other events at the door."""

    def __init__(self, redis: AnyRedis, settings: Settings) -> None:
        super().__init__(redis, settings)
        #: Namespaces whose legacy suspended index was moved (once per process).
        self._moved: set[str] = set()
        self.activity = Activity(redis)
        #: The order steps a take-back settles orders with.
        self.orders = OrderSteps(redis, self.scripts)

    async def door(
        self, events: Sequence[Event], *, namespace: Namespace | None = None
    ) -> dict[int, str]:
        """Which of ``events`` a suspension stops, by index, with the reason
        (``suspended``, or ``author_suspended`` for a repost of a suspended account's
        post). One round trip, two when someone in the batch was ever suspended."""
        keys = self.at(namespace).keys
        asked: dict[int, list[str]] = {}
        for i, ev in enumerate(events):
            actor = actor_of(ev)
            if actor is not None:
                asked[i] = [actor, ev.post_author_id] if isinstance(ev, Repost) else [actor]
        users = sorted({u for ids in asked.values() for u in ids})
        if not users:
            return {}
        # One command per index shard (one pipeline) finds who was ever suspended; only
        # they need their state read.
        await self._move_legacy_index(keys)
        suspects = await self._ever_suspended(keys, users)
        if not suspects:
            return {}
        found = await read_commands(self.redis, [("HMGET", keys.account(user), "susp", "rein")
                                                 for user in suspects])  # fmt: skip
        states = dict(zip(suspects, found, strict=True))
        refused: dict[int, str] = {}
        for i, ids in asked.items():
            ts = events[i].ts
            if suspended_at(states.get(ids[0], (None, None)), ts):
                refused[i] = SUSPENDED
            elif len(ids) > 1 and suspended_at(states.get(ids[1], (None, None)), ts):
                refused[i] = AUTHOR_SUSPENDED
        return refused

    async def _ever_suspended(self, keys: Keys, users: Sequence[str]) -> list[str]:
        """Those of ``users`` in the suspended index: one ``SMISMEMBER`` per shard asked,
        in one pipeline (one round trip per node on a cluster)."""
        by_shard: dict[int, list[str]] = {}
        for user in users:
            by_shard.setdefault(suspended_shard(user), []).append(user)
        found = await read_commands(self.redis, [
            ("SMISMEMBER", keys.suspended_index(shard), *members)
            for shard, members in by_shard.items()
        ])  # fmt: skip
        return sorted(user for members, flags in zip(by_shard.values(), found, strict=True)
                      for user, yes in zip(members, flags, strict=True) if yes)  # fmt: skip

    async def _move_legacy_index(self, keys: Keys) -> None:
        """Move the one-slot index of earlier versions into the shards, once per namespace
        and process (idempotent: members are added before the old key is dropped)."""
        if keys.prefix in self._moved:
            return
        legacy = keys.legacy_suspended_index()
        members = [text(m) for m in await self.redis.smembers(legacy)]
        if members:
            await self._index(keys, members)
            await self.redis.delete(legacy)
        self._moved.add(keys.prefix)

    async def _index(self, keys: Keys, users: Sequence[str]) -> None:
        """Add ``users`` to their shards of the suspended index (one pipeline)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.sadd(keys.suspended_index(suspended_shard(user)), user)
            await pipe.execute()

    async def apply(
        self, events: Sequence[Event], *, namespace: Namespace | None = None
    ) -> Applied:
        """Apply the ``account`` events of ``events`` in order, then clean the feeds of
        each account that ends up suspended.

        Two slot-local steps: a suspended account joins its shard of the suspended index
        first, then every account's state is written on its own slot, so the door never
        sees a suspension the index misses."""
        ns = self.at(namespace)
        ctx = ns.context
        accounts = [(i, ev) for i, ev in enumerate(events) if isinstance(ev, Account)]
        suspending = sorted({ev.user_id for _, ev in accounts if ev.action == "suspend"})
        if suspending:
            await self._index(ns.keys, suspending)
        calls = [(self.scripts.account, argv("account", ctx, action=ev.action, user_id=ev.user_id,
                                             label=ev.label or "", ts=ev.ts))
                 for _, ev in accounts]  # fmt: skip
        applied = Applied()
        suspended: dict[str, bool] = {}
        for (i, ev), result in zip(accounts, await run_scripts(self.redis, calls), strict=True):
            if isinstance(result, Exception):
                applied.failures.append(Failure(i, result))
            else:
                suspended[ev.user_id] = text(result) == "1"
        for user, now in suspended.items():
            if now:
                await self.clean(user, namespace=ns)
        keys = ns.keys
        for user in suspending:
            if user in suspended:  # after the cleaning, which reads what this takes back
                await take_back(self.redis, keys, self.activity, user, self.orders, ctx)
        return applied

    async def recheck(
        self,
        events: Sequence[Event],
        refused: Collection[int],
        *,
        namespace: Namespace | None = None,
    ) -> list[str]:
        """After ``events`` were written (those at ``refused`` stopped at the door): the
        door again, and for each account whose suspension landed in between (another
        worker applied it), its feeds cleaned and its records taken back, as that
        suspension's own take-back may have run before these writes. Returns those
        accounts. One round trip, two when someone in the batch was ever suspended."""
        ns = self.at(namespace)
        now = await self.door(events, namespace=ns)
        users: set[str] = set()
        for i, reason in now.items():
            ev = events[i]
            if i in refused:
                continue
            if isinstance(ev, Repost) and reason == AUTHOR_SUSPENDED:
                users.add(ev.post_author_id)
            elif (actor := actor_of(ev)) is not None:
                users.add(actor)
        keys = ns.keys
        for user in sorted(users):
            if suspended_at(await self.redis.hmget(keys.account(user), "susp", "rein"), INF):
                await self.clean(user, namespace=ns)  # as applying the suspension does
            await take_back(self.redis, keys, self.activity, user, self.orders, ns.context)
        return sorted(users)

    async def remember(
        self, events: Sequence[Event], *, namespace: Namespace | None = None
    ) -> None:
        """Index the posts and reposts among ``events`` by their actor, refused or not, so
        that a suspension arriving after them can take back what the door would have
        refused (:mod:`.takeback`). Before the events are written."""
        ns = self.at(namespace)
        keys = ns.keys
        await remember(self.redis, keys, events, 2 * self.settings.recent_per_author)

    async def clean(self, user_id: str, *, namespace: Namespace | None = None) -> None:
        """Take ``user_id``'s recent posts and reposts out of every feed they reached:
        each post from the feeds of the followers of its author and of every reposter,
        each repost's attribution from the followers' feeds. Chunked like a fan-out;
        idempotent."""
        ns = self.at(namespace)
        keys, ctx = ns.keys, ns.context
        chunk, buckets = self.settings.fanout_chunk, self.settings.feed_buckets
        after = cutoff(self.settings.inactive_after)  # inactive followers are rebuilt later
        posts = [text(p) for p in await self.redis.zrange(keys.recent_posts(user_id), 0, -1)]
        if posts:
            async with self.redis.pipeline(transaction=False) as pipe:
                for post in posts:
                    pipe.zrange(keys.reposters(post), 0, -1)
                reposters = await pipe.execute()
            flat = [(post, source) for post, rs in zip(posts, reposters, strict=True)
                    for source in [user_id, *(text(r) for r in rs)]]  # fmt: skip
            found = _or_raise(await followers_of(self.redis, keys, [s for _, s in flat], chunk))
            segments = [Segment("unpush", post, "", "", bucket_of(post, buckets), followers)
                        for (post, _), followers in zip(flat, found, strict=True)]  # fmt: skip
            done = await deliver(
                self.redis, self.scripts.deliver, [*ctx, after], segments, keys, chunk
            )
            if done.errors:
                raise next(iter(done.errors.values()))
        reposted = [text(p) for p in await self.redis.zrange(keys.recent_reposts(user_id), 0, -1)]
        if reposted:
            # each repost's attribution withdrawn from the followers' feeds (the repost
            # itself stays on record), given its post's facts
            async with self.redis.pipeline(transaction=False) as pipe:
                for post in reposted:
                    pipe.hmget(keys.post(post), "a", "ts", "del")
                records = await pipe.execute()
            (followers,) = _or_raise(await followers_of(self.redis, keys, [user_id], chunk))
            segments = []
            for post, (author, ts, deleted) in zip(reposted, records, strict=True):
                segments.append(Segment("withdraw", post, text(author) if author else "",
                                        text(ts) if ts else "", bucket_of(post, buckets),
                                        followers, reposter_id=user_id,
                                        flags="d" if deleted else ""))  # fmt: skip
            done = await deliver(
                self.redis, self.scripts.deliver, [*ctx, after], segments, keys, chunk
            )
            if done.errors:
                raise next(iter(done.errors.values()))


def _or_raise(found: list[list[str] | Exception]) -> list[list[str]]:
    """Followers lists, or the first error Redis answered instead of one."""
    for item in found:
        if isinstance(item, Exception):
            raise item
    return found  # type: ignore[return-value]
