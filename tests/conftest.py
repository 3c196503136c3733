"""Fixtures: one real Tansu broker, one real Redis and (when a test asks for it) one real
three-master Redis Cluster per session, isolated per test.

Isolation: every test gets its own Redis key prefix; tests that need Kafka get their own
topic names and consumer group (``settings``), and worker-backed tests share one worker per
module and use unique ids (``uid``).

Tiers: the services start on first use, so a test that asks for neither ``broker`` nor
``redis_server`` (directly or through another fixture) starts nothing and is marked
``unit``; the rest are ``integration``, as is a module that starts services itself and says
so with ``pytestmark = pytest.mark.integration``. ``pytest -m unit`` runs in seconds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from feedamp.config import Settings, Topics
from feedamp.embedded.cluster import RedisClusterService, start_redis_cluster
from feedamp.embedded.services import Service, start_broker, start_redis
from feedamp.embedded.worker import start_worker, stop_process
from feedamp.feeds import FeedReader, FeedStore
from feedamp.feeds.connection import close, connect
from feedamp.kafka.topics import ensure_topics
from redis.asyncio import Redis

WAIT_TIMEOUT = 60.0
#: Fixtures that start a service: a test using any of them is an integration test.
SERVICES = frozenset({"broker", "redis_server", "redis_cluster"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test ``unit`` or ``integration`` by the services it needs."""
    for item in items:
        needs = SERVICES & set(getattr(item, "fixturenames", ()))
        if needs or item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def broker() -> Iterator[Service]:
    service = start_broker()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Service]:
    service = start_redis()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterService]:
    """Three masters, no replicas, every slot assigned; started once per session."""
    cluster = start_redis_cluster()
    yield cluster
    cluster.stop()


def make_settings(broker: Service, redis_server: Service, **changes) -> Settings:
    """Settings isolated by a fresh key prefix, topic prefix and consumer group."""
    tag = uuid.uuid4().hex[:10]
    base = Settings(
        kafka_bootstrap_servers=broker.address,
        redis_url=f"redis://{redis_server.address}/0",
        app_id=f"feedamp-test-{tag}",
        topics=Topics().prefixed(f"t{tag}-"),
        partitions=4,
        key_prefix=f"t{tag}:",
        session_timeout=2.0,
        rebalance_timeout=2.0,
        web_port=0,
    )
    return base.with_(**changes)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module that sets ``LAYOUTS = ("standalone", "cluster")`` runs each test using the
    ``settings``, ``redis``, ``store`` or ``reader`` fixtures on both Redis layouts (those
    using the module's ``worker``, or marked ``single_layout``, on the standalone one
    only)."""
    layouts = getattr(metafunc.module, "LAYOUTS", ("standalone",))
    # The module's shared ``worker`` runs on the standalone Redis (a worker on a cluster:
    # tests/test_cluster_worker.py).
    if "worker" in metafunc.fixturenames or metafunc.definition.get_closest_marker("single_layout"):
        return
    if "layout" in metafunc.fixturenames and len(layouts) > 1:
        metafunc.parametrize("layout", layouts, indirect=True)


@pytest.fixture
def layout(request: pytest.FixtureRequest) -> str:
    """The Redis layout of this test: ``standalone`` unless the module asks for both."""
    return getattr(request, "param", "standalone")


@pytest.fixture
def redis_service(request: pytest.FixtureRequest, layout: str) -> Service:
    """The session's standalone Redis, or its three-master cluster."""
    return request.getfixturevalue("redis_server" if layout == "standalone" else "redis_cluster")


@pytest.fixture
def settings(broker: Service, redis_service: Service) -> Settings:
    return make_settings(broker, redis_service)


@pytest.fixture
def uid() -> Callable[[str], str]:
    """Unique ids for one test: ``uid('alice')`` -> ``alice-3f2a9c``."""
    tag = uuid.uuid4().hex[:6]
    return lambda name: f"{name}-{tag}"


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    """A client of the test's layout (a ``RedisCluster`` on the cluster)."""
    client = connect(settings.redis_url)
    yield client  # type: ignore[misc]
    await close(client)


@pytest.fixture
async def store(redis: Redis, settings: Settings) -> FeedStore:
    return FeedStore(redis, settings)


@pytest.fixture
async def reader(redis: Redis, settings: Settings) -> FeedReader:
    return FeedReader(redis, key_prefix=settings.key_prefix, feed_buckets=settings.feed_buckets)


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout: float = WAIT_TIMEOUT, what: str = ""
) -> None:
    """Poll ``condition`` every 50 ms until it holds; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(0.05)


class WorkerHandle:
    """A ``feedamp worker`` child process and the settings it runs with."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc = start_worker(settings, str(log_path))

    def restart(self) -> None:
        stop_process(self.proc)
        self.proc = start_worker(self.settings, str(self.log_path))

    def kill(self) -> None:
        """SIGKILL: no shutdown, no offset commit."""
        self.proc.kill()
        self.proc.wait()

    def start(self) -> None:
        self.proc = start_worker(self.settings, str(self.log_path))

    def stop(self) -> None:
        stop_process(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def worker(
    broker: Service, redis_server: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerHandle]:
    """One worker for the module, on its own topics, group and key prefix."""
    settings = make_settings(broker, redis_server)
    asyncio.run(ensure_topics(settings))
    handle = WorkerHandle(settings, tmp_path_factory.mktemp("worker") / "worker.log")
    yield handle
    handle.stop()
    if handle.proc.returncode not in (0, -15):
        print(handle.log())
