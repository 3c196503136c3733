"""The one code path from raw records to Redis, shared by the worker and replay.

Records are parsed and validated, checked against their topic, and applied to the
stores in order, in the active key namespace (:mod:`feedamp.feeds.namespace`), resolved
once per batch into one :class:`~feedamp.feeds.namespace.Namespace` handed to every store
(and to the watermark and the activity record); no store keeps anything per namespace.
In a worker, reposts-topic and gifts-topic events are parked first and released in
event-time order (:mod:`feedamp.feeds.watermark`). Whatever cannot be applied comes back
as a :class:`DeadLetter` with a reason; nothing is dropped silently.

Order within a batch has one mechanism, the feed store's runs
(:class:`~feedamp.feeds.store.FeedStore`: events applied in the order given, each run of
fan-out events or of graph events finished before the next starts). The pipeline only
chooses that order, :func:`log_order`: the order read, except that a posts-topic event
moves ahead of the other events read before it since the last graph-topic event (a
repost read before its post is applied after it), never past a graph event (a follow
read before an author's posts is applied before them, so the follower gets them all
however large the batch: the follow's backfill alone is bounded). Account events go
first (a suspension must be on record before the door judges the batch), then the door,
then each store once, in that order (the gift and order stores at once: they share no
key), and the product store last.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import orjson
from feedamp.config import Settings
from feedamp.feeds import FeedStore
from feedamp.feeds.accounts import AccountStore, actor_of
from feedamp.feeds.activity import Activity
from feedamp.feeds.namespace import Namespace, Namespaces
from feedamp.feeds.shop.gifts import GiftStore
from feedamp.feeds.shop.orders import OrderStore
from feedamp.feeds.shop.products import ProductStore
from feedamp.feeds.watermark import Watermark, progress_field
from feedamp.feeds.writer import Applied
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

from .records import DeadLetter, Envelope, Outcome, Record

__all__ = ["FEED_EVENTS", "Parsed", "Pipeline", "Store", "log_order", "progress_field"]

#: Parked events whose envelopes a process keeps for its own release, at most (about the
#: lateness's worth of events at a high rate; the rest, released by other workers, go).
PARSED_KEPT = 20_000

#: A batch parsed (:meth:`Pipeline.parse_all`): each record that parses with its event, in
#: order, and a dead letter for each that does not.
Parsed = tuple[list[Envelope], list[DeadLetter]]

#: Event types applied by the feed store.
FEED_EVENTS = (Post, DeletePost, Repost, Unrepost, Follow, Unfollow, Block, Unblock, Mute,
               Unmute)  # fmt: skip


class Store(Protocol):
    """What the pipeline asks of a store: apply events in order to a namespace; return
    the decisions, the deliveries, and the failures by position in ``events``."""

    async def apply(
        self, events: Sequence[Event], *, namespace: Namespace | None = None
    ) -> Applied:
        """Apply ``events``; Redis connection errors propagate (the batch is retried)."""
        ...


class Pipeline:
    """Parses records and applies each event to its store: feeds, accounts, gifts, orders."""

    def __init__(
        self,
        feeds: FeedStore,
        settings: Settings,
        *,
        prefix: str | None = None,
        partitions: Callable[[], list[str]] | None = None,
    ) -> None:
        """``feeds`` is the feed store; the other stores share its Redis client. A bad
        campaigns file raises :class:`~feedamp.feeds.shop.campaigns.CampaignError` here.
        ``prefix`` writes to that key namespace; None follows the pointer to the active
        one (one GET per batch). ``partitions`` gives the progress fields of every posts,
        reposts, gifts and accounts partition (a worker's, from the consumer's metadata);
        with it (and caps on, a lateness set) reposts and gifts wait for the watermark,
        see :attr:`watermarked`.
        Without it (replay, tests) nothing is parked."""
        self.prefix = prefix
        self.namespaces = Namespaces(feeds.redis, settings.key_prefix)
        self.feeds = feeds
        self.accounts = AccountStore(feeds.redis, settings)
        self.gifts = GiftStore(feeds.redis, settings)
        self.orders = OrderStore(feeds.redis, settings)
        self.products = ProductStore(feeds.redis, settings)
        self.activity = Activity(feeds.redis)
        #: Parks reposts and gifts and releases them (every call given the namespace).
        self.parking = Watermark(feeds.redis, settings)
        #: Which store applies each event type (accounts go first, on their own), and the
        #: order the stores run in within a phase.
        self._store_of: dict[type[Event], Store] = {
            **dict.fromkeys(FEED_EVENTS, self.feeds),
            Gift: self.gifts,
            Purchase: self.orders,
            OrderStatus: self.orders,
        }
        self._stores: tuple[Store, ...] = (self.feeds, self.gifts, self.orders)
        #: Stores that run last, over the whole batch (posts' product tags, product views),
        #: for the types they name, whichever store the table gave those types to.
        self._last: tuple[tuple[Store, tuple[type[Event], ...]], ...] = (
            (self.products, (Post, ProductView)),
        )
        self.settings = settings
        self.partitions = partitions
        #: The latest watermark seen by a release (ms), for metrics.
        self.watermark: float | None = None
        #: What this process parked, by (namespace prefix, event id): the record as
        #: parked and its envelope, so that a release here takes the envelope instead of
        #: parsing the record again when the parked record is that very one (at most
        #: :data:`PARSED_KEPT`, all dropped when full; each dropped once released here).
        self._parsed: dict[tuple[str, str], tuple[bytes, Envelope]] = {}
        #: Awaited by :meth:`apply` once the batch's parked events are parked and
        #: before its other events are written: the point where, in a worker, the release
        #: timer can run (tests run a release here to check it cannot get ahead).
        self.before_write: Callable[[], Awaitable[None]] | None = None
        self.limits = Limits(settings.max_event_bytes, settings.max_text_chars,
                             settings.max_tagged_products)  # fmt: skip
        topics = settings.topics
        self._posts_topic = topics.posts
        #: The topics whose events are parked, and those whose event times make the
        #: watermark (see :class:`~feedamp.config.Topics`).
        self.parked_topics = frozenset(topics.parked)
        self.watched = frozenset(topics.watched)
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
    def watermarked(self) -> bool:
        """True when reposts-topic and gifts-topic events wait for the watermark and are
        decided in event-time order (see :mod:`feedamp.feeds.watermark`): in a worker
        (which passes ``partitions``), with caps on and a lateness set. Replay parks
        nothing: it hands these events on in event-time order itself
        (:mod:`feedamp.ops.event_order`)."""
        caps = self.settings.caps
        return self.partitions is not None and caps.enabled and caps.lateness_ms > 0

    async def apply(self, records: Sequence[Record], parsed: Parsed | None = None) -> Outcome:
        """Apply ``records``; return the dead letters and decisions. ``parsed`` is what
        :meth:`parse_all` answered for these very ``records``, when the caller parsed them
        ahead (replay parses the next batch while this one waits on Redis); it is not
        changed, so a retry can hand it again.

        Order (see the module docstring): account events first, then the door (posts and
        reposts of suspended accounts, and reposts of their posts, are refused with a
        decision and not applied; nothing else is stopped there), then each type
        by its store in :func:`log_order` (posts' product tags and product views last),
        then the door once more: a suspension another worker applied in between takes
        back what it would have refused (:meth:`AccountStore.recheck`).
        Order within a topic is kept. When :attr:`watermarked`, reposts-topic and
        gifts-topic events are parked instead, for :meth:`release`, and the progress of
        the batch's watched partitions (posts, reposts, gifts, accounts) is raised last,
        once everything else of the batch is written: a release running meanwhile cannot
        pass an event that is not in Redis yet.

        Redis connection errors propagate, so the caller can retry the batch; every
        write is idempotent.
        """
        envelopes, dead = self.parse_all(records) if parsed is None else parsed
        outcome = Outcome(list(dead))
        outcome.types = {e.where: e.event.type for e in envelopes}
        # Resolved once, so a batch is written to one namespace even across a switch.
        ns = await self.active_namespace()
        progress: dict[str, int] = {}
        if self.watermarked:
            parked = self.parked_topics
            held = [e for e in envelopes if e.record.topic in parked]
            progress = self._progress(envelopes)
            packed = [(e, _pack(e.record)) for e in held]
            await self.parking.park([(e.event.event_id, e.event.ts, raw) for e, raw in packed],
                                    ns)  # fmt: skip
            if len(self._parsed) + len(packed) > PARSED_KEPT:  # others released them
                self._parsed.clear()
            self._parsed.update(((ns.prefix, e.event.event_id), (raw, e)) for e, raw in packed)
            outcome.parked = min((e.event.ts for e in held), default=None)
            envelopes = [e for e in envelopes if e.record.topic not in parked]
        if self.before_write is not None:
            await self.before_write()
        await self._apply_events(envelopes, outcome, ns)
        if progress:
            # Only now: a release (the timer runs between any two awaits) may pass an
            # event only once it is in Redis, or it could decide a repost before its post
            # exists.
            await self.parking.advance(progress, ns)
        return outcome

    async def release(
        self, publish: Callable[[Outcome], Awaitable[None]], ns: Namespace | None = None
    ) -> Outcome:
        """Decide and apply, in event-time order, the parked events the watermark has
        passed, chunk by chunk; ``publish`` each chunk's outcome before the chunk is
        forgotten, so a crash in between releases it again (at least once). One releaser
        at a time across workers: another's release returns at once. Returns the whole
        outcome (for metrics). ``ns``: the namespace already resolved for this tick."""
        outcome = Outcome()
        partitions = self.partitions() if self.watermarked and self.partitions else []
        if not partitions:
            return outcome
        ns = ns or await self.active_namespace()
        parking = self.parking
        async with parking.releasing(ns) as held:
            while held:
                limit = self.settings.batch_size
                self.watermark, items = await parking.release(limit, partitions, ns)
                if not items:
                    break
                chunk = Outcome()
                envelopes, chunk.dead_letters = self._released(items, ns)
                await self._apply_events(envelopes, chunk, ns)
                await publish(chunk)
                await parking.forget([event_id for event_id, _ in items], ns)
                outcome.extend(chunk)
                if len(items) < limit:
                    break
        return outcome

    def _released(self, items: Sequence[tuple[str, bytes]], ns: Namespace) -> Parsed:
        """The released ``(event_id, record)`` items parsed: the envelope this process
        made when it parked that very record, else the record parsed afresh."""
        envelopes: list[Envelope] = []
        dead: list[DeadLetter] = []
        kept = self._parsed
        for event_id, raw in items:
            mine = kept.pop((ns.prefix, event_id), None)
            if mine is not None and mine[0] == raw:
                envelopes.append(mine[1])
                continue
            got, bad = self.parse_all([_unpack(raw)])
            envelopes += got
            dead += bad
        return envelopes, dead

    def _progress(self, envelopes: Sequence[Envelope]) -> dict[str, int]:
        """Progress of the watched partitions read in this batch: the latest event time,
        less the allowed lateness."""
        watched = self.watched
        progress: dict[str, int] = {}
        lateness = self.settings.caps.lateness_ms
        for e in envelopes:
            if e.record.topic in watched:
                field = progress_field(e.record.topic, e.record.partition)
                progress[field] = max(progress.get(field, 0), e.event.ts - lateness)
        return progress

    async def advance_watermark(
        self, progress: dict[str, int], ns: Namespace | None = None
    ) -> None:
        """Raise the progress of partitions (the worker's clock-driven part), in ``ns``
        (default: the active namespace)."""
        await self.parking.advance(progress, ns or await self.active_namespace())

    async def parked(self, ns: Namespace) -> int:
        """How many events wait in ``ns`` (one ZCARD)."""
        return await self.parking.pending(ns)

    async def earliest(self, ns: Namespace) -> int | None:
        """The event time (ms) of the oldest event waiting in ``ns``, None if none waits
        (one ZRANGE)."""
        return await self.parking.earliest(ns)

    async def active_namespace(self) -> Namespace:
        """The namespace to write to now: the fixed one, else the active one (one GET)."""
        if self.prefix:
            return Namespace.of(self.settings, self.prefix)
        return await self.namespaces.resolve(self.settings)

    def parse_all(self, records: Sequence[Record]) -> Parsed:
        """Each record with its parsed event, and dead letters for those that do not parse
        (no Redis: a function of the records and the settings alone)."""
        envelopes: list[Envelope] = []
        dead: list[DeadLetter] = []
        for record in records:
            try:
                envelopes.append(Envelope(record, self.parse(record)))
            except InvalidEvent as exc:
                dead.append(DeadLetter(record, exc.reason))
        return envelopes, dead

    async def _apply_events(
        self, envelopes: Sequence[Envelope], outcome: Outcome, ns: Namespace
    ) -> None:
        """Apply parsed events to their stores in the namespace ``ns`` (see :meth:`apply`
        and the module docstring)."""
        first_decision = len(outcome.decisions)
        reposts: list[Repost] = []

        def take(part: Sequence[Envelope], applied: Applied) -> None:
            failed = set()
            for failure in applied.failures:  # keyed by position in ``part``
                record = part[failure.index].record
                failed.add(failure.index)
                outcome.dead_letters.append(DeadLetter(record, f"redis rejected: {failure.error}"))
            outcome.decisions += applied.decisions
            outcome.deliveries += applied.deliveries
            reposts.extend(e.event for n, e in enumerate(part)
                           if isinstance(e.event, Repost) and n not in failed)  # fmt: skip

        accounts = [e for e in envelopes if isinstance(e.event, Account)]
        if accounts:
            take(accounts, await self.accounts.apply([e.event for e in accounts], namespace=ns))
        rest = [e for e in envelopes if not isinstance(e.event, Account)]
        door = await self.accounts.door([e.event for e in rest], namespace=ns)
        await self.accounts.remember([e.event for e in rest], namespace=ns)
        refused = {rest[n]: reason for n, reason in door.items()}
        for e, reason in refused.items():
            ev = e.event
            if not isinstance(ev, Repost):  # reposts get their decision from the feed store
                outcome.decisions.append(Refusal(ev.event_id, ev.type, actor_of(ev) or "",
                                                 (reason,), ev.ts))  # fmt: skip
        ordered = log_order(rest, self._posts_topic, self.settings.topics.graph)
        parts: dict[Store, list[Envelope]] = {}
        for store in self._stores:
            # A repost refused at the door still goes to the feed store, which records its
            # decision; anything else refused there goes nowhere.
            part = [e for e in ordered if self._store_of.get(type(e.event)) is store
                    and (e not in refused or isinstance(e.event, Repost))]  # fmt: skip
            if part:
                parts[store] = part
        if self.feeds in parts:
            part = parts.pop(self.feeds)
            door_of = {n: refused[e] for n, e in enumerate(part) if e in refused}
            take(part, await self.feeds.apply([e.event for e in part], refused=door_of,
                                              namespace=ns))  # fmt: skip
        # The gift and order stores share no key (and no order: their topics are apart),
        # so they run at once, each one's Python between the other's round trips; their
        # outcomes are taken in the stores' order. An error stops both (the batch is
        # retried whole).
        runs = [store.apply([e.event for e in part], namespace=ns) for store, part in parts.items()]
        for part, applied in zip(parts.values(), await _together(runs), strict=True):
            take(part, applied)
        for store, types in self._last:
            part = [e for e in rest if isinstance(e.event, types) and e not in refused]
            if part:
                take(part, await store.apply([e.event for e in part], namespace=ns))
        # The console's view of reposts and decisions (see feedamp.feeds.activity).
        await self.activity.record(ns, reposts, outcome.decisions[first_decision:])
        # A suspension another worker applied after the door: take back what passed (last:
        # the take-back reads the cascades just recorded).
        await self.accounts.recheck([e.event for e in rest], door, namespace=ns)


async def _together(runs: Sequence[Awaitable[Applied]]) -> list[Applied]:
    """Await ``runs`` at once; their results in order. The first error is raised as it
    is, once the others were cancelled and ended."""
    if len(runs) < 2:
        return [await run for run in runs]
    tasks = [asyncio.ensure_future(run) for run in runs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def log_order(envelopes: Sequence[Envelope], posts: str, graph: str) -> list[Envelope]:
    """``envelopes`` in the order the stores apply them: as read, but each event of the
    topic ``posts`` ahead of the other events read before it since the last event of the
    topic ``graph`` (stable: each topic's own order is kept)."""
    topics = [envelope.record.topic for envelope in envelopes]
    if posts not in topics:  # nothing moves (a batch of light events, say)
        return list(envelopes)
    stretch = 0  # graph-topic events read so far
    keyed: list[tuple[int, bool, int]] = []
    for n, topic in enumerate(topics):
        keyed.append((stretch, topic != posts, n))
        stretch += topic == graph
    keyed.sort()  # the positions make every key distinct
    return [envelopes[n] for _, _, n in keyed]


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
