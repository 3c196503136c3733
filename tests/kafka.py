"""Kafka helpers for tests: send raw messages, read a topic back."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, RecordMetadata
from feedamp.config import Settings
from feedamp.models import Event, key_of, topic_of

from .factory import to_json


async def send(
    settings: Settings, messages: list[tuple[str, bytes | None, bytes | None]]
) -> list[RecordMetadata]:
    """Send (topic, key, value) messages in order; return where each landed."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        return [await producer.send_and_wait(t, value=v, key=k) for t, k, v in messages]
    finally:
        await producer.stop()


async def send_events(settings: Settings, events: list[Event]) -> list[RecordMetadata]:
    """Send event records to their topics with their keys."""
    return await send(
        settings,
        [(topic_of(e.type, settings.topics), key_of(e).encode(), to_json(e)) for e in events],
    )


async def read_topic(
    settings: Settings, topic: str, count: int, timeout: float = 60.0
) -> list[ConsumerRecord]:
    """Read ``topic`` from the beginning until ``count`` records arrived (or fail)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    assert len(records) >= count, f"only {len(records)} of {count} records on {topic}"
    return records
