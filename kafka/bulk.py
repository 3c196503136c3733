"""Records of the input topics handed to the agent a fetch at a time, not one by one.

Faust moves every record alone from its consumer to an agent: a task per record to race
it against a flow stop, the conductor, a channel queue, the stream's processors, an
``Event`` and a per-event ack; about 250 µs of CPU per record, fifty times what reading it
costs. The worker's agent wants whole batches of raw bytes, so for the topics it names
the consumer (:class:`BulkDrain`, mixed into the transport's consumer) puts each fetch's
messages in a :class:`BulkSink` instead, and the agent takes them from there with
:meth:`BulkSink.batches`, which, like ``take_events``, waits at most ``within`` to fill a
batch. Everything else about the consumer is Faust's: group
membership, fetching, flow control, offsets and their commits.

Invariants: a message's offset is acknowledged (so committed) only after the agent has
handled the batch holding it (:meth:`BulkSink.batches` acks the previous batch when
the agent asks for the next one, as ``Stream.take_events`` does, or the agent acks it
once its decisions are published); within a partition,
messages reach the agent in offset order; what waits in the sink when the group
rebalances is dropped (Faust clears the sink with its own queues), so it is read again
from the committed offset by whichever worker gets the partition. The sink holds at
most :data:`MAX_BUFFERED` messages: the consumer waits for room.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection
from typing import Any, cast

from faust.types import Message
from mode import Service

__all__ = ["MAX_BUFFERED", "BulkDrain", "BulkSink"]

#: Messages the sink holds before the consumer waits for the agent.
MAX_BUFFERED = 4000


class BulkSink:
    """Fetched messages waiting for the agent, in fetch order."""

    def __init__(self, topics: Collection[str] = ()) -> None:
        #: The topics whose records come here (set by the app before the consumer runs).
        self.topics = frozenset(topics)
        self._messages: list[Message] = []
        self._ready = asyncio.Event()
        self._full = asyncio.Event()
        self._want = 1
        self._room = asyncio.Event()
        self._room.set()

    def clear(self) -> None:
        """Drop what waits (on a rebalance: the new owner reads it again)."""
        self._messages.clear()
        self._ready.clear()
        self._room.set()

    async def put(self, messages: list[Message]) -> None:
        """Add one fetch's messages; waits while the sink is full."""
        while len(self._messages) >= MAX_BUFFERED:
            self._room.clear()
            await self._room.wait()
        self._messages += messages
        self._ready.set()
        if len(self._messages) >= self._want:
            self._full.set()

    async def batches(
        self, consumer: Any, max_: int, within: float, *, acks: bool = True
    ) -> AsyncIterator[list[Message]]:
        """Up to ``max_`` messages at a time: once any wait, after at most ``within``
        seconds more to fill the batch (no timer runs while the sink is empty: an idle
        worker sleeps). Each batch is acknowledged on ``consumer`` when the next one is
        asked for (or the loop ends), that is once the caller has handled it; with
        ``acks`` False the caller acknowledges each with :meth:`ack` instead."""
        self._want = max_
        while True:
            await self._ready.wait()
            self._full.clear()
            if len(self._messages) < max_:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a
                # cancellation that comes as the batch fills (the agent never stops).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(within):
                        await self._full.wait()
            batch = self._messages[:max_]
            del self._messages[:max_]
            if not self._messages:
                self._ready.clear()
            if len(self._messages) < MAX_BUFFERED:
                self._room.set()
            if not batch:
                continue
            try:
                yield batch
            finally:
                if acks:
                    self.ack(consumer, batch)

    @staticmethod
    def ack(consumer: Any, batch: list[Message]) -> None:
        """Acknowledge a handled batch's messages on ``consumer`` (their offsets may then
        be committed)."""
        ack = consumer.ack
        for message in batch:
            ack(message)


class BulkDrain:
    """Mixin for a Faust consumer: messages of ``self.bulk.topics`` go to ``self.bulk``
    one fetch at a time; others take Faust's path (see the module)."""

    bulk: BulkSink

    async def _drain_messages(self, fetcher: Service) -> None:  # pragma: no cover
        me = cast(Any, self)
        callback = me.callback
        consumer_should_stop = me._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = me._read_offset.__getitem__
        set_read_offset = me._read_offset.__setitem__
        acks_enabled_for = me.app.topics.acks_enabled_for
        flow_control = me.app.flow_control
        bulk = self.bulk
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                await me.sleep(0)
                if me.should_stop:
                    break
                batch: list[Message] = []
                async for tp, message in me.getmany(timeout=1.0):
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is not None and offset < r_offset:
                        continue  # read already
                    if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                        await me._add_gap(tp, r_offset + 1, offset)
                    if message.topic in bulk.topics:
                        batch.append(message)
                    else:
                        await me.wait_first(callback(message), me.suspend_flow.wait())
                    set_read_offset(tp, offset)
                if batch:
                    await flow_control.acquire()
                    generation = me.app.consumer_generation_id
                    if all(m.generation_id == generation for m in batch):
                        await me.wait_first(bulk.put(batch), me.suspend_flow.wait())
        except me.consumer_stopped_errors:
            if me.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if me.transport.app.should_stop:
                return
            raise
