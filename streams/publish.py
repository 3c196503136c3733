"""The one publisher of dead letters and decisions, shared by the worker and replay.

A batch's :class:`~feedamp.streams.records.Outcome` goes out in order: every dead letter
(original key and value, reason and origin in headers) to the dead-letter topic, then every
decision to the decisions topic. Every send is queued first and all are awaited together,
one broker round trip rather than one per message; :meth:`Publisher.publish` returns once
the broker stored them all. A retry after a failure may send some twice: consumers see each
at least once. The transport is a ``send`` function (a Faust topic in the worker, an
aiokafka producer in replay), or none at all to count without sending.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from feedamp.config import Topics

from .records import Outcome

__all__ = ["Publisher", "Send"]

#: ``send(topic, key, value, headers)``: queue one message; its result is an awaitable
#: that completes when the broker stored it.
Send = Callable[[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None], Awaitable[Any]]


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
        sent = []
        for letter in outcome.dead_letters:
            key, value, headers = letter.message()
            if self.log is not None:
                r = letter.record
                self.log.warning("dead letter %s[%d]@%d: %s", r.topic, r.partition, r.offset,
                                 letter.reason)  # fmt: skip
            sent.append(await self.send(self.topics.dead_letter, key, value, headers))
        for decision in outcome.decisions:
            sent.append(
                await self.send(self.topics.decisions, decision.key, decision.to_json(), None)
            )
        await asyncio.gather(*sent)
        self.dead_letters += len(outcome.dead_letters)
        self.decisions += len(outcome.decisions)
        self.published += len(sent)
