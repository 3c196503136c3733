"""The one code path from raw records to Redis, shared by the worker and replay.

Records are parsed and validated, checked against their topic, and applied to the feed
store in order. Whatever cannot be applied comes back as a :class:`DeadLetter` with a
reason; nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence

from feedamp.config import Settings
from feedamp.feeds import FeedStore
from feedamp.models import ROUTES, Event, InvalidEvent, Limits, parse_event

from .records import DeadLetter, Outcome, Record

__all__ = ["Pipeline"]


class Pipeline:
    """Parses records and applies the events to the feed store."""

    def __init__(self, store: FeedStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.limits = Limits(settings.max_event_bytes, settings.max_text_chars)
        topics = settings.topics
        self._posts_topic = topics.posts
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

    async def apply(self, records: Sequence[Record]) -> Outcome:
        """Apply ``records`` in order; return the dead letters and decisions.

        Redis connection errors propagate, so the caller can retry the batch; every
        write is idempotent.
        """
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
        # Posts first: topics are not ordered against each other, and a repost decided
        # after its post can see the post's visibility. Order within a topic is kept.
        outcome = Outcome(dead)
        first = [i for i, r in enumerate(sources) if r.topic == self._posts_topic]
        rest = [i for i, r in enumerate(sources) if r.topic != self._posts_topic]
        for part in (first, rest):
            if not part:
                continue
            result = await self.store.apply([events[i] for i in part])
            for failure in result.failures:
                record = sources[part[failure.index]]
                dead.append(DeadLetter(record, f"redis rejected: {failure.error}"))
            outcome.decisions += result.decisions
        return outcome
