"""Replay's event-time order for the parked topics, as a worker's watermark gives it.

A worker parks every reposts-topic and gifts-topic event and decides it once the
watermark, the lowest progress over the watched partitions (posts, reposts, gifts,
accounts), has passed its event time (:mod:`feedamp.feeds.watermark`). A replay reads
the partitions merged by record time instead, so without help it would decide a repost
or a gift in record-time order across its batches: two reposts by one user whose record
times run against their event times, or two gifts racing for the last code, would be
decided in the other order than the workers decided them whenever a batch boundary fell
between them (a producer stamping events when the user acted and sending them later
does that).

:class:`EventTimeOrder` holds the parked topics' events back the same way: a partition's
progress is the latest event time read from it less the allowed lateness, a partition
read to its end no longer holds anything back, and an event is handed on once the lowest
progress over the watched partitions still being read has reached its event time, in
event-time order (ties by event id), after the batch's other events (as a worker releases
after the batch that raised the progress is written). What is still held when the replay
ends is handed on then, in that order, unless the replay is one pass of several (a
rebuild's passes before its catch-up): then the next pass takes the order up
(:meth:`EventTimeOrder.resume`) and what was held is decided in its order, as if one
replay had read both. A replay that stops before the log's end (``--to``) hands on what
it holds, so a later replay over the records that follow can meet events older than
those within the lateness.

Invariant: every event is handed on exactly once, and an event of a parked topic only
after every watched partition has been read past its event time plus the lateness (or to
its end), so within the allowed lateness the replay decides parked events in the order a
worker does, whatever their record times.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping

from feedamp.streams.pipeline import Parsed
from feedamp.streams.records import Envelope, Record

__all__ = ["EventTimeOrder"]

#: A partition: (topic, partition number).
Partition = tuple[str, int]


class EventTimeOrder:
    """Holds back parked-topic events of replayed batches until the replay's watermark
    passes them (see the module)."""

    def __init__(
        self,
        parked: Iterable[str],
        watched: Iterable[str],
        lateness_ms: int,
        ends: Mapping[Partition, int],
        final: bool = True,
    ) -> None:
        """``ends``: the end offset (exclusive) of each partition still to be read; a
        watched partition not named there holds nothing back. ``final``: whether a
        partition read to its end stops holding back (False: the log goes on, and a
        later pass takes this order up, :meth:`resume`)."""
        self.parked = frozenset(parked)
        self.watched = frozenset(watched)
        self.lateness_ms = lateness_ms
        self._reading: dict[Partition, int] = {}
        self._final = final
        self.resume(ends, final)
        #: The latest event time read from each watched partition.
        self._latest: dict[Partition, int] = {}
        self._held: list[tuple[int, str, int, Envelope]] = []
        self._arrivals = itertools.count()

    def resume(self, ends: Mapping[Partition, int], final: bool = True) -> EventTimeOrder:
        """This order, taken up by a pass that reads on from where the last one stopped:
        ``ends`` and ``final`` as for a new one; what it holds and the event times read so
        far stay (a partition the last pass read to its end holds back again, if this
        pass reads more of it)."""
        self._reading = {tp: end for tp, end in ends.items() if tp[0] in self.watched}
        self._final = final
        return self

    @property
    def held(self) -> int:
        """Events held back now."""
        return len(self._held)

    def watermark(self) -> float | None:
        """The lowest progress over the watched partitions still being read (+inf when
        none is); None while one of them has not been read yet."""
        if not self._reading:
            return float("inf")
        lowest: float | None = None
        for tp in self._reading:
            latest = self._latest.get(tp)
            if latest is None:
                return None
            progress = latest - self.lateness_ms
            lowest = progress if lowest is None or progress < lowest else lowest
        return lowest

    def step(self, records: list[Record], parsed: Parsed) -> tuple[list[Record], Parsed]:
        """A batch as read and parsed, less its parked-topic events, plus those held back
        that the watermark now passes (last, in event-time order)."""
        envelopes, dead = parsed
        kept: list[Envelope] = []
        held: set[int] = set()  # the records held back, by identity
        parked, watched, latest = self.parked, self.watched, self._latest
        for envelope in envelopes:
            record, event = envelope.record, envelope.event
            if record.topic in watched:
                tp = (record.topic, record.partition)
                if event.ts > latest.get(tp, event.ts - 1):
                    latest[tp] = event.ts
            if record.topic in parked:
                heapq.heappush(self._held, (event.ts, event.event_id, next(self._arrivals),
                                            envelope))  # fmt: skip
                held.add(id(record))
            else:
                kept.append(envelope)
        if self._final:  # a partition read to its end no longer holds anything back
            reading = self._reading
            for record in records:
                end = reading.get((record.topic, record.partition))
                if end is not None and record.offset + 1 >= end:
                    del reading[(record.topic, record.partition)]
        left = [r for r in records if id(r) not in held] if held else records
        return self._hand_on(left, kept, dead, self.watermark())

    def rest(self) -> tuple[list[Record], Parsed]:
        """Every event still held back, in event-time order (the log has ended)."""
        return self._hand_on([], [], [], float("inf"))

    def _hand_on(
        self, records: list[Record], kept: list[Envelope], dead: list, watermark: float | None
    ) -> tuple[list[Record], Parsed]:
        """``records`` (the batch's, less those held back) and the envelopes ``kept``, then
        those held back that ``watermark`` passes, in event-time order."""
        held = self._held
        released: list[Envelope] = []
        while held and watermark is not None and held[0][0] <= watermark:
            released.append(heapq.heappop(held)[3])
        return records + [e.record for e in released], (kept + released, dead)
