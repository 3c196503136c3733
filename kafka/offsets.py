"""Partitions and end offsets for the operator tools (replay, dlq, status).

End offsets: ``ListOffsets`` (``AIOKafkaConsumer.end_offsets``) is the usual answer, but
the embedded Tansu answers it with the base offset of the partition's last record batch
plus one, which misses the rest of that batch (a batch of 10 records at offset 0 gives
1). The high-water mark in a fetch response is right, so :func:`end_offsets` fetches once
from just before the listed end of every non-empty partition and takes the larger of the
two. On Kafka both agree and the probe costs one record per partition.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from feedamp.config import OperatorError

__all__ = ["end_offsets", "partitions"]

PROBE_TIMEOUT = 10.0


async def partitions(
    consumer: AIOKafkaConsumer, topics: Sequence[str], *, missing_ok: bool = False
) -> list[TopicPartition]:
    """Every partition of ``topics``; OperatorError (a ValueError) for a missing topic
    unless ``missing_ok``."""
    # The metadata of every topic: the consumer's own view only covers what it tracks.
    cluster = await consumer._client.fetch_all_metadata()
    tps = []
    for topic in topics:
        found = cluster.partitions_for_topic(topic)
        if not found:
            if missing_ok:
                continue
            raise OperatorError(
                f"topic {topic!r} does not exist (check FEEDAMP_TOPIC_PREFIX and "
                "FEEDAMP_TOPIC_*; a worker creates its topics when it starts)"
            )
        tps += [TopicPartition(topic, p) for p in sorted(found)]
    return tps


async def end_offsets(
    consumer: AIOKafkaConsumer,
    tps: Sequence[TopicPartition],
    timeout: float = PROBE_TIMEOUT,
    *,
    pause: bool = False,
) -> dict[TopicPartition, int]:
    """The end offset (next offset to be written) of each of ``tps``, which must be
    assigned to ``consumer``. Moves their positions: seek afterwards.

    ``pause``: ``tps`` are left paused (the caller seeks, then resumes what it reads), and
    each probed partition is paused as soon as its end is known, before the consumer can
    fetch from there: a broker holds a fetch that finds nothing new for the fetch wait,
    and the consumer sends its next fetch to that broker only once it is answered, so the
    first fetch after the caller's seek would wait that long."""
    if pause:
        consumer.pause(*tps)
    listed = await consumer.end_offsets(list(tps))
    begins = await consumer.beginning_offsets(list(tps))
    probe = [tp for tp in tps if listed[tp] > begins[tp]]
    for tp in probe:
        consumer.seek(tp, listed[tp] - 1)
    if pause and probe:
        consumer.resume(*probe)
    ends = dict(listed)
    pending = set(probe)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        await consumer.getmany(*pending, timeout_ms=100)
        for tp in list(pending):
            highwater = consumer.highwater(tp)
            if highwater is not None:
                ends[tp] = max(listed[tp], highwater)
                pending.discard(tp)
                if pause:  # at once: no await since the probe's records were taken
                    consumer.pause(tp)
    if pause and pending:
        consumer.pause(*pending)
    return ends
