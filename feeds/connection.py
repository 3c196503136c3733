"""The engine's Redis clients: one factory for a standalone Redis and a Redis Cluster,
and faster command packing.

:func:`connect` is the only place a client is made from ``REDIS_URL``: it asks the
server named by the URL whether it runs in cluster mode and returns a ``RedisCluster``
(any node of the cluster may be named) or a ``Redis`` with a blocking pool.

redis-py's asyncio connection packs every command in Python, argument by argument; for
the engine's pipelines of script calls (a dozen arguments each, thousands per batch) that
was about a third of a worker's CPU. hiredis (already a dependency, for parsing) packs a
command in C. :func:`hiredis_packing` swaps it into a connection pool.

:func:`connect` is the one way the engine opens Redis (workers, replay, the operator
commands and readers): a blocking pool, which waits for a free connection instead of
raising, with hiredis packing.

redis-py's asyncio pipeline also reads every reply with its own awaited read under a
timeout (tens of microseconds each, thousands per batch). The standalone client made by
:func:`connect` reads a non-transactional pipeline's replies in one loop from the
connection's hiredis reader instead (:func:`read_replies`, under one timeout for the
whole round trip), then applies redis-py's response callbacks as before: the same
results, the same errors.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hiredis
from redis import Redis as SyncRedis
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = [
    "AnyRedis",
    "RedisUnreachable",
    "close",
    "connect",
    "hiredis_packing",
    "is_cluster",
    "is_cluster_url",
    "read_replies",
]

#: A client of a standalone Redis or of a Redis Cluster.
AnyRedis = Redis | RedisCluster


class _HiredisPacking:
    """Mixin: ``pack_command`` by hiredis (one buffer per command)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        # Like redis-py: a command name with spaces ('CONFIG GET') is several arguments.
        space = " " if isinstance(first, str) else b" "
        if space in first:
            args = (*first.split(), *args[1:])
        return [hiredis.pack_command(args)]


_CLASSES: dict[type, type] = {}


def hiredis_packing(pool: ConnectionPool) -> ConnectionPool:
    """Make ``pool``'s connections pack commands with hiredis; returns the pool."""
    base = pool.connection_class
    if issubclass(base, AbstractConnection) and not issubclass(base, _HiredisPacking):
        if base not in _CLASSES:
            _CLASSES[base] = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
        pool.connection_class = _CLASSES[base]
    return pool


async def read_replies(connection: AbstractConnection, count: int) -> list[Any] | None:
    """``count`` replies to commands already sent on ``connection``, as Redis answered
    them (an error reply as its exception), read from its hiredis reader in one loop;
    each read of the socket waits at most the connection's socket timeout, as each
    reply's read does in redis-py (its ``TimeoutError`` when it runs out). None, reading
    nothing, when the connection has no hiredis reader. On any failure the connection is
    closed (replies may be left unread) and the error raised."""
    parser = getattr(connection, "_parser", None)
    if not isinstance(parser, _AsyncHiredisParser) or parser._reader is None:
        return None
    gets, replies = parser._reader.gets, []
    timeout = connection.socket_timeout
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(None) as deadline:
            while len(replies) < count:
                reply = gets()
                if reply is NOT_ENOUGH_DATA:
                    if timeout:  # each read of the socket gets the whole timeout
                        deadline.reschedule(loop.time() + timeout)
                    await parser.read_from_socket()
                    continue
                if isinstance(reply, RedisConnectionError):
                    raise reply
                replies.append(reply)
    except TimeoutError:
        await connection.disconnect(nowait=True)
        raise RedisTimeoutError("Timeout reading from Redis") from None
    except BaseException:
        await connection.disconnect(nowait=True)
        raise
    return replies


