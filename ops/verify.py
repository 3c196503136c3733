"""``feedamp verify``: compare the live views with a fresh rebuild of the same log.

The input topics are replayed from the beginning up to the end offsets seen at start
into a scratch namespace (``fa.s<hex>:``, see :mod:`feedamp.feeds.namespace`), through
the worker's own pipeline. Then every key of the active namespace is compared with the
key of the same name (relative to the namespace prefix) in the scratch one, by type:
strings by value, hashes field by field, sets by member, sorted sets by member and
score, lists by position. Each difference is printed with its key, its kind and a short
sample; the scratch namespace is dropped at the end, whatever happened.

For a user who follows a pulled author (``FEEDAMP_FANOUT_PULL_ABOVE``, see
:mod:`feedamp.feeds.pull`) the feeds are compared by their pages instead of their keys
(which items were pushed depends on when the author was pulled; what a reader sees does
not), and the pulled set itself is not compared (:func:`settle_pulled`).

With ``FEEDAMP_INACTIVE_AFTER`` set, the replay delivers to every follower (reads are not
in the log) and the feeds of users whose live read mark is not a plain read time
(inactive, skipped by fan-out, or mid-rebuild) are left out, with the marks themselves
(:mod:`feedamp.feeds.dormancy`).

Live processing and replay must agree exactly, so any difference is a bug, tampering,
or a known limit (see the README on cap decisions across partitions). The comparison is
only meaningful once the workers have applied the log up to those end offsets: verify
waits (``--wait``) for the worker group to commit them, and says so when the log grew
while it ran (later records may explain differences).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from feedamp.config import Settings
from feedamp.feeds.cluster import scan_keys
from feedamp.feeds.connection import AnyRedis, connect
from feedamp.feeds.connection import close as close_client
from feedamp.feeds.dormancy import left_out, marks_only, whole_feeds, without_mark
from feedamp.feeds.keys import Keys
from feedamp.feeds.namespace import Namespace, Namespaces, pattern, scratch_prefix
from feedamp.feeds.pages import MAX_LIMIT
from feedamp.feeds.pull import pulled_followers
from feedamp.feeds.reader import FeedReader
from feedamp.feeds.watermark import Watermark
from feedamp.kafka.lag import kafka_status

from .audit import LogAudit
from .rebuild import wait_for_group
from .replay import ReplayStats, replay

__all__ = ["Difference", "Verification", "compare_namespaces", "format_verification", "verify"]

#: Keys compared per pipelined round trip.
CHUNK = 200
#: Items shown in a difference's sample.
SAMPLE = 3
#: Characters of a value shown in a sample.
VALUE_CHARS = 40

LIVE, FRESH = "live", "rebuild"
#: Key kinds written by gifts, and by repost decisions and their windows.
GIFT_KINDS = {"gift", "gift_inbox", "gifts_sent", "gift_sends", "gift_codes",
              "gift_codes_seeded", "gift_claims", "gift_code_of"}  # fmt: skip
WINDOW_KINDS = {"decided", "attempts", "forwarded_attempts", "brake"}
DECISION_KINDS = {"decided", "attempts", "forwarded_attempts", "brake", "feed", "via",
                  "foryou", "recent_reposts"}  # fmt: skip


@dataclass(frozen=True)
class Difference:
    """One key that differs: its name relative to the namespace, what differs, a sample."""

    key: str
    kind: str  # only_in_live | only_in_rebuild | type | value | page
    detail: str

    def __str__(self) -> str:
        return f"{self.kind:<16} {self.key}  {self.detail}"


@dataclass
class Verification:
    """What ``feedamp verify`` compared and found."""

    live: str
    scratch: str
    replay: ReplayStats
    keys: int = 0
    differences: list[Difference] = field(default_factory=list)
    #: The worker group had committed the replayed offsets before the comparison.
    caught_up: bool = True
    #: Records that arrived on the topics while verify ran.
    grew: int = 0
    #: Late events and reused ids seen in the log (see :mod:`feedamp.ops.audit`).
    audit: LogAudit | None = None
    #: The campaigns file this command read (empty: none).
    campaigns: str = ""

    def by_kind(self) -> dict[str, Counter[str]]:
        """Differences per key kind (``feed``, ``gift``...), each by difference kind."""
        kinds: dict[str, Counter[str]] = {}
        for d in self.differences:
            kinds.setdefault(d.key.split(":", 1)[0], Counter())[d.kind] += 1
        return dict(sorted(kinds.items()))

    def causes(self) -> list[str]:
        """Likely causes of the differences, from the key kinds and the log."""
        if not self.differences:
            return []
        kinds = set(self.by_kind())
        out = []
        if kinds & GIFT_KINDS:
            if not self.campaigns:
                out.append("gift keys differ and FEEDAMP_CAMPAIGNS is unset here: if the "
                           "workers have a campaigns file, every gift replayed here was "
                           "refused (unknown_offer); run again with the workers' "
                           "FEEDAMP_CAMPAIGNS")  # fmt: skip
            else:
                out.append(f"gift keys differ: is FEEDAMP_CAMPAIGNS={self.campaigns} the "
                           "workers' campaigns file (same offers, windows and codes)?")  # fmt: skip
        audit = self.audit
        if audit is not None and audit.late and kinds & (DECISION_KINDS | GIFT_KINDS):
            out.append(f"{audit.late:,} repost or gift event(s) reached the log later than the "
                       "allowed lateness (FEEDAMP_CAP_LATENESS_MS) behind their event time, "
                       f"e.g. {', '.join(audit.late_sample)}: the workers may have decided "
                       "them in another order than this replay")  # fmt: skip
        if audit is not None and audit.reused:
            out.append(f"{audit.reused:,} id(s) reused across events: "
                       f"{', '.join(audit.reused_sample)}; Redis keys by these ids, so the "
                       "later event wins, and live and replay can disagree on which")  # fmt: skip
        if kinds & WINDOW_KINDS and not out:
            out.append(
                "cap windows or decisions differ: partitions read in another "
                "order than the replay's can change the rolling windows (README)"
            )
        if not self.caught_up:
            out.append("the workers had not applied the whole log: try a longer --wait")
        if self.grew:
            out.append("the log grew while verifying: the live views hold newer records")
        return out


def _short(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    text = repr(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 3] + "..."


def _sample(items: Iterable[str]) -> str:
    items = list(items)
    more = f" (+{len(items) - SAMPLE} more)" if len(items) > SAMPLE else ""
    return ", ".join(items[:SAMPLE]) + more


def _mapping_diff(live: dict, fresh: dict) -> str | None:
    """Sample of the fields (or members) whose values differ between two mappings."""
    fields = sorted(k for k in live.keys() | fresh.keys() if live.get(k) != fresh.get(k))
    if not fields:
        return None
    missing = "-"
    return _sample(
        f"{_short(k)}: {LIVE}={_short(live[k]) if k in live else missing} "
        f"{FRESH}={_short(fresh[k]) if k in fresh else missing}"
        for k in fields
    )


def _value_diff(kind: str, live: Any, fresh: Any) -> str | None:
    """A short description of how two values of type ``kind`` differ, or None."""
    if kind == "string":
        return None if live == fresh else f"{LIVE}={_short(live)} {FRESH}={_short(fresh)}"
    if kind == "hash":
        return _mapping_diff(live, fresh)
    if kind == "zset":
        return _mapping_diff(dict(live), dict(fresh))
    if kind == "set":
        if live == fresh:
            return None
        parts = []
        if live - fresh:
            parts.append(f"only in {LIVE}: {_sample(map(_short, sorted(live - fresh)))}")
        if fresh - live:
            parts.append(f"only in {FRESH}: {_sample(map(_short, sorted(fresh - live)))}")
        return "; ".join(parts)
    if kind == "list":
        if live == fresh:
            return None
        at = next((i for i, (a, b) in enumerate(zip(live, fresh, strict=False)) if a != b),
                  min(len(live), len(fresh)))  # fmt: skip
        first = f"{LIVE}={_short(live[at]) if at < len(live) else '-'} "
        first += f"{FRESH}={_short(fresh[at]) if at < len(fresh) else '-'}"
        return f"lengths {len(live)}/{len(fresh)}, first difference at {at}: {first}"
    return None if live == fresh else "differs"


def _read(pipe: Any, kind: str, key: str) -> None:
    if kind == "string":
        pipe.get(key)
    elif kind == "hash":
        pipe.hgetall(key)
    elif kind == "set":
        pipe.smembers(key)
    elif kind == "zset":
        pipe.zrange(key, 0, -1, withscores=True)
    elif kind == "list":
        pipe.lrange(key, 0, -1)
    else:  # streams and modules' types: compared by their DUMP
        pipe.dump(key)


async def _names(redis: AnyRedis, prefix: str) -> set[str]:
    """Key names of a namespace, relative to its prefix, but the bookkeeping of the
    event-time order (see :meth:`Keys.bookkeeping`)."""
    cut, skip = len(prefix.encode()), Keys.bookkeeping()
    names = {k[cut:].decode() async for k in scan_keys(redis, pattern(prefix), 1000)}
    return names - skip


async def compare_namespaces(
    redis: AnyRedis, live: str, fresh: str, *, inactive: bool = False
) -> tuple[int, list[Difference]]:
    """Compare every key of the namespaces ``live`` and ``fresh`` by name relative to
    their prefixes; return the number of names seen and the differences, by name.
    ``inactive``: fan-out skips inactive users, whose feeds and marks are left out."""
    live_names, fresh_names = await _names(redis, live), await _names(redis, fresh)
    seen = live_names | fresh_names
    if inactive:
        seen -= left_out(seen, await whole_feeds(redis, live))
        seen -= await marks_only(redis, live, live_names - fresh_names)
    names = sorted(seen)
    differences = []
    for start in range(0, len(names), CHUNK):
        chunk = names[start : start + CHUNK]
        async with redis.pipeline(transaction=False) as pipe:
            for name in chunk:
                pipe.type(live + name)
                pipe.type(fresh + name)
            types = [t.decode() if isinstance(t, bytes) else t for t in await pipe.execute()]
        pairs = list(zip(types[::2], types[1::2], strict=True))
        async with redis.pipeline(transaction=False) as pipe:
            for name, (a, b) in zip(chunk, pairs, strict=True):
                if a == b != "none":
                    _read(pipe, a, live + name)
                    _read(pipe, b, fresh + name)
            values = iter(await pipe.execute())
        for name, (a, b) in zip(chunk, pairs, strict=True):
            if a == "none" and b == "none":
                continue  # expired or deleted between the scan and now
            if b == "none":
                differences.append(Difference(name, "only_in_live", f"{a}"))
            elif a == "none":
                differences.append(Difference(name, "only_in_rebuild", f"{b}"))
            elif a != b:
                differences.append(Difference(name, "type", f"{LIVE} {a}, {FRESH} {b}"))
            else:
                live_value, fresh_value = next(values), next(values)
                if inactive and name.startswith("pair:"):
                    live_value, fresh_value = without_mark(live_value), without_mark(fresh_value)
                detail = _value_diff(a, live_value, fresh_value)
                if detail is not None:
                    differences.append(Difference(name, "value", f"{a}: {detail}"))
    return len(names), differences


async def wait_released(
    parking: Watermark, namespace: Namespace, before_ms: int, timeout: float
) -> bool:
    """Wait until no event parked in ``namespace`` (reposts and gifts waiting for the
    watermark) has an event time before ``before_ms``: the group has committed such a
    record once it parked it, and decides it only at its release (a partition of a killed
    worker reports no progress until the group has handed it on). False if some are still
    parked after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (oldest := await parking.earliest(namespace)) is not None and oldest < before_ms:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.5)
    return True


