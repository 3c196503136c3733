"""An idle worker is idle: with nothing to read, a worker (event-time order on, the
default) sends few Redis commands and uses little CPU, yet still parks and releases a
repost once events arrive.

The Redis figure comes from a redis-server of this test's own (the session's is shared
with other tests), counted by ``total_commands_processed`` less this test's own reads.
Bounds are generous against the targets (50 commands/s, 3 % of a core) because the
machine running the tests may be busy; today's figures are far below them."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from feedamp.embedded.services import Service, start_redis
from feedamp.feeds.keys import Keys
from feedamp.kafka.topics import ensure_topics
from redis.asyncio import Redis

from .conftest import WorkerHandle, make_settings, wait_until
from .factory import Events
from .kafka import read_topic, send_events

#: Seconds an idle worker is watched.
WINDOW = 5.0
#: Upper bounds (the targets are 50 commands/s and 0.03 of a core).
MAX_COMMANDS_PER_S = 60.0
MAX_CPU_SHARE = 0.06
#: A worker holding every posts and reposts partition sends only its heartbeat's
#: commands (about 12/s: a progress write and a release once a second); one that also
#: checked for other workers' parked events every 100 ms would send about 21/s.
MAX_ALONE_COMMANDS_PER_S = 16.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def commands_processed(redis: Redis) -> int:
    return int((await redis.info("stats"))["total_commands_processed"])


@pytest.fixture
def own_redis() -> Iterator[Service]:
    service = start_redis()
    yield service
    service.stop()


async def test_an_idle_worker_sends_few_commands_and_uses_little_cpu(broker, own_redis, tmp_path):
    s = make_settings(broker, own_redis)
    assert s.caps.enabled and s.caps.lateness_ms > 0  # the release tick runs
    await ensure_topics(s)
    redis = Redis.from_url(s.redis_url)
    worker = WorkerHandle(s, tmp_path / "worker.log")
    try:
        keys = Keys(s.key_prefix)

        async def reporting() -> bool:
            return await redis.hlen(keys.progress()) >= len(s.topics.watched) * s.partitions

        await wait_until(reporting, what="the worker to report progress of every partition")
        await asyncio.sleep(2.0)  # let the group settle after the join
        before, cpu = await commands_processed(redis), cpu_seconds(worker.proc.pid)
        started = time.monotonic()
        await asyncio.sleep(WINDOW)
        after, cpu = await commands_processed(redis), cpu_seconds(worker.proc.pid) - cpu
        elapsed = time.monotonic() - started
        per_s = (after - before - 1) / elapsed  # less the INFO that read ``before``
        share = cpu / elapsed
        print(f"idle worker: {per_s:.1f} redis commands/s, {share:.1%} of a core")
        assert per_s < MAX_COMMANDS_PER_S, f"{per_s:.0f} redis commands/s while idle"
        assert per_s < MAX_ALONE_COMMANDS_PER_S, f"{per_s:.1f} commands/s: polling while alone?"
        assert share < MAX_CPU_SHARE, f"{share:.1%} of a core while idle"

        # Idle is not asleep: a post and its repost are applied and decided promptly.
        ev = Events(start_ms=int(time.time() * 1000), step_ms=10)
        await send_events(s, [ev.post("p-idle", "star"),
                              ev.repost("p-idle", "star", "fan", repost_id="r-idle")])  # fmt: skip
        (record,) = await read_topic(s, s.topics.decisions, 1, timeout=30)
        assert b'"r-idle"' in record.value and b"delivered" in record.value
        assert await redis.zcard(keys.parked()) == 0
    finally:
        worker.stop()
        await redis.aclose()
