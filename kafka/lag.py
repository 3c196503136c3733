"""Lag of the worker group: per input partition, the end offset less the group's committed
offset (the whole partition when the group has committed nothing yet), and the dead letters
kept (end less beginning offsets of the dead-letter topic). Offsets are read with a manual
assignment, without joining or disturbing the group."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from feedamp.config import Settings

from .clients import start_client
from .config import kafka_client_kwargs
from .offsets import end_offsets, partitions

__all__ = ["PartitionLag", "kafka_status"]


@dataclass(frozen=True)
class PartitionLag:
    """One input partition: end offset, the group's committed offset (None: nothing
    committed yet) and the records between them."""

    topic: str
    partition: int
    end: int
    committed: int | None
    lag: int


async def kafka_status(settings: Settings) -> tuple[list[PartitionLag], int]:
    """Lag of the worker group per input partition, and the number of dead letters."""
    kafka = kafka_client_kwargs(settings)
    consumer = AIOKafkaConsumer(
        **kafka, group_id=settings.app_id, enable_auto_commit=False,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )  # fmt: skip
    await start_client(consumer)
    try:
        inputs = await partitions(consumer, settings.topics.inputs, missing_ok=True)
        letters = await partitions(consumer, [settings.topics.dead_letter], missing_ok=True)
        # Manual assignment: offsets are read without joining (or disturbing) the group.
        consumer.assign(inputs + letters)
        ends = await end_offsets(consumer, inputs + letters)
        begins = await consumer.beginning_offsets(inputs + letters)
        lag = []
        for tp in inputs:
            committed = await consumer.committed(tp)
            base = committed if committed is not None else begins[tp]
            lag.append(PartitionLag(tp.topic, tp.partition, ends[tp], committed,
                                    max(ends[tp] - base, 0)))  # fmt: skip
        dead = sum(ends[tp] - begins[tp] for tp in letters)
    finally:
        await consumer.stop()
    return lag, dead
