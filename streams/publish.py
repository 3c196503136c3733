"""The one publisher of dead letters and decisions, shared by the worker and replay.

A batch's :class:`~feedamp.streams.records.Outcome` goes out in order: every dead letter
(original key and value, reason and origin in headers) to the dead-letter topic, then every
decision to the decisions topic. Each topic's messages are queued together (a record batch
per partition, :class:`~feedamp.kafka.produce.BatchSend`) and all are awaited together,
one broker round trip rather than one per message; :meth:`Publisher.publish` returns once
the broker stored them all. A retry after a failure may send some twice: consumers see each
at least once. The transport is a ``send`` function of a topic and its messages (the
producer Faust runs in the worker, replay's own producer), or none at all to count without
sending.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from feedamp.config import Topics
from feedamp.kafka.produce import Message

from .records import Outcome

__all__ = ["Publisher", "Send"]

#: ``send(topic, messages)``: queue messages in order; its result holds awaitables that
#: complete when the broker stored them.
Send = Callable[[str, Sequence[Message]], Awaitable[Sequence[Awaitable[Any]]]]


class Publisher:
    """Sends outcomes' dead letters and decisions to their topics and counts them."""

    def __init__(
        self, topics: Topics, send: Send | None, *, log: logging.Logger | None = None
    ) -> None:
        """``send`` None: count only. ``log``: a warning per dead letter sent."""
        self.topics = topics
        self.send = send
        self.log = log
        #: Dead letters and decisions seen, and messages the broker stored.
        self.dead_letters = 0
        self.decisions = 0
        self.published = 0

    async def publish(self, outcome: Outcome) -> None:
        """Publish ``outcome``'s dead letters, then its decisions; return once stored."""
        if self.send is None:
            self.dead_letters += len(outcome.dead_letters)
            self.decisions += len(outcome.decisions)
            return
        letters: list[Message] = [letter.message() for letter in outcome.dead_letters]
        if self.log is not None:
            for letter in outcome.dead_letters:
                r = letter.record
                self.log.warning("dead letter %s[%d]@%d: %s", r.topic, r.partition, r.offset,
                                 letter.reason)  # fmt: skip
        decisions: list[Message] = [(d.key, d.to_json(), None) for d in outcome.decisions]
        sent: list[Awaitable[Any]] = []
        for topic, messages in ((self.topics.dead_letter, letters),
                                (self.topics.decisions, decisions)):  # fmt: skip
            if messages:
                sent += await self.send(topic, messages)
        await asyncio.gather(*sent)
        self.dead_letters += len(letters)
        self.decisions += len(decisions)
        self.published += len(letters) + len(decisions)
