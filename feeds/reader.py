"""Reads, for feed services: pages of a user's Following feed, newest first."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import BlockingConnectionPool, Redis

from .keys import Keys
from .scripts import Scripts

__all__ = ["FeedItem", "FeedPage", "FeedReader"]

MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One feed entry.

    ``ts`` is when the entry last surfaced (the post, or its latest repost), in ms.
    ``reposted_by`` lists the reposters the reader follows, most recent first; empty for a
    post that reached the feed only because the reader follows its author.
    ``comment`` is the comment of ``reposted_by[0]``, if they wrote one.
    """

    post_id: str
    author_id: str
    ts: int
    reposted_by: tuple[str, ...] = ()
    comment: str | None = None
    labels: tuple[str, ...] = ()
    text: str | None = None
    media_url: str | None = None


@dataclass(frozen=True, slots=True)
class FeedPage:
    """A page of items and the cursor of the next page (``None`` at the end)."""

    items: list[FeedItem] = field(default_factory=list)
    next_cursor: str | None = None


def _cursor(ts: int, post_id: str) -> str:
    return f"{ts}:{post_id}"


def _parse_cursor(cursor: str) -> tuple[int, bytes]:
    ts, sep, post_id = cursor.partition(":")
    if not sep or not post_id or not ts.lstrip("-").isdigit():
        raise ValueError(f"invalid cursor {cursor!r}")
    return int(ts), post_id.encode()


class FeedReader:
    """Reads feed views from Redis. Safe to share between tasks of one event loop."""

    def __init__(self, redis: Redis, *, key_prefix: str = "fa:", feed_buckets: int = 8) -> None:
        """Read with ``redis``; ``key_prefix`` and ``feed_buckets`` must match the workers'
        ``FEEDAMP_KEY_PREFIX`` and ``FEEDAMP_FEED_BUCKETS``."""
        self.redis = redis
        self.keys = Keys(key_prefix)
        self.feed_buckets = feed_buckets
        self._scripts = Scripts(redis)

    @classmethod
    def from_url(
        cls, url: str, *, key_prefix: str = "fa:", feed_buckets: int = 8, max_connections: int = 32
    ) -> FeedReader:
        """A reader with its own blocking connection pool to ``url``."""
        pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=None)
        return cls(Redis(connection_pool=pool), key_prefix=key_prefix, feed_buckets=feed_buckets)

    async def close(self) -> None:
        """Close the reader's connections."""
        await self.redis.aclose()

    async def following(self, user_id: str, limit: int = 50, cursor: str | None = None) -> FeedPage:
        """A page of ``user_id``'s Following feed, newest first.

        ``cursor`` is the ``next_cursor`` of the previous page; pages stay consistent while
        new items arrive at the top. ``limit`` is 1 to 1000.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}, got {limit}")
        after = _parse_cursor(cursor) if cursor else None
        buckets = range(self.feed_buckets)
        keys = [self.keys.feed(user_id, b) for b in buckets]
        keys += [self.keys.via(user_id, b) for b in buckets]
        items: list[FeedItem] = []
        while True:
            max_score = "+inf" if after is None else str(after[0])
            want = limit - len(items)
            rows = await self._scripts.page(keys=keys, args=[max_score, want])
            entries = [
                (rows[i], int(float(rows[i + 1])), rows[i + 2]) for i in range(0, len(rows), 3)
            ]
            if after is not None:  # drop ties at or before the cursor
                entries = [e for e in entries if e[1] < after[0] or e[0] < after[1]]
            # Merge the buckets: newest first, ties by post id descending (Redis' own order).
            entries.sort(key=lambda e: (e[1], e[0]), reverse=True)
            exhausted = len(entries) < want
            batch = await self._hydrate(entries[:want])
            items.extend(batch)
            if exhausted:
                return FeedPage(items, None)
            last = entries[want - 1]
            after = (last[1], last[0])
            if len(items) >= limit:
                return FeedPage(items, _cursor(last[1], last[0].decode()))

    async def _hydrate(self, entries: list[tuple[bytes, int, bytes | None]]) -> list[FeedItem]:
        """Join entries with their post records and comments; hide deleted posts."""
        if not entries:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for post_id, _, via in entries:
                pid = post_id.decode()
                pipe.hmget(self.keys.post(pid), "a", "del", "text", "media", "lbl")
                if via:
                    pipe.hget(self.keys.comments(pid), via.split(b",", 1)[0])
            results = iter(await pipe.execute())
        items = []
        for post_id, ts, via in entries:
            author, deleted, text, media, labels = next(results)
            comment = next(results) if via else None
            if deleted is not None:
                continue
            items.append(
                FeedItem(
                    post_id=post_id.decode(),
                    author_id=author.decode() if author else "",
                    ts=ts,
                    reposted_by=tuple(via.decode().split(",")) if via else (),
                    comment=comment.decode() if comment else None,
                    labels=tuple(labels.decode().split(",")) if labels else (),
                    text=text.decode() if text else None,
                    media_url=media.decode() if media else None,
                )
            )
        return items
