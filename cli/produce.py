"""Publish events from a JSON-lines file, each to its type's topic with its key."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from feedamp.config import Settings
from feedamp.kafka.clients import start_client
from feedamp.kafka.config import kafka_client_kwargs
from feedamp.models import ROUTES, key_of, topic_of

__all__ = ["Message", "messages_from_lines", "publish"]

Message = tuple[str, bytes | None, bytes]  # topic, key, value


def messages_from_lines(lines: Iterable[bytes], settings: Settings) -> Iterator[Message]:
    """Route each JSON line by its ``type``; the value is sent exactly as written.

    A line that is not a JSON object of a known type cannot be routed and raises
    ValueError naming its line number.
    """
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"line {n}: not JSON ({exc})") from None
        if not isinstance(obj, dict) or obj.get("type") not in ROUTES:
            raise ValueError(f"line {n}: not an event with a known 'type'")
        try:
            key = key_of(obj).encode()
        except KeyError as exc:
            raise ValueError(f"line {n}: missing key field {exc}") from None
        yield topic_of(obj["type"], settings.topics), key, line


async def publish(messages: Iterable[Message], settings: Settings) -> int:
    """Send ``messages`` and wait until the broker has them all; return how many."""
    producer = AIOKafkaProducer(**kafka_client_kwargs(settings), acks="all", linger_ms=5)
    await start_client(producer)
    try:
        futures = [await producer.send(t, value=v, key=k) for t, k, v in messages]
        for fut in futures:
            await fut
        return len(futures)
    finally:
        await producer.stop()


def read_lines(path: str) -> list[bytes]:
    """The lines of ``path`` ('-' for standard input)."""
    if path == "-":
        import sys

        return sys.stdin.buffer.read().splitlines()
    return Path(path).read_bytes().splitlines()
