"""The worker's release tick: raise the progress of partitions read to the end, and
release the parked events the watermark has passed (:mod:`feedamp.feeds.watermark`),
doing as little as possible while nothing waits.

:meth:`ReleaseTicker.run` (a Faust task) ticks every :data:`TICK` seconds while the
worker is **busy** (progress written, release run): while this worker has just parked
events or while Redis holds parked events. Otherwise it is **idle** and sleeps: it checks
for parked events (another worker's) every :data:`IDLE_CHECK` seconds, in the namespace
it resolved last, and writes progress and runs a release every :data:`HEARTBEAT` seconds
(so the watermark, ``feedamp status`` and ``/metrics`` stay current); a batch that parks
events wakes it at once. A busy tick or a heartbeat resolves the active namespace once.

Invariants (the event-time order's guarantees do not depend on the tick's pace):
progress is only ever raised to what is true when written (a partition's progress is the
clock less the lateness at the time of writing, or an event time less the lateness), so
writing it less often only makes the watermark lower, never wrong; releasing less often
only releases later. While an event waits, the worker parking it is busy at once, and
every other worker becomes busy within :data:`IDLE_CHECK`, well within the default
lateness (200 ms), so idling adds no delay to a release unless the lateness is shorter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

from feedamp.feeds.namespace import Namespace

from .pipeline import Pipeline
from .records import Outcome, Record

__all__ = ["HEARTBEAT", "IDLE_CHECK", "TICK", "ReleaseTicker"]

log = logging.getLogger("feedamp.worker")

#: Seconds between timer ticks (a busy tick's pace).
TICK = 0.02
#: Seconds between an idle worker's checks for parked events.
IDLE_CHECK = 0.1
#: Seconds between an idle worker's progress writes and releases.
HEARTBEAT = 1.0


class ReleaseTicker:
    """Decides, tick by tick, whether to write progress and release (see the module)."""

    def __init__(
        self,
        pipeline: Pipeline,
        retrying: Callable[..., Awaitable[object]],
        publish: Callable[[Outcome], Awaitable[None]],
        caught_up: Callable[[], dict[str, int]],
        reposts_topic: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pipeline = pipeline
        self.retrying = retrying
        self.publish = publish
        self.caught_up = caught_up
        self.reposts_topic = reposts_topic
        self.clock = clock
        #: True while events wait (parked here, or seen parked in Redis).
        self.busy = True
        self._next_check = 0.0
        self._next_heartbeat = 0.0
        #: Batches that parked events so far (a count, so a tick can tell whether one
        #: parked while it looked at Redis).
        self._parks = 0
        self._namespace: Namespace | None = None
        self._wake = asyncio.Event()

    def handled(self, records: Sequence[Record]) -> None:
        """A batch was applied: if it parked events, the next ticks are busy."""
        if any(r.topic == self.reposts_topic for r in records):
            self._parks += 1
            self.busy = True
            self._wake.set()

    async def tick(self) -> Outcome:
        """One timer tick; returns what a release published (empty if none ran). Never
        raises: what fails is tried again at a later tick."""
        now = self.clock()
        heartbeat = now >= self._next_heartbeat
        if not self.busy and not heartbeat and now < self._next_check:
            return Outcome()
        try:
            if not self.busy and not heartbeat and self._namespace is not None:
                self._next_check = now + IDLE_CHECK
                if not await self.retrying(self.pipeline.parked, self._namespace):
                    return Outcome()
                self.busy = True
            ns = self._namespace = cast(
                Namespace, await self.retrying(self.pipeline.active_namespace)
            )
            await self.retrying(self.pipeline.advance_watermark, self.caught_up(), ns)
        except Exception:
            log.exception("could not record partition progress")
            return Outcome()
        if heartbeat:
            self._next_heartbeat = now + HEARTBEAT
        try:
            outcome = cast(Outcome, await self.retrying(self.pipeline.release, self.publish, ns))
            parks = self._parks
            waiting = await self.retrying(self.pipeline.parked, ns)
            self.busy = bool(waiting) or parks != self._parks  # idle once nothing waits
        except Exception:
            log.exception("releasing parked events failed; retrying at the next tick")
            return Outcome()
        self._next_check = now + IDLE_CHECK
        return outcome

    async def run(self, done: Callable[[Outcome, float], None]) -> None:
        """Tick for ever: every :data:`TICK` seconds while busy, else at the next check or
        heartbeat, or when a batch parks; ``done(outcome, seconds)`` after each tick."""
        while True:
            started = time.perf_counter()
            outcome = await self.tick()
            done(outcome, time.perf_counter() - started)
            if self.busy:
                await asyncio.sleep(TICK)
                continue
            wait = min(self._next_check, self._next_heartbeat) - self.clock()
            self._wake.clear()
            if wait > 0 and not self.busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
