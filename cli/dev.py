"""``feedamp dev``: the whole engine on one machine, with a demo.

Starts the embedded Tansu broker and a Redis server on free ports, creates the topics,
starts a worker (its log in a file it names), prints the ``export`` lines that point
other shells' commands at them, plays a small scenario (not with ``--no-demo``), prints
the resulting feeds, and keeps everything running until Ctrl-C, SIGTERM or SIGHUP (the
terminal closing), which stop all of it; ``--once`` stops after the demo. A sample
JSON-lines file, with ids of its own, is ready for ``feedamp produce``.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
import tempfile
import time
from importlib.resources import files

import orjson
from aiokafka import AIOKafkaConsumer
from feedamp.config import Settings
from feedamp.embedded.cluster import RedisClusterService, start_redis_cluster
from feedamp.embedded.services import Service, free_port, start_broker, start_redis
from feedamp.embedded.worker import start_worker, stop_process
from feedamp.feeds import FeedReader
from feedamp.kafka.clients import start_client
from feedamp.kafka.topics import ensure_topics

from .produce import messages_from_lines, publish
from .show import format_gifts, format_orders, format_page, format_stats

__all__ = ["demo_events", "export_lines", "run_dev", "sample_events"]

DEMO_USERS = ("alice", "bob", "carol", "dave", "erin")


def demo_events(now_ms: int) -> list[dict]:
    """A short story: follows, posts, reposts with comments, an unrepost, a late follow."""
    t = now_ms - 60_000
    ev: list[dict] = []

    def add(type_: str, **fields: object) -> None:
        nonlocal t
        t += 1000
        ev.append({"type": type_, "event_id": f"demo-{len(ev)}", "ts": t, **fields})

    for follower, followee in [("bob", "alice"), ("carol", "alice"), ("carol", "bob"),
                               ("dave", "bob"), ("dave", "carol")]:  # fmt: skip
        add("follow", follower_id=follower, followee_id=followee)
    add("post", post_id="p1", author_id="alice", text="sunset timelapse")
    add("post", post_id="p2", author_id="alice", text="cat vs cucumber")
    add("repost", repost_id="r1", post_id="p1", post_author_id="alice", reposter_id="bob",
        comment="must watch")  # fmt: skip
    add("repost", repost_id="r2", post_id="p1", post_author_id="alice", reposter_id="carol")
    add("repost", repost_id="r3", post_id="p2", post_author_id="alice", reposter_id="bob")
    add("unrepost", repost_id="r3", post_id="p2", reposter_id="bob")
    add("post", post_id="p3", author_id="dave", text="my first clip")
    add("follow", follower_id="erin", followee_id="alice")
    # The shop: a gift from the sample campaigns, a purchase through carol's repost.
    add("gift", gift_id="g1", sender_id="bob", recipient_id="erin", offer_id="editor-90",
        message="for your timelapses")  # fmt: skip
    add("purchase", order_id="o1", buyer_id="dave", product_id="tripod", seller_id="gearshop",
        amount_cents=2499, currency="EUR", via_post_id="p1", via_repost_id="r2")  # fmt: skip
    add("order_status", order_id="o1", buyer_id="dave", status="paid", seq=1)
    return ev


async def _play_demo(settings: Settings) -> str:
    events = demo_events(int(time.time() * 1000))
    lines = [orjson.dumps(e) for e in events]
    lines.append(b'{"type": "post", "event_id": "demo-bad", "post_id": "p4"}')  # no author
    await publish(messages_from_lines(lines, settings), settings)
    reader = FeedReader.from_url(
        settings.redis_url, key_prefix=settings.key_prefix, feed_buckets=settings.feed_buckets,
        campaigns=settings.campaigns,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:  # the demo is done when erin's backfill and dave's p3-free feed show
            dave = await reader.following("dave")
            erin = await reader.following("erin")
            reposters = {i.post_id: i.reposted_by for i in dave.items}
            orders = (await reader.orders("dave")).items
            gifts = (await reader.gift_inbox("erin")).items
            if (reposters.get("p1") == ("carol", "bob") and len(erin.items) == 2 and gifts
                    and orders and orders[0].status == "paid"):  # fmt: skip
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the worker did not apply the demo within 120 s")
            await asyncio.sleep(0.1)
        pages = [format_page(u, await reader.following(u)) for u in DEMO_USERS]
        pages.append(format_gifts("erin", await reader.gift_inbox("erin")))
        pages.append(format_orders("dave", await reader.orders("dave")))
        credits = [format_stats(u, await reader.creator_stats(u)) for u in ("alice", "carol")]
        pages.append("\n".join(credits))
    finally:
        await reader.close()
    letters = await read_dead_letters(settings, expect=1)
    pages.append(f"dead-letter topic {settings.topics.dead_letter!r}: {len(letters)} event(s)")
    pages += [f"  {reason}: {value!r}" for reason, value in letters]
    return "\n\n".join(pages)


async def read_dead_letters(
    settings: Settings, expect: int, timeout: float = 30.0
) -> list[tuple[str, bytes]]:
    """(reason, original value) of the dead letters, once ``expect`` of them arrived."""
    consumer = AIOKafkaConsumer(
        settings.topics.dead_letter,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await start_client(consumer)
    letters: list[tuple[str, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(letters) < expect and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                for r in batch:
                    reason = dict(r.headers).get("feedamp-reason", b"").decode()
                    letters.append((reason, r.value))
    finally:
        await consumer.stop()
    return letters


def sample_campaigns() -> str:
    """Path of the sample campaigns file shipped with the package."""
    return str(files("feedamp.config").joinpath("campaigns.sample.json"))


def sample_events() -> str:
    """Path of the sample JSON-lines file shipped with the package (ids unlike the demo's:
    users sam, noa, kai, lin; posts s1, s2; gift sg1)."""
    return str(files("feedamp.cli").joinpath("sample.jsonl"))


def export_lines(settings: Settings) -> list[str]:
    """``export`` lines that point another shell's ``feedamp`` at this stack."""
    return [
        f"export KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers}",
        f"export REDIS_URL={settings.redis_url}",
        f"export FEEDAMP_CAMPAIGNS={shlex.quote(settings.campaigns)}",
    ]


