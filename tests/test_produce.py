"""Publishing by record batches (``kafka/produce.py``): every message stored once, on the
partition the default partitioner gives its key, in the given order within a partition,
whatever the batch size; a message larger than any batch still goes."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from feedamp.kafka.produce import BatchSend, partition_of
from feedamp.kafka.topics import ensure_topics

from .kafka import read_topic


async def test_batches_keep_partitions_order_and_every_message(settings):
    await ensure_topics(settings)
    topic = settings.topics.decisions
    # Small batches: the 240 messages fill many, and one message is larger than a batch.
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                acks="all", max_batch_size=1024)  # fmt: skip
    await producer.start()
    try:
        messages = [(f"key-{n % 37}".encode(), f"value-{n}".encode() * 4,
                     [("n", str(n).encode())] if n % 5 == 0 else None)
                    for n in range(240)]  # fmt: skip
        messages.insert(100, (b"key-big", b"x" * 5_000, None))
        messages.append((None, b"no key", None))
        send = BatchSend(lambda: producer)
        futures = await send(topic, messages)
        assert len(futures) < len(messages) // 4  # batches, not a send each
        for future in futures:
            await future
    finally:
        await producer.stop()

    records = await read_topic(settings, topic, len(messages))
    assert sorted((r.key or b"", r.value) for r in records) == sorted(
        (k or b"", v) for k, v, _ in messages
    )
    partitions = sorted({r.partition for r in records} | set(range(settings.partitions)))
    given = {(k, v): n for n, (k, v, _) in enumerate(messages)}
    for r in records:
        if r.key is not None:
            assert r.partition == DefaultPartitioner()(r.key, partitions, partitions)
            assert r.partition == partition_of(r.key, len(partitions))
        n = given[(r.key, r.value)]
        assert dict(r.headers) == dict(messages[n][2] or [])
    for p in partitions:
        order = [given[(r.key, r.value)] for r in records if r.partition == p]
        assert order == sorted(order)
