"""The worker creates its topics itself, inputs with infinite retention, on the real
broker; an unreachable broker stops it with one line. A broker refusing the retention
setting is answered with aiokafka's own response type (the embedded one accepts any)."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.protocol.admin import CreateTopicsResponse_v3
from feedamp.embedded.services import free_port
from feedamp.embedded.worker import worker_env
from feedamp.feeds import FeedReader
from feedamp.kafka.topics import INPUT_CONFIG, TopicError, ensure_topics
from feedamp.kafka.topics import create_missing as create

from .conftest import WorkerHandle, make_settings, wait_until
from .factory import Events
from .kafka import send_events


async def retention(settings, names: list[str]) -> dict[str, str | None]:
    """``retention.ms`` of each topic as the broker describes it (None: not set)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, n)
                     for n in names]  # fmt: skip
        found: dict[str, str | None] = dict.fromkeys(names)
        for response in await admin.describe_configs(resources):
            for resource in response.resources:
                for entry in resource[4]:
                    if entry[0] == "retention.ms":
                        found[resource[3]] = entry[1]
        return found
    finally:
        await admin.close()


async def partitions_of(settings, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        listed = set(await admin.list_topics())
        present = [n for n in names if n in listed]
        described = await admin.describe_topics(present) if present else []
        return {d["topic"]: len(d["partitions"]) for d in described}
    finally:
        await admin.close()


async def test_the_worker_creates_missing_topics_and_consumes_them_at_once(
    broker, redis_server, redis, tmp_path, uid
):
    s = make_settings(broker, redis_server, partitions=3)
    t = s.topics
    everything = [*t.inputs, t.decisions, t.dead_letter]
    assert await partitions_of(s, everything) == {}  # nothing exists yet
    worker = WorkerHandle(s, tmp_path / "worker.log")
    try:

        async def created() -> bool:
            return len(await partitions_of(s, everything)) == len(everything)

        # Listing topics does not create them; only the worker does.
        await wait_until(created, timeout=30, what="the worker to create its topics")
        assert await partitions_of(s, everything) == dict.fromkeys(everything, 3)
        kept = await retention(s, everything)
        assert {n: kept[n] for n in t.inputs} == dict.fromkeys(t.inputs, "-1")
        assert kept[t.decisions] != "-1" and kept[t.dead_letter] != "-1"

        # Consumed from the start: no metadata refresh to wait for.
        ev = Events(start_ms=int(time.time() * 1000) - 60_000)
        alice, bob = uid("alice"), uid("bob")
        await send_events(s, [ev.follow(bob, alice), ev.post(uid("p"), alice)])
        reader = FeedReader(redis, key_prefix=s.key_prefix, feed_buckets=s.feed_buckets)

        async def delivered() -> bool:
            return len((await reader.following(bob)).items) == 1

        await wait_until(delivered, timeout=30, what="the post in bob's feed")
    finally:
        worker.stop()
    log = worker.log()
    (line,) = [ln for ln in log.splitlines() if "created topics" in ln]
    assert all(name in line for name in everything), line
    assert "retention.ms=-1" in line


async def test_ensure_topics_creates_once_and_warns_of_limited_input_retention(
    broker, redis_server, caplog
):
    s = make_settings(broker, redis_server)
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap_servers)
    await admin.start()
    try:  # an operator created posts with a 7-day retention
        week = NewTopic(s.topics.posts, 2, 1, topic_configs={"retention.ms": "604800000"})
        await admin.create_topics([week])
    finally:
        await admin.close()
    with caplog.at_level(logging.INFO, logger="feedamp.topics"):
        created = await ensure_topics(s)
    assert s.topics.posts not in created
    everything = [*s.topics.inputs, s.topics.decisions, s.topics.dead_letter]
    assert sorted(created) == sorted(n for n in everything if n != s.topics.posts)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"input topic {s.topics.posts} keeps records for 604800000 ms only (retention.ms): "
        "replay, rebuild and verify lose what is older; set retention.ms=-1"
    ]
    assert (await partitions_of(s, [s.topics.posts]))[s.topics.posts] == 2  # left as it was
    caplog.clear()
    assert await ensure_topics(s) == []


def test_an_unreachable_broker_stops_the_worker_with_one_line(broker, redis_server):
    s = make_settings(broker, redis_server).with_(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "feedamp.cli", "worker", "--loglevel", "warning"],
        env=worker_env(s), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert time.monotonic() - started < 30
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("feedamp worker: cannot reach Kafka at KAFKA_BOOTSTRAP_SERVERS=")


class RefusingAdmin:
    """Answers CreateTopics, with aiokafka's own response type, as a broker that refuses
    topic configurations (``code`` for a topic with one) would; the embedded broker
    accepts any, so this path cannot be taken on it."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.requests: list[list[tuple[str, dict]]] = []

    async def create_topics(self, topics: list[NewTopic]) -> CreateTopicsResponse_v3:
        self.requests.append([(t.name, dict(t.topic_configs)) for t in topics])
        errors = [(t.name, self.code, "refused") if t.topic_configs else (t.name, 0, None)
                  for t in topics]  # fmt: skip
        return CreateTopicsResponse_v3(throttle_time_ms=0, topic_errors=errors)


async def test_a_refused_retention_creates_the_topic_with_the_default_and_warns(caplog):
    admin = RefusingAdmin(40)  # INVALID_CONFIG
    topics = [NewTopic("posts", 2, 1, topic_configs=dict(INPUT_CONFIG)),
              NewTopic("decisions", 2, 1)]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="feedamp.topics"):
        await create(admin, topics)  # type: ignore[arg-type]
    assert admin.requests == [
        [("posts", {"retention.ms": "-1"}), ("decisions", {})],
        [("posts", {})],
    ]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith("the broker refused retention.ms=-1 for topic posts "
                              "(InvalidConfigurationError")  # fmt: skip


async def test_any_other_refusal_is_an_error_naming_the_topic():
    with pytest.raises(TopicError, match="cannot create topic posts: TopicAuthorizationFailed"):
        topic = NewTopic("posts", 2, 1, topic_configs=dict(INPUT_CONFIG))
        await create(RefusingAdmin(29), [topic])  # type: ignore[arg-type]