async def verify(
    settings: Settings,
    *,
    wait: float = 30.0,
    progress: bool | Any = False,
    topics: Sequence[str] | None = None,
) -> Verification:
    """Replay the log into a scratch namespace, compare it with the active one, drop it.

    Waits up to ``wait`` seconds for the worker group to commit the replayed offsets and
    release what it parked of them (:func:`wait_released`) before comparing."""
    redis = connect(settings.redis_url, max_connections=settings.redis_max_connections)
    namespaces = Namespaces(redis, settings.key_prefix)
    scratch = scratch_prefix(settings.key_prefix)
    audit = LogAudit(settings)
    try:
        started, started_ms = time.monotonic(), int(time.time() * 1000)
        stats = await replay(settings.with_(inactive_after=0), topics=topics, prefix=scratch,
                             progress=progress, progress_name="verify", audit=audit)  # fmt: skip
        caught_up = await wait_for_group(settings, stats.ends, wait)
        live = await namespaces.active()
        if caught_up:
            left = max(wait - (time.monotonic() - started), 0.0)
            parking, namespace = Watermark(redis, settings), Namespace.of(settings, live)
            caught_up = await wait_released(parking, namespace, started_ms, left)
        keys, differences = await compare_namespaces(
            redis, live, scratch, inactive=settings.inactive_after > 0
        )
        differences = await settle_pulled(redis, live, scratch, differences,
                                          settings.feed_buckets)  # fmt: skip
        lag, _ = await kafka_status(settings)
        ends = {(p.topic, p.partition): p.end for p in lag}
        grew = sum(max(ends.get((tp.topic, tp.partition), 0) - end, 0)
                   for tp, end in stats.ends.items())  # fmt: skip
        return Verification(live, scratch, stats, keys, differences, caught_up, grew, audit,
                            settings.campaigns)  # fmt: skip
    finally:
        try:
            await asyncio.shield(namespaces.drop(scratch))
        finally:
            await close_client(redis)


