"""``feedamp dlq list`` and ``feedamp dlq replay``: the dead-letter topic for operators.

``list`` prints one line per dead letter: where it sits in the dead-letter topic, where
the original record came from (headers ``feedamp-topic``, ``feedamp-partition``,
``feedamp-offset``), the reason and the start of the value.

``replay`` re-sends each dead letter's original key and value to its original topic,
after a fix, so the worker handles it again; what still fails is dead-lettered again by
the worker. Progress is remembered by the consumer group ``<app_id>-dlq-replay``, committed
after each batch was sent, so a second run sends only dead letters that arrived since.
A letter whose original topic is not one of the worker's input topics is skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from feedamp.config import Settings
from feedamp.kafka.config import kafka_client_kwargs
from feedamp.kafka.letters import Letter
from feedamp.kafka.offsets import end_offsets, partitions

__all__ = ["DlqReplayStats", "Letter", "list_letters", "replay_group", "replay_letters"]

#: Header put on re-sent records: ``<partition>/<offset>`` of the dead letter.
REPLAY_HEADER = "feedamp-dlq"


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
    await consumer.start()
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
    """What ``dlq replay`` did."""

    sent: Counter[str] = field(default_factory=Counter)
    #: Letters without an input topic to go back to.
    skipped: int = 0

    @property
    def total(self) -> int:
        """Letters re-sent."""
        return sum(self.sent.values())


async def replay_letters(settings: Settings) -> DlqReplayStats:
    """Re-send every dead letter not re-sent before to its original topic; commit the
    group's offsets after each batch was acknowledged by the broker."""
    kafka = kafka_client_kwargs(settings)
    consumer = AIOKafkaConsumer(
        **kafka,
        group_id=replay_group(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    producer = AIOKafkaProducer(**kafka, acks="all", linger_ms=5)
    stats = DlqReplayStats()
    inputs = set(settings.topics.inputs)
    await consumer.start()
    await producer.start()
    try:
        tps = await partitions(consumer, [settings.topics.dead_letter], missing_ok=True)
        if not tps:
            return stats
        consumer.assign(tps)
        ends = await end_offsets(consumer, tps)
        begins = await consumer.beginning_offsets(tps)
        starts = {}
        for tp in tps:
            committed = await consumer.committed(tp)
            starts[tp] = max(committed, begins[tp]) if committed is not None else begins[tp]
        async for tp, records in _read_until_end(consumer, starts, ends):
            futures = []
            for record in records:
                letter = Letter.from_record(record)
                if letter.topic not in inputs:
                    stats.skipped += 1
                    continue
                header = (REPLAY_HEADER, f"{letter.partition}/{letter.offset}".encode())
                futures.append(
                    await producer.send(
                        letter.topic, value=letter.value, key=letter.key, headers=[header]
                    )
                )
                stats.sent[letter.topic] += 1
            for future in futures:
                await future
            await consumer.commit({tp: records[-1].offset + 1})
    finally:
        await producer.stop()
        await consumer.stop()
    return stats
