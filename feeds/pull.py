"""Pulled authors (celebrity accounts): write less at scale, merge at read time.

An author with more followers than ``FEEDAMP_FANOUT_PULL_ABOVE`` (``Settings.
fanout_pull_above``; 0, the default, turns pulling off) is **pulled**: their posts and
reposts are recorded as usual (the post's record, reposters and comments on the post's
slot, the ``recent`` / ``recent_reposts`` lists on the author's slot) but not delivered
to their followers' feeds; readers merge the author's recent items into each page
(the hybrid Twitter uses). Withdrawals (unrepost, delete, a suspension's clean-up) still
fan out, so what was pushed before the author was pulled goes as it always did.

Invariants:

- **Sticky.** The mark (a member of ``pulled:{pulled}``) is set by the fan-out of a post
  or repost whose source has more followers than the threshold, and never removed: a
  follower count that crosses the threshold back and forth (follows arriving out of
  order) cannot take items away from readers, whatever was pushed before or after.
- **A page is a function of the reasons, not of how they got there.** A reader merges
  *all* of a pulled followee's recent items with the pushed entries, deduplicated: an
  entry's reasons are the union of its pushed reasons (its score, its ``via``
  items) and the pulled followees' items (a post's own time; each repost's time, label
  and For You flag), one item per reposter at its latest time. A Following entry sits
  at the latest reason; a For You entry is ranked by the social proof of the union
  (``lib.lua``, ``for_you_score``, the same arithmetic); attribution is latest reposter
  first, ties by id, and the shown label and comment are the first reposter's. So an
  item pushed before the mark and merged after it shows once, as if pushed; live and
  replay show the same pages even when they pulled an author from different points.
- **Every read contract holds for merged items**, decided at read time with the rules
  of the delivery: a repost is never shown to the post's author; a pulled item of time
  ``t`` is hidden when the reader's pair state (``pair:{user}``, by event time: blocks,
  blocked-by, mutes) hides the pulled followee or, for a repost, the post's author at
  ``t``; what the caps kept out of feeds never reaches ``recent_reposts`` and a
  Following-only repost is not merged into For You (its ``recent_reposts`` flags);
  deleted posts, suspended authors and reposters, comments and account labels are
  applied by the reader's hydration exactly as for pushed entries.
- **Cursors.** Merging only raises an entry's score (a union of reasons), and every
  pulled item is known before a page is cut, so a page is the exact top of the merged
  order after the cursor: bucket reads grow until every bucket read to its end, or the
  page is filled above the lowest entry read from a bucket that may hold more. A
  repost's post author is read only for the posts a page is about to show
  (:meth:`Pulled.resolve`); until then the repost counts, which can only rank its entry
  higher, so a page whose entries are all resolved is exact.
- **Bounded Following reads.** A Following page need not read the lists whole: for a
  page after a cursor of score ``c`` (first page: no bound) it reads from each pulled
  list the newest items of time at most ``c``, a share of ``take`` (twice an even split
  over the lists, at least 4, at most ``take``; it grows with ``take``), and looks the
  posts it read (from the lists or the buckets) up in *all* the pulled lists
  (``ZMSCORE``, whatever the times), highest first, while one could still rank on the
  page: a looked-up post's reasons are complete and its entry is the one a whole read
  gives (an entry raised above ``c`` by an item newer than the cursor drops off the
  page); one not looked up ranks at most at its highest item or row read, or below the
  bound. An unread post ranks no higher than its latest reason, which lies below the
  lowest item read from a list or bucket that may hold more, or above ``c``; so a list
  that returned its share bounds the page as a full bucket does (by its lowest item's
  time: its unread items tie on it at most). For You reads whole: its social proof can
  rank an entry above every one of its reasons, so the reasons' bounds do not bound it.
- **Slots.** A page reads the user's slot (buckets, attribution hashes, ``following``,
  ``pair``), ``pulled:{pulled}``, the pulled followees' recent lists (their own slots)
  and post records (theirs): plain commands, pipelined, one round trip per node on a
  cluster; no script crosses slots.

What is not guaranteed: only a pulled author's ``FEEDAMP_RECENT_PER_AUTHOR`` (100)
latest posts and reposts are merged, so an older item shows only if it was pushed before
the author was pulled (follow backfill has the same reach); merged items are not subject
to the per-bucket cap, so a full feed's oldest page can hold a few more items than a
pushed one would. The keys of the namespace do depend on when an author was pulled
(pushed entries exist for items before the mark, and the mark depends on the follower
count when the author posted, so on the order follows arrived in): ``feedamp verify``
does not compare the pulled set, compares every other key as before, and for a user
following a pulled author (:func:`pulled_followers`) compares the Following and For You
feeds by their merged pages instead of their keys (``ops/verify.py``,
``settle_pulled``). Not merged yet: the Order Center's Recommended section (it reads
the For You buckets directly) and ``feedamp explain``, which look at pushed entries
only.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .batch import text
from .connection import AnyRedis
from .entries import LABEL_MARK, Entry, parse_via
from .keys import Keys, bucket_of

__all__ = [
    "Pulled",
    "ReadRows",
    "following_pulled",
    "load_pulled",
    "merged_rows",
    "pulled_among",
    "pulled_followees",
    "pulled_followers",
    "pulled_sources",
]

#: Reads a feed's rows: (max score, entries per bucket) -> rows, as ``page.lua`` returns.
ReadRows = Callable[[str, int], Awaitable[list[Entry]]]


# --- write side --------------------------------------------------------------------------


async def pulled_sources(
    redis: AnyRedis, keys: Keys, sources: Iterable[str], threshold: int
) -> set[str]:
    """Which of ``sources`` (authors and reposters of a fan-out run) are pulled: marked
    already, or with more than ``threshold`` followers now, who are marked (sticky). An
    empty set when ``threshold`` is 0 (pulling off). One round trip, two when marking."""
    wanted = sorted(set(sources))
    if threshold <= 0 or not wanted:
        return set()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.smismember(keys.pulled(), wanted)
        for source in wanted:
            pipe.scard(keys.followers(source))
        marked, *counts = await pipe.execute()
    known = {s for s, m in zip(wanted, marked, strict=True) if m}
    crossed = {s for s, n in zip(wanted, counts, strict=True) if int(n) > threshold}
    if crossed - known:
        await redis.sadd(keys.pulled(), *sorted(crossed - known))
    return known | crossed


async def pulled_among(redis: AnyRedis, keys: Keys, users: Sequence[str]) -> set[str]:
    """The pulled ones of ``users`` (one command)."""
    if not users:
        return set()
    marked = await redis.smismember(keys.pulled(), list(users))
    return {u for u, m in zip(users, marked, strict=True) if m}


# --- read side ---------------------------------------------------------------------------


async def pulled_followees(redis: AnyRedis, keys: Keys, user: str) -> list[str]:
    """The pulled accounts ``user`` follows, sorted: the pulled set (usually small: the
    accounts above the threshold), then which of them ``user`` follows."""
    pulled = sorted(text(m) for m in await redis.smembers(keys.pulled()))
    if not pulled:
        return []
    found = await redis.smismember(keys.following(user), pulled)
    return [p for p, yes in zip(pulled, found, strict=True) if yes]


async def pulled_followers(redis: AnyRedis, keys: Keys, users: Iterable[str]) -> set[str]:
    """Of ``users``, those who follow a pulled account (their feeds are compared by
    merged pages, not keys: see the module docstring)."""
    pulled = sorted(text(m) for m in await redis.smembers(keys.pulled()))
    users = sorted(set(users))
    if not pulled or not users:
        return set()
    async with redis.pipeline(transaction=False) as pipe:
        for user in users:
            pipe.smismember(keys.following(user), pulled)
        found = await pipe.execute()
    return {u for u, row in zip(users, found, strict=True) if any(row)}


@dataclass(slots=True)
class _Post:
    """The pulled reasons of one post for one reader: its own time (its author is a
    pulled followee) and each pulled reposter's latest item ``(time, label mark, For
    You)``."""

    own: int | None = None
    reposts: dict[str, tuple[int, str, bool]] = field(default_factory=dict)


def read_recent_score(score: str | float) -> tuple[int, bool, bool]:
    """A ``recent_reposts`` score back as (repost time, into For You, labelled); the
    rule of ``read_recent_score`` in ``lua/lib.lua``."""
    value = float(score)
    ts = math.floor(value)
    flags = math.floor((value - ts) * 4 + 0.5)
    return ts, flags % 2 == 1, flags >= 2


def _hidden_at(value: str, t: int) -> bool:
    """``hidden_at`` of ``lua/lib.lua``: a pair part ``on|off`` hides content of time
    ``t`` while on, or when ``t`` is before the latest off."""
    on, _, off = value.partition("|")
    if not on.isdigit():
        return False
    if not off.isdigit() or int(off) < int(on):
        return True
    return t < int(off)


def hides(value: str | None, t: int) -> bool:
    """``hides`` of ``lua/lib.lua``: the reader's ``pair`` field for another user hides
    that user's content of time ``t`` (the reader blocks or mutes them, or is blocked)."""
    if not value or ";" not in value:
        return False
    parts = [*value.split(";"), "", "", ""]
    return any(_hidden_at(part, t) for part in parts[1:4])


