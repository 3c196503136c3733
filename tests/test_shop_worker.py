"""Gifts, orders and moderation end to end: a worker on the real broker and Redis publishes
one decision per gift and per refused event, and fills the inbox and order center."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import orjson
import pytest
from feedamp.embedded.worker import worker_env
from feedamp.feeds import FeedReader
from feedamp.kafka.topics import ensure_topics

from .conftest import WorkerHandle, make_settings, wait_until
from .factory import Events
from .kafka import read_topic, send_events
from .test_gifts import START, catalog_doc


@pytest.fixture
def shop_settings(broker, redis_server, tmp_path):
    path = tmp_path / "campaigns.json"
    path.write_bytes(orjson.dumps(catalog_doc(["CODE-1"])))
    settings = make_settings(broker, redis_server, campaigns=str(path))
    asyncio.run(ensure_topics(settings))
    return settings


async def test_worker_decides_gifts_and_refusals_and_fills_the_views(shop_settings, redis,
                                                                     tmp_path):  # fmt: skip
    s = shop_settings
    ev = Events(start_ms=START)
    log = [
        ev.account("sus", "suspend"),
        ev.gift("g1", "ann", "bob", "editor", message="for your edits"),
        ev.gift("g2", "ann", "cat", "editor"),  # the pool had one code (same sender: in order)
        ev.gift("g3", "sus", "bob", "music"),
        ev.post("p1", "ava"),
        ev.purchase("o1", "bob", amount=1500, via_post="p1"),
        ev.status("o1", "bob", "paid", seq=1),
        ev.status("o1", "bob", "shipped", seq=2),
    ]
    refused_post = ev.post("p2", "sus")
    await send_events(s, [*log, refused_post])
    reader = FeedReader(redis, key_prefix=s.key_prefix, campaigns=s.campaigns)
    worker = WorkerHandle(s, tmp_path / "worker.log")
    try:
        records = await read_topic(s, s.topics.decisions, 4, timeout=90)

        async def shipped() -> bool:
            orders = (await reader.orders("bob")).items
            return bool(orders) and orders[0].status == "shipped"

        await wait_until(shipped, what="order o1 to be shipped")
    finally:
        worker.stop()
    decisions = {r.key.decode(): orjson.loads(r.value) for r in records}
    assert {k: (d["decision"], d["reasons"]) for k, d in decisions.items()} == {
        "g1": ("accepted", []),
        "g2": ("refused", ["codes_exhausted"]),
        "g3": ("refused", ["suspended"]),
        "sus": ("refused", ["suspended"]),
    }
    assert set(decisions["g1"]) == {"event_id", "gift_id", "sender_id", "decision", "reasons",
                                    "ts"}  # fmt: skip
    assert decisions["sus"]["event_id"] == refused_post.event_id
    assert decisions["sus"]["type"] == "post"
    inbox = (await reader.gift_inbox("bob")).items
    assert [(g.gift_id, g.code, g.message) for g in inbox] == [("g1", "CODE-1", "for your edits")]
    assert (await reader.gifts_sent("ann")).remaining["spring"] == 2
    order = (await reader.orders("bob")).items[0]
    assert [h[0] for h in order.history] == ["placed", "paid", "shipped"]
    assert (await reader.creator_stats("ava")).revenue_cents == 1500
    # The same views from the command line.
    env = worker_env(s)
    gifts = subprocess.run([sys.executable, "-m", "feedamp.cli", "gifts", "bob"], env=env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "editor (spring) from ann  code CODE-1" in gifts.stdout, gifts.stderr
    orders = subprocess.run([sys.executable, "-m", "feedamp.cli", "orders", "bob"], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "order o1  prod-o1  15.00 EUR  shipped (placed -> paid -> shipped)" in orders.stdout
    sales = subprocess.run([sys.executable, "-m", "feedamp.cli", "orders", "ava"], env=env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "Sales credited to ava: 1 order(s) 15.00 EUR" in sales.stdout


def test_worker_will_not_start_with_a_bad_campaigns_file(settings, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"campaigns": [{"id": "x", "offers": [{"id": "o", "partner": "p"}]}]}')
    env = worker_env(settings.with_(campaigns=str(path)))
    done = subprocess.run([sys.executable, "-m", "feedamp.cli", "worker"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert 'offers[0]: missing "title"' in done.stderr
