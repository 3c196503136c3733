"""Following a topic live, like kcat (``feedamp decisions tail``, ``feedamp dlq tail``).

Every partition of the topic is assigned (no consumer group: tailing never disturbs the
workers), starting at the end (new records only) or the beginning, and each record is
yielded as it arrives, until the caller stops, ``limit`` records or ``idle`` seconds
without one. ``user`` and ``post`` keep the records naming that id in one of the
event's id fields (a dead letter that is not a JSON object: anywhere in its bytes).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from feedamp.config import OperatorError, Settings
from feedamp.kafka.clients import start_client
from feedamp.kafka.config import kafka_client_kwargs
from feedamp.kafka.offsets import end_offsets, partitions

__all__ = ["POST_FIELDS", "USER_FIELDS", "follow_topic", "matcher", "tail"]

#: Fields of events and decisions that name a user, and a post.
USER_FIELDS = ("user_id", "reposter_id", "author_id", "post_author_id", "follower_id",
               "followee_id", "target_id", "sender_id", "recipient_id", "buyer_id",
               "seller_id")  # fmt: skip
POST_FIELDS = ("post_id", "via_post_id")


def matcher(user: str | None, post: str | None) -> Callable[[bytes | None], bool]:
    """``match(value)``: True when the value names ``user`` and ``post`` (each when
    given) in one of :data:`USER_FIELDS` / :data:`POST_FIELDS`."""

    def names(obj: dict[str, Any], fields: tuple[str, ...], id_: str) -> bool:
        return any(str(obj.get(f)) == id_ for f in fields if obj.get(f) is not None)

    def match(value: bytes | None) -> bool:
        if user is None and post is None:
            return True
        if value is None:
            return False
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):  # not an event: look for the ids in the bytes
            return all(id_.encode() in value for id_ in (user, post) if id_ is not None)
        return (user is None or names(obj, USER_FIELDS, user)) and (
            post is None or names(obj, POST_FIELDS, post)
        )

    return match


async def follow_topic(
    settings: Settings, topic: str, *, from_beginning: bool = False,
    idle: float | None = None, started: Callable[[], None] | None = None,
) -> AsyncGenerator[ConsumerRecord, None]:  # fmt: skip
    """Records of ``topic`` as they arrive (from its end, or its beginning), until the
    caller stops iterating or ``idle`` seconds pass without one. ``started`` is called
    once every partition is positioned."""
    consumer = AIOKafkaConsumer(**kafka_client_kwargs(settings), group_id=None,
                                enable_auto_commit=False,
                                fetch_max_wait_ms=settings.fetch_max_wait_ms)  # fmt: skip
    await start_client(consumer)
    try:
        tps = await partitions(consumer, [topic], missing_ok=True)
        if not tps:
            raise OperatorError(f"topic {topic!r} does not exist (yet): is a worker running "
                                "with these FEEDAMP_TOPIC_* settings?")  # fmt: skip
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            for tp, end in (await end_offsets(consumer, tps)).items():
                consumer.seek(tp, end)
        if started is not None:
            started()
        last = time.monotonic()
        while idle is None or time.monotonic() - last < idle:
            fetched = await consumer.getmany(timeout_ms=200)
            for records in fetched.values():
                for record in records:
                    last = time.monotonic()
                    yield record
    finally:
        await consumer.stop()


async def tail(
    settings: Settings, topic: str, *, user: str | None = None, post: str | None = None,
    from_beginning: bool = False, limit: int | None = None, idle: float | None = None,
    started: Callable[[], None] | None = None,
) -> AsyncGenerator[ConsumerRecord, None]:  # fmt: skip
    """The records of ``topic`` that name ``user`` and ``post`` (see :func:`matcher`), as
    they arrive, until ``limit`` of them or ``idle`` seconds without a record."""
    match = matcher(user, post)
    shown = 0
    records = follow_topic(settings, topic, from_beginning=from_beginning, idle=idle,
                           started=started)  # fmt: skip
    async with contextlib.aclosing(records):
        async for record in records:
            if not match(record.value):
                continue
            yield record
            shown += 1
            if limit is not None and shown >= limit:
                break
