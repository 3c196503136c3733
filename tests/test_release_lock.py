"""The release lock on a real Redis, standalone and a cluster: one releaser at a time; a
releaser keeps it for as long as it releases, however long that is; and a releaser that
died without letting go holds the others up for ``LOCK_SECONDS`` at most (the lock's
time is shortened here so the tests take a second or two each)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from feedamp.config import Settings
from feedamp.embedded.services import Service
from feedamp.feeds import watermark
from feedamp.feeds.connection import AnyRedis, close, connect
from feedamp.feeds.namespace import Namespace
from feedamp.feeds.watermark import Watermark

#: The lock's time in these tests (s).
SHORT = 0.4


@pytest.fixture(params=["standalone", "cluster"])
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[AnyRedis]:
    """A standalone Redis and a three-master cluster (the lock is one key)."""
    server: Service = request.getfixturevalue(
        "redis_server" if request.param == "standalone" else "redis_cluster"
    )
    client = connect(f"redis://{server.address}/0")
    yield client
    await close(client)


@pytest.fixture
def parking(redis, monkeypatch) -> tuple[Watermark, Namespace]:
    monkeypatch.setattr(watermark, "LOCK_SECONDS", SHORT)
    settings = Settings(redis_url="redis://unused", key_prefix="rlock:")
    return Watermark(redis, settings), Namespace.of(settings)


async def refused(parking: Watermark, ns: Namespace) -> bool:
    async with parking.releasing(ns) as held:
        return not held


async def test_a_release_longer_than_the_lock_keeps_it_and_lets_go_after(parking):
    order, ns = parking
    async with order.releasing(ns) as held:
        assert held
        # Four times the lock's time: renewed meanwhile, never free for another.
        until = time.monotonic() + 4 * SHORT
        while time.monotonic() < until:
            assert await refused(order, ns)
            await asyncio.sleep(SHORT / 8)
    assert not await refused(order, ns)  # let go at once after


async def test_a_holder_that_died_holds_the_others_up_for_the_lock_time_at_most(parking):
    order, ns = parking
    assert await order.lock(ns).acquire()  # taken, and never renewed nor let go
    start = time.monotonic()
    assert await refused(order, ns)
    while await refused(order, ns):
        assert time.monotonic() - start < SHORT + 1.0, "the lock never lapsed"
        await asyncio.sleep(0.02)
    assert time.monotonic() - start >= SHORT * 0.9