#: An attribution item: reposter -> (Following time, label mark, For You signal time or
#: None), as ``parse_via`` reads it (one list serves both feeds, ``lua/lib.lua``).
_Items = dict[str, tuple[int, str, int | None]]


def _parse(via: str) -> _Items:
    """Items of an attribution value: reposter -> (time, label mark, For You time)."""
    return {r: (t, LABEL_MARK if labelled else "", f) for r, labelled, t, f in parse_via(via)}


def _arrange(items: _Items) -> str:
    """``arrange`` of ``lua/lib.lua``: latest repost first, ties by id; each item
    ``[^]id@t`` (For You signal at t), ``[^]id@t:f`` (signal at f) or ``[^]id@t:`` (no
    signal)."""
    order = sorted(items.items(), key=lambda kv: (-kv[1][0], kv[0]))

    def item(r: str, t: int, mark: str, f: int | None) -> str:
        tail = "" if f == t else (":" if f is None else f":{f}")
        return f"{mark}{r}@{t}{tail}"

    return ",".join(item(r, t, mark, f) for r, (t, mark, f) in order)


def _raise(items: _Items, reposter: str, t: int, mark: str, for_you: bool) -> None:
    """Merge a pulled repost of time ``t`` into ``items`` as delivery would: the
    Following time raised to ``t`` (with its mark), and the For You signal when
    ``for_you``."""
    old = items.get(reposter)
    if old is None:
        items[reposter] = (t, mark, t if for_you else None)
        return
    ot, omark, of = old
    nt, nmark = (t, mark) if t > ot else (ot, omark)
    nf = of if not for_you else (t if of is None or t > of else of)
    items[reposter] = (nt, nmark, nf)


