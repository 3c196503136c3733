"""Live equals replay: a mixed load stamped at send time, a worker joining and a worker
SIGKILLed mid-load, graph events and gifts on partitions another client's partitioner
would pick (gifts racing for a small code pool and a send limit, a gift sender suspended
and reinstated mid-load); once the group has caught up, ``feedamp verify`` finds no
difference."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from feedamp.embedded.services import Service
from feedamp.embedded.worker import worker_env
from feedamp.kafka.topics import ensure_topics
from feedamp.models import key_of, topic_of
from feedamp.models.events import Event, Gift
from redis.asyncio import Redis

from .conftest import WorkerHandle, make_settings
from .factory import Events, to_json
from .test_log_order import _is_feed, story

SECONDS = 18
RATE = 40  # events per second
#: A pool of three codes and a limit of two sends per sender, for gifts from a few senders.
CATALOG = {"campaigns": [
    {"id": "drop", "offers": [{"id": "cam", "partner": "Lens", "title": "a camera",
                               "codes": ["C1", "C2", "C3"]}]},
    {"id": "once", "send_limit": 2, "offers": [{"id": "pass", "partner": "Gym",
                                                 "title": "a day pass"}]},
]}  # fmt: skip
SENDERS = ("gs0", "gs1", "gs2", "gs3")


@pytest.fixture
def workers(broker: Service, redis_server: Service, tmp_path_factory):
    logs = tmp_path_factory.mktemp("live")
    campaigns = logs / "campaigns.json"
    campaigns.write_bytes(orjson.dumps(CATALOG))
    settings = make_settings(broker, redis_server, campaigns=str(campaigns))
    asyncio.run(ensure_topics(settings))
    first = WorkerHandle(settings, logs / "first.log")
    second: list[WorkerHandle] = []
    yield settings, first, second, logs
    for handle in (first, *second):
        handle.stop()


async def test_live_load_with_a_kill_and_a_join_verifies_clean(workers):
    settings, first, second, logs = workers
    rng = random.Random(11)
    log = with_gifts(rng, story(rng, SECONDS * RATE))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        start = time.monotonic()
        chunk = RATE // 5
        for n in range(0, len(log), chunk):
            now = int(time.time() * 1000)
            sends = []
            for i, event in enumerate(log[n : n + chunk]):
                event = replace(event, ts=now + i)  # stamped with the clock at send time
                topic = topic_of(event.type, settings.topics)
                # Graph events and gifts land where a different partitioner would put them.
                partition = None if _is_feed(event) else rng.randrange(settings.partitions)
                sends.append(await producer.send(topic, to_json(event),
                                                 key=key_of(event).encode(),
                                                 partition=partition))  # fmt: skip
            await asyncio.gather(*sends)
            elapsed = time.monotonic() - start
            if not second and elapsed > SECONDS / 3:
                second.append(WorkerHandle(settings, logs / "second.log"))  # a join
            if first.proc.poll() is None and elapsed > SECONDS * 2 / 3:
                first.kill()  # SIGKILL mid-load: its uncommitted batches are redelivered
            await asyncio.sleep(max(0.0, (n + chunk) / RATE - (time.monotonic() - start)))
    finally:
        await producer.stop()
    assert second and first.proc.returncode == -9
    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "feedamp.cli", "verify", "--wait", "90"],
        env=worker_env(settings), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr + second[0].log()[-3000:]
    assert "no differences" in out.stdout
    # The gifts raced for what was scarce: each kind of refusal happened.
    redis = Redis.from_url(settings.redis_url)
    try:
        gifts = [e for e in log if isinstance(e, Gift)]
        reasons = Counter()
        for gift in gifts:
            found = await redis.hget(f"{settings.key_prefix}gift:{{{gift.gift_id}}}", "reasons")
            assert found is not None, f"{gift.gift_id} was not decided"
            reasons.update(r for r in found.decode().split(",") if r)
    finally:
        await redis.aclose()
    assert {"codes_exhausted", "send_limit", "suspended", "self_gift"} <= set(reasons), reasons


def with_gifts(rng: random.Random, log: list[Event]) -> list[Event]:
    """``log`` with a gift after about every sixth event (a few senders, two offers: more
    gifts than codes and than sends allowed), and one sender suspended a third of the way
    and reinstated two thirds of the way (times are stamped again when sent)."""
    ev = Events(start_ms=1_700_000_000_000, id_prefix="gift-ev-")
    out: list[Event] = []
    third = len(log) // 3
    for n, event in enumerate(log):
        out.append(event)
        if n == third:
            out.append(ev.account(SENDERS[0], "suspend"))
        elif n == 2 * third:
            out.append(ev.account(SENDERS[0], "reinstate"))
        if rng.random() < 1 / 6:
            sender = rng.choice(SENDERS)
            out.append(ev.gift(f"g{n}", sender, rng.choice(["gr0", "gr1", sender]),
                               rng.choice(["cam", "pass"])))  # fmt: skip
    return out
