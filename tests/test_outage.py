"""A broker outage under a running worker: it waits, reconnects and applies every event
exactly once.

The worker reaches a dedicated Tansu broker only through a TCP proxy in this process; the
broker advertises the proxy's address, so every connection (bootstrap, group coordinator,
fetches, the decisions producer) goes through it. Mid-way through a fan-out the proxy cuts
every connection and refuses new ones for longer than the consumer session timeout, then
comes back. The feeds must end up exactly as a clean run writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from feedamp.embedded.services import Service, free_port, start_broker
from feedamp.feeds import FeedStore, Keys
from feedamp.kafka.topics import ensure_topics
from feedamp.ops.verify import compare_namespaces

from .conftest import WorkerHandle, make_settings, wait_until
from .factory import Events
from .kafka import send_events
from .snapshot import entries
from .test_replay import caught_up

FOLLOWERS = 500
REPOSTERS = 10
REPOSTS = 200  # 100,000 deliveries: seconds of work, so the cut lands mid-way
#: How long the broker stays unreachable: longer than the session timeout (2 s), so the
#: group coordinator drops the worker and it has to rejoin.
OUTAGE = 5.0
#: Key kinds that make up the views: every key of these kinds is compared. The worker's
#: own bookkeeping is left out, and so are the repost-attempt windows (``attempts`` and
#: the like): they are trimmed relative to the latest attempt seen, so what they still
#: hold depends on the arrival order across partitions, outage or not; the decisions made
#: from them are compared (``decided``).
VIEW_KINDS = {"feed", "via", "foryou", "post", "reposters", "comments", "recent",
              "recent_reposts", "decided", "followers", "following"}  # fmt: skip


class Proxy:
    """A TCP proxy on 127.0.0.1 to ``target_port`` that can be cut and restored."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._tasks: set[asyncio.Task] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (again) on the proxy port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Stop listening (new connections are refused) and reset every open one."""
        assert self._server is not None
        self._server.close()
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()
        await self._server.wait_closed()
        self._server = None

    async def close(self) -> None:
        if self._server is not None:
            await self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        pair = (client_w.transport, broker_w.transport)
        self._transports.update(pair)
        pipes = [asyncio.create_task(self._pipe(client_r, broker_w)),
                 asyncio.create_task(self._pipe(broker_r, client_w))]  # fmt: skip
        self._tasks.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for transport in pair:
                transport.abort()
                self._transports.discard(transport)
            for task in pipes:
                task.cancel()
                self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()


@pytest.fixture
async def proxied_broker() -> AsyncIterator[tuple[Service, Proxy]]:
    """A Tansu broker reachable only through a proxy (it advertises the proxy port)."""
    port = free_port()
    proxy = Proxy(port)
    await proxy.start()
    broker = await asyncio.to_thread(start_broker, port, proxy.port)
    yield broker, proxy
    await proxy.close()
    await asyncio.to_thread(broker.stop)


async def test_broker_outage_mid_fanout(proxied_broker, redis_server, redis, tmp_path):
    broker, proxy = proxied_broker
    s = make_settings(broker, redis_server, fanout_chunk=250, batch_size=50)
    s = s.with_(kafka_bootstrap_servers=proxy.address)
    reference = s.with_(key_prefix=s.key_prefix.rstrip(":") + "-clean:")
    await ensure_topics(s)
    ev = Events(step_ms=20_000)  # each reposter's reposts 200 s apart: under the rate cap
    followers = [f"f{i}" for i in range(FOLLOWERS)]
    reposters = [f"r{i}" for i in range(REPOSTERS)]
    graph = [ev.follow(f, r) for f in followers for r in reposters]
    reposts = [ev.repost(f"p{i}", "author", reposters[i % REPOSTERS]) for i in range(REPOSTS)]
    for settings in (s, reference):  # the graph goes straight to Redis, in both namespaces
        assert (await FeedStore(redis, settings).apply(graph)).failures == []
    keys = Keys(s.key_prefix)
    sample = [keys.feed(f, b) for f in followers[::50] for b in range(s.feed_buckets)]
    total = REPOSTS * len(followers[::50])

    async def progress() -> int:
        return await entries(redis, sample)

    worker = WorkerHandle(s, tmp_path / "worker.log")
    try:
        await send_events(s, reposts)

        async def started() -> bool:
            return await progress() >= total // 20

        await wait_until(started, what="the fan-out to start")
        await proxy.cut()
        at_cut = await progress()
        assert at_cut < total, "the cut came after the work was done; make the load larger"
        # The outage itself: nothing to poll for, the broker is simply away this long.
        await asyncio.sleep(OUTAGE)
        assert worker.proc.poll() is None, worker.log()
        accepted = proxy.accepted
        await proxy.start()

        async def finished() -> bool:
            return await progress() == total

        await wait_until(finished, timeout=180, what="the worker to finish after the outage")
        await wait_until(lambda: caught_up(s), what="the worker to commit every record")
        assert proxy.accepted > accepted, "the worker reconnected through the proxy"
        assert worker.proc.poll() is None, worker.log()
    finally:
        worker.stop()

    assert worker.proc.returncode in (0, -15), worker.log()
    # Exactly what a clean run (the same events applied once, no broker) writes.
    assert (await FeedStore(redis, reference).apply(reposts)).failures == []
    keys_compared, differences = await compare_namespaces(redis, s.key_prefix, reference.key_prefix)
    assert keys_compared > FOLLOWERS * 2
    assert [d for d in differences if d.key.split(":", 1)[0] in VIEW_KINDS] == []
