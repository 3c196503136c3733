"""Faster command packing for redis-py's asyncio connections.

redis-py's asyncio connection packs every command in Python, argument by argument; for
the engine's pipelines of script calls (a dozen arguments each, thousands per batch) that
was about a third of a worker's CPU. hiredis (already a dependency, for parsing) packs a
command in C. :func:`hiredis_packing` swaps it into a connection pool.

:func:`connect` is the one way the engine opens Redis (workers, replay, the operator
commands and readers): a blocking pool, which waits for a free connection instead of
raising, with hiredis packing.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection

__all__ = ["connect", "hiredis_packing"]


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


def connect(url: str, *, max_connections: int = 32) -> Redis:
    """A Redis client for ``url`` with a blocking pool of ``max_connections`` connections
    (waits for a free one, never raises for want of one) packing commands with hiredis."""
    pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=None)
    return Redis(connection_pool=hiredis_packing(pool))
