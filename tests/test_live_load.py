"""Live equals replay: a mixed load stamped at send time, a worker joining and a worker
SIGKILLed mid-load, graph events on partitions another client's partitioner would pick;
once the group has caught up, ``feedamp verify`` finds no difference."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaProducer
from feedamp.embedded.services import Service
from feedamp.embedded.worker import worker_env
from feedamp.kafka.topics import ensure_topics
from feedamp.models import key_of, topic_of

from .conftest import WorkerHandle, make_settings
from .factory import to_json
from .test_log_order import _is_feed, story

SECONDS = 18
RATE = 40  # events per second


@pytest.fixture
def workers(broker: Service, redis_server: Service, tmp_path_factory):
    settings = make_settings(broker, redis_server)
    asyncio.run(ensure_topics(settings))
    logs = tmp_path_factory.mktemp("live")
    first = WorkerHandle(settings, logs / "first.log")
    second: list[WorkerHandle] = []
    yield settings, first, second, logs
    for handle in (first, *second):
        handle.stop()


async def test_live_load_with_a_kill_and_a_join_verifies_clean(workers):
    settings, first, second, logs = workers
    rng = random.Random(11)
    log = story(rng, SECONDS * RATE)
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
                # Graph events land where a different partitioner would put them.
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
