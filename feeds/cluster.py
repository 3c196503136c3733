"""Running the engine's scripts and scans on a Redis Cluster.

A script call on a cluster runs on the node of its declared keys (``KEYS``); a script
without a ``#!lua`` shebang may then touch any key of that node, across slots, but no key
of another node. So a call can run on a cluster only when every key it touches shares
one slot with the key it is routed by (then resharding moves them together), or, like
the fan-out's delivery step (``lua/deliver.lua``, :mod:`.fanout`), declares its own keys
and handles the node's refusals. Each other script's routing key is computed here, in
Python, from its ARGV (the seven settings of ``lib.lua`` first, then the script's own
arguments), and passed as ``KEYS[1]``; the scripts build their keys from ARGV as on a
standalone Redis and never read ``KEYS``, so the same source serves both.

Invariants:

- a script listed in :data:`ROUTES` touches only keys of one hash tag (the one its route
  names), so it is correct on any slot layout and survives resharding (a call on a slot
  being migrated gets ``ASK`` / ``TRYAGAIN`` for its declared key and is retried by the
  client before it runs);
- every other script touches keys of several entities (a gift of a sender to a
  recipient, a purchase crediting creators, the repost decision); on a cluster it raises
  :class:`ClusterUnsupported` before anything is written, never a partial write;
- a scan of a cluster visits every master (``SCAN`` per node).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import AsyncScript

from .connection import AnyRedis, is_cluster

__all__ = [
    "FANOUT_UNSUPPORTED",
    "ROUTES",
    "ClusterScript",
    "ClusterUnsupported",
    "human_bytes",
    "info_per_master",
    "refuse_writes_on_cluster",
    "route_key",
    "scan_keys",
]

#: The one line an operator sees when a writing command meets a cluster.
FANOUT_UNSUPPORTED = "fan-out on Redis Cluster is not supported yet"

#: Index of the first script-specific argument (after the seven settings of lib.lua).
_OWN = 7


def _tagged(kind: str, tag_at: int | None = None, tag: str | None = None) -> Callable:
    def route(argv: Sequence[Any]) -> str:
        id_ = tag if tag is not None else str(argv[_OWN + tag_at])  # type: ignore[operator]
        return f"{argv[0]}{kind}:{{{id_}}}"

    return route


def _account(argv: Sequence[Any]) -> str | None:
    # A suspension also adds the account to the suspended index (another slot) and then
    # cleans every feed the account reached (a fan-out): only the other actions are local.
    action, user = str(argv[_OWN]), str(argv[_OWN + 1])
    return None if action == "suspend" else f"{argv[0]}account:{{{user}}}"


#: Script name -> its routing key from its ARGV (None: this call is not slot-local).
ROUTES: dict[str, Callable[[Sequence[Any]], str | None]] = {
    "seed_codes": _tagged("gift_codes", 0),  # gift_codes:{offer}, gift_codes_seeded:{offer}
    "progress": _tagged("progress", tag="order"),  # {order} bookkeeping only
    "release": _tagged("progress", tag="order"),  # parked, parked_events, progress: {order}
    "account": _account,  # account:{user}, unless suspending
    "view": _tagged("viewed", 0),  # viewed:{user}, viewed_via:{user}
    # origin steps of the fan-out (feeds/store.py; deliveries declare their own keys):
    "post": _tagged("post", 0),  # post:{p}, awaiting_post:{p} (refused when orders wait)
    "delete_post": _tagged("post", 0),  # post:{p}, reposters:{p}
    "repost": _tagged("post", 0),  # post:{p}, reposters:{p}, comments:{p}, awaiting_post:{p}
    "repost_record": _tagged("repost", 0),  # repost:{r}, awaiting_repost:{r}
    "unrepost": _tagged("post", 0),  # reposters:{p}, comments:{p}, post:{p}
    "follow": _tagged("following", 0),  # pair:{u}, following:{u}
    "hide": _tagged("pair", 1),  # pair:{owner}
    "purge": _tagged("feed", 0),  # the user's feeds, following, hiding hashes
    "backfill": _tagged("feed", 0),  # the same
}


class ClusterUnsupported(RuntimeError):
    """A write that is not slot-local yet, attempted on a Redis Cluster."""


def route_key(name: str, argv: Sequence[Any]) -> str:
    """The key a call of script ``name`` with ``argv`` is routed by on a cluster;
    :class:`ClusterUnsupported` when the call touches keys of several entities."""
    route = ROUTES.get(name)
    key = route(argv) if route is not None else None
    if key is None:
        raise ClusterUnsupported(f"{FANOUT_UNSUPPORTED} (script {name})")
    return key


class ClusterScript:
    """A registered script for a cluster client: declares its routing key and loads
    itself on every master before its first call (a cluster pipeline cannot load it)."""

    def __init__(self, name: str, script: AsyncScript) -> None:
        self.name = name
        self.script = script
        self.loaded = False

    @property
    def sha(self) -> str:
        return self.script.sha

    async def load(self) -> None:
        """``SCRIPT LOAD`` on every master (again after a node lost its script cache)."""
        await self.script.registered_client.script_load(self.script.script)
        self.loaded = True

    async def __call__(
        self,
        keys: Sequence[str] | None = None,
        args: Iterable[Any] | None = None,
        client: Any = None,
    ) -> Any:
        argv = list(args or ())
        if not keys:
            keys = [route_key(self.name, argv)]
        if not self.loaded:
            await self.load()
        if isinstance(client, ClusterPipeline):
            # redis-py blocks ``pipe.evalsha`` on a cluster; the plain command is routed by
            # its first key like any other.
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *argv)
        return await self.script(keys=list(keys), args=argv, client=client)


async def scan_keys(redis: AnyRedis, match: str, count: int = 1000) -> AsyncIterator[bytes]:
    """Every key matching ``match``: one ``SCAN`` on a standalone Redis, one per master on
    a cluster (a key is listed once: replicas are not scanned)."""
    if not is_cluster(redis):
        async for key in redis.scan_iter(match=match, count=count):
            yield key
        return
    assert isinstance(redis, RedisCluster)
    for node in redis.get_primaries():
        cursor = 0
        while True:
            cursor, keys = await node.execute_command("SCAN", cursor, "MATCH", match,
                                                      "COUNT", count)  # fmt: skip
            for key in keys:
                yield key
            cursor = int(cursor)
            if cursor == 0:
                break


def refuse_writes_on_cluster(redis: AnyRedis, command: str) -> None:
    """Raise :class:`ClusterUnsupported` naming ``command`` when ``redis`` is a cluster
    (the commands that run the fan-out scripts call this before writing anything)."""
    if is_cluster(redis):
        where = "REDIS_URL names a cluster node"
        raise ClusterUnsupported(f"{command}: {FANOUT_UNSUPPORTED} ({where})")


async def info_per_master(redis: AnyRedis, section: str) -> dict[str, dict[str, Any]]:
    """``INFO <section>`` of every master (one entry, ``host:port``, on a standalone
    Redis)."""
    if not is_cluster(redis):
        info = await redis.info(section)
        return {"standalone": info}
    assert isinstance(redis, RedisCluster)
    return {node.name: await redis.info(section, target_nodes=node)
            for node in redis.get_primaries()}  # fmt: skip


def human_bytes(n: float) -> str:
    """``n`` bytes as Redis prints them (``1.50M``)."""
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n:.2f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return f"{n}"
