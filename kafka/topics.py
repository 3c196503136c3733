"""Create the engine's missing topics, before anything consumes them.

The worker calls :func:`ensure_topics` at start (as do ``feedamp dev``, the tests and the
benchmarks), so it never depends on a broker's auto-creation, which stock Kafka
deployments turn off: a consumer subscribed to a missing topic would otherwise only see
it at its next metadata refresh (about 5 minutes).

Invariants:

- Input topics are created with ``retention.ms=-1``: the log is the source of truth, and
  ``replay``, ``replay --rebuild`` and ``verify`` read it from the beginning. Outputs
  (decisions, dead letters) keep the broker's default retention.
- Existing topics are never changed; an input topic that keeps records for a limited
  time is reported (one warning each), since views can then not be rebuilt past it.
- A broker that refuses the retention setting gets the topic created with its default
  retention, and a warning; any other refusal raises :class:`TopicError`.
- Created topics are visible in the cluster's metadata before this returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError, for_code
from feedamp.config import Settings

from .config import kafka_client_kwargs

__all__ = ["INPUT_CONFIG", "TopicError", "create_missing", "ensure_topics", "prepare_topics"]

log = logging.getLogger("feedamp.topics")

#: Configuration of the input topics the engine creates: keep every record.
INPUT_CONFIG = {"retention.ms": "-1"}

#: CreateTopics error codes that are fine: created, or created meanwhile by another worker.
_OK = {0, 36}  # NONE, TOPIC_ALREADY_EXISTS
#: Error codes of a broker refusing a topic's configuration (then created without it).
_CONFIG_REFUSED = {35, 40, 44}  # UNSUPPORTED_VERSION, INVALID_CONFIG, POLICY_VIOLATION
#: How long to wait for created topics to show in the metadata (s).
VISIBLE_TIMEOUT = 30.0


class TopicError(RuntimeError):
    """The broker refused to create a topic (the message is one line naming it)."""


async def ensure_topics(settings: Settings, partitions: int | None = None) -> list[str]:
    """Create every input and output topic that does not exist yet (``partitions`` each,
    default ``FEEDAMP_PARTITIONS``); return the names created. Logs what it created."""
    partitions = partitions or settings.partitions
    t = settings.topics
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        inputs = [n for n in t.inputs if n not in existing]
        outputs = [n for n in (t.decisions, t.dead_letter) if n not in existing]
        wanted = [NewTopic(n, partitions, 1, topic_configs=dict(INPUT_CONFIG)) for n in inputs]
        wanted += [NewTopic(n, partitions, 1) for n in outputs]
        if wanted:
            await create_missing(admin, wanted)
            await _wait_visible(admin, [n.name for n in wanted])
            log.info("created topics %s (%d partitions; inputs with %s)",
                     ", ".join(n.name for n in wanted), partitions,
                     ", ".join(f"{k}={v}" for k, v in INPUT_CONFIG.items()))  # fmt: skip
        await _warn_limited_retention(admin, [n for n in t.inputs if n in existing])
        return [n.name for n in wanted]
    finally:
        await admin.close()


async def create_missing(admin: AIOKafkaAdminClient, topics: Sequence[NewTopic]) -> None:
    """Create ``topics``; those whose configuration the broker refuses are created again
    without it."""
    refused = []
    for name, code, message in await _create_once(admin, topics):
        topic = next(n for n in topics if n.name == name)
        if code in _CONFIG_REFUSED and topic.topic_configs:
            log.warning("the broker refused %s for topic %s (%s: %s); created with the "
                        "broker's default retention: replay, rebuild and verify only see "
                        "what it keeps", _configs(topic), name, for_code(code).__name__,
                        message)  # fmt: skip
            refused.append(NewTopic(name, topic.num_partitions, topic.replication_factor))
        else:
            raise TopicError(f"cannot create topic {name}: {for_code(code).__name__}: {message}")
    for name, code, message in await _create_once(admin, refused):
        raise TopicError(f"cannot create topic {name}: {for_code(code).__name__}: {message}")


async def _create_once(
    admin: AIOKafkaAdminClient, topics: Sequence[NewTopic]
) -> list[tuple[str, int, str | None]]:
    """Send one CreateTopics; return ``(topic, error code, message)`` of each failure."""
    if not topics:
        return []
    response = await admin.create_topics(list(topics))
    failed = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        if code not in _OK:
            failed.append((name, code, message))
    return failed


def _configs(topic: NewTopic) -> str:
    return ", ".join(f"{k}={v}" for k, v in topic.topic_configs.items())


async def _wait_visible(admin: AIOKafkaAdminClient, names: Sequence[str]) -> None:
    """Wait until every topic in ``names`` has partitions with leaders in the metadata
    (Kafka propagates a new topic to the brokers after CreateTopics answers)."""
    deadline = time.monotonic() + VISIBLE_TIMEOUT
    while True:
        described = await admin.describe_topics(list(names))
        if all(d["error_code"] == 0 and d["partitions"]
               and all(p["leader"] >= 0 for p in d["partitions"])
               for d in described):  # fmt: skip
            return
        if time.monotonic() > deadline:
            raise TopicError(f"created topics not visible after {VISIBLE_TIMEOUT:g} s: "
                             f"{', '.join(names)}")  # fmt: skip
        await asyncio.sleep(0.1)


async def _warn_limited_retention(admin: AIOKafkaAdminClient, names: Sequence[str]) -> None:
    """One warning per existing input topic that does not keep its records for good
    (all configurations are asked for: some brokers drop a filtered request)."""
    if not names:
        return
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        responses = await admin.describe_configs(resources)
    except Exception as exc:  # optional: some brokers do not answer DescribeConfigs
        log.debug("could not read the retention of the input topics: %r", exc)
        return
    for response in responses:
        for resource in response.resources:
            name, entries = resource[3], resource[4]
            for entry in entries:
                if entry[0] == "retention.ms" and entry[1] not in (None, "-1"):
                    log.warning(
                        "input topic %s keeps records for %s ms only (retention.ms): replay, "
                        "rebuild and verify lose what is older; set retention.ms=-1",
                        name, entry[1],
                    )  # fmt: skip


def prepare_topics(settings: Settings, timeout: float = 60.0) -> str | None:
    """Run :func:`ensure_topics` in an event loop of its own (before the worker starts its
    own); return None, or one line saying why the worker cannot start."""
    servers = settings.kafka_bootstrap_servers
    loop = asyncio.new_event_loop()
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)  # what goes wrong is said once, below
    try:
        loop.run_until_complete(asyncio.wait_for(ensure_topics(settings), timeout))
    except KafkaConnectionError as exc:
        return f"cannot reach Kafka at KAFKA_BOOTSTRAP_SERVERS={servers}: {exc}"
    except TimeoutError:
        return (f"Kafka at KAFKA_BOOTSTRAP_SERVERS={servers} did not answer within "
                f"{timeout:g} s while creating the topics")  # fmt: skip
    except (TopicError, KafkaError) as exc:
        return f"creating the topics at KAFKA_BOOTSTRAP_SERVERS={servers}: {exc}"
    finally:
        client_log.setLevel(level)
        loop.close()
    return None
