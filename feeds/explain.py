"""Why a post is, or is not, in a user's Following and For You feeds.

:func:`explain` reads what Redis holds about one (user, post) pair in the active key
namespace and reasons over it the way the Lua scripts and the reader decide: the post
record (author, visibility, deletion), the user's feed buckets (entry, attribution, the
bucket's size and its oldest entry, for the feed-length cap), whether the user follows
the author, every reposter of the post the user follows with the repost's time, depth
and decision, blocks and mutes in both directions, and suspensions. It writes nothing.

Invariant: an :class:`Explanation` holds only facts read from Redis plus ``verdicts``,
sentences derived from them; it never guesses at events Redis has not seen (when nothing
explains an absence it says so, and points at lag and parked reposts).

Rate-limited and refused reposts fan out nothing, so Redis keeps no ``repost`` record of
their reposter: those are found through the reposter's recent attempts
(``attempts:{user}``, kept for two rate windows), checked for the users the reader follows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from .batch import text
from .connection import AnyRedis
from .entries import Entry as Row
from .keys import Keys, bucket_of
from .namespace import Namespaces

__all__ = ["Entry", "Explanation", "Repost", "explain"]

#: Reposts of one post looked at, at most (a viral post has thousands).
MAX_REPOSTS = 20_000
#: Followees whose recent attempts are searched for rate-limited or refused reposts.
MAX_FOLLOWEES_SEARCHED = 5_000
#: Decisions that put a repost in feeds.
DELIVERING = ("delivered", "restricted")
AUTHOR_HIDDEN = {"you block them": "you block the author", "you mute them": "you mute the author",
                 "they block you": "the author blocks you"}  # fmt: skip


def _s(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _when(ms: float | int | None) -> str:
    if ms is None:
        return "?"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class Repost:
    """A repost of the post by someone the user follows."""

    reposter: str
    repost_id: str | None
    ts: int | None
    depth: int | None
    decision: str | None
    reasons: list[str] = field(default_factory=list)
    #: The user blocks or mutes the reposter, or the reposter blocks the user.
    hidden: str | None = None
    suspended: bool = False
    #: Withdrawn by an unrepost (the reposter is no longer among the post's reposters).
    withdrawn: bool = False


@dataclass
class Entry:
    """The post's entry in one of the user's feeds (Following or For You)."""

    present: bool
    bucket: int
    #: Following: event time of the entry; For You: its ranking score (ms-equivalent).
    score: float | None = None
    #: Reposters the entry is attributed to (most recent first).
    via: list[str] = field(default_factory=list)
    labelled: bool = False
    #: The bucket's entries and cap, and its oldest (lowest) score.
    bucket_size: int = 0
    bucket_cap: int = 0
    bucket_lowest: float | None = None


@dataclass
class Explanation:
    """Everything :func:`explain` found, and the verdicts drawn from it."""

    user: str
    post: str
    namespace: str
    post_known: bool = False
    author: str | None = None
    post_ts: int | None = None
    visibility: str = "public"
    deleted_at: int | None = None
    author_suspended: bool = False
    follows_author: bool = False
    #: When the user last unfollowed the author (if they follow them no more).
    unfollowed_at: int | None = None
    #: "you block the author", "the author blocks you", "you mute the author".
    author_hidden: list[str] = field(default_factory=list)
    reposts: list[Repost] = field(default_factory=list)
    #: Reposts of the post in all, and reposters (anyone) on record.
    reposts_total: int = 0
    following: Entry | None = None
    for_you: Entry | None = None
    #: Sentences: why the post is (or is not) in each feed.
    verdicts: dict[str, list[str]] = field(default_factory=dict)

    @property
    def shown(self) -> dict[str, bool]:
        """Whether a reader would show the post in each feed (stored and not hidden)."""
        hidden = self.deleted_at is not None or self.author_suspended
        return {
            "following": bool(self.following and self.following.present and not hidden),
            "for_you": bool(self.for_you and self.for_you.present and not hidden),
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        return {**asdict(self), "shown": self.shown}

    def text(self) -> str:
        """Readable lines for support."""
        shown = self.shown
        lines = [f"post {self.post} for user {self.user} (key namespace {self.namespace})"]
        if not self.post_known:
            lines.append("  post: unknown to Redis")
        else:
            deleted = f", deleted {_when(self.deleted_at)}" if self.deleted_at else ""
            susp = ", author suspended" if self.author_suspended else ""
            lines.append(f"  post: by {self.author} at {_when(self.post_ts)}, "
                         f"{self.visibility}{deleted}{susp}")  # fmt: skip
            lines.append(f"  you {'follow' if self.follows_author else 'do not follow'} "
                         f"the author")  # fmt: skip
        for r in self.reposts:
            facts = [f"at {_when(r.ts)}" if r.ts else "time unknown"]
            if r.depth is not None:
                facts.append(f"depth {r.depth}")
            decision = r.decision or "undecided"
            if r.reasons:
                decision += f" ({', '.join(r.reasons)})"
            facts.append(decision)
            if r.hidden:
                facts.append(r.hidden)
            if r.suspended:
                facts.append("reposter suspended")
            if r.withdrawn:
                facts.append("withdrawn (unrepost)")
            lines.append(f"  reposted by {r.reposter} (you follow them): {', '.join(facts)}")
        for name, title in (("following", "Following"), ("for_you", "For You")):
            lines.append(f"{title}: {'SHOWN' if shown[name] else 'NOT SHOWN'}")
            lines += [f"  - {v}" for v in self.verdicts.get(name, [])]
        return "\n".join(lines)


async def explain(
    redis: AnyRedis, user: str, post: str, *, key_prefix: str = "fa:", feed_buckets: int = 8,
    feed_cap: int = 800, for_you_cap: int = 500,
) -> Explanation:  # fmt: skip
    """Explain why ``post`` is or is not in ``user``'s feeds, from what Redis holds (the
    active namespace of base ``key_prefix``; the sizes must match the workers')."""
    prefix = await Namespaces(redis, key_prefix).active()
    k = Keys(prefix)
    b = bucket_of(post, feed_buckets)
    x = Explanation(user, post, prefix)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(k.post(post))
        for zkey, vkey in ((k.feed(user, b), k.via(user, b)),
                           (k.for_you(user, b), k.via(user, b))):  # fmt: skip
            pipe.zscore(zkey, post)
            pipe.hget(vkey, post)
            pipe.zcard(zkey)
            pipe.zrange(zkey, 0, 0, withscores=True)
        pipe.zrange(k.reposters(post), 0, MAX_REPOSTS - 1, withscores=True)
        pipe.hgetall(k.decided(post))
        post_rec, *rest = await pipe.execute()
    feeds, (reposters, decided) = rest[:8], rest[8:]
    caps = (-(-feed_cap // feed_buckets), -(-for_you_cap // feed_buckets))
    entries = []
    for i, cap in enumerate(caps):
        score, via, size, lowest = feeds[i * 4 : i * 4 + 4]
        # one attribution list serves both feeds (feeds/entries.py)
        row = Row(post.encode(), "0", via if score is not None else None, for_you=i == 1)
        entries.append(Entry(
            present=score is not None, bucket=b, score=score, via=list(row.reposters),
            labelled=row.labelled, bucket_size=size, bucket_cap=cap,
            bucket_lowest=lowest[0][1] if lowest else None,
        ))  # fmt: skip
    x.following, x.for_you = entries
    rec = {text(f): text(v) for f, v in post_rec.items()}
    x.post_known = bool(rec)
    x.author = rec.get("a")
    x.post_ts = int(float(rec["ts"])) if rec.get("ts") else None
    x.visibility = rec.get("vis") or "public"
    x.deleted_at = int(float(rec["del"])) if rec.get("del") else None
    x.reposts_total = len(decided)
    times = {text(m): int(s) for m, s in reposters}
    live = set(times)  # reposters whose repost stands (an unrepost takes them out)

    # Who made which repost: the repost records, for the reposts Redis kept one of.
    ids = [text(r) for r in decided]
    async with redis.pipeline(transaction=False) as pipe:
        for rid in ids:
            pipe.hget(k.repost(rid), "u")
        pipe.smembers(k.following(user))
        pipe.hget(k.pair(user), x.author or "")
        *found, following, pair = await pipe.execute()
    makers = {rid: _s(u) for rid, u in zip(ids, found, strict=True)}
    followees = {text(f) for f in following}
    x.follows_author = x.author in followees
    off = _pair_parts(_s(pair))[0].partition("|")[2]
    if not x.follows_author and off.isdigit():
        x.unfollowed_at = int(off)
    # Rate-limited or refused reposts left no repost record: search the attempts of the
    # users this reader follows.
    unknown = [rid for rid, u in makers.items() if u is None]
    if unknown and followees and len(followees) <= MAX_FOLLOWEES_SEARCHED:
        order = sorted(followees)
        async with redis.pipeline(transaction=False) as pipe:
            for f in order:
                pipe.zmscore(k.attempts(f), unknown)
            scores = await pipe.execute()
        for f, row in zip(order, scores, strict=True):
            for rid, score in zip(unknown, row, strict=True):
                if score is not None:
                    makers[rid] = f
                    times.setdefault(f, int(score))
    by_reposter: dict[str, list[str]] = {}
    for rid, u in makers.items():
        if u is not None and u in followees:
            by_reposter.setdefault(u, []).append(rid)
    for r in times:
        if r in followees:
            by_reposter.setdefault(r, [])

    # Blocks, mutes and suspensions of the author and of those reposters.
    people = [p for p in dict.fromkeys([x.author, *by_reposter]) if p]
    async with redis.pipeline(transaction=False) as pipe:
        if people:
            pipe.hmget(k.pair(user), people)  # the pairs as this reader sees them
        for p in people:
            pipe.hmget(k.account(p), "susp", "rein")
        res = await pipe.execute() if people else []
    pairs = res[0] if people else []
    hidden: dict[str, str | None] = {}
    suspended: dict[str, bool] = {}
    for i, p in enumerate(people):
        _, blocks, blocked_by_them, mutes = _pair_parts(_s(pairs[i]))
        susp, rein = res[1 + i]
        t = x.post_ts if p == x.author else times.get(p)
        hidden[p] = ("you block them" if _hidden_at(blocks or None, t)
                     else "you mute them" if _hidden_at(mutes or None, t)
                     else "they block you" if _hidden_at(blocked_by_them or None, t)
                     else None)  # fmt: skip
        suspended[p] = susp is not None and not (rein is not None and int(rein) >= int(susp))
    if x.author:
        x.author_suspended = suspended.get(x.author, False)
        h = hidden.get(x.author)
        if h:
            x.author_hidden.append(AUTHOR_HIDDEN[h])
    for r, rids in sorted(by_reposter.items(), key=lambda kv: -(times.get(kv[0]) or 0)):
        last = rids[-1] if rids else None
        value = _s(decided.get(last.encode())) if last else None
        decision, depth, reasons = ([*value.split("|"), "", ""])[:3] if value else (None, "", "")
        x.reposts.append(Repost(
            reposter=r, repost_id=last, ts=times.get(r), depth=int(depth) if depth else None,
            decision=decision, reasons=[s for s in reasons.split(",") if s],
            hidden=hidden.get(r), suspended=suspended.get(r, False),
            withdrawn=r not in live and decision in DELIVERING,
        ))  # fmt: skip
    x.verdicts = {"following": _following_verdicts(x), "for_you": _for_you_verdicts(x)}
    return x


def _hidden_at(value: bytes | str | None, t: int | None) -> bool:
    """A pair's hiding state ``on|off`` (the latest block or mute and its undoing, event
    times) hides content of time ``t``: the pair is hidden now, or ``t`` is before the
    latest undoing (``t`` None: hidden now). The rule of ``hidden_at`` in lib.lua."""
    if not value:
        return False
    on, _, off = (_s(value) or "").partition("|")
    if not on.isdigit():
        return False
    if not off.isdigit() or int(off) < int(on):
        return True
    return t is not None and t < int(off)


def _common_absence(x: Explanation) -> list[str]:
    """Reasons that keep the post out of every feed of the user."""
    out = []
    if not x.post_known:
        out.append("Redis holds no record of this post: it was never posted, or the worker "
                   "has not applied it yet (see `feedamp status` for lag)")  # fmt: skip
    if x.author == x.user:
        out.append("you are its author: a post never enters its author's own feeds")
    if x.deleted_at is not None:
        out.append(f"the post was deleted at {_when(x.deleted_at)}: readers skip it and it "
                   "is removed from every feed")  # fmt: skip
    if x.author_suspended:
        out.append(f"the author {x.author} is suspended: readers hide what they authored")
    out += [f"{h}: nothing they author reaches you" for h in x.author_hidden]
    return out


def _cap_note(e: Entry, score: float | None, name: str) -> str | None:
    """The feed-length cap, when it explains an absence."""
    if (
        e.bucket_size >= e.bucket_cap
        and e.bucket_lowest is not None
        and (score is None or score <= e.bucket_lowest)
    ):
        return (f"the {name} feed is at its length cap in this post's bucket {e.bucket} "
                f"({e.bucket_size} entries kept, the oldest at score {e.bucket_lowest:.0f}): "
                "older entries were trimmed")  # fmt: skip
    return None


def _following_verdicts(x: Explanation) -> list[str]:
    e = x.following
    assert e is not None
    out: list[str] = []
    if e.present:
        out.append(f"stored at {_when(e.score)} in bucket {e.bucket}")
        if x.follows_author and not e.via:
            out.append(f"you follow the author {x.author}")
        elif x.follows_author:
            out.append(f"you follow the author {x.author}, and it resurfaced with reposts")
        if e.via:
            out.append(f"reposted by {', '.join(e.via)} (you follow them)")
        if e.labelled:
            out.append("labelled forwarded_many_times (forwarding depth at the cap)")
        out += [f"hidden when read: {r}" for r in _common_absence(x)
                if "deleted" in r or "suspended" in r]  # fmt: skip
        live = [r for r in x.reposts if r.reposter in e.via and r.suspended]
        out += [f"{r.reposter} is suspended: dropped from the attribution when read" for r in live]
        return out
    out += _common_absence(x)
    delivering = [r for r in x.reposts if r.decision in DELIVERING and not r.withdrawn]
    for r in x.reposts:
        if r.withdrawn:
            out.append(f"{r.reposter} reposted it, then withdrew the repost (unrepost)")
        elif r.decision in ("rate_limited", "refused"):
            out.append(f"{r.reposter}'s repost was {r.decision} ({', '.join(r.reasons)}): it "
                       "reaches no feed")  # fmt: skip
        elif r.hidden:
            out.append(f"{r.reposter} reposted it, but {r.hidden}")
        elif r.suspended:
            out.append(f"{r.reposter} reposted it, but is suspended")
    if x.unfollowed_at is not None:
        out.append(f"you unfollowed the author at {_when(x.unfollowed_at)}")
    if x.post_known and x.author != x.user and not x.follows_author and not delivering:
        out.append("you do not follow the author, and nobody you follow reposted it "
                   "(with a decision that delivers)")  # fmt: skip
    if x.follows_author or delivering:
        note = _cap_note(e, x.post_ts, "Following")
        if note:
            out.append(note)
    if not out:
        out.append("nothing Redis holds explains it: the event may not be applied yet "
                   "(see `feedamp status`: lag and parked reposts), or you followed the "
                   "author after their 100 most recent posts")  # fmt: skip
    return out


def _for_you_verdicts(x: Explanation) -> list[str]:
    e = x.for_you
    assert e is not None
    out: list[str] = []
    if e.present:
        out.append(f"ranked with score {e.score:.0f} in bucket {e.bucket}")
        if e.via:
            out.append(f"signals from reposts by {', '.join(e.via)} (you follow them)")
        out += [f"hidden when read: {r}" for r in _common_absence(x)
                if "deleted" in r or "suspended" in r]  # fmt: skip
        return out
    out += _common_absence(x)
    if x.post_known and not x.reposts:
        out.append("For You holds reposts only, and nobody you follow reposted it")
    for r in x.reposts:
        if r.withdrawn:
            out.append(f"{r.reposter} reposted it, then withdrew the repost (unrepost)")
        elif r.decision == "restricted":
            out.append(f"{r.reposter}'s repost was restricted ({', '.join(r.reasons)}): "
                       "Following only")  # fmt: skip
        elif r.decision in ("rate_limited", "refused"):
            out.append(f"{r.reposter}'s repost was {r.decision} ({', '.join(r.reasons)})")
        elif r.hidden:
            out.append(f"{r.reposter} reposted it, but {r.hidden}")
        elif r.suspended:
            out.append(f"{r.reposter} reposted it, but is suspended")
    if any(r.decision == "delivered" and not r.withdrawn for r in x.reposts):
        note = _cap_note(e, None, "For You")
        if note:
            out.append(note)
    if not out:
        out.append("nothing Redis holds explains it: the repost may not be applied yet "
                   "(see `feedamp status`: lag and parked reposts)")  # fmt: skip
    return out


def _pair_parts(value: str | None) -> list[str]:
    """The four parts of a ``pair:{user}`` value (follow, blocks, blocked_by, mutes)."""
    return ([*(value or "").split(";"), "", "", "", ""])[:4]
