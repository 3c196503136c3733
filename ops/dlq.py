"""``feedamp dlq list`` and ``feedamp dlq replay``: the dead-letter topic for operators.

``list`` prints one line per dead letter: where it sits in the dead-letter topic, where
the original record came from (headers ``feedamp-topic``, ``feedamp-partition``,
``feedamp-offset``), the reason and the start of the value.

``replay`` first runs the worker's own checks (:meth:`Pipeline.parse`: JSON, size, type,
topic, fields, ids) on each dead letter, and re-sends only the ones that pass now (a
Redis error, a fixed limit) with their original key and value to their original topic, so
the worker handles them again; the others are kept, counted by reason. So a run with
nothing fixed sends nothing that comes straight back, and the dead-letter count stays.
Progress is remembered by the consumer group ``<app_id>-dlq-replay``, committed after
each batch was sent, so a second run looks only at dead letters that arrived since;
``--from beginning`` looks at every letter again (after a change that makes kept letters
valid; re-sending one applied before changes nothing, every write being idempotent). A
letter whose original topic is not one of the worker's input topics is kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from feedamp.config import Settings
from feedamp.kafka.clients import start_client
from feedamp.kafka.config import kafka_client_kwargs
from feedamp.kafka.letters import Letter
from feedamp.kafka.offsets import end_offsets, partitions
from feedamp.streams.records import Record

__all__ = [
    "DlqReplayStats",
    "Letter",
    "letter_check",
    "list_letters",
    "original_record",
    "replay_group",
    "replay_letters",
]

#: Header put on re-sent records: ``<partition>/<offset>`` of the dead letter.
REPLAY_HEADER = "feedamp-dlq"


def original_record(letter: Letter) -> Record:
    """The letter's original record, as the worker first read it."""
    return Record(letter.topic or "", letter.source_partition or 0, letter.source_offset or 0,
                  letter.key, letter.value, letter.timestamp)  # fmt: skip


def replay_group(settings: Settings) -> str:
    """The consumer group that remembers which dead letters were re-sent."""
    return f"{settings.app_id}-dlq-replay"


async def _read_until_end(
    consumer: AIOKafkaConsumer,
    starts: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
) -> AsyncIterator[tuple[TopicPartition, list[ConsumerRecord]]]:
    """Batches of each partition from ``starts`` up to the ``ends`` offsets."""
    active = {tp for tp in starts if starts[tp] < ends[tp]}
    for tp in active:
        consumer.seek(tp, starts[tp])
    if set(starts) - active:
        consumer.pause(*(set(starts) - active))
    while active:
        fetched = await consumer.getmany(*active, timeout_ms=500)
        for tp, records in fetched.items():
            records = [r for r in records if r.offset < ends[tp]]
            if records:
                yield tp, records
        for tp in list(active):
            if await consumer.position(tp) >= ends[tp]:
                active.discard(tp)
                consumer.pause(tp)


async def list_letters(settings: Settings, limit: int | None = None) -> list[Letter]:
    """The dead letters now in the topic, oldest first per partition (at most ``limit``)."""
    consumer = AIOKafkaConsumer(
        **kafka_client_kwargs(settings),
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    await start_client(consumer)
    letters: list[Letter] = []
    try:
        tps = await partitions(consumer, [settings.topics.dead_letter], missing_ok=True)
        if not tps:
            return []
        consumer.assign(tps)
        ends = await end_offsets(consumer, tps)
        begins = await consumer.beginning_offsets(tps)
        async for _, records in _read_until_end(consumer, dict(begins), ends):
            letters += [Letter.from_record(r) for r in records]
            if limit is not None and len(letters) >= limit:
                break
    finally:
        await consumer.stop()
    letters.sort(key=lambda x: (x.partition, x.offset))
    return letters[:limit] if limit is not None else letters


@dataclass
class DlqReplayStats:
    """What ``dlq replay`` did (or, in a dry run, would do)."""

    sent: Counter[str] = field(default_factory=Counter)
    #: Letters kept: reason (as the checks give it now) -> count.
    kept: Counter[str] = field(default_factory=Counter)

    @property
    def skipped(self) -> int:
        """Letters kept."""
        return sum(self.kept.values())

    @property
    def total(self) -> int:
        """Letters re-sent."""
        return sum(self.sent.values())


def letter_check(settings: Settings) -> Callable[[Letter], str | None]:
    """``check(letter)``: None if the worker would accept the letter's record now, else
    why not (the worker's own :meth:`Pipeline.parse`, on the original topic)."""
    from feedamp.feeds import FeedStore
    from feedamp.models import InvalidEvent
    from feedamp.streams import Pipeline
    from redis.asyncio import Redis

    # parse() touches no Redis: the client is never connected.
    pipeline = Pipeline(FeedStore(Redis(), settings), settings)
    inputs = set(settings.topics.inputs)

    def check(letter: Letter) -> str | None:
        if letter.topic not in inputs:
            return f"no input topic to go back to ({letter.topic or 'none'})"
        try:
            pipeline.parse(original_record(letter))
        except InvalidEvent as exc:
            return exc.reason
        return None

    return check


async def replay_letters(
    settings: Settings, *, dry_run: bool = False, from_beginning: bool = False
) -> DlqReplayStats:
    """Re-send the dead letters not looked at before (every one with ``from_beginning``)
    that pass the worker's checks now to their original topics; keep the others. Commit
    the group's offsets after each batch was acknowledged by the broker (not in a
    ``dry_run``, which sends nothing)."""
    kafka = kafka_client_kwargs(settings)
    check = letter_check(settings)
    consumer = AIOKafkaConsumer(
        **kafka,
        group_id=replay_group(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    producer = None if dry_run else AIOKafkaProducer(**kafka, acks="all", linger_ms=5)
    stats = DlqReplayStats()
    await start_client(consumer)
    try:
        if producer is not None:
            await start_client(producer)
        tps = await partitions(consumer, [settings.topics.dead_letter], missing_ok=True)
        if not tps:
            return stats
        consumer.assign(tps)
        ends = await end_offsets(consumer, tps)
        begins = await consumer.beginning_offsets(tps)
        starts = {}
        for tp in tps:
            committed = None if from_beginning else await consumer.committed(tp)
            starts[tp] = max(committed, begins[tp]) if committed is not None else begins[tp]
        async for tp, records in _read_until_end(consumer, starts, ends):
            futures = []
            for record in records:
                letter = Letter.from_record(record)
                reason = check(letter)
                if reason is not None:
                    stats.kept[reason] += 1
                    continue
                stats.sent[letter.topic or ""] += 1
                if producer is None:
                    continue
                header = (REPLAY_HEADER, f"{letter.partition}/{letter.offset}".encode())
                futures.append(
                    await producer.send(
                        letter.topic, value=letter.value, key=letter.key, headers=[header]
                    )
                )
            for future in futures:
                await future
            if not dry_run:
                await consumer.commit({tp: records[-1].offset + 1})
    finally:
        if producer is not None:
            await producer.stop()
        await consumer.stop()
    return stats