def run_dev(
    settings: Settings, *, once: bool = False, demo: bool = True, cluster: bool = False
) -> int:
    """Run the embedded stack (with the demo unless not ``demo``); block until Ctrl-C,
    SIGTERM or SIGHUP unless ``once``.

    Without ``FEEDAMP_CAMPAIGNS`` the worker uses the sample campaigns file. ``cluster``
    starts a three-master Redis Cluster instead of one Redis (see
    :mod:`feedamp.embedded.cluster`)."""
    # Ctrl-C, SIGTERM and SIGHUP stop everything, even when started from a shell that
    # ignores SIGINT for background jobs (Python then installs no KeyboardInterrupt
    # handler); SIGHUP is the terminal closing.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)
    services: list[Service | RedisClusterService] = []
    worker = None
    try:
        what = "a three-master Redis Cluster" if cluster else "Redis"
        print(f"starting Tansu broker and {what} ...", flush=True)
        services.append(broker := start_broker())
        services.append(redis := start_redis_cluster() if cluster else start_redis())
        if cluster:
            nodes = " ".join(node.address for node in redis.nodes)  # type: ignore[union-attr]
            print(f"redis cluster nodes {nodes}", flush=True)
        settings = settings.with_(
            kafka_bootstrap_servers=broker.address,
            redis_url=f"redis://{redis.address}/0",
            session_timeout=3.0,
            rebalance_timeout=3.0,
            partitions=4,
            web_port=free_port(),
            campaigns=settings.campaigns or sample_campaigns(),
        )
        asyncio.run(ensure_topics(settings))
        log_path = os.path.join(tempfile.mkdtemp(prefix="feedamp-dev-"), "worker.log")
        worker = start_worker(settings, log_path)
        print(f"broker  KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers}")
        print(f"redis   REDIS_URL={settings.redis_url}")
        print(f"worker  pid {worker.pid}, web port {settings.web_port}, log {log_path}")
        print("\nin another shell:\n" + "\n".join(f"  {x}" for x in export_lines(settings)))
        print(f"  feedamp produce {shlex.quote(sample_events())}   # sam, noa, kai, lin; s1, s2")
        print("  feedamp feed noa && feedamp explain noa s1\n", flush=True)
        if demo:
            print("playing the demo scenario ...", flush=True)
            print(asyncio.run(_play_demo(settings)), flush=True)
        if once:
            return 0
        print("\nrunning; Ctrl-C (or closing the terminal) stops everything.", flush=True)
        while worker.poll() is None:
            time.sleep(0.5)
        print(f"worker exited with code {worker.returncode}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        if worker is not None:
            stop_process(worker)
        for service in reversed(services):
            service.stop()