#: Key kinds of a user's feeds, compared by pages for a user following a pulled author.
FEED_KINDS = {"feed", "via", "foryou"}


def _tag(name: str) -> str:
    """The id in a key name's hash tag (``feed:{u1}:3`` -> ``u1``)."""
    return name.partition("{")[2].partition("}")[0]


async def settle_pulled(
    redis: AnyRedis, live: str, fresh: str, differences: list[Difference], buckets: int
) -> list[Difference]:
    """Pulled authors (:mod:`feedamp.feeds.pull`): the keys of a feed depend on when its
    followees were pulled, its pages do not. So the pulled set is not compared, and the
    feed keys of a user who follows a pulled author (in either namespace) are replaced
    by a comparison of the user's Following and For You pages (every entry, as
    ``FeedReader`` merges them): one ``page`` difference per feed that reads
    differently."""
    pulled_key = Keys("").pulled()
    kept = [d for d in differences if d.key != pulled_key]
    users = {_tag(d.key) for d in kept if d.key.split(":", 1)[0] in FEED_KINDS}
    if not users:
        return kept
    pulling = await pulled_followers(redis, Keys(live), users)
    pulling |= await pulled_followers(redis, Keys(fresh), users)
    if not pulling:
        return kept
    kept = [d for d in kept if not (d.key.split(":", 1)[0] in FEED_KINDS
                                    and _tag(d.key) in pulling)]  # fmt: skip
    readers = [FeedReader(redis, key_prefix=p, feed_buckets=buckets) for p in (live, fresh)]
    for user in sorted(pulling):
        for kind, name in (("feed", "following"), ("foryou", "for_you")):
            a, b = [(await getattr(r, name)(user, limit=MAX_LIMIT)).items for r in readers]
            if a != b:
                ids = [i.post_id for i in a], [i.post_id for i in b]
                kept.append(Difference(f"{kind}:{{{user}}}", "page",
                                       f"{name}: live {_sample(ids[0])}, rebuild "
                                       f"{_sample(ids[1])}"))  # fmt: skip
    return kept


