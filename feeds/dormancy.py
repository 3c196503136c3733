"""Inactive users: fan-out skips followers who have not read for ``FEEDAMP_INACTIVE_AFTER``
seconds, and their next read rebuilds their feeds before answering (Mastodon's rule for
home feeds: only users active in the last two weeks get pushes, and a returning user's
feed is regenerated).

**The mark.** ``last_read:{user}`` (:meth:`Keys.last_read`), on the user's own slot, holds
the wall time (ms) of the user's last read, ``-<ms>`` once fan-out has skipped the user
since then (stale), or ``~<ms>`` while a read rebuilds the user's feeds; absent means
never read. A read of Following or For You calls ``lua/mark_read.lua`` on that slot (one
script call, :class:`~feedamp.feeds.read_marks.ReadMarks`): it writes only when the
stored time is older than :func:`interval_ms` (at most an hour), and the reader
remembers its own marks for that long, so a user reading all day costs one round trip
and one write an hour per reader process. Every write is
idempotent (a later read rewrites the same kind of value).

**The filter.** Fan-out reads the follower list on the source's slot and activity lives
on each follower's slot, so the filter runs inside the delivery step
(``lua/deliver.lua``), per follower: one ``GET last_read:{follower}`` against the call's
``cutoff`` (now less ``FEEDAMP_INACTIVE_AFTER``, taken by the worker once per batch). A
follower kept costs that one ``GET`` on top of its delivery (about 7 commands today); a
follower skipped costs that ``GET`` instead of its delivery, plus one ``SET`` (the stale
mark) on the first skip of an inactivity spell. An index on the source's side (the
inactive followers of each account) would save the ``GET`` but cost a write per followee
of a user each time that user goes inactive or comes back, on other slots than the
reader's; the filter keeps every step slot-local and reads cost one key.

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
replays with the filter off (every follower delivered) and compares the four feed key
kinds only for users whose mark is a plain read time in the live namespace (active, feeds
whole), leaving out the feeds of users that are inactive, stale or mid-rebuild, and the
marks themselves (:func:`left_out`). ``replay --rebuild`` builds the new namespace with the
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
from .keys import Keys, glob_escape

__all__ = [
    "REBUILD_GRACE_MS",
    "copy_marks",
    "cutoff",
    "interval_ms",
    "left_out",
    "whole_feeds",
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


async def whole_feeds(redis: AnyRedis, prefix: str) -> set[str]:
    """Users of namespace ``prefix`` whose mark is a plain read time: every delivery since
    reached them, so their feeds are a function of the log (and of their rebuild)."""
    names = [k async for k in scan_keys(redis, f"{glob_escape(prefix)}last_read:*", 1000)]
    if not names:
        return set()
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.get(name)
        values = await pipe.execute()
    return {Keys.tag(name).decode() for name, value in zip(names, values, strict=True)
            if value is not None and text(value)[:1].isdigit()}  # fmt: skip


def left_out(names: Iterable[str], whole: set[str]) -> set[str]:
    """Of key ``names`` (relative to a namespace), those ``verify`` does not compare: the
    marks, and the feed keys of users not in ``whole``."""
    skipped = set()
    for name in names:
        kind, _, rest = name.partition(":")
        user = rest[1 : rest.index("}")] if rest.startswith("{") else None
        if kind == "last_read" or (kind in FEED_KINDS and user not in whole):
            skipped.add(name)
    return skipped


async def copy_marks(redis: AnyRedis, old: str, new: str) -> int:
    """Copy every mark of namespace ``old`` into ``new`` (``replay --rebuild``, before the
    switch); return how many."""
    names = [k async for k in scan_keys(redis, f"{glob_escape(old)}last_read:*", 1000)]
    if not names:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.get(name)
        values = await pipe.execute()
    cut = len(old.encode())
    async with redis.pipeline(transaction=False) as pipe:
        for name, value in zip(names, values, strict=True):
            if value is not None:
                pipe.set(new + name[cut:].decode(), value)
        await pipe.execute()
    return len(names)
