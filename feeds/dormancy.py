"""Inactive users: fan-out skips followers who have not read for ``FEEDAMP_INACTIVE_AFTER``
seconds, and their next read rebuilds their feeds before answering (Mastodon's rule for
home feeds: only users active in the last two weeks get pushes, and a returning user's
feed is regenerated).

**The mark.** The ``:read`` field of ``pair:{user}`` (:data:`~feedamp.feeds.keys.READ_FIELD`;
no user id holds a colon), on the user's own slot, holds the wall time (ms) of the
user's last read, ``-<ms>`` once fan-out has skipped the user since then (stale), or
``~<ms>`` while a read rebuilds the user's feeds; absent means never read. A read of
Following or For You calls ``lua/mark_read.lua`` on that slot (one script call,
:class:`~feedamp.feeds.read_marks.ReadMarks`): it writes only when the stored time is
older than :func:`interval_ms` (at most an hour), and the reader remembers its own marks
for that long, so a user reading all day costs one round trip and one write an hour per
reader process. Every write is idempotent (a later read rewrites the same kind of
value).

**The filter.** Fan-out reads the follower list on the source's slot and activity lives
on each follower's slot, so the filter runs inside the delivery step
(``lua/deliver.lua``), per follower, against the call's ``cutoff`` (now less
``FEEDAMP_INACTIVE_AFTER``, taken by the worker once per batch). The mark sits in the
hash every push reads already (the follower's pair state with the author or reposter),
so a post or repost reads it in the same ``HMGET``: a follower kept costs no extra
command; a follower skipped costs that one read instead of its delivery (about 7
commands today), plus one ``HSET`` (the stale mark) on the first skip of an inactivity
spell; a withdrawal or unpush, which reads no pair state, reads the mark alone (one
``HGET``). A separate key per user costs one more ``GET`` per delivery (measured 14 to
17 % more Redis CPU for an all-active population, in runs not alternated). An index
on the source's side (the inactive followers of each account) would cost a write per
followee of a user each time that user goes inactive or comes back, on other slots than
the reader's; the filter keeps every step slot-local and a read touches one key.

**The rebuild.** A read that finds the mark absent, stale, or a rebuild older than
:data:`REBUILD_GRACE_MS` (one that died) sets ``~<now>`` first, then rebuilds both feeds
(:meth:`~feedamp.feeds.store.FeedStore.rebuild_feed`: delete, then backfill from the
followees' recent lists and the pair state, slot-local steps), then sets ``<now>``, and
only then reads the page. ``~`` counts as active for fan-out, so nothing is lost to a
concurrent fan-out: a delivery that skipped the user ran before the ``~`` mark, and its
event was in the source's recent list before that (the store writes recent lists before
it delivers), so before the rebuild read them; a delivery after the mark writes to the
user's keys itself, and a delivery before the rebuild's delete had its event in the
recent lists before the rebuild read them. Deliveries are idempotent merges, so one
landing on top of the rebuilt feed changes nothing the rebuild put there. The rebuilt
feed is the one fan-out would have written (same entries, order, attribution, labels,
For You signals, hidden content; the reader hides deletions and suspensions at read
time) as far as the recent lists reach: an author who posted more than
``FEEDAMP_RECENT_PER_AUTHOR`` times during the spell is rebuilt from the newest of them,
as ``feedamp rebuild-feed`` and follow backfill are. A second read of the same user while
the rebuild runs reads what is there (it does not wait).

**Verify.** Reads are not in the log and the mark is wall time, so ``feedamp verify``
replays with the filter off (every follower delivered), compares pair hashes without
their marks (:func:`without_mark`, :func:`marks_only`), and compares the four feed key
kinds only for users whose mark is a plain read time in the live namespace (active, feeds
whole, :func:`whole_feeds`), leaving out the feeds of users that are inactive, stale or
mid-rebuild (:func:`left_out`). ``replay --rebuild`` builds the new namespace with the
filter off too and copies the marks into it before the switch (:func:`copy_marks`).

``FEEDAMP_INACTIVE_AFTER=0`` (the default) turns all of it off: the cutoff is 0, every
follower is delivered to and reads write nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from .batch import text
from .cluster import scan_keys
from .connection import AnyRedis
from .keys import READ_FIELD, Keys, glob_escape

__all__ = [
    "REBUILD_GRACE_MS",
    "copy_marks",
    "cutoff",
    "interval_ms",
    "left_out",
    "marks_only",
    "whole_feeds",
    "without_mark",
]

#: A rebuild started this long ago (ms) and not finished is taken as dead and redone.
REBUILD_GRACE_MS = 60_000
#: The longest a read time goes without being rewritten (ms).
MAX_INTERVAL_MS = 3_600_000
#: Key kinds of a user's feeds (left out of ``verify`` for users without whole feeds).
FEED_KINDS = ("feed", "via", "foryou", "fyvia")


def now_ms() -> int:
    """Wall time in ms (the clock of the marks and of the cutoff)."""
    return int(time.time() * 1000)


def cutoff(inactive_after: int, now: int | None = None) -> int:
    """The ``cutoff`` of a delivery call: a follower whose last read is before it is
    skipped; 0 (deliver to all) when ``inactive_after`` (seconds) is 0."""
    if inactive_after <= 0:
        return 0
    return (now_ms() if now is None else now) - inactive_after * 1000


def interval_ms(inactive_after: int) -> int:
    """How long a read time stands before a read rewrites it: a 24th of the inactivity
    window, at most an hour (so a reading user is never near the cutoff)."""
    return max(1, min(MAX_INTERVAL_MS, inactive_after * 1000 // 24))


async def _marks(redis: AnyRedis, prefix: str) -> list[tuple[bytes, bytes]]:
    """Every read mark of namespace ``prefix``: (pair key, mark)."""
    names = [k async for k in scan_keys(redis, f"{glob_escape(prefix)}pair:*", 1000)]
    found: list[tuple[bytes, bytes]] = []
    for start in range(0, len(names), 1000):
        chunk = names[start : start + 1000]
        async with redis.pipeline(transaction=False) as pipe:
            for name in chunk:
                pipe.hget(name, READ_FIELD)
            values = await pipe.execute()
        found += [(n, v) for n, v in zip(chunk, values, strict=True) if v is not None]
    return found


async def whole_feeds(redis: AnyRedis, prefix: str) -> set[str]:
    """Users of namespace ``prefix`` whose mark is a plain read time: every delivery since
    reached them, so their feeds are a function of the log (and of their rebuild)."""
    return {Keys.tag(name).decode() for name, value in await _marks(redis, prefix)
            if text(value)[:1].isdigit()}  # fmt: skip


def left_out(names: Iterable[str], whole: set[str]) -> set[str]:
    """Of key ``names`` (relative to a namespace), the feed keys ``verify`` does not
    compare: those of users not in ``whole``."""
    skipped = set()
    for name in names:
        kind, _, rest = name.partition(":")
        user = rest[1 : rest.index("}")] if rest.startswith("{") else None
        if kind in FEED_KINDS and user not in whole:
            skipped.add(name)
    return skipped


def without_mark(fields: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """A pair hash's fields but the read mark."""
    return {k: v for k, v in fields.items() if k != READ_FIELD.encode()}


async def marks_only(redis: AnyRedis, prefix: str, names: Iterable[str]) -> set[str]:
    """Of key ``names`` (relative to namespace ``prefix``), the pair hashes that hold a
    read mark and nothing else (a user who read but has no pair state)."""
    pairs = [n for n in names if n.startswith("pair:")]
    if not pairs:
        return set()
    async with redis.pipeline(transaction=False) as pipe:
        for name in pairs:
            pipe.hlen(prefix + name)
            pipe.hexists(prefix + name, READ_FIELD)
        found = await pipe.execute()
    return {name for name, n, mark in zip(pairs, found[::2], found[1::2], strict=True)
            if n == 1 and mark}  # fmt: skip


async def copy_marks(redis: AnyRedis, old: str, new: str) -> int:
    """Copy every read mark of namespace ``old`` into ``new`` (``replay --rebuild``,
    before the switch); return how many."""
    found = await _marks(redis, old)
    cut = len(old.encode())
    for start in range(0, len(found), 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for name, value in found[start : start + 1000]:
                pipe.hset(new + name[cut:].decode(), READ_FIELD, value)
            await pipe.execute()
    return len(found)
