"""Dead letters and decisions published in bulk, straight through the app's producer.

Faust's ``Topic.send`` builds a pending message, a future message and a callback chain per
message; a batch's outcome instead goes to the Kafka producer Faust already runs (its
aiokafka producer batches them into few requests), every message queued in order, then
all awaited together. Keys, values, headers and partitioning (the producer's default
partitioner on the key) are what ``Topic.send`` gave.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .records import Outcome

__all__ = ["ProducerOutputs"]

log = logging.getLogger("feedamp.worker")


class ProducerOutputs:
    """:class:`~feedamp.streams.records.Outputs` on a Faust producer."""

    def __init__(self, producer: Any, dead_letters: str, decisions: str) -> None:
        """``producer``: the app's producer (``app.producer``, read at each publish);
        ``dead_letters``, ``decisions``: topic names."""
        self._producer = producer
        self.dead_letters = dead_letters
        self.decisions = decisions

    async def publish(self, outcome: Outcome) -> None:
        """Queue every dead letter, then every decision, in order; return once the broker
        has stored them all."""
        send = self._producer().send
        sent = []
        for letter in outcome.dead_letters:
            key, value, headers = letter.message()
            log.warning("dead letter %s[%d]@%d: %s", letter.record.topic,
                        letter.record.partition, letter.record.offset,
                        letter.reason)  # fmt: skip
            sent.append(await send(self.dead_letters, key, value, None, None, headers))
        topic = self.decisions
        for decision in outcome.decisions:
            sent.append(await send(topic, decision.key, decision.to_json(), None, None, None))
        await asyncio.gather(*sent)
