"""Read marks: the reader's side of inactive users (:mod:`feedamp.feeds.dormancy`).

A read of Following or For You calls :meth:`ReadMarks.on_read` before reading the page:
one ``lua/mark_read.lua`` call on the user's slot, skipped when this process marked the
user less than :func:`~feedamp.feeds.dormancy.interval_ms` ago (a read mark is rewritten at
most that often, so an active user costs at most one write per interval); when the mark
says fan-out skipped the user (or the user never read in this namespace), both feeds are
rebuilt (:meth:`~feedamp.feeds.store.FeedStore.rebuild_feed`) before the read goes on.
"""

from __future__ import annotations

from collections.abc import Callable

from feedamp.config import Settings

from .connection import AnyRedis
from .dormancy import REBUILD_GRACE_MS, interval_ms, now_ms
from .keys import Keys
from .namespace import Namespace
from .scripts import argv
from .store import FeedStore

__all__ = ["ReadMarks"]

#: Reader processes remember at most this many recent marks.
CACHE_SIZE = 100_000


class ReadMarks:
    """The reader's side: :meth:`on_read` marks a read and rebuilds the feeds of a user
    fan-out skipped. Safe to share between tasks of one event loop."""

    def __init__(
        self, redis: AnyRedis, settings: Settings, *, clock: Callable[[], int] = now_ms
    ) -> None:
        """Mark reads on ``redis`` for workers configured by ``settings`` (its
        ``inactive_after``, and what a rebuild needs: buckets, caps, half-life); ``clock``
        gives the wall time in ms."""
        self.settings = settings
        self.store: FeedStore = FeedStore(redis, settings)
        self.clock = clock
        self.interval = interval_ms(settings.inactive_after)
        #: (prefix, user) -> clock value of this process' last mark.
        self._marked: dict[tuple[str, str], int] = {}
        #: Feeds rebuilt by reads of this process (a running total).
        self.rebuilt = 0

    @property
    def enabled(self) -> bool:
        """True when ``FEEDAMP_INACTIVE_AFTER`` is set."""
        return self.settings.inactive_after > 0

    async def on_read(self, user_id: str, keys: Keys) -> bool:
        """Mark ``user_id`` active in the namespace of ``keys``; when fan-out skipped the
        user (or the user never read there), rebuild both feeds first. True when rebuilt."""
        if not self.enabled:
            return False
        now = self.clock()
        seen = (keys.prefix, user_id)
        if now - self._marked.get(seen, -self.interval) < self.interval:
            return False
        script = self.store.scripts.mark_read
        mark = keys.pair(user_id)
        args = argv("mark_read", now=now, interval=self.interval,
                    rebuild_grace=REBUILD_GRACE_MS, done=0)  # fmt: skip
        rebuild = int(await script(keys=[mark], args=args)) == 1
        if rebuild:
            await self.store.rebuild_feed(
                user_id, namespace=Namespace.of(self.store.settings, keys.prefix)
            )
            args[-1] = 1
            await script(keys=[mark], args=args)
            self.rebuilt += 1
        if len(self._marked) >= CACHE_SIZE:
            self._marked.clear()
        self._marked[seen] = now
        return rebuild
