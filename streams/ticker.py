"""The worker's release tick: raise the progress of partitions read to the end, and
release the parked events the watermark has passed (:mod:`feedamp.feeds.watermark`),
when the oldest of them can pass, and doing as little as possible while nothing waits.

A tick (:meth:`ReleaseTicker.tick`) writes the progress of this worker's partitions read
to the end (the clock less the lateness), runs a release, and reads the event time of
the oldest parked event (one ZRANGE). :meth:`ReleaseTicker.run` (a Faust task) then
sleeps until the next tick is worth running:

* **busy** (events wait, this worker's or another's): until the oldest waiting event is
  **due**, its event time plus the lateness, the moment this worker's clock-driven
  progress passes it, so a release follows the due time by a timer's slack and not by
  up to a tick; while a due event still waits (the watermark lags: a partition not read
  to the end, another worker's progress, the release lock held elsewhere) every
  :data:`TICK` seconds. A batch that parks an event due earlier than the wake planned
  (or of unknown time) wakes the tick at once. When other workers share the partitions,
  a busy worker waiting for a due time still ticks every :data:`IDLE_CHECK` seconds, so
  an earlier event parked by another worker is seen in time.
* **idle** (nothing waits): every :data:`HEARTBEAT` seconds it writes progress and runs
  a release (so the watermark, ``feedamp status`` and ``/metrics`` stay current). When
  other workers hold some of the watched partitions it also checks, every
  :data:`IDLE_CHECK` seconds, for events they parked (one ZRANGE), since the release
  needs its progress too. A worker holding every one of those partitions checks only at
  the heartbeat: every event parked then is its own, and wakes it.

Invariants (the event-time order's guarantees do not depend on the tick's pace):
progress is only ever raised to what is true when written (a partition's progress is the
clock less the lateness at the time of writing, or an event time less the lateness), so
writing it less often only makes the watermark lower, never wrong; releasing less often
or earlier only releases later or finds nothing to release. Waking at the due time adds
no write and no release a tick could not have made. While an event waits, the worker
parking it is busy at once, and every other worker becomes busy within
:data:`IDLE_CHECK`; events a previous owner of the partitions parked and left behind are
seen within :data:`HEARTBEAT` (released later, never differently).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

from feedamp.feeds.namespace import Namespace

from .pipeline import Pipeline
from .records import Outcome, Record

__all__ = ["HEARTBEAT", "IDLE_CHECK", "SLACK", "TICK", "ReleaseTicker"]

log = logging.getLogger("feedamp.worker")

#: Seconds between ticks while a due event still waits (the watermark lags).
TICK = 0.02
#: Seconds between checks for events other workers parked (only when other workers
#: hold some of the partitions).
IDLE_CHECK = 0.1
#: Seconds between an idle worker's progress writes and releases.
HEARTBEAT = 1.0
#: Seconds added to the wait for a due time, so the clock has passed it on waking.
SLACK = 0.001


class ReleaseTicker:
    """Decides, tick by tick, whether to write progress and release, and when to tick
    next (see the module)."""

    def __init__(
        self,
        pipeline: Pipeline,
        retrying: Callable[..., Awaitable[object]],
        publish: Callable[[Outcome], Awaitable[None]],
        caught_up: Callable[[], dict[str, int]],
        parked_topics: tuple[str, ...],
        lateness_ms: int,
        alone: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``caught_up`` gives the clock-driven progress of this worker's partitions read
        to the end; ``alone`` tells whether this worker holds every watched
        partition (then it need not look for other workers' parked events between
        heartbeats); ``clock`` paces the ticks, ``wall`` is the clock the event times
        and the progress follow (seconds since the epoch)."""
        self.pipeline = pipeline
        self.retrying = retrying
        self.publish = publish
        self.caught_up = caught_up
        self.parked_topics = frozenset(parked_topics)
        self.lateness_ms = lateness_ms
        self.alone = alone
        self.clock = clock
        self.wall = wall
        #: True while events wait (parked here, or seen parked in Redis).
        self.busy = True
        #: When the oldest waiting event can pass (wall clock, ms); None: not known.
        self.due: float | None = None
        self._next_check = 0.0
        self._next_heartbeat = 0.0
        self._ticked = 0.0
        #: Batches that parked events so far (a count, so a tick can tell whether one
        #: parked while it looked at Redis).
        self._parks = 0
        self._namespace: Namespace | None = None
        self._wake = asyncio.Event()

    def handled(self, records: Sequence[Record], parked: int | None = None) -> None:
        """A batch was applied: if it parked events (the earliest event time
        ``parked``, ms; None: not known), the ticker is busy, and plans its next tick
        again if they are due before the one planned."""
        if not any(r.topic in self.parked_topics for r in records):
            return
        self._parks += 1
        due = None if parked is None else parked + self.lateness_ms
        if not self.busy:
            self.busy, self.due = True, due
        elif self.due is not None and (due is None or due < self.due):
            self.due = due
        else:
            return
        self._wake.set()

    async def tick(self) -> Outcome:
        """One timer tick; returns what a release published (empty if none ran). Never
        raises: what fails is tried again at a later tick."""
        now = self._ticked = self.clock()
        heartbeat = now >= self._next_heartbeat
        if not self.busy and not heartbeat and now < self._next_check:
            return Outcome()
        try:
            if not self.busy and not heartbeat and self._namespace is not None:
                self._next_check = now + IDLE_CHECK
                parks = self._parks
                earliest = await self.retrying(self.pipeline.earliest, self._namespace)
                if earliest is None and parks == self._parks:
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
            earliest = cast("int | None", await self.retrying(self.pipeline.earliest, ns))
        except Exception:
            log.exception("releasing parked events failed; retrying at the next tick")
            self.due = None  # try again after a tick
            return Outcome()
        if parks != self._parks:  # a batch parked meanwhile: look again after a tick
            self.busy, self.due = True, None
        else:
            self.busy = earliest is not None  # idle once nothing waits
            self.due = None if earliest is None else earliest + self.lateness_ms
        self._next_check = now + IDLE_CHECK
        return outcome

    def pause(self) -> float:
        """Seconds to sleep before the next tick (see the module); zero or less: tick
        now."""
        now = self.clock()
        if not self.busy:
            wake = self._next_heartbeat if self.alone() else min(self._next_check,
                                                                  self._next_heartbeat)  # fmt: skip
            return wake - now
        until_due = -1.0 if self.due is None else self.due / 1000 - self.wall()
        if until_due <= 0:  # due (or not known), yet still waiting: at the tick's pace
            return self._ticked + TICK - now
        if not self.alone():
            until_due = min(until_due, self._next_check - now)
        return min(until_due, self._next_heartbeat - now) + SLACK

    async def run(self, done: Callable[[Outcome, float], None]) -> None:
        """Tick for ever, sleeping :meth:`pause` between ticks (planned again when a
        batch parks an event due sooner); ``done(outcome, seconds)`` after each tick."""
        while True:
            started = time.perf_counter()
            outcome = await self.tick()
            done(outcome, time.perf_counter() - started)
            _stop_if_cancelled()
            while (wait := self._pause_planned()) > 0:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a
                # cancellation that comes as the wake is set, and the task then sleeps
                # on, never stopping.
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                except TimeoutError:
                    break

    def _pause_planned(self) -> float:
        self._wake.clear()
        return self.pause()


def _stop_if_cancelled() -> None:
    """Raise ``CancelledError`` when this task was asked to stop: a cancellation that
    came during a tick may have been caught on its way out by a library the tick awaits
    (the task's ``cancelling()`` count stays raised), and the ticker must stop anyway
    instead of sleeping on (a worker shutting down would wait for it for ever)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
