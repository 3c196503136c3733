"""What every store shares: the settings each Lua script reads first, and running a batch
of script calls in pipelined round trips.

On a standalone Redis a round trip of many calls (:func:`send_commands`) is packed by
hiredis into one write and its replies read straight from the connection's hiredis
reader, one loop for the whole round trip: redis-py's pipeline parses every reply with
its own awaited read under a timeout, which cost more worker CPU than the scripts' work
for light events. Replies are what Redis answered (bytes, integers, lists), an error
reply as its exception, like ``pipeline.execute(raise_on_error=False)``; a connection
error closes the connection and propagates (the caller retries the batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import hiredis
from feedamp.config import Settings
from redis._parsers.hiredis import _AsyncHiredisParser
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .connection import AnyRedis, is_cluster, read_replies

__all__ = [
    "PIPELINE_CALLS",
    "TRANSIENT_ERRORS",
    "context",
    "is_transient",
    "read_commands",
    "run_scripts",
    "send_commands",
    "text",
]

#: Retries of a round trip that met a connection or timeout error (then it is raised).
SEND_RETRIES = 3

#: Script calls sent per pipeline round trip. Not more: a round trip of delivery calls
#: (thousands of follower ids each) is written while Redis runs the calls before it, and
#: a write that takes longer than the socket timeout fails (1,000 did under load).
PIPELINE_CALLS = 256

#: Errors that mean "Redis cannot serve right now", not "this event is bad": outages,
#: failovers, loading, out of memory, a script still running.
TRANSIENT_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError,
                    BusyLoadingError, OutOfMemoryError, ReadOnlyError, TryAgainError,
                    ClusterDownError, MasterDownError)  # fmt: skip


#: What a cluster node answers while a slot migrates: a redirection the pipeline did not
#: follow, or a script reaching a key of its slot that already moved ("non local key").
MIGRATING = (MovedError, AskError)
NON_LOCAL = "non local key"


def is_transient(error: object) -> bool:
    """True for errors worth waiting out, which are retried instead of dead-lettered
    (every write is idempotent, so a batch is retried whole)."""
    return isinstance(error, TRANSIENT_ERRORS + MIGRATING) or (
        isinstance(error, ResponseError)
        and (str(error).startswith(("BUSY", "OOM", "LOADING")) or NON_LOCAL in str(error))
    )


async def _pipelined(
    redis: AnyRedis, calls: Sequence[tuple[AsyncScript, Sequence[str | int]]]
) -> list[object]:
    """One non-transactional pipeline of ``calls`` (on a cluster: one per node)."""
    async with redis.pipeline(transaction=False) as pipe:
        for script, argv in calls:
            await script(args=list(argv), client=pipe)  # type: ignore[arg-type]  # redis-py types omit pipelines as script clients
        return await pipe.execute(raise_on_error=False)


def text(value: object) -> str:
    """A Redis reply (bytes) or argument as ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def context(settings: Settings, prefix: str | None = None) -> list[str | int]:
    """The seven settings every script's ARGV starts with (see ``lua/lib.lua``), for the
    namespace ``prefix`` (default: ``settings.key_prefix``)."""
    s = settings
    return [
        prefix or s.key_prefix, s.feed_buckets, s.bucket_cap, s.for_you_bucket_cap,
        s.for_you_half_life_ms, s.recent_per_author, s.fanout_chunk,
    ]  # fmt: skip


