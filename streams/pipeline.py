"""The one code path from raw records to Redis, shared by the worker and replay.

Records are parsed and validated, checked against their topic, and applied to the
stores in order, in the active key namespace (:mod:`feedamp.feeds.namespace`), resolved
once per batch. In a worker, reposts-topic events are parked first and released in
event-time order (:mod:`feedamp.feeds.ordering`). Whatever cannot be applied comes back
as a :class:`DeadLetter` with a reason; nothing is dropped silently.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence

import orjson
from feedamp.config import Settings
from feedamp.feeds import FeedStore
from feedamp.feeds.accounts import AccountStore, actor_of
from feedamp.feeds.activity import Activity
from feedamp.feeds.gifts import GiftStore
from feedamp.feeds.namespace import Namespaces
from feedamp.feeds.ordering import EventOrder, progress_field
from feedamp.feeds.orders import OrderStore
from feedamp.feeds.products import ProductStore
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
    ProductView,
    Purchase,
    Repost,
    Unblock,
    Unfollow,
    Unmute,
    Unrepost,
)
from redis.exceptions import LockError

from .records import DeadLetter, Outcome, Record

__all__ = ["FEED_EVENTS", "Pipeline", "progress_field"]

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
        self.products = ProductStore(store.redis, settings)
        self.activity = Activity(store.redis)
        self.settings = settings
        #: The progress fields of every posts and reposts partition (the worker sets it
        #: from the consumer's metadata); None (replay, tests): nothing is parked.
        self.partitions: Callable[[], list[str]] | None = None
        #: The latest watermark seen by a release (ms), for metrics.
        self.watermark: float | None = None
        #: Awaited by :meth:`apply` once the batch's reposts-topic events are parked and
        #: before its other events are written: the point where, in a worker, the release
        #: timer can run (tests run a release here to check it cannot get ahead).
        self.before_write: Callable[[], Awaitable[None]] | None = None
        self._orders: dict[str, EventOrder] = {}
        self.limits = Limits(settings.max_event_bytes, settings.max_text_chars,
                             settings.max_tagged_products)  # fmt: skip
        topics = settings.topics
        self._posts_topic = topics.posts
        #: The topics whose event times make the watermark (posts, reposts).
        self.watched = frozenset((topics.posts, topics.reposts))
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

    @property
    def ordered(self) -> bool:
        """True when reposts-topic events wait for the watermark and are decided in
        event-time order (see :mod:`feedamp.feeds.ordering`): in a worker (which sets
        ``partitions``), with caps on and a lateness set. Replay reads every partition
        merged in time order itself and applies batches directly."""
        caps = self.settings.caps
        return self.partitions is not None and caps.enabled and caps.lateness_ms > 0

    async def apply(self, records: Sequence[Record]) -> Outcome:
        """Apply ``records``; return the dead letters and decisions.

        Order: account events first (a suspension must be on record before the door
        judges the batch), then the door (events of suspended accounts are refused with a
        decision and not applied), then posts, then the rest, each type by its store
        (posts' product tags and product views last).
        Order within a topic is kept. When :attr:`ordered`, reposts-topic events are
        parked instead, for :meth:`release`, and the progress of the batch's posts and
        reposts partitions is raised last, once everything else of the batch is written:
        a release running meanwhile cannot pass an event that is not in Redis yet.

        Redis connection errors propagate, so the caller can retry the batch; every
        write is idempotent.
        """
        events, sources, dead = self._parse(records)
        outcome = Outcome(dead)
        # Resolved once, so a batch is written to one namespace even across a switch.
        prefix = await self._prefix()
        progress: dict[str, int] = {}
        if self.ordered:
            reposts_topic = self.settings.topics.reposts
            held = [i for i, r in enumerate(sources) if r.topic == reposts_topic]
            progress = self._progress(events, sources)
            await self._order(prefix).park([(events[i].event_id, events[i].ts,
                                             _pack(sources[i])) for i in held])  # fmt: skip
            parked = set(held)
            rest = [i for i in range(len(events)) if i not in parked]
            events, sources = [events[i] for i in rest], [sources[i] for i in rest]
        if self.before_write is not None:
            await self.before_write()
        await self._apply_events(events, sources, outcome, prefix)
        if progress:
            # Only now: a release (the timer runs between any two awaits) may pass an
            # event only once it is in Redis, or it could decide a repost before its post
            # exists.
            await self._order(prefix).advance(progress)
        return outcome

    async def release(
        self, publish: Callable[[Outcome], Awaitable[None]], prefix: str | None = None
    ) -> Outcome:
        """Decide and apply, in event-time order, the parked events the watermark has
        passed, chunk by chunk; ``publish`` each chunk's outcome before the chunk is
        forgotten, so a crash in between releases it again (at least once). One releaser
        at a time across workers: another's release returns at once. Returns the whole
        outcome (for metrics). ``prefix``: the namespace already resolved for this tick."""
        outcome = Outcome()
        partitions = self.partitions() if self.ordered and self.partitions else []
        if not partitions:
            return outcome
        prefix = prefix or await self._prefix()
        order = self._order(prefix)
        lock = order.lock()
        if not await lock.acquire():
            return outcome
        try:
            while True:
                limit = self.settings.batch_size
                self.watermark, items = await order.release(limit, partitions)
                if not items:
                    return outcome
                chunk = Outcome()
                events, sources, chunk.dead_letters = self._parse(
                    [_unpack(record) for _, record in items]
                )
                await self._apply_events(events, sources, chunk, prefix)
                await publish(chunk)
                await order.forget([event_id for event_id, _ in items])
                outcome.extend(chunk)
                if len(items) < limit:
                    return outcome
        finally:
            with contextlib.suppress(LockError):  # expired while we worked: harmless
                await lock.release()

    def _progress(self, events: Sequence[Event], sources: Sequence[Record]) -> dict[str, int]:
        """Progress of the posts and reposts partitions read in this batch: the latest
        event time, less the allowed lateness."""
        watched = (self.settings.topics.posts, self.settings.topics.reposts)
        progress: dict[str, int] = {}
        lateness = self.settings.caps.lateness_ms
        for ev, record in zip(events, sources, strict=True):
            if record.topic in watched:
                field = progress_field(record.topic, record.partition)
                progress[field] = max(progress.get(field, 0), ev.ts - lateness)
        return progress

    async def order_advance(self, progress: dict[str, int], prefix: str | None = None) -> None:
        """Raise the progress of partitions (the worker's clock-driven part), in ``prefix``
        (default: the active namespace)."""
        await self._order(prefix or await self._prefix()).advance(progress)

    async def parked(self, prefix: str) -> int:
        """How many events wait in the namespace ``prefix`` (one ZCARD)."""
        return await self._order(prefix).pending()

    async def active_prefix(self) -> str:
        """The namespace to write to now (see :meth:`apply`)."""
        return await self._prefix()

    async def _prefix(self) -> str:
        """The namespace to write to: the fixed one, else the active one (one GET)."""
        return self.prefix or await self.namespaces.active()

    def _order(self, prefix: str | None = None) -> EventOrder:
        """The event order of a namespace, made once (it registers every script)."""
        prefix = prefix or self.settings.key_prefix
        if prefix not in self._orders:
            self._orders[prefix] = EventOrder(self.store.redis, self.settings, prefix)
        return self._orders[prefix]

    def _parse(
        self, records: Sequence[Record]
    ) -> tuple[list[Event], list[Record], list[DeadLetter]]:
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
        return events, sources, dead

    async def _apply_events(
        self, events: Sequence[Event], sources: Sequence[Record], outcome: Outcome, prefix: str
    ) -> None:
        """Apply parsed events to their stores in the namespace ``prefix``, in segments:
        a posts-topic event read after a graph event starts a new segment, so a follow
        read before an author's posts is applied before them, however large the batch
        (the follow's backfill is bounded). Within a segment, see :meth:`apply`."""
        graph, start, seen_graph = self.settings.topics.graph, 0, False
        for i, record in enumerate(sources):
            if record.topic == self._posts_topic and seen_graph:
                await self._apply_segment(events[start:i], sources[start:i], outcome, prefix)
                start, seen_graph = i, False
            seen_graph = seen_graph or record.topic == graph
        await self._apply_segment(events[start:], sources[start:], outcome, prefix)

    async def _apply_segment(
        self, events: Sequence[Event], sources: Sequence[Record], outcome: Outcome, prefix: str
    ) -> None:
        dead = outcome.dead_letters
        first_decision = len(outcome.decisions)
        reposts: list[Repost] = []

        def run(part: list[int], applied: Applied) -> None:
            failed = set()
            for failure in applied.failures:
                record = sources[part[failure.index]]
                failed.add(part[failure.index])
                dead.append(DeadLetter(record, f"redis rejected: {failure.error}"))
            outcome.decisions += applied.decisions
            outcome.deliveries += applied.deliveries
            reposts.extend(events[i] for i in part  # type: ignore[misc]
                           if isinstance(events[i], Repost) and i not in failed)  # fmt: skip

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
        for store, types, among in ((self.gifts, Gift, others),
                                    (self.orders, (Purchase, OrderStatus), others),
                                    (self.products, (Post, ProductView), rest)):  # fmt: skip
            part = [i for i in among if isinstance(events[i], types) and i not in refused]
            if part:
                run(part, await store.apply([events[i] for i in part], prefix=prefix))
        # The console's view of reposts and decisions (see feedamp.feeds.activity).
        await self.activity.record(prefix, reposts, outcome.decisions[first_decision:])


def _pack(record: Record) -> bytes:
    """A record as parked in Redis (JSON; the key as Latin-1 so any bytes survive)."""
    return orjson.dumps({
        "topic": record.topic, "partition": record.partition, "offset": record.offset,
        "key": None if record.key is None else record.key.decode("latin-1"),
        "value": (record.value or b"").decode(), "timestamp": record.timestamp,
    })  # fmt: skip


def _unpack(raw: bytes) -> Record:
    d = orjson.loads(raw)
    key = None if d["key"] is None else d["key"].encode("latin-1")
    return Record(d["topic"], d["partition"], d["offset"], key, d["value"].encode(),
                  d["timestamp"])  # fmt: skip