def for_you_score(times: Iterable[int], half_life: int) -> str:
    """``for_you_score`` of ``lua/lib.lua``: ``H * log2(sum 2^(t / H))``, summed in time
    order, written as Lua writes it (``%.17g``)."""
    ordered = sorted(times)
    top = ordered[-1]
    total = 0.0
    for t in ordered:
        total += 2 ** ((t - top) / half_life)
    return f"{top + half_life * math.log(total) / math.log(2):.17g}"


def _score_text(score: float) -> str:
    """A score as Redis writes it (``%.17g``)."""
    return f"{score:.17g}"


class Pulled:
    """The pulled followees' items for one reader and one feed kind, merged with the
    pushed entries: ``entries`` by post id. A repost's post author (for the rules that
    need it: never the author's own post, hidden with the author) is read lazily, only
    for the posts a page is about to show (:meth:`resolve`): until then the repost
    counts, which can only rank the entry higher, so a page whose posts are all
    resolved is exact."""

    def __init__(
        self,
        redis: AnyRedis,
        keys: Keys,
        user: str,
        ranked: bool,
        half_life: int,
        followees: Sequence[str] = (),
        buckets: int = 1,
        bounded: bool = False,
    ) -> None:
        self.redis, self.keys, self.user = redis, keys, user
        self.ranked, self.half_life = ranked, half_life
        self.followees, self.buckets = list(followees), buckets
        #: Following only: the recent lists are read by score from the cursor down, a
        #: limit at a time (:meth:`read_lists`), and every post a page may show is
        #: looked up in all of them (:meth:`check`), instead of reading them whole.
        self.bounded = bounded
        #: Posts whose every pulled reason and pushed entry is known (bounded reads).
        self.checked: set[str] = set()
        self.pairs_read = False
        self.pairs: dict[str, str | None] = {}
        self.reasons: dict[str, _Post] = {}
        self.pushed: dict[str, tuple[float | None, str]] = {}
        #: Reposts whose post's author is not read yet: post -> reposter -> item.
        self.pending: dict[str, dict[str, tuple[int, str, bool]]] = {}
        self.entries: dict[bytes, Entry] = {}

    def unresolved(self, posts: Iterable[bytes]) -> list[str]:
        """Those of ``posts`` with reposts whose author is not read yet."""
        return [p.decode() for p in posts if p.decode() in self.pending]

    async def resolve(self, posts: Sequence[str]) -> None:
        """Read the authors of ``posts`` (and the reader's pair state with them), drop
        the reposts the rules exclude and re-merge those posts' entries."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for post in posts:
                pipe.hget(self.keys.post(post), "a")
            found = await pipe.execute()
        authors = {p: text(a) if a is not None else "" for p, a in zip(posts, found, strict=True)}
        others = sorted({a for a in authors.values() if a and a not in self.pairs})
        if others:
            values = await self.redis.hmget(self.keys.pair(self.user), others)
            self.pairs.update({a: text(v) if v is not None else None
                               for a, v in zip(others, values, strict=True)})  # fmt: skip
        for post in posts:
            author, why = authors[post], self.reasons[post]
            for reposter, (t, _, _) in self.pending.pop(post).items():
                if author == self.user or (author and hides(self.pairs.get(author), t)):
                    del why.reposts[reposter]
            self._merge(post)

    async def read_lists(
        self, max_score: str, limit: int
    ) -> tuple[list[tuple[str, int]], list[tuple[float, bytes]]]:
        """Bounded reads (Following): the newest ``limit`` items of each pulled
        followee's ``recent`` and ``recent_reposts`` lists whose time is at or below
        ``max_score`` (``ZRANGE ... BYSCORE REV LIMIT``; a repost's time is its score's
        integer part), and the reader's pair states with the followees the first time:
        one round trip (one per node on a cluster). Returns the items not hidden from
        the reader, (post, time), and, for
        each list that returned ``limit`` items (it may hold more), the bound its unread
        items rank below: ``(t, b"\\xff")`` for the time ``t`` of its lowest item read, as
        an unread item's time is at most ``t`` and an entry ranks no higher than its
        latest reason."""
        top = "+inf" if max_score == "+inf" else f"({math.floor(float(max_score)) + 1}"
        keys = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for f in self.followees:
                for key in (keys.recent_posts(f), keys.recent_reposts(f)):
                    pipe.zrevrangebyscore(key, top, "-inf", start=0, num=limit,
                                          withscores=True, score_cast_func=text)  # fmt: skip
            if not self.pairs_read:
                pipe.hmget(keys.pair(self.user), self.followees)
            found = await pipe.execute()
        if not self.pairs_read:
            self.pairs_read = True
            states = zip(self.followees, found.pop(), strict=True)
            self.pairs.update({f: text(v) if v is not None else None for f, v in states})
        named: list[tuple[str, int]] = []
        bounds: list[tuple[float, bytes]] = []
        for n, items in enumerate(found):
            state = self.pairs[self.followees[n // 2]]
            for post, score in items:
                t = math.floor(float(score))
                if not hides(state, t):
                    named.append((text(post), t))
            if items and len(items) >= limit:
                bounds.append((float(math.floor(float(items[-1][1]))), b"\xff"))
        return named, bounds

    async def check(self, posts: Iterable[str]) -> None:
        """Bounded reads (Following): every pulled reason of ``posts`` (``ZMSCORE`` in
        each pulled followee's two lists, whatever their times) and their pushed entries,
        in one round trip (one per node on a cluster); the posts with pulled reasons are
        merged into ``entries`` exactly as :func:`load_pulled` merges them."""
        new = sorted({p for p in posts if p not in self.checked})
        if not new:
            return
        keys = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for f in self.followees:
                pipe.zmscore(keys.recent_posts(f), new)
                pipe.zmscore(keys.recent_reposts(f), new)
            by_bucket = self._read_pushed(pipe, new)
            replies = iter(await pipe.execute())
        pairs, reasons = self.pairs, self.reasons
        touched: set[str] = set()
        for f in self.followees:
            own, reposts = next(replies), next(replies)
            for post, score in zip(new, own, strict=True):
                if score is not None and not hides(pairs[f], int(score)):
                    reasons.setdefault(post, _Post()).own = int(score)
                    touched.add(post)
            for post, score in zip(new, reposts, strict=True):
                if score is not None and self._add_repost(post, f, score):
                    touched.add(post)
        self._store_pushed(by_bucket, replies)
        self.checked.update(new)
        for post in sorted(touched):
            self._merge(post)

    def _add_repost(self, post: str, reposter: str, score: str) -> bool:
        """Add ``reposter``'s repost of ``post`` (its ``recent_reposts`` score) to the
        post's reasons, pending its author, unless hidden from the reader at its time or,
        For You, a Following-only repost; True if added."""
        t, for_you, labelled = read_recent_score(score)
        if not (for_you or not self.ranked) or hides(self.pairs[reposter], t):
            return False
        item = (t, LABEL_MARK if labelled else "", for_you)
        self.reasons.setdefault(post, _Post()).reposts[reposter] = item
        self.pending.setdefault(post, {})[reposter] = item
        return True

    def _read_pushed(self, pipe: Any, posts: Sequence[str]) -> dict[int, list[str]]:
        """Queue on ``pipe`` the reads of ``posts``' pushed entries (score and
        attribution, per bucket of this feed kind); returns the posts by bucket, in the
        order :meth:`_store_pushed` takes the replies."""
        by_bucket: dict[int, list[str]] = {}
        for post in posts:
            by_bucket.setdefault(bucket_of(post, self.buckets), []).append(post)
        zset = self.keys.for_you if self.ranked else self.keys.feed
        for b, group in by_bucket.items():
            pipe.zmscore(zset(self.user, b), group)
            pipe.hmget(self.keys.via(self.user, b), group)
        return by_bucket

    def _store_pushed(self, by_bucket: dict[int, list[str]], replies: Iterator[Any]) -> None:
        """Keep the pushed entries :meth:`_read_pushed` queued, from their replies."""
        for group in by_bucket.values():
            scores, values = next(replies), next(replies)
            for post, score, value in zip(group, scores, values, strict=True):
                self.pushed[post] = (score, text(value) if value else "")

    def _merge(self, post: str) -> None:
        """Re-merge ``post``'s entry from its reasons (its pushed entry, or none, when no
        pulled reason is left)."""
        why, key = self.reasons[post], post.encode()
        score, value = self.pushed[post]
        if why.own is None and not why.reposts:
            if score is None:
                self.entries.pop(key, None)
            else:
                self.entries[key] = Entry(
                    key, _score_text(score), value.encode() or None, self.ranked
                )
            return
        self.entries[key] = (
            _for_you_entry(key, why, score, value, self.half_life)
            if self.ranked
            else _following_entry(key, why, score, value)
        )


async def load_pulled(
    redis: AnyRedis,
    keys: Keys,
    user: str,
    followees: Sequence[str],
    buckets: int,
    half_life: int,
    ranked: bool = False,
) -> Pulled:
    """Every post ``followees`` (pulled, followed by ``user``) bring to ``user``'s
    Following feed (``ranked``: For You), merged with its pushed entry: two round trips
    (the recent lists and pair states; the pushed entries)."""
    pulled = Pulled(redis, keys, user, ranked, half_life, followees, buckets)
    pulled.pairs_read = True
    async with redis.pipeline(transaction=False) as pipe:
        for f in followees:
            if not ranked:
                pipe.zrange(keys.recent_posts(f), 0, -1, withscores=True, score_cast_func=text)
            pipe.zrange(keys.recent_reposts(f), 0, -1, withscores=True, score_cast_func=text)
        pipe.hmget(keys.pair(user), list(followees))
        found = await pipe.execute()
    pairs = pulled.pairs
    pairs.update({f: text(v) if v is not None else None
                  for f, v in zip(followees, found[-1], strict=True)})  # fmt: skip
    lists = iter(found[:-1])
    reasons = pulled.reasons
    for f in followees:
        for post, score in [] if ranked else next(lists):
            t = int(float(score))
            if not hides(pairs[f], t):
                reasons.setdefault(text(post), _Post()).own = t
        for post, score in next(lists):
            pulled._add_repost(text(post), f, score)
    if not reasons:
        return pulled
    async with redis.pipeline(transaction=False) as pipe:
        by_bucket = pulled._read_pushed(pipe, list(reasons))
        replies = iter(await pipe.execute())
    pulled._store_pushed(by_bucket, replies)
    for post in reasons:
        pulled._merge(post)
    return pulled


def following_pulled(
    redis: AnyRedis,
    keys: Keys,
    user: str,
    followees: Sequence[str],
    buckets: int,
    half_life: int,
) -> Pulled:
    """The pulled followees' items for ``user``'s Following pages, read bounded: nothing
    is read here; :func:`merged_rows` reads each page's share (:meth:`Pulled.read_lists`,
    :meth:`Pulled.check`). Not for For You: a For You entry's social proof can rank it
    above every one of its reasons, so an entry whose reasons are all unread could rank
    above a bound taken from the reasons; For You reads the lists whole
    (:func:`load_pulled`)."""
    return Pulled(redis, keys, user, False, half_life, followees, buckets, bounded=True)


def _following_entry(key: bytes, why: _Post, score: float | None, via: str) -> Entry:
    """The Following entry of a post: at the latest of its pushed and pulled reasons,
    attributed to the union of its reposters."""
    items = _parse(via)
    for reposter, (t, mark, for_you) in why.reposts.items():
        _raise(items, reposter, t, mark, for_you)
    latest = [t for t, _, _ in items.values()] + ([why.own] if why.own is not None else [])
    best = max(latest)
    text_ = _score_text(score) if score is not None and score >= best else str(best)
    value = _arrange(items)
    return Entry(key, text_, value.encode() if value else None)


def _for_you_entry(key: bytes, why: _Post, score: float | None, via: str, half_life: int) -> Entry:
    """The For You entry of a post: ranked by the social proof of the union of its pushed
    and pulled For You signals."""
    items = _parse(via)
    pushed = dict(items)
    for reposter, (t, mark, for_you) in why.reposts.items():
        if for_you:
            _raise(items, reposter, t, mark, True)
    signals = [f for _, _, f in items.values() if f is not None]
    if items == pushed and score is not None:
        text_ = _score_text(score)
    else:
        text_ = for_you_score(signals, half_life)
    return Entry(key, text_, _arrange(items).encode(), for_you=True)


async def merged_rows(
    read: ReadRows,
    pulled: Pulled,
    max_score: str,
    after: Entry | None,
    want: int,
    buckets: int,
    first: list[Entry] | None = None,
) -> list[Entry]:
    """The entries after ``after`` in merged order (score, then post id, descending):
    every pushed entry that no pulled item touches, read from the buckets, and the
    ``pulled`` entries. At least ``want`` of them, or all there are: the bucket reads
    grow until every bucket read to its end or ``want`` entries rank at or above the
    lowest entry read from a bucket that may hold more (nothing unread can rank there:
    merging only raises scores, and every merged entry is known); the first ``want``
    are resolved (:meth:`Pulled.resolve`) before they are returned. ``first``: the rows
    of ``read(max_score, want)`` when already read. Bounded (Following) reads go
    through :func:`_bounded_rows`."""
    if pulled.bounded:
        return await _bounded_rows(read, pulled, max_score, after, want, buckets, first)
    take = want
    rows = first
    while True:
        if rows is None:
            rows = await read(max_score, take)
        merged = pulled.entries
        counts: dict[int, int] = {}
        lowest: dict[int, tuple[float, bytes]] = {}
        for e in rows:
            b = bucket_of(e.post_id.decode(), buckets)
            counts[b] = counts.get(b, 0) + 1
            here = (e.score, e.post_id)
            if b not in lowest or here < lowest[b]:
                lowest[b] = here
        found = [e for e in rows if e.post_id not in merged
                 and (after is None or e.after(after))]  # fmt: skip
        found += [e for e in merged.values() if after is None or e.after(after)]
        found.sort(key=lambda e: (e.score, e.post_id), reverse=True)
        full = [lowest[b] for b, n in counts.items() if n >= take]
        page: list[Entry] | None = found
        if full:
            bound = max(full)
            page = [e for e in found if (e.score, e.post_id) >= bound]
            if len(page) < want:
                page = None
        if page is None:
            take *= 2
            rows = None
            continue
        todo = pulled.unresolved(e.post_id for e in page[:want])
        if not todo:
            return page
        await pulled.resolve(todo)


async def _bounded_rows(
    read: ReadRows,
    pulled: Pulled,
    max_score: str,
    after: Entry | None,
    want: int,
    buckets: int,
    first: list[Entry] | None,
) -> list[Entry]:
    """:func:`merged_rows` for bounded reads. Each round reads ``take`` rows a bucket
    and ``share`` items a pulled list (:meth:`Pulled.read_lists`); ``bound`` is the
    highest of the lowest rows and items read from buckets and lists that may hold more.
    A post read but not looked up yet ranks at most at its highest row or item read
    (``known``: the reasons it may have beyond those are unread, so below ``bound``, or
    newer than the cursor, so off the page), so posts are looked up
    (:meth:`Pulled.check`), highest first, only while one could still rank among the
    first ``want`` at or above ``bound``; a looked-up post's entry is exact."""
    take = want
    rows = first
    lists = 2 * max(len(pulled.followees), 1)
    while True:
        # a list's share of the page: twice an even split, at least 4, at most take
        share = min(take, max(4, -(-2 * take // lists)))
        if rows is None:
            rows, (named, bounds) = await asyncio.gather(
                read(max_score, take), pulled.read_lists(max_score, share)
            )
        else:
            named, bounds = await pulled.read_lists(max_score, share)
        assert rows is not None
        counts: dict[int, int] = {}
        lowest: dict[int, tuple[float, bytes]] = {}
        known: dict[str, tuple[float, bytes]] = {}
        for e in rows:
            post = e.post_id.decode()
            b = bucket_of(post, buckets)
            counts[b] = counts.get(b, 0) + 1
            here = (e.score, e.post_id)
            if b not in lowest or here < lowest[b]:
                lowest[b] = here
            known[post] = max(known.get(post, here), here)
        for post, t in named:
            here = (float(t), post.encode())
            known[post] = max(known.get(post, here), here)
        full = [lowest[b] for b, n in counts.items() if n >= take] + bounds
        bound = max(full) if full else None
        while True:
            merged, checked = pulled.entries, pulled.checked
            found = [e for e in rows if e.post_id not in merged
                     and e.post_id.decode() in checked]  # fmt: skip
            found += merged.values()
            found = [e for e in found if after is None or e.after(after)]
            found.sort(key=lambda e: (e.score, e.post_id), reverse=True)
            page = found
            if bound is not None:
                page = [e for e in found if (e.score, e.post_id) >= bound]
            ahead = sorted((here for post, here in known.items() if post not in checked
                            and (bound is None or here >= bound)), reverse=True)  # fmt: skip
            if len(page) >= want:
                last = (page[want - 1].score, page[want - 1].post_id)
                ahead = [here for here in ahead if here > last]
            if ahead:
                await pulled.check([here[1].decode() for here in ahead[:want]])
                continue
            if bound is not None and len(page) < want:
                break
            todo = pulled.unresolved(e.post_id for e in page[:want])
            if not todo:
                return page
            await pulled.resolve(todo)
        take *= 2
        rows = None
