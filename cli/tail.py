"""``feedamp decisions tail`` and ``feedamp dlq tail``: follow a topic live, like kcat.

Every partition of the topic is assigned (no consumer group: tailing never disturbs the
workers), starting at the end (new records only) or the beginning, and each record is
printed as it arrives, one line, flushed, until Ctrl-C, ``--limit`` records or
``--idle`` seconds without one. ``--user`` and ``--post`` keep the records naming that id
in one of the event's id fields (a dead letter that is not a JSON object: anywhere in its
bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from feedamp.config import Settings
from feedamp.streams.kafka_config import kafka_client_kwargs
from feedamp.streams.logs import quiet_clients
from feedamp.streams.preflight import OperatorError, start_client

from .dlq import Letter
from .offsets import end_offsets, partitions

__all__ = ["POST_FIELDS", "USER_FIELDS", "follow_topic", "matcher", "run_decisions", "run_dlq"]

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
) -> AsyncIterator[ConsumerRecord]:  # fmt: skip
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


async def _tail(args: Any, settings: Settings, topic: str,
                line: Callable[[ConsumerRecord], str]) -> int:  # fmt: skip
    # Ctrl-C and SIGTERM stop it, even when started from a shell that ignores SIGINT for
    # background jobs (Python then installs no KeyboardInterrupt handler).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    match = matcher(args.user, args.post)
    shown = 0

    def started() -> None:
        where = "the beginning" if args.start == "beginning" else "new records"
        print(f"following {topic!r} from {where}; Ctrl-C stops", file=sys.stderr, flush=True)

    records = follow_topic(settings, topic, from_beginning=args.start == "beginning",
                           idle=args.idle, started=started)  # fmt: skip
    async with contextlib.aclosing(records):
        async for record in records:
            if not match(record.value):
                continue
            print(line(record), flush=True)
            shown += 1
            if args.limit is not None and shown >= args.limit:
                break
    return 0


def run_decisions(args: Any, settings: Settings) -> int:
    """``feedamp decisions tail``: each decision's JSON, one a line."""
    quiet_clients()

    def line(record: ConsumerRecord) -> str:
        return (record.value or b"").decode(errors="replace")

    return asyncio.run(_tail(args, settings, settings.topics.decisions, line))


def run_dlq(args: Any, settings: Settings) -> int:
    """``feedamp dlq tail``: each dead letter as ``dlq list`` prints it (``--json``: as
    JSON)."""
    quiet_clients()

    def line(record: ConsumerRecord) -> str:
        letter = Letter.from_record(record)
        return orjson.dumps(letter.to_json()).decode() if args.json else letter.line()

    return asyncio.run(_tail(args, settings, settings.topics.dead_letter, line))