async def run_scripts(
    redis: AnyRedis, calls: Sequence[tuple[AsyncScript, Sequence[str | int]]]
) -> list[object]:
    """Run ``(script, argv)`` calls in order, pipelined ``PIPELINE_CALLS`` at a time.

    Scripts are sent as ``EVALSHA``; a script is loaded once per client (``SCRIPT LOAD``),
    and again only if Redis answers ``NOSCRIPT`` (it restarted or was flushed), in which
    case the calls from the first refused one on are sent again (every script is
    idempotent). Returns each call's result, or the exception Redis answered it with (a
    script error belongs to its event). A transient error (see :func:`is_transient`) is
    raised instead, for the caller to retry the whole batch.
    """
    results: list[object] = []
    for start in range(0, len(calls), PIPELINE_CALLS):
        part = calls[start : start + PIPELINE_CALLS]
        if is_cluster(redis):
            results += await _cluster_chunk(redis, part)
            continue
        loaded = _loaded.setdefault(id(redis), set())
        for attempt in range(2):
            await _load(redis, [script for script, _ in part], loaded)
            got = await _evalsha(redis, part)
            refused = next((i for i, r in enumerate(got) if isinstance(r, NoScriptError)), None)
            if refused is None or attempt:
                results += got
                break
            results += got[:refused]
            part = part[refused:]
            loaded.clear()
    for result in results:
        if is_transient(result):
            raise result  # type: ignore[misc]
    return results


async def _cluster_chunk(
    redis: AnyRedis, chunk: Sequence[tuple[AsyncScript, Sequence[str | int]]]
) -> list[object]:
    """One chunk on a cluster, through redis-py's script pipelines (one per node)."""
    found = await _pipelined(redis, chunk)
    if any(isinstance(r, NoScriptError) for r in found):
        # A cluster node lost its script cache (restart, failover): load the chunk's
        # scripts on every master and run it again (scripts are idempotent).
        for script in {id(s): s for s, _ in chunk}.values():
            await script.load()  # type: ignore[attr-defined]
        found = await _pipelined(redis, chunk)
    return found


#: The SHA1s known to be loaded, per client (``id`` of the client).
_loaded: dict[int, set[str]] = {}


async def _load(redis: AnyRedis, scripts: Sequence[AsyncScript], loaded: set[str]) -> None:
    missing = {s.sha: s.script for s in scripts if s.sha not in loaded}
    for sha, source in missing.items():
        await redis.script_load(source)
        loaded.add(sha)


async def _evalsha(
    redis: AnyRedis, calls: Sequence[tuple[AsyncScript, Sequence[str | int]]]
) -> list[object]:
    commands = []
    for script, argv in calls:
        wire = getattr(script, "wire", None)  # a lean script sends only the prefix
        commands.append(("EVALSHA", script.sha, 0, *(wire(argv) if wire else argv)))
    return await send_commands(redis, commands)


async def send_commands(redis: AnyRedis, commands: Sequence[Sequence[Any]]) -> list[object]:
    """Send ``commands`` (each a tuple: name, then arguments) in one round trip, without
    a transaction; return each reply as Redis answered it, an error reply as its
    exception (see the module). On a cluster, or without a hiredis reader, through
    redis-py's pipeline (replies then pass its response callbacks)."""
    if not commands:
        return []
    if isinstance(redis, RedisCluster):
        return await _through_pipeline(redis, commands)
    # Like redis-py's pipeline: a connection or timeout error is retried on a fresh
    # connection a few times before it reaches the caller (which retries the batch).
    for attempt in range(SEND_RETRIES + 1):
        try:
            return await _send_once(redis, commands)
        except (RedisConnectionError, RedisTimeoutError):
            if attempt == SEND_RETRIES:
                raise
            await asyncio.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


async def _send_once(redis: Redis, commands: Sequence[Sequence[Any]]) -> list[object]:
    pool = redis.connection_pool
    conn = await pool.get_connection()
    try:
        if not isinstance(getattr(conn, "_parser", None), _AsyncHiredisParser):
            replies = None
        else:
            await conn.send_packed_command([hiredis.pack_command(tuple(c)) for c in commands],
                                           check_health=False)  # fmt: skip
            replies = await read_replies(conn, len(commands))
    finally:
        await pool.release(conn)
    return replies if replies is not None else await _through_pipeline(redis, commands)


async def read_commands(redis: AnyRedis, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """:func:`send_commands` for reads: the first error reply is raised instead."""
    replies = await send_commands(redis, commands)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


async def _through_pipeline(redis: AnyRedis, commands: Sequence[Sequence[Any]]) -> list[object]:
    async with redis.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        return await pipe.execute(raise_on_error=False)
