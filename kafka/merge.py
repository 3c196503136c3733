"""Read assigned partitions up to their end offsets, merged in record-time order.

Replay applies records in the order they were produced: within a partition in log order,
across partitions by record timestamp (a k-way merge; ties go to the topic listed first,
then the lower partition). A worker that keeps up sees records in about that order, so
a replay into an empty namespace rebuilds what the worker built, even where the result
depends on the order of events on different topics (an unfollow and a repost by the
unfollowed account, say). A record is released only once every partition that is still
being read has a buffered record to compare it with.

Time window: records older than ``start_ms`` are skipped until the first record of the
partition at or after it (after that every record is taken, as Kafka's seek by time
would); a partition ends at its first record later than ``end_ms``, or at its end offset.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

__all__ = ["MergedReader", "Window"]

#: Records of one partition waiting to be merged, each with its sort time.
_Buffer = deque[tuple[int, ConsumerRecord]]

#: A replay that reads nothing for this long while partitions are unfinished gives up.
STALL_TIMEOUT = 120.0


@dataclass(frozen=True)
class Window:
    """Record times to replay, in ms since epoch (None: unbounded)."""

    start_ms: int | None = None
    end_ms: int | None = None


@dataclass
class MergedReader:
    """Yields batches of records from ``consumer``'s assigned partitions, merged in time
    order: each partition from ``starts`` to ``ends`` (offsets), inside ``window``; ties
    by ``rank`` of the topic; ``batch`` records at most a batch."""

    consumer: AIOKafkaConsumer
    starts: dict[TopicPartition, int]
    ends: dict[TopicPartition, int]
    window: Window
    rank: Callable[[str], int]
    batch: int
    #: Records read from the topics (taken or skipped), and skipped as too old.
    read: int = field(default=0, init=False)
    skipped: int = field(default=0, init=False)
    _reached: set[TopicPartition] = field(default_factory=set, init=False)
    _last_ts: dict[TopicPartition, int] = field(default_factory=dict, init=False)

    async def batches(self) -> AsyncIterator[list[ConsumerRecord]]:
        """Every record in the window, in batches of at most ``batch`` (aiokafka's
        records, as fetched)."""
        consumer = self.consumer
        active = {tp for tp in self.starts if self.starts[tp] < self.ends[tp]}
        for tp in active:
            consumer.seek(tp, self.starts[tp])
        if set(self.starts) - active:
            consumer.pause(*(set(self.starts) - active))
        if active:  # the caller may have paused them while it looked for the ends
            consumer.resume(*active)
        buffers: dict[TopicPartition, _Buffer] = {tp: deque() for tp in active}
        progress_at = time.monotonic()
        while active or any(buffers.values()):
            # Top up every partition running low, so that the client keeps fetching ahead
            # while batches are applied; wait only when one has nothing to compare with.
            low = {tp for tp in active if len(buffers[tp]) < self.batch}
            hungry = {tp for tp in low if not buffers[tp]}
            if low:
                wait = 200 if hungry else 0
                fetched = await consumer.getmany(*low, timeout_ms=wait, max_records=self.batch)
                finished = set()
                for tp, msgs in fetched.items():
                    if tp in low and self._take(tp, msgs, buffers[tp]):
                        finished.add(tp)
                for tp in hungry - set(fetched):  # nothing more: maybe offset gaps at the end
                    if await consumer.position(tp) >= self.ends[tp]:
                        finished.add(tp)
                if finished:
                    consumer.pause(*finished)
                    active -= finished
                if fetched or finished or not hungry:
                    progress_at = time.monotonic()
                elif time.monotonic() - progress_at > STALL_TIMEOUT:
                    raise RuntimeError(f"no records from {sorted(hungry)} for {STALL_TIMEOUT}s")
                if fetched and any(not buffers[tp] for tp in active):
                    continue  # fill the others before merging
            out = self._merge(buffers, active)
            if out:
                yield out

    def _take(
        self,
        tp: TopicPartition,
        msgs: list[ConsumerRecord],
        buffer: _Buffer,
    ) -> bool:
        """Buffer the records of ``msgs`` inside the window; True if the partition is done."""
        end, start_ms, end_ms = self.ends[tp], self.window.start_ms, self.window.end_ms
        for msg in msgs:
            if msg.offset >= end:
                return True
            ts = msg.timestamp if msg.timestamp is not None and msg.timestamp >= 0 else None
            if end_ms is not None and ts is not None and ts > end_ms:
                return True
            self.read += 1
            if tp not in self._reached:
                if start_ms is not None and ts is not None and ts < start_ms:
                    self.skipped += 1
                    continue
                self._reached.add(tp)
            key = self._last_ts[tp] = ts if ts is not None else self._last_ts.get(tp, 0)
            buffer.append((key, msg))
        return bool(msgs) and msgs[-1].offset + 1 >= end

    def _merge(
        self,
        buffers: dict[TopicPartition, _Buffer],
        active: set[TopicPartition],
    ) -> list[ConsumerRecord]:
        """Release buffered records in time order while that order is certain."""
        if any(not buffers[tp] for tp in active):
            return []  # a partition still being read has nothing to compare with yet
        heap = [(buf[0][0], self.rank(tp.topic), tp.partition, tp)
                for tp, buf in buffers.items() if buf]  # fmt: skip
        heapq.heapify(heap)
        out: list[ConsumerRecord] = []
        while heap and len(out) < self.batch:
            _, rank, partition, tp = heapq.heappop(heap)
            buffer = buffers[tp]
            out.append(buffer.popleft()[1])
            if buffer:
                heapq.heappush(heap, (buffer[0][0], rank, partition, tp))
            elif tp in active:
                break  # its next record, not fetched yet, may be older than the others
        return out
