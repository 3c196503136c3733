"""``feedamp replay --rebuild``: rebuild every view in a fresh namespace, then switch.

Steps (see :mod:`feedamp.feeds.namespace` for the names and the pointer):

1. Take a new generation namespace (``fa.<n>:``) and replay the topics into it with the
   replay machinery (:func:`feedamp.ops.replay.replay`), from ``--from`` up to the end
   offsets seen at start. The live namespace keeps serving readers and workers meanwhile.
2. Catch up, still before the switch, from those end offsets to the new ones, until a
   pass has little left (at most :data:`SWITCH_GAP` records or :data:`CATCHUP_PASSES`
   passes), so that the switch happens close to the live state.
3. Switch the pointer atomically (compare-and-set: if another rebuild switched first,
   this one drops its namespace and fails).
4. Catch up once more, from the last end offsets to the end offsets read *after* the
   switch. Every record a worker fetched before the switch is below those offsets, so it
   is in the new namespace now; every record fetched after it is written there by the
   workers themselves (they resolve the pointer once per batch, after fetching it). A
   record written by both is written twice, which changes nothing: writes are idempotent.
5. After ``grace`` seconds (longer than any reader's cached pointer and any read in
   flight; default :data:`~feedamp.feeds.namespace.DEFAULT_GRACE`), and once the worker
   group has committed past the offsets of step 4 (at most ``drain_timeout`` seconds
   more; later writes of a batch that read the old pointer would otherwise survive the
   drop as stray keys), the old namespace is dropped with SCAN and UNLINK in chunks.

Readers never see a half-built feed: until the switch they read the old namespace,
complete; after it, the new one, complete up to step 1's offsets and caught up within the
moment step 4 takes. If the rebuild fails before the switch, its namespace is dropped
and the live one is untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from aiokafka import TopicPartition
from feedamp.config import Settings
from feedamp.feeds.connection import close as close_client
from feedamp.feeds.connection import connect
from feedamp.feeds.dormancy import copy_marks
from feedamp.feeds.namespace import DEFAULT_GRACE, Namespaces
from feedamp.kafka.lag import kafka_status

from .replay import BATCH, ReplayStats, replay

__all__ = [
    "CATCHUP_PASSES",
    "SWITCH_GAP",
    "Rebuild",
    "rebuild",
    "wait_for_group",
]

#: Records a catch-up pass may still have had to apply for the switch to happen next.
SWITCH_GAP = 1000
#: Catch-up passes before the switch, at most.
CATCHUP_PASSES = 3
#: Longest wait for the worker group to commit past the switch before dropping.
DRAIN_TIMEOUT = 60.0


@dataclass
class Rebuild:
    """What a rebuild did."""

    old: str
    new: str
    #: Replay passes: the full one, the catch-ups before the switch, the one after it.
    passes: list[ReplayStats] = field(default_factory=list)
    switched: bool = False
    #: Keys of the old namespace deleted (None: not dropped).
    dropped: int | None = None
    #: False when the worker group had not committed past the switch in time.
    drained: bool = True

    @property
    def events(self) -> int:
        """Records replayed over every pass."""
        return sum(p.events for p in self.passes)

    def summary(self) -> str:
        """Human-readable lines for the end of the command."""
        first = self.passes[0] if self.passes else ReplayStats()
        lines = [
            f"rebuilt {self.new!r} from {first.events:,} events in {first.seconds:.1f}s "
            f"({first.rate:,.0f} events/s), then {len(self.passes) - 1} catch-up passes "
            f"({sum(p.events for p in self.passes[1:]):,} events)",
            f"  switched the active namespace from {self.old!r} to {self.new!r}"
            if self.switched
            else "  not switched",
        ]
        if self.dropped is not None:
            lines.append(f"  dropped {self.old!r}: {self.dropped:,} keys")
        if not self.drained:
            lines.append("  warning: the worker group had not committed past the switch")
        dead = sum(p.dead_letters for p in self.passes)
        decisions = sum(p.decisions for p in self.passes)
        lines.append(f"  dead letters: {dead:,}, decisions: {decisions:,} (not re-published)")
        return "\n".join(lines)


async def wait_for_group(
    settings: Settings, ends: dict[TopicPartition, int], timeout: float
) -> bool:
    """Wait until the worker group has committed at least ``ends`` on every partition
    it ever committed on; False if it has not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        lag, _ = await kafka_status(settings)
        goal = {(tp.topic, tp.partition): end for tp, end in ends.items()}
        if all(p.committed is None or p.committed >= goal.get((p.topic, p.partition), 0)
               for p in lag):  # fmt: skip
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.5)


async def rebuild(
    settings: Settings,
    *,
    start_ms: int | None = None,
    topics: Sequence[str] | None = None,
    grace: float = DEFAULT_GRACE,
    drain_timeout: float = DRAIN_TIMEOUT,
    drop: bool = True,
    progress: bool | TextIO = False,
    batch: int = BATCH,
    switch_gap: int = SWITCH_GAP,
    say: Callable[[str], object] = lambda _: None,
) -> Rebuild:
    """Rebuild the views of ``topics`` (default: all) from ``start_ms`` (None: the
    beginning) in a new namespace, switch to it, and drop the old one after ``grace``
    seconds (unless ``drop`` is False). ``say`` receives a line per step (and is awaited
    if it returns an awaitable)."""

    async def step(line: str) -> None:
        if inspect.isawaitable(said := say(line)):
            await said

    redis = connect(settings.redis_url, max_connections=settings.redis_max_connections)
    namespaces = Namespaces(redis, settings.key_prefix)
    try:
        old = await namespaces.active()
        new = await namespaces.new_generation()
        result = Rebuild(old, new)
        try:
            await step(f"replaying into {new!r} while {old!r} serves")
            # every follower delivered to (reads are not in the log); the read marks are
            # copied over before the switch (feeds/dormancy.py)
            full = settings.with_(inactive_after=0)
            # Each pass before the last keeps the reposts and gifts its event-time order
            # still holds for the next (feedamp.ops.event_order).
            stats = await replay(full, start_ms=start_ms, topics=topics, prefix=new,
                                 progress=progress, batch=batch, hold=True)  # fmt: skip
            result.passes.append(stats)
            await step(f"replayed {stats.events:,} events into {new!r}")
            while stats.events > switch_gap and len(result.passes) <= CATCHUP_PASSES:
                stats = await replay(full, topics=topics, prefix=new, starts=stats.ends,
                                     batch=batch, carry=stats.order, hold=True)  # fmt: skip
                result.passes.append(stats)
                await step(f"caught up {stats.events:,} events")
            if settings.inactive_after > 0:
                await copy_marks(redis, old, new)
            await namespaces.switch(old, new)
            result.switched = True
            await step(f"switched the active namespace from {old!r} to {new!r}")
        except BaseException:
            if not result.switched:
                with contextlib.suppress(Exception):
                    await asyncio.shield(namespaces.drop(new))
            raise
        stats = await replay(full, topics=topics, prefix=new, starts=stats.ends,
                             batch=batch, carry=stats.order)  # fmt: skip
        result.passes.append(stats)
        await step(f"caught up {stats.events:,} events that arrived before the switch")
        if drop:
            await step(f"dropping {old!r} in {grace:g}s")
            await asyncio.sleep(grace)
            result.drained = await wait_for_group(settings, stats.ends, drain_timeout)
            result.dropped = await namespaces.drop(old)
        return result
    finally:
        await close_client(redis)
