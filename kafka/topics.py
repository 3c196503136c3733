"""Create the engine's topics when they are missing (dev, tests, benchmarks).

Production clusters usually create topics with their own tooling; the worker never needs
this because Faust declares the topics it consumes.
"""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from feedamp.config import Settings

from .config import kafka_client_kwargs

__all__ = ["ensure_topics"]


async def ensure_topics(settings: Settings, partitions: int | None = None) -> list[str]:
    """Create every input and output topic that does not exist yet; return the created."""
    partitions = partitions or settings.partitions
    t = settings.topics
    wanted = [*t.inputs, t.decisions, t.dead_letter]
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(n, partitions, 1) for n in missing])
        return missing
    finally:
        await admin.close()
