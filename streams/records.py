"""Raw Kafka records as the pipeline sees them, whatever client read them (Faust, aiokafka)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from feedamp.models.decisions import AnyDecision
from feedamp.models.events import Event

__all__ = ["DeadLetter", "Envelope", "Outcome", "Outputs", "Record"]


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record: where it came from and its undecoded bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def from_message(cls, message: Any) -> Record:
        """From a Faust ``Message`` or an aiokafka ``ConsumerRecord`` (same attribute names)."""
        headers = message.headers
        if isinstance(headers, dict):
            headers = headers.items()
        timestamp = message.timestamp
        return cls(
            message.topic,
            message.partition,
            message.offset,
            message.key,
            message.value,
            int(timestamp * 1000) if isinstance(timestamp, float) else timestamp,
            tuple((k, b"" if v is None else bytes(v)) for k, v in headers) if headers else (),
        )


@dataclass(frozen=True, slots=True, eq=False)
class Envelope:
    """A record and the event parsed from it, carried together through the pipeline
    (compared and hashed by identity: two envelopes are two arrivals)."""

    record: Record
    event: Event

    @property
    def where(self) -> tuple[str, int, int]:
        """``(topic, partition, offset)`` of the record."""
        return (self.record.topic, self.record.partition, self.record.offset)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be applied, and why."""

    record: Record
    reason: str

    def message(self) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
        """Key, value and headers of the dead-letter message.

        Key and value are the original bytes, untouched; the headers say where the record
        came from and why it failed (``feedamp-reason``, ``feedamp-topic``,
        ``feedamp-partition``, ``feedamp-offset``, ``feedamp-timestamp``).
        """
        r = self.record
        headers = [
            ("feedamp-reason", self.reason.encode()),
            ("feedamp-topic", r.topic.encode()),
            ("feedamp-partition", str(r.partition).encode()),
            ("feedamp-offset", str(r.offset).encode()),
        ]
        if r.timestamp is not None:
            headers.append(("feedamp-timestamp", str(r.timestamp).encode()))
        return r.key, r.value, headers


@dataclass(slots=True)
class Outcome:
    """What applying a batch produced besides Redis writes: records that could not be
    applied, and the decisions to publish."""

    dead_letters: list[DeadLetter] = field(default_factory=list)
    decisions: list[AnyDecision] = field(default_factory=list)
    #: Feed entries pushed by fan-out (followers reached by posts and reposts).
    deliveries: int = 0
    #: The event type of each record parsed, by ``(topic, partition, offset)`` (for
    #: metrics, which then parse only the records that are not here).
    types: dict[tuple[str, int, int], str] = field(default_factory=dict)
    #: The earliest event time (ms) of the events the batch parked for the watermark
    #: (None: it parked none); the release tick wakes by it.
    parked: int | None = None

    def extend(self, other: Outcome) -> None:
        self.dead_letters += other.dead_letters
        self.decisions += other.decisions
        self.deliveries += other.deliveries
        self.types.update(other.types)
        if other.parked is not None:
            self.parked = other.parked if self.parked is None else min(self.parked, other.parked)


class Outputs(Protocol):
    """Where a batch's outcome goes (Kafka topics in the worker)."""

    async def publish(self, outcome: Outcome) -> None:
        """Publish the outcome's dead letters and decisions, in order; return once all
        are stored (a retry may send some twice: consumers see them at least once)."""
        ...
