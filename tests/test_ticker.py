"""The release tick wakes when the oldest parked event is due, not on a fixed pace.

A :class:`ReleaseTicker` runs here on a real Redis (both layouts) with a real pipeline;
only the consumer's part is given: which partitions are read to the end (``caught_up``,
the clock less the lateness, as a worker computes it) and whether this worker holds them
all (``alone``). The tick's pace (:data:`TICK`) and heartbeat are set far beyond the
tests' waits, so a release that comes in time can only come from the due-time wake, and
one that comes must never come before its event is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
from feedamp.feeds import FeedStore
from feedamp.models import key_of
from feedamp.streams import Outcome, Record
from feedamp.streams import ticker as ticker_module
from feedamp.streams.app import BatchHandler
from feedamp.streams.pipeline import Pipeline, progress_field
from feedamp.streams.ticker import ReleaseTicker

from .conftest import wait_until
from .factory import Events, to_json

LAYOUTS = ("standalone", "cluster")
LATENESS_MS = 300
#: Far beyond any wait below: nothing in these tests may depend on the tick's pace.
NEVER = 60.0


def records(topic: str, events, first_offset: int = 0) -> list[Record]:
    """Events as records of partition 0 of ``topic``."""
    return [Record(topic, 0, first_offset + n, key_of(e).encode(), to_json(e), e.ts)
            for n, e in enumerate(events)]  # fmt: skip


def now_ms() -> int:
    return int(time.time() * 1000)


class Rig:
    """A pipeline whose watermark is the least progress of posts:0 and reposts:0, and
    a ticker releasing through it; ``reading`` says whether both partitions are read to
    the end (then their progress follows the clock)."""

    def __init__(self, redis, settings, alone: Callable[[], bool]) -> None:
        s = settings.with_(caps=replace(settings.caps, lateness_ms=LATENESS_MS))
        self.settings = s
        self.fields = [progress_field(s.topics.posts, 0), progress_field(s.topics.reposts, 0)]
        self.pipeline = Pipeline(FeedStore(redis, s), s, partitions=lambda: self.fields)
        assert self.pipeline.watermarked
        self.reading = True
        #: (wall-clock ms when published, repost id) of each decision.
        self.decided: list[tuple[int, str]] = []
        self.ticker = ReleaseTicker(self.pipeline, BatchHandler.retrying, self.publish,
                                    self.caught_up, s.topics.parked, LATENESS_MS,
                                    alone=alone)  # fmt: skip
        self.offset = 0

    def caught_up(self) -> dict[str, int]:
        clock = now_ms() - LATENESS_MS
        return dict.fromkeys(self.fields, clock) if self.reading else {}

    async def publish(self, outcome: Outcome) -> None:
        at = now_ms()
        self.decided += [(at, getattr(d, "repost_id", d.event_id)) for d in outcome.decisions]

    async def park(self, *events) -> Outcome:
        """Apply a batch of the reposts topic, as the agent does, and tell the ticker."""
        batch = records(self.settings.topics.reposts, events, self.offset)
        self.offset += len(batch)
        outcome = await self.pipeline.apply(batch)
        self.ticker.handled(batch, outcome.parked)
        return outcome

    def released(self, event_id: str) -> Callable:
        async def check() -> bool:
            return any(i == event_id for _, i in self.decided)

        return check

    def when(self, event_id: str) -> int:
        (at,) = [at for at, i in self.decided if i == event_id]
        return at


@pytest.fixture
def slow_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ticker_module, "TICK", NEVER)
    monkeypatch.setattr(ticker_module, "IDLE_CHECK", NEVER)
    monkeypatch.setattr(ticker_module, "HEARTBEAT", NEVER)


@contextlib.asynccontextmanager
async def running(rig: Rig, done: Callable = lambda outcome, seconds: None) -> AsyncIterator[None]:
    task = asyncio.create_task(rig.ticker.run(done))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settle(rig: Rig) -> None:
    """Let the ticker run its first (busy) tick and go to sleep."""
    await wait_until(lambda: _idle(rig), what="the ticker to go idle")


async def _idle(rig: Rig) -> bool:
    return not rig.ticker.busy


async def test_a_release_comes_when_its_event_is_due_not_at_a_tick(redis, settings, uid, slow_pace):
    rig = Rig(redis, settings, alone=lambda: True)
    async with running(rig):
        await settle(rig)
        ev = Events(start_ms=now_ms())
        repost = ev.repost(uid("p"), uid("star"), uid("fan"), repost_id=uid("r"))
        outcome = await rig.park(repost)
        assert outcome.parked == repost.ts
        assert rig.ticker.due == repost.ts + LATENESS_MS
        await wait_until(rig.released(repost.repost_id), timeout=10.0,
                         what="the release at the due time")  # fmt: skip
    assert rig.when(repost.repost_id) >= repost.ts + LATENESS_MS, "released before it was due"


async def test_an_event_due_sooner_wakes_a_ticker_waiting_for_a_later_one(
    redis, settings, uid, slow_pace
):
    rig = Rig(redis, settings, alone=lambda: True)
    async with running(rig):
        await settle(rig)
        ev = Events(start_ms=now_ms())
        far = ev.repost(uid("p1"), uid("star"), uid("fan"), ts=ev.ts + 30_000,  # half a minute
                        repost_id=uid("far"))  # fmt: skip
        await rig.park(far)
        assert rig.ticker.due == far.ts + LATENESS_MS
        soon = ev.repost(uid("p2"), uid("star"), uid("fan"), ts=now_ms(), repost_id=uid("soon"))
        await rig.park(soon)
        assert rig.ticker.due == soon.ts + LATENESS_MS
        await wait_until(rig.released(soon.repost_id), timeout=10.0, what="the earlier release")
        assert not await rig.released(far.repost_id)()
        assert await rig.pipeline.earliest(await rig.pipeline.active_namespace()) == far.ts
    assert rig.when(soon.repost_id) >= soon.ts + LATENESS_MS


async def test_a_due_event_waits_for_the_watermark_polled_at_the_ticks_pace(
    redis, settings, uid, monkeypatch
):
    """Due by the clock, but a partition is not read to the end: no release, however
    often the ticker ticks; once it is, the next tick releases."""
    monkeypatch.setattr(ticker_module, "TICK", 0.01)
    rig = Rig(redis, settings, alone=lambda: True)
    rig.reading = False
    ticks: list[float] = []
    async with running(rig, lambda outcome, seconds: ticks.append(time.monotonic())):
        past = Events(start_ms=now_ms() - 10 * LATENESS_MS)
        repost = past.repost(uid("p"), uid("star"), uid("fan"), repost_id=uid("r"))
        await rig.park(repost)
        # Its own batch raised reposts:0 past it, but posts:0 never reported.
        counted = len(ticks)

        async def ticked_a_few() -> bool:
            return len(ticks) >= counted + 5

        await wait_until(ticked_a_few, what="a few ticks")
        assert rig.decided == [] and rig.ticker.busy
        assert rig.ticker.pause() <= ticker_module.TICK
        rig.reading = True
        await wait_until(rig.released(repost.repost_id), timeout=10.0, what="the release")


async def test_an_idle_ticker_alone_sleeps_to_the_heartbeat_else_checks(redis, settings):
    alone = True
    rig = Rig(redis, settings, alone=lambda: alone)
    await rig.ticker.tick()  # nothing parked in this test's namespace
    assert not rig.ticker.busy and rig.ticker.due is None
    assert ticker_module.HEARTBEAT - 0.5 < rig.ticker.pause() <= ticker_module.HEARTBEAT
    alone = False
    assert rig.ticker.pause() <= ticker_module.IDLE_CHECK


async def test_earliest_is_the_oldest_parked_event_time(redis, settings, uid):
    rig = Rig(redis, settings, alone=lambda: True)
    ns = await rig.pipeline.active_namespace()
    assert await rig.pipeline.earliest(ns) is None
    ev = Events(start_ms=now_ms() + 60_000)
    a = ev.repost(uid("p1"), uid("star"), uid("fan"), ts=ev.ts + 500, repost_id=uid("a"))
    b = ev.repost(uid("p2"), uid("star"), uid("fan"), ts=ev.ts + 100, repost_id=uid("b"))
    outcome = await rig.park(a, b)
    assert outcome.parked == b.ts
    assert await rig.pipeline.earliest(ns) == b.ts


def test_an_outcome_keeps_the_earliest_event_time_parked():
    """What the agent hands the ticker: the earliest event time any part of a batch
    parked (a batch applied one record at a time merges its parts)."""
    whole = Outcome()
    for parked in (None, 1_700_000_000_500, None, 1_700_000_000_200, 1_700_000_000_900):
        whole.extend(Outcome(parked=parked))
    assert whole.parked == 1_700_000_000_200
    none = Outcome()
    none.extend(Outcome())
    assert none.parked is None


async def test_a_ticker_stops_when_cancelled_even_if_a_tick_swallowed_it(redis, settings, uid):
    """A cancellation that comes during a tick and is caught on its way out (a library
    the tick awaits may do so) still stops the ticker: it does not sleep on."""
    rig = Rig(redis, settings, alone=lambda: True)
    entered = asyncio.Event()

    async def swallowing_tick() -> Outcome:
        entered.set()
        with contextlib.suppress(asyncio.CancelledError):  # swallowed, as an await might
            await asyncio.sleep(NEVER)
        return Outcome()

    rig.ticker.tick = swallowing_tick  # type: ignore[method-assign]
    task = asyncio.create_task(rig.ticker.run(lambda outcome, seconds: None))
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done == {task} and task.cancelled()