def format_verification(result: Verification, limit: int) -> str:
    """The report: a line per difference (at most ``limit``), then the verdict."""
    lines = [
        f"compared the live namespace {result.live!r} with a rebuild of "
        f"{result.replay.events:,} events in {result.scratch!r} (dropped): "
        f"{result.keys:,} keys"
    ]
    for difference in result.differences[:limit]:
        lines.append(f"  {difference}")
    if len(result.differences) > limit:
        lines.append(f"  ... and {len(result.differences) - limit:,} more")
    if not result.caught_up:
        lines.append(
            "warning: the worker group had not committed the replayed offsets, "
            "or still held some of their reposts and gifts behind the watermark"
        )
    if result.grew:
        lines.append(f"note: {result.grew:,} records arrived while verifying; the live "
                     "namespace may hold them")  # fmt: skip
    causes = result.causes()
    if causes:
        lines.append("likely causes:")
        lines += [f"  - {c}" for c in causes]
    n = len(result.differences)
    if n:
        kinds = "; ".join(
            f"{kind} {sum(c.values())} ({', '.join(f'{k} {v}' for k, v in sorted(c.items()))})"
            for kind, c in result.by_kind().items()
        )
        lines.append(f"{n:,} difference{'' if n == 1 else 's'} by key kind: {kinds}")
    else:
        lines.append("no differences")
    return "\n".join(lines)