class _BulkPipeline(Pipeline):
    """A pipeline whose non-transactional round trip reads its replies with
    :func:`read_replies` (see the module), then applies the response callbacks."""

    async def _execute_pipeline(
        self, connection: Any, commands: Any, raise_on_error: bool
    ) -> list[Any]:
        if any(NEVER_DECODE in options for _, options in commands) or any(
            str(args[0]).upper().startswith("HIMPORT") for args, _ in commands
        ):
            return await super()._execute_pipeline(connection, commands, raise_on_error)
        await connection.send_packed_command(
            connection.pack_commands([args for args, _ in commands])
        )
        replies = await read_replies(connection, len(commands))
        if replies is None:  # no hiredis reader: redis-py's own reads
            response = []
            for args, options in commands:
                try:
                    response.append(await self.parse_response(connection, args[0], **options))
                except ResponseError as e:
                    response.append(e)
        else:
            response = [
                await self._callback(args[0], reply, dict(options))
                for (args, options), reply in zip(commands, replies, strict=True)
            ]
        if raise_on_error:
            self.raise_first_error(commands, response)
        return response

    async def _callback(self, name: Any, reply: Any, options: dict[str, Any]) -> Any:
        """What redis-py's ``parse_response`` makes of ``reply``."""
        if isinstance(reply, ResponseError):
            return options.get(EMPTY_RESPONSE, reply)
        options.pop(EMPTY_RESPONSE, None)
        options.pop("keys", None)
        callback = self.response_callbacks.get(name)
        if callback is None:
            return reply
        value = callback(reply, **options)
        return await value if inspect.isawaitable(value) else value


class _Redis(Redis):
    """The standalone client: pipelines read their replies in bulk (see the module)."""

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        """A pipeline reading its replies with :func:`read_replies`."""
        return _BulkPipeline(self.connection_pool, self.response_callbacks, transaction,
                             shard_hint)  # fmt: skip


class RedisUnreachable(RedisConnectionError):
    """Nothing answered at ``REDIS_URL`` when a client was made, or it refused the
    credentials."""


#: Seconds the cluster probe waits to connect and for its answer.
PROBE_TIMEOUT = 5.0


def is_cluster_url(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when the Redis at ``url`` runs in cluster mode (``INFO cluster`` says
    ``cluster_enabled:1``). A synchronous probe, done once when a client is made; raises
    ``redis.exceptions.ConnectionError`` naming the address when nothing answers."""
    probe = SyncRedis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(probe.info("cluster").get("cluster_enabled"))
    except AuthenticationError as exc:
        raise RedisUnreachable(f"Redis at {_safe(url)} refused the credentials: {exc}") from None
    except RedisConnectionError as exc:
        raise RedisUnreachable(f"cannot reach Redis at {_safe(url)}: {exc}") from None
    finally:
        probe.close()


def _safe(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def connect(url: str, *, max_connections: int = 32, cluster: bool | None = None) -> AnyRedis:
    """The engine's Redis client for ``url`` (``redis://`` or ``rediss://``, password in
    the URL), whether it names a standalone server or any node of a Redis Cluster.

    ``cluster`` None detects it (:func:`is_cluster_url`). Standalone: a ``Redis`` with a
    blocking pool of ``max_connections`` (waits for a free connection, never raises) and
    hiredis packing. Cluster: a ``RedisCluster`` (slots discovered from that node, MOVED /
    ASK followed, up to ``max_connections`` connections per node, at least 100)."""
    if cluster is None:
        cluster = is_cluster_url(url)
    if cluster:
        return RedisCluster.from_url(url, max_connections=max(max_connections, 100))
    pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=None)
    return _Redis(connection_pool=hiredis_packing(pool))


def is_cluster(redis: AnyRedis) -> bool:
    """True for a cluster client."""
    return isinstance(redis, RedisCluster)


async def close(redis: AnyRedis) -> None:
    """Close ``redis`` and every connection it holds (all pools of a cluster client)."""
    await redis.aclose()
    if not isinstance(redis, RedisCluster):
        await redis.connection_pool.disconnect()
