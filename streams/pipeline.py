"""The one code path from raw records to Redis, shared by the worker and replay.

Records are parsed and validated, checked against their topic, and applied to the
stores in order, in the active key namespace (:mod:`feedamp.feeds.namespace`), resolved
once per batch. Whatever cannot be applied comes back as a :class:`DeadLetter` with a
reason; nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence

from feedamp.config import Settings
from feedamp.feeds import FeedStore
from feedamp.feeds.accounts import AccountStore, actor_of
from feedamp.feeds.gifts import GiftStore
from feedamp.feeds.namespace import Namespaces
from feedamp.feeds.orders import OrderStore
from feedamp.feeds.store import Applied
from feedamp.models import ROUTES, Event, InvalidEvent, Limits, parse_event
from feedamp.models.decisions import Refusal
from feedamp.models.events import (
    Account,
    Block,
    DeletePost,
    Follow,
    Gift,
    Mute,
    OrderStatus,
    Post,
    Purchase,
    Repost,
    Unblock,
    Unfollow,
    Unmute,
    Unrepost,
)

from .records import DeadLetter, Outcome, Record

__all__ = ["FEED_EVENTS", "Pipeline"]

#: Event types applied by the feed store.
FEED_EVENTS = (Post, DeletePost, Repost, Unrepost, Follow, Unfollow, Block, Unblock, Mute,
               Unmute)  # fmt: skip


class Pipeline:
    """Parses records and applies each event to its store: feeds, accounts, gifts, orders."""

    def __init__(self, store: FeedStore, settings: Settings, *, prefix: str | None = None) -> None:
        """``store`` is the feed store; the other stores share its Redis client. A bad
        campaigns file raises :class:`~feedamp.config.campaigns.CampaignError` here.
        ``prefix`` writes to that key namespace; None follows the pointer to the active
        one (one GET per batch)."""
        self.prefix = prefix
        self.namespaces = Namespaces(store.redis, settings.key_prefix)
        self.store = self.feeds = store
        self.accounts = AccountStore(store.redis, settings)
        self.gifts = GiftStore(store.redis, settings)
        self.orders = OrderStore(store.redis, settings)
        self.settings = settings
        self.limits = Limits(settings.max_event_bytes, settings.max_text_chars)
        topics = settings.topics
        self._posts_topic = topics.posts
        # topic name -> types allowed on it
        self._types_on: dict[str, set[str]] = {}
        for type_name, (attr, _) in ROUTES.items():
            self._types_on.setdefault(getattr(topics, attr), set()).add(type_name)

    def parse(self, record: Record) -> Event:
        """Parse one record; raise :class:`InvalidEvent` if it cannot be applied."""
        event = parse_event(record.value, record_ts=record.timestamp, limits=self.limits)
        allowed = self._types_on.get(record.topic)
        if allowed is not None and event.type not in allowed:
            raise InvalidEvent(f"type {event.type!r} does not belong on topic {record.topic!r}")
        return event

    async def apply(self, records: Sequence[Record]) -> Outcome:
        """Apply ``records``; return the dead letters and decisions.

        Order: account events first (a suspension must be on record before the door
        judges the batch), then the door (events of suspended accounts are refused with a
        decision and not applied), then posts (topics are not ordered against each other,
        and a repost decided after its post can see the post's visibility), then the
        rest, each type by its store. Order within a topic is kept.

        Redis connection errors propagate, so the caller can retry the batch; every
        write is idempotent.
        """
        dead: list[DeadLetter] = []
        events: list[Event] = []
        sources: list[Record] = []
        for record in records:
            try:
                event = self.parse(record)
            except InvalidEvent as exc:
                dead.append(DeadLetter(record, exc.reason))
                continue
            events.append(event)
            sources.append(record)
        outcome = Outcome(dead)
        if not events:
            return outcome
        # Resolved once, so a batch is written to one namespace even across a switch.
        prefix = self.prefix or await self.namespaces.active()

        def run(part: list[int], applied: Applied) -> None:
            for failure in applied.failures:
                record = sources[part[failure.index]]
                dead.append(DeadLetter(record, f"redis rejected: {failure.error}"))
            outcome.decisions += applied.decisions
            outcome.deliveries += applied.deliveries

        accounts = [i for i, ev in enumerate(events) if isinstance(ev, Account)]
        if accounts:
            run(accounts, await self.accounts.apply([events[i] for i in accounts], prefix=prefix))
        rest = [i for i, ev in enumerate(events) if not isinstance(ev, Account)]
        door = await self.accounts.door([events[i] for i in rest], prefix=prefix)
        refused = {rest[n]: reason for n, reason in door.items()}
        for i, reason in refused.items():
            ev = events[i]
            if not isinstance(ev, Repost):  # reposts get their decision from the feed store
                outcome.decisions.append(Refusal(ev.event_id, ev.type, actor_of(ev) or "",
                                                 (reason,), ev.ts))  # fmt: skip
        posts = [i for i in rest if sources[i].topic == self._posts_topic and i not in refused]
        others = [i for i in rest if sources[i].topic != self._posts_topic]
        for part in (posts, others):
            feed = [i for i in part if isinstance(events[i], FEED_EVENTS)
                    and (i not in refused or isinstance(events[i], Repost))]  # fmt: skip
            if feed:
                door_of = {n: refused[i] for n, i in enumerate(feed) if i in refused}
                applied = await self.feeds.apply([events[i] for i in feed], refused=door_of,
                                                 prefix=prefix)  # fmt: skip
                run(feed, applied)
        for store, types in ((self.gifts, Gift), (self.orders, (Purchase, OrderStatus))):
            part = [i for i in others if isinstance(events[i], types) and i not in refused]
            if part:
                run(part, await store.apply([events[i] for i in part], prefix=prefix))
        return outcome
