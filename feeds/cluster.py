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
  names), so it is correct on any slot layout and survives resharding;
- a routed call declares its routing key alone, and every routed script but those of
  :data:`ROUTE_ONLY` touches other keys of its tag too, undeclared: such a call is never
  redirected to the node importing a moving slot, where Redis checks only the declared
  key and the tag's keys not moved yet would read as absent (a write landing on the
  wrong side of the move). :func:`feedamp.feeds.batch.run_scripts` sends it without
  following a redirection: a refusal (``ASK``, ``TRYAGAIN``, ``MOVED``, which updates
  the slot table, a key already moved reached) is a transient error, the batch retried
  whole. A call of a :data:`ROUTE_ONLY` script may follow ``ASK``: the importing node
  checks the one key it touches;
- writes of several entities run as several such scripts, one step per slot: a gift,
  an order and its creators, a repost decision (see :mod:`feedamp.feeds.shop.gifts`,
  :mod:`feedamp.feeds.shop.order_steps`, :mod:`feedamp.feeds.repost_decisions`), and
  every feed write (an origin step here, then :mod:`.fanout`'s delivery steps or
  :mod:`.graph`'s purge and backfill steps); any other script raises
  :class:`ClusterUnsupported` before anything is written, never a partial write;
- a scan of a cluster visits every master (``SCAN`` per node);
- the steps script (``lua/steps.lua``) runs many step calls of one node at once, each
  still touching only its own route's hash tag: like a delivery call it is flagged
  ``allow-cross-slot-keys``, declares one call's key, is sent to the node serving every
  call's route (:func:`feedamp.feeds.batch.run_scripts`), and stops at the first key
  the node does not serve, the rest then running call by call on the nodes serving
  their slots, never redirected to a node importing a moving slot (there a step would
  find the keys of its tag not moved yet absent: Redis checks only the declared key); a
  call refused again is a transient error, the batch retried.
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
    "ROUTE_ONLY",
    "ClusterScript",
    "ClusterUnsupported",
    "human_bytes",
    "info_per_master",
    "route_key",
    "scan_keys",
]

#: The one line an operator sees when a call that is not slot-local meets a cluster (no
#: script the engine runs is such a call: every one has a route or declares its keys).
FANOUT_UNSUPPORTED = "a script that is not slot-local cannot run on Redis Cluster"

#: Index of the first script-specific argument (after the seven settings of lib.lua).
_OWN = 7


def _tagged(kind: str, tag_at: int | None = None, tag: str | None = None) -> Callable:
    def route(argv: Sequence[Any]) -> str:
        id_ = tag if tag is not None else str(argv[_OWN + tag_at])  # type: ignore[operator]
        return f"{argv[0]}{kind}:{{{id_}}}"

    return route


def _account(argv: Sequence[Any]) -> str | None:
    # account.lua touches account:{user} only (the suspended index is written by the
    # caller, in its own step; the clean-up after a suspension is a fan-out of its own).
    return f"{argv[0]}account:{{{argv[_OWN + 1]}}}"


def _kind_tagged(argv: Sequence[Any]) -> str:
    # Scripts whose first own arguments are a key kind and its id.
    return f"{argv[0]}{argv[_OWN]}:{{{argv[_OWN + 1]}}}"


