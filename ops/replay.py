"""``feedamp replay``: re-apply the input topics to Redis from a point in time.

The topics are read directly with aiokafka, without a consumer group (every partition is
assigned, read in batches with ``getmany``), from ``--from`` up to ``--to`` or to the end
offsets seen at start, and merged in record-time order across partitions (see
:mod:`feedamp.kafka.merge`). Each batch goes through exactly the worker's code path,
:class:`~feedamp.streams.Pipeline` inside :class:`~feedamp.streams.BatchHandler`, so the
result is what the worker would have written; every write is idempotent, so replaying
what the worker already applied changes nothing. Reposts and gifts are handed to the
pipeline in event-time order behind a watermark, as the workers decide them
(:mod:`feedamp.ops.event_order`). Each batch is read, merged and parsed
(:meth:`~feedamp.streams.Pipeline.parse_all`, which needs no Redis) while the one before
is applied; batches are applied one at a time, in order.

Dead letters and decisions are counted, not published: the live worker published them
when it first saw the records (``--publish`` sends them again).

Seeking by time: ``offsets_for_times`` gives the first offset at or after the time, or
None when the partition has nothing that late (then the partition is skipped). Some
Kafka-compatible brokers answer offset 0 instead (Tansu does), so records older than
``--from`` are skipped until the first one at or after it; from there on every record is
taken, as Kafka would. ``--to`` stops a partition at its first record later than it.

Namespace: a replay writes to the active key namespace (the pointer of
:mod:`feedamp.feeds.namespace`, resolved per batch like the worker), or to the one given
as ``prefix``. ``--rebuild`` (:mod:`feedamp.ops.rebuild`) replays into a fresh namespace
and switches readers and workers over to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import Counter
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from feedamp.config import Settings
from feedamp.feeds import FeedStore
from feedamp.feeds.connection import close as close_client
from feedamp.feeds.connection import connect
from feedamp.kafka.clients import start_client
from feedamp.kafka.config import kafka_client_kwargs
from feedamp.kafka.merge import MergedReader, Window
from feedamp.kafka.offsets import end_offsets, partitions
from feedamp.kafka.produce import BatchSend
from feedamp.models import InvalidEvent
from feedamp.streams import BatchHandler, Pipeline, Record
from feedamp.streams.pipeline import Parsed
from feedamp.streams.publish import Publisher
from feedamp.streams.records import DeadLetter, Envelope

from .event_order import EventTimeOrder
from .progress import ProgressBar

__all__ = [
    "ReplayStats",
    "input_topics",
    "parse_time",
    "replay",
]

#: Records handed to the pipeline at once; larger batches mean fewer Redis round trips.
BATCH = 5000
#: Records made and parsed ahead between two yields to the batch being applied.
AHEAD_SLICE = 250
#: Bytes fetched per partition and per request (the aiokafka defaults are 1 MiB and 50 MiB).
PARTITION_FETCH_BYTES = 4 * 1024 * 1024


def parse_time(text: str) -> int | None:
    """``beginning`` -> None; digits -> ms since epoch; else ISO-8601 (UTC if no zone).

    Raises ValueError for anything else.
    """
    value = text.strip()
    if value.lower() == "beginning":
        return None
    if value.isdigit():
        return int(value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use 'beginning', ISO-8601 or ms since epoch)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def input_topics(settings: Settings, names: Sequence[str] | None) -> list[str]:
    """Topic names for ``names`` (logical names such as ``posts``, or actual topic names);
    every input topic when ``names`` is empty. ValueError for an unknown one."""
    if not names:
        return list(settings.topics.inputs)
    logical = {"posts", "reposts", "graph", "gifts", "purchases", "accounts", "product_views"}
    topics = []
    for name in names:
        if name in logical:
            topics.append(getattr(settings.topics, name))
        elif name in settings.topics.inputs:
            topics.append(name)
        else:
            raise ValueError(f"unknown input topic {name!r} (one of {', '.join(sorted(logical))})")
    return list(dict.fromkeys(topics))


@dataclass
class ReplayStats:
    """What a replay read and did."""

    #: Records handed to the pipeline (applied or dead-lettered; in a dry run, parsed).
    events: int = 0
    #: Records read but older than ``--from`` (brokers that seek by time loosely).
    skipped: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)
    #: Dry run: parsed events per type, and records that would be dead-lettered.
    by_type: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0
    decisions: int = 0
    #: Feed entries pushed by the replayed posts and reposts.
    deliveries: int = 0
    #: Dead letters and decisions sent to their topics (``--publish``).
    published: int = 0
    partitions: int = 0
    seconds: float = 0.0
    #: The end offsets the replay read up to (exclusive), per partition of its topics.
    ends: dict[TopicPartition, int] = field(default_factory=dict)
    #: The event-time order of reposts and gifts as it stood at the end (None: none was
    #: kept): with ``hold``, what it still holds, for the next pass (``carry``).
    order: EventTimeOrder | None = None

    @property
    def rate(self) -> float:
        """Handled records per second."""
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def summary(self, *, dry_run: bool, publish: bool) -> str:
        """Human-readable lines for the end of the command."""
        verb = "dry run: read" if dry_run else "replayed"
        lines = [
            f"{verb} {self.events:,} events from {self.partitions} partitions in "
            f"{self.seconds:.1f}s ({self.rate:,.0f} events/s)"
        ]
        if self.by_topic:
            lines.append(
                "  by topic: " + ", ".join(f"{t} {n:,}" for t, n in sorted(self.by_topic.items()))
            )
        if dry_run:
            lines.append(
                "  would apply, by type: "
                + (", ".join(f"{t} {n:,}" for t, n in sorted(self.by_type.items())) or "-")
            )
            lines.append(f"  invalid (would be dead letters): {self.dead_letters:,}")
        else:
            note = "published" if publish else "not re-published; --publish sends them"
            lines.append(f"  dead letters: {self.dead_letters:,} ({note})")
            lines.append(f"  decisions: {self.decisions:,} ({note})")
        if self.skipped:
            lines.append(f"  skipped {self.skipped:,} records older than --from")
        return "\n".join(lines)


async def _start_offsets(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    start_ms: int | None,
    ends: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """First offset to read per partition; the end offset when there is nothing to read."""
    begins = await consumer.beginning_offsets(tps)
    if start_ms is None:
        return dict(begins)
    found = await consumer.offsets_for_times({tp: start_ms for tp in tps})
    starts = {}
    for tp in tps:
        hit = found.get(tp)
        # None: nothing at or after start_ms in this partition (Kafka's answer).
        starts[tp] = ends[tp] if hit is None else min(max(hit.offset, begins[tp]), ends[tp])
    return starts


async def replay(
    settings: Settings,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    topics: Sequence[str] | None = None,
    dry_run: bool = False,
    publish: bool = False,
    progress: bool | TextIO = False,
    batch: int = BATCH,
    prefix: str | None = None,
    starts: Mapping[TopicPartition, int] | None = None,
    progress_name: str = "replay",
    audit: Callable[[list[Record]], None] | None = None,
    carry: EventTimeOrder | None = None,
    hold: bool = False,
) -> ReplayStats:
    """Re-apply the input ``topics`` (default: all) from ``start_ms`` (None: the
    beginning) to ``end_ms`` (None: the end offsets at start) through the worker's
    pipeline; return what was done. ``dry_run`` parses and counts without writing.
    ``progress`` draws a progress line (True: on stderr; or a stream). ``prefix``
    writes to that key namespace (default: the active one). ``starts`` gives the first
    offset per partition instead of ``start_ms`` (a catch-up from a previous replay's
    ``ends``; partitions it does not name start at the beginning). ``audit`` is shown
    every batch of records before it is applied. Reposts and gifts go in event-time order
    (:mod:`feedamp.ops.event_order`); ``hold`` keeps what that order still holds at the
    end in ``stats.order`` instead of applying it, and ``carry`` (a catch-up, with
    ``starts``) takes up such an order from the pass before: its events are applied in
    this pass's order, as if one replay had read both."""
    redis = connect(settings.redis_url, max_connections=settings.redis_max_connections)
    names = input_topics(settings, topics)
    stats = ReplayStats()
    started = time.monotonic()
    kafka = kafka_client_kwargs(settings)
    consumer = AIOKafkaConsumer(
        **kafka,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
    )
    producer = AIOKafkaProducer(**kafka, acks="all") if publish and not dry_run else None
    send = None
    if producer is not None:
        send = BatchSend(lambda: producer)
    outputs = Publisher(settings.topics, send)
    pipeline = Pipeline(FeedStore(redis, settings), settings, prefix=prefix)
    handler = BatchHandler(pipeline, outputs)
    bar: ProgressBar | None = None
    reader: MergedReader | None = None
    await start_client(consumer)
    try:
        if producer is not None:
            await start_client(producer)
        tps = await partitions(consumer, names)
        consumer.assign(tps)
        ends = stats.ends = await end_offsets(consumer, tps, pause=True)  # resumed by reader
        if starts is None:
            first = await _start_offsets(consumer, tps, start_ms, ends)
        else:
            begins = await consumer.beginning_offsets(tps)
            first = {tp: min(max(starts.get(tp, 0), begins[tp]), ends[tp]) for tp in tps}
        active = [tp for tp in tps if first[tp] < ends[tp]]
        stats.partitions = len(active)
        if progress:
            total = sum(ends[tp] - first[tp] for tp in active)
            bar = ProgressBar(total, None if progress is True else progress, name=progress_name)
        window = Window(start_ms if starts is None else None, end_ms)
        reader = MergedReader(consumer, first, ends, window, names.index, batch)
        parse = None if dry_run else pipeline.parse_all
        caps = settings.caps
        order = None
        if not dry_run and caps.enabled and caps.lateness_ms > 0:  # as the workers decide
            reading = {(tp.topic, tp.partition): ends[tp] for tp in active}
            if carry is not None:
                order = carry.resume(reading, final=not hold)
            else:
                order = EventTimeOrder(settings.topics.parked, settings.topics.watched,
                                       caps.lateness_ms, reading, final=not hold)  # fmt: skip
        with _frozen_heap():
            async with contextlib.aclosing(_ahead(reader.batches(), parse)) as ahead:
                async for records, parsed in ahead:
                    if audit is not None:
                        audit(records)
                    if order is not None and parsed is not None:
                        records, parsed = order.step(records, parsed)
                    await _handle(records, parsed, pipeline, handler, stats, dry_run)
                    if bar is not None:
                        bar.update(stats.events)
            if order is not None and order.held and not hold:
                records, parsed = order.rest()
                await _handle(records, parsed, pipeline, handler, stats, dry_run)
        stats.order = order
        stats.skipped = reader.skipped
        if not dry_run:
            stats.dead_letters, stats.decisions = outputs.dead_letters, outputs.decisions
            stats.published = outputs.published
    finally:
        if bar is not None:
            bar.close(stats.events)
        await consumer.stop()
        if producer is not None:
            await producer.stop()
        await close_client(redis)
    stats.seconds = time.monotonic() - started
    return stats


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """The objects alive when the replay starts set aside from the garbage collector
    (``gc.freeze``) while it runs, and handed back after (``gc.unfreeze``): each batch
    allocates many objects, and every full collection they set off would otherwise walk
    the whole heap of the process again. Nothing is freed any later than it would be but
    cyclic garbage made before the replay. Left alone when something else froze the heap
    (that one unfreezes it)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def _ahead(
    batches: AsyncIterator[list[Any]], parse: Callable[[list[Record]], Parsed] | None
) -> AsyncGenerator[tuple[list[Record], Parsed | None], None]:
    """The merged batches as records, with what ``parse`` makes of them (None without it),
    each read while the one before is applied: the fetch, the merge, the records' making
    and their parsing (which needs no Redis) run between that batch's Redis round trips,
    a slice of ``AHEAD_SLICE`` records at a time (so that each reply the batch waits for
    is taken up soon after it comes). Batches come in order, one read at a time (the
    reader is never asked twice at once)."""

    async def read() -> tuple[list[Record], Parsed | None] | None:
        fetched = await anext(batches, None)
        if fetched is None:
            return None
        records: list[Record] = []
        envelopes: list[Envelope] = []
        dead: list[DeadLetter] = []
        for start in range(0, len(fetched), AHEAD_SLICE):
            part = [Record.from_message(m) for m in fetched[start : start + AHEAD_SLICE]]
            records += part
            if parse is not None:
                got, bad = parse(part)
                envelopes += got
                dead += bad
            await asyncio.sleep(0)
        return records, None if parse is None else (envelopes, dead)

    next_read = asyncio.ensure_future(read())
    try:
        while (batch := await next_read) is not None:
            next_read = asyncio.ensure_future(read())
            yield batch
    finally:
        # Stopped early (the batch before failed): the read ahead is dropped, its error
        # (if it had one) too.
        next_read.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await next_read


async def _handle(
    records: list[Record],
    parsed: Parsed | None,
    pipeline: Pipeline,
    handler: BatchHandler,
    stats: ReplayStats,
    dry_run: bool,
) -> None:
    stats.events += len(records)
    for record in records:
        stats.by_topic[record.topic] += 1
    if not dry_run:
        stats.deliveries += (await handler.handle(records, parsed)).deliveries
        return
    for record in records:
        try:
            stats.by_type[pipeline.parse(record).type] += 1
        except InvalidEvent:
            stats.dead_letters += 1