#: Script name -> its routing key from its ARGV (None: this call is not slot-local).
ROUTES: dict[str, Callable[[Sequence[Any]], str | None]] = {
    "seed_codes": _tagged("gift_codes", 0),  # gift_codes:{offer}, gift_codes_seeded:{offer}
    "progress": _tagged("progress", tag="order"),  # {order} bookkeeping only
    "release": _tagged("progress", tag="order"),  # parked, parked_events, progress: {order}
    "account": _account,  # account:{user}
    "view": _tagged("viewed", 0),  # viewed:{user}, viewed_via:{user}
    # The repost decision's steps (feeds/repost_decisions.py).
    "decide_post": _tagged("decided", 0),  # decided:{post}, post:{post}, brake:{post}
    "decide_user": _tagged("attempts", 0),  # attempts:{user}, forwarded_attempts:{user}
    "decide_commit": _tagged("decided", 0),  # decided:{post}
    # A gift's steps (feeds/shop/gifts.py).
    "gift_known": _tagged("gift", 0),  # gift:{gift}
    "gift_claim": _tagged("gift_claims", 1),  # gift_claims:{sender}, gift_sends:{sender}
    "gift_code": _tagged("gift_codes", 0),  # gift_codes:{offer}, gift_code_of:{offer}
    "gift_release": _tagged("gift_claims", 1),  # gift_claims:{sender}, gift_sends:{sender}
    "gift_commit": _tagged("gift", 0),  # gift:{gift}
    "gift_list": _kind_tagged,  # gift_inbox:{recipient} or gifts_sent:{sender}
    # An order's steps (feeds/shop/orders.py, feeds/shop/order_steps.py) and product tags.
    "order_purchase": _tagged("order", 0),  # order:{order}
    "order_event": _tagged("order", 0),  # order:{order}
    "order_buyer": _tagged("orders", 0),  # orders:{buyer}, bought:{buyer}
    "order_facts": _tagged("order", 0),  # order:{order}
    "order_repost": _tagged("repost", 0),  # repost:{repost}, awaiting_repost:{repost}
    "order_post": _tagged("post", 0),  # post:{p}, products:{p}, awaiting_post/_tags:{p}
    "order_settle": _tagged("order", 0),  # order:{order}
    "order_credit": _tagged("credited", 0),  # credited, creator, converted, conversions
    "order_forget": _tagged("order", 0),  # order:{order}
    "order_unwait": _kind_tagged,  # awaiting_post / awaiting_repost / awaiting_tags:{id}
    "tag": _tagged("post", 0),  # post:{post}, products:{post}, awaiting_tags:{post}
    # The origin steps of the fan-out (feeds/store.py; deliveries declare their own keys):
    "post": _tagged("post", 0),  # post:{p}, awaiting_post:{p} (its orders: order steps)
    "delete_post": _tagged("post", 0),  # post:{p}, reposters:{p}
    "repost": _tagged("post", 0),  # post:{p}, reposters:{p}, comments:{p}, awaiting_post:{p}
    "repost_record": _tagged("repost", 0),  # repost:{r}, awaiting_repost:{r}
    "unrepost": _tagged("post", 0),  # reposters:{p}, comments:{p}, post:{p}
    "follow": _tagged("following", 0),  # pair:{u}, following:{u}
    "hide": _tagged("pair", 1),  # pair:{owner}
    "purge": _tagged("feed", 0),  # the user's feeds, following, hiding hashes
    "backfill": _tagged("feed", 0),  # the same
}


#: Routed scripts whose calls touch their routing key alone (``KEYS[1]``), so that a call
#: may follow ``ASK`` to the node importing its slot. Every other script of
#: :data:`ROUTES` reaches keys of its tag it does not declare (the comments above list
#: them): ``post.lua`` the post's waiting orders, ``follow.lua`` the follower's pair
#: state, ``purge.lua`` and ``backfill.lua`` every feed bucket of the user (their route,
#: ``feed:{user}``, names no key at all), ``release.lua`` the parked events. Of the steps
#: (always run unredirected, see :func:`feedamp.feeds.batch.run_scripts`) the one-key
#: ones are listed too, so that this is the whole audit.
ROUTE_ONLY = frozenset({
    "progress",  # progress:{order}
    "account",  # account:{user}
    "decide_commit",  # decided:{post}
    "gift_known", "gift_commit",  # gift:{gift}
    "gift_list",  # gift_inbox:{recipient} or gifts_sent:{sender}
    "order_purchase", "order_event", "order_facts", "order_settle", "order_forget",  # order
    "order_unwait",  # awaiting_post / awaiting_repost / awaiting_tags:{id}
})  # fmt: skip


class ClusterUnsupported(RuntimeError):
    """A script call that is not slot-local (no route, no declared keys), on a Redis Cluster."""


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

    def __init__(
        self,
        name: str,
        script: AsyncScript,
        lean: bool = False,
        step: int = 0,
        steps: ClusterScript | None = None,
    ) -> None:
        self.name = name
        self.script = script
        self.loaded = False
        #: Sends only the prefix of the seven settings (see ``scripts.LEAN``).
        self.lean = lean
        #: Its index in ``scripts.STEPS`` (from 1; 0: not a step), and the steps script
        #: that runs many of its calls at once (see ``batch.run_scripts``).
        self.step = step
        self.steps = steps
        #: Its calls touch their routing key alone: one may follow ``ASK`` (see
        #: :data:`ROUTE_ONLY`).
        self.route_only = name in ROUTE_ONLY
        #: Leading values of a call's ARGV that a packed call sends once: the prefix (a
        #: lean step), or the seven settings (a graph step, which needs ``lib.lua``).
        self.head = 1 if lean else _OWN

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
        if self.lean:
            argv = [argv[0], *argv[_OWN:]]
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
