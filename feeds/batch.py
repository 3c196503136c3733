"""What every store shares: the settings each Lua script reads first, and running a batch
of script calls in pipelined round trips.

On a standalone Redis a round trip of many calls (:func:`send_commands`) is packed by
hiredis into one write and its replies read straight from the connection's hiredis
reader, one loop for the whole round trip: redis-py's pipeline parses every reply with
its own awaited read under a timeout, which cost more worker CPU than the scripts' work
for light events. Replies are what Redis answered (bytes, integers, lists), an error
reply as its exception, like ``pipeline.execute(raise_on_error=False)``; a connection
error closes the connection and propagates (the caller retries the batch). A round trip
of script calls (:func:`run_scripts`) is written as its calls are made and packed, 64 KiB
at a time, so that Redis runs the first while the rest are made; its replies are then
read the same way. A connection that cannot finish a round trip so begun is closed,
never used again with replies unread.

Calls of the slot-local steps are packed into calls of their steps script (the lean
steps' or the graph steps', :func:`run_scripts`). Invariants: a packed call runs its
calls in the order given and answers each as that call alone would (its result, or its
own error: the calls after a failed one still run); calls are packed only with calls of
the same steps script and node (one group on a standalone Redis), so a batch's calls of
one entity keep their order; a call a node did
not serve is run again, with every later call of that node, one by one (every step is
idempotent), on the node serving its slot and never redirected to the node importing a
moving slot (a step declares one key of its tag: there the others, not moved yet, would
read as absent); a refused call is a transient error, the batch retried whole. The same
holds for every other script call on a cluster (:func:`_cluster_calls`): a routed call
declares one key of its tag and most touch others, so an ``ASK`` is not followed but
answers the call and fails the batch as transient (a ``MOVED``, the slot moved whole,
updates the slot table and the call is sent again to its new owner); only the calls of
scripts that touch their declared key alone (:data:`feedamp.feeds.cluster.ROUTE_ONLY`)
follow one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncGenerator, Iterable, Iterator, Sequence
from typing import Any

import hiredis
from feedamp.config import Settings
from redis._parsers.hiredis import _AsyncHiredisParser
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
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
    "run_ahead",
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
#: follow, or a script reaching a key of its slot that already moved ("non local key");
#: and what the cluster client raises when it gave up following redirections of a call
#: (``ClusterError``, "TTL exhausted": ``MOVED`` / ``ASK`` / ``TRYAGAIN`` round after round,
#: as between the two masters of a moving slot).
MIGRATING = (MovedError, AskError, ClusterError)
NON_LOCAL = "non local key"


def is_transient(error: object) -> bool:
    """True for errors worth waiting out, which are retried instead of dead-lettered
    (every write is idempotent, so a batch is retried whole)."""
    return isinstance(error, TRANSIENT_ERRORS + MIGRATING) or (
        isinstance(error, ResponseError)
        and (str(error).startswith(("BUSY", "OOM", "LOADING")) or NON_LOCAL in str(error))
    )


async def _pipelined(
    redis: AnyRedis, calls: Sequence[tuple[AsyncScript, Sequence[str | int]]], follow: bool
) -> list[object]:
    """One non-transactional pipeline of ``calls`` (on a cluster: one per node; ``follow``:
    the client follows a call's redirection, else its error is the call's answer)."""
    async with redis.pipeline(transaction=False) as pipe:
        for script, argv in calls:
            await script(args=list(argv), client=pipe)  # type: ignore[arg-type]  # redis-py types omit pipelines as script clients
        if isinstance(pipe, ClusterPipeline):
            return await pipe.execute(raise_on_error=False, allow_redirections=follow)
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
    redis: AnyRedis, calls: Iterable[tuple[AsyncScript, Sequence[str | int]]]
) -> list[object]:
    """Run ``(script, argv)`` calls in order, pipelined ``PIPELINE_CALLS`` at a time.
    ``calls`` may be made as they are taken (a generator): on a standalone Redis each
    round trip is written as its calls are packed, so Redis runs the first of them while
    the rest are made.

    Calls of the slot-local steps (the scripts that know their steps script, ``.steps``:
    see :func:`feedamp.feeds.scripts.steps_source`) are packed, ``STEP_CALLS`` at a time,
    into calls of that steps script, which runs them in order: a standalone Redis packs
    each run of consecutive calls of one steps script, a cluster each such run's calls of
    one node (their order kept per node; calls on different nodes touch different
    entities). Answers are
    the same as one call each: a script error belongs to its call. On a cluster, calls
    that a node did not serve (a slot moving) run one by one after the node's others, on
    the node serving their slot; one refused again (its slot still moving) makes the
    batch's transient error. The other calls go through the client's pipelines, each to
    the node serving its routing key, and are not redirected either unless their script
    touches that key alone (see :func:`_cluster_calls`).

    Scripts are sent as ``EVALSHA``; a script is loaded once per client (``SCRIPT LOAD``),
    and again only if Redis answers ``NOSCRIPT`` (it restarted or was flushed), in which
    case the calls from the first refused one on are sent again (every script is
    idempotent). Returns each call's result, or the exception Redis answered it with (a
    script error belongs to its event). A transient error (see :func:`is_transient`) is
    raised instead, for the caller to retry the whole batch.
    """
    results: list[object] = []
    if is_cluster(redis):
        calls = calls if isinstance(calls, Sequence) else list(calls)
        for packed, run in _runs(calls):
            if packed:
                results += await _cluster_steps(redis, run)
            else:
                follow = all(getattr(script, "route_only", False) for script, _ in run)
                results += await _cluster_calls(redis, run, follow)
    else:
        results = await _standalone(redis, _units(calls))
    for result in results:
        if isinstance(result, Exception) and is_transient(result):
            raise result
    return results


#: Calls of the slot-local steps run by one call of the steps script.
STEP_CALLS = 256

Calls = Sequence[tuple[AsyncScript, Sequence[str | int]]]


class _Unit:
    """One EVALSHA of a standalone round trip: a call as it is, or calls of the steps
    packed into one call of the steps script (``size`` calls)."""

    __slots__ = ("args", "calls", "script", "steps")

    def __init__(self, script: Any, args: list[Any], steps: Any = None) -> None:
        self.script, self.args, self.steps = script, args, steps
        #: The calls packed (a steps call), as given.
        self.calls: list[tuple[Any, Sequence[str | int]]] = []

    @property
    def size(self) -> int:
        """Calls answered by this unit's reply."""
        return len(self.calls) if self.steps is not None else 1

    def command(self) -> tuple[Any, ...]:
        if self.steps is not None:
            return ("EVALSHA", self.script.sha, 0, *self.args)
        wire = getattr(self.script, "wire", None)  # a lean script sends only the prefix
        return ("EVALSHA", self.script.sha, 0, *(wire(self.args) if wire else self.args))


def _step_of(script: Any) -> int:
    """The script's index in the steps script (0: not a step, or no steps script)."""
    return getattr(script, "step", 0) if getattr(script, "steps", None) is not None else 0


def _pack(args: list[Any], step: int, argv: Sequence[str | int]) -> None:
    """Add a call (its argv as built, with the seven settings) to a steps call's ARGV."""
    args.append(step)
    args.append(len(argv) - _OWN)
    args.extend(argv[_OWN:])


#: Index of a call's own arguments in its argv (after the seven settings of lib.lua).
_OWN = 7


def _units(calls: Iterable[tuple[Any, Sequence[str | int]]]) -> Iterator[_Unit]:
    """``calls`` as EVALSHAs, each given once complete: consecutive step calls of one
    steps script and one namespace packed together (the leading settings a packed call
    sends once, ``.head`` of the step: the prefix, or all seven, the same for each)."""
    last: _Unit | None = None
    args: list[Any] = []
    seen, step, steps, head = None, 0, None, 1
    for call in calls:
        script, argv = call
        if script is not seen:  # a step's calls mostly come in a row: looked up once
            seen = script
            step = getattr(script, "step", 0)
            steps = getattr(script, "steps", None) if step else None
            head = getattr(script, "head", 1)
        if steps is None:
            if last is not None:
                yield last
                last = None
            yield _Unit(script, list(argv))
            continue
        if (last is None or last.script is not steps or len(last.calls) >= STEP_CALLS
                or args[:head] != argv[:head]):  # fmt: skip
            if last is not None:
                yield last
            last = _Unit(steps, list(argv[:head]), steps)
            args = last.args
        # As _pack, inline: this loop runs for every call of every step.
        args += (step, len(argv) - _OWN)
        args += argv[_OWN:]
        last.calls.append(call)
    if last is not None:
        yield last


#: Bytes of packed EVALSHAs written at once while a round trip is being made.
STREAM_BYTES = 64 * 1024


async def _standalone(redis: AnyRedis, units: Iterable[_Unit]) -> list[object]:
    """Run ``units`` on a standalone Redis, ``PIPELINE_CALLS`` a round trip; each call's
    answer. Each round trip is written as its units come (:func:`_stream`); the part of
    it from the first unit Redis refused as ``NOSCRIPT`` on is loaded and sent again,
    once, whole."""
    results: list[object] = []
    loaded = _loaded.setdefault(id(redis), set())
    pending: Iterator[_Unit] = iter(units)
    while True:
        part: list[_Unit] = []
        got, pending = await _stream(redis, pending, part, loaded)  # type: ignore[arg-type]  # standalone
        if not part:
            return results
        for attempt in range(2):
            refused = next((i for i, r in enumerate(got) if isinstance(r, NoScriptError)), None)
            done = got if refused is None or attempt else got[:refused]
            for unit, reply in zip(part, done, strict=False):
                results += await _answers(redis, unit, reply)
            if len(done) == len(got):
                break
            part = part[refused:]
            loaded.clear()
            await _load(redis, [u.script for u in part], loaded)
            got = await send_commands(redis, [u.command() for u in part])


async def _stream(
    redis: Redis, units: Iterator[_Unit], part: list[_Unit], loaded: set[str]
) -> tuple[list[object], Iterator[_Unit]]:
    """One round trip of up to ``PIPELINE_CALLS`` of ``units``, each appended to ``part``
    and written (``STREAM_BYTES`` at a time) as it comes, then every reply read; the
    replies, and the units left. A unit whose script is not loaded yet ends the round
    trip before it (it is loaded before the next one's connection is taken). Without a
    hiredis reader, or when the connection fails on the way, the whole part goes through
    :func:`send_commands` instead (with its retries; every call is idempotent). A call
    that cannot be made (its error raised by ``units``) closes the connection: the
    replies of those written before it are never read."""
    first = next(units, None)
    if first is None:
        return [], units
    await _load(redis, [first.script], loaded)
    part.append(first)
    left: Iterator[_Unit] = units
    replies: list[object] | None = None
    pool = redis.connection_pool
    conn = await pool.get_connection()
    try:
        if isinstance(getattr(conn, "_parser", None), _AsyncHiredisParser):
            packed, size = [hiredis.pack_command(first.command())], 0
            while len(part) < PIPELINE_CALLS and (unit := next(units, None)) is not None:
                if unit.script.sha not in loaded:
                    left = itertools.chain((unit,), units)
                    break
                part.append(unit)
                packed.append(hiredis.pack_command(unit.command()))
                size += len(packed[-1])
                if size >= STREAM_BYTES:  # Redis starts on these while the rest are made
                    await conn.send_packed_command(packed, check_health=False)
                    packed, size = [], 0
            if packed:
                await conn.send_packed_command(packed, check_health=False)
            replies = await read_replies(conn, len(part))
    except (RedisConnectionError, RedisTimeoutError):
        replies = None
    except BaseException:
        # A call that could not be made (or a cancellation) after some were written:
        # their replies are never read, so the connection is not used again.
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)
    if replies is None:
        if left is units:
            part += itertools.islice(units, PIPELINE_CALLS - len(part))
        await _load(redis, [u.script for u in part], loaded)
        replies = await send_commands(redis, [u.command() for u in part])
    return replies, left


async def _answers(redis: AnyRedis, unit: _Unit, reply: object) -> list[object]:
    """Each call's answer of one unit's reply. A steps call that stopped early (it never
    does on a standalone Redis) has its other calls run one by one."""
    if unit.steps is None:
        return [reply]
    if isinstance(reply, Exception):
        return [reply] * unit.size
    answers = list(reply)  # type: ignore[call-overload]
    if len(answers) < unit.size:
        rest = unit.calls[len(answers) :]
        answers += await _standalone(redis, [_Unit(s, list(a)) for s, a in rest])
    return answers


def _packer(script: Any) -> Any:
    """The steps script that runs the script's calls packed (None: not a step)."""
    return script.steps if _step_of(script) else None


def _runs(calls: Calls) -> list[tuple[bool, Calls]]:
    """``calls`` cut into runs of consecutive step calls of one steps script (True) and
    of other calls."""
    runs: list[tuple[bool, Calls]] = []
    start = 0
    for n in range(1, len(calls) + 1):
        if n == len(calls) or _packer(calls[n][0]) is not _packer(calls[start][0]):
            runs.append((_packer(calls[start][0]) is not None, calls[start:n]))
            start = n
    return runs


async def _cluster_calls(redis: AnyRedis, calls: Calls, follow: bool) -> list[object]:
    """Calls one by one on a cluster, ``PIPELINE_CALLS`` a round trip, each sent to the
    node serving its routing key. ``follow``: the client follows redirections (only for
    calls that touch their declared keys alone: on the node importing a moving slot Redis
    checks those, and a key of the call's tag it does not declare, not moved yet, would
    read as absent there). Else a redirection answers its call, as an error; a ``MOVED``
    (the slot has moved whole: every key of it is on its new owner) updates the client's
    slot table and its calls are sent again, in their order, to the new owner, up to
    :data:`MOVED_ROUNDS` times (a stale table after a resharding); an ``ASK`` stays the
    call's answer (a transient error: the batch is retried once the slot has moved)."""
    results: list[object] = []
    for start in range(0, len(calls), PIPELINE_CALLS):
        results += await _cluster_chunk(redis, calls[start : start + PIPELINE_CALLS], follow)
    if follow:
        return results
    assert isinstance(redis, RedisCluster)
    for _ in range(MOVED_ROUNDS):
        moved = [n for n, answer in enumerate(results) if isinstance(answer, MovedError)]
        if not moved:
            break
        for n in moved:  # the slot moved: its owner for the calls sent again
            await redis.nodes_manager.move_slot(results[n])  # type: ignore[arg-type]
        again: list[object] = []
        for start in range(0, len(moved), PIPELINE_CALLS):
            chunk = [calls[n] for n in moved[start : start + PIPELINE_CALLS]]
            again += await _cluster_chunk(redis, chunk, follow)
        for n, answer in zip(moved, again, strict=True):
            results[n] = answer
    return results


#: Times the calls a ``MOVED`` answered are sent again to the slot's new owner.
MOVED_ROUNDS = 3


async def _cluster_steps(redis: AnyRedis, calls: Calls) -> list[object]:
    """Step calls on a cluster: grouped by the node serving each call's routing key, each
    node's calls packed ``STEP_CALLS`` at a time into calls of the steps script sent to
    the node itself (declaring the first call's routing key), the nodes at once. A node
    that refuses a call (a redirection, or a key of a moving slot reached) has that
    call's and its later calls run one by one after, each on the node serving its slot:
    a redirection is not followed but answers the call (a transient error: the batch is
    retried), so a step never runs on the node importing its slot, where the keys of its
    tag not moved yet would read as absent (a step declares one key: Redis checks no
    other); a ``MOVED`` (the slot moved whole) is sent again to the new owner
    (:func:`_cluster_calls`)."""
    from .cluster import route_key

    assert isinstance(redis, RedisCluster)
    steps = calls[0][0].steps  # type: ignore[attr-defined]
    head = calls[0][0].head  # type: ignore[attr-defined]  # leading settings sent once
    if not steps.loaded:
        await steps.load()
    await redis.initialize()
    per_node: dict[str, tuple[ClusterNode, list[int]]] = {}
    routes = [route_key(script.name, argv) for script, argv in calls]  # type: ignore[attr-defined]
    for n, key in enumerate(routes):
        node = redis.get_node_from_key(key)
        assert node is not None  # every slot is served (cluster_state:ok)
        per_node.setdefault(node.name, (node, []))[1].append(n)
    results: list[object] = [None] * len(calls)

    async def run_node(node: ClusterNode, indexes: list[int]) -> list[int]:
        for start in range(0, len(indexes), STEP_CALLS):
            group = indexes[start : start + STEP_CALLS]
            args: list[Any] = list(calls[group[0]][1][:head])
            for n in group:
                script, argv = calls[n]
                _pack(args, _step_of(script), argv)
            command = ("EVALSHA", steps.sha, 1, routes[group[0]], *args)
            try:
                try:
                    reply: Any = await node.execute_command(*command)
                except NoScriptError:
                    await steps.load()
                    reply = await node.execute_command(*command)
            except ResponseError as exc:
                if isinstance(exc, (*MIGRATING, TryAgainError)) or NON_LOCAL in str(exc):
                    return indexes[start:]
                reply = [exc] * len(group)
            for n, answer in zip(group, reply, strict=False):
                results[n] = answer
            if len(reply) < len(group):
                return indexes[start + len(reply) :]
        return []

    rest = sorted(n for left in await asyncio.gather(*(run_node(node, indexes)
                                                       for node, indexes in per_node.values()))
                  for n in left)  # fmt: skip
    if rest:
        answers = await _cluster_calls(redis, [calls[n] for n in rest], follow=False)
        for n, answer in zip(rest, answers, strict=True):
            results[n] = answer
    return results


async def _cluster_chunk(
    redis: AnyRedis, chunk: Sequence[tuple[AsyncScript, Sequence[str | int]]], follow: bool
) -> list[object]:
    """One chunk on a cluster, through redis-py's script pipelines (one per node);
    ``follow``: redirections followed by the client, else answered as errors."""
    found = await _pipelined(redis, chunk, follow)
    if any(isinstance(r, NoScriptError) for r in found):
        # A cluster node lost its script cache (restart, failover): load the chunk's
        # scripts on every master and run it again (scripts are idempotent).
        for script in {id(s): s for s, _ in chunk}.values():
            await script.load()  # type: ignore[attr-defined]
        found = await _pipelined(redis, chunk, follow)
    return found


#: The SHA1s known to be loaded, per client (``id`` of the client).
_loaded: dict[int, set[str]] = {}


async def _load(redis: AnyRedis, scripts: Sequence[AsyncScript], loaded: set[str]) -> None:
    missing = {s.sha: s.script for s in scripts if s.sha not in loaded}
    for sha, source in missing.items():
        await redis.script_load(source)
        loaded.add(sha)


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


async def run_ahead(
    redis: AnyRedis, script: AsyncScript, trips: Iterable[list[list[str | int]]]
) -> AsyncGenerator[list[object], None]:
    """Run ``trips`` (each a list of calls of ``script``, by their ARGV) in order; yield
    each trip's answers, as :func:`run_scripts` gives them, in order.

    On a standalone Redis (with a hiredis reader) every trip goes on one connection and
    is written before the answers of the trip before it are read (two in flight at most):
    Redis runs a trip while the iterator makes the next one and it is sent, and the calls
    still run in the order given, one connection's commands being run in order. Answered
    ``NOSCRIPT`` (scripts flushed), the calls from the first refused one on, of both
    trips in flight, are run again by :func:`run_scripts` (every call idempotent). A
    transient error is raised, the connection then closed (answers may be unread). On a
    cluster, or without a hiredis reader, each trip is a :func:`run_scripts`."""
    conn: Any = None
    if not is_cluster(redis):
        assert isinstance(redis, Redis)
        conn = await redis.connection_pool.get_connection()
        if not isinstance(getattr(conn, "_parser", None), _AsyncHiredisParser):
            await redis.connection_pool.release(conn)
            conn = None
    if conn is None:
        for trip in trips:
            yield await run_scripts(redis, [(script, argv) for argv in trip])
        return
    assert isinstance(redis, Redis)
    written: deque[list[list[str | int]]] = deque()
    try:
        await _load(redis, [script], _loaded.setdefault(id(redis), set()))
        ready: deque[list[object]] = deque()
        for trip in trips:
            await conn.send_packed_command(
                [hiredis.pack_command(_evalsha(script, argv)) for argv in trip],
                check_health=False,
            )
            written.append(trip)
            if len(written) > 1:
                ready.extend(await _read_ahead(redis, conn, script, written))
            while ready:
                yield ready.popleft()
        while written:
            for answers in await _read_ahead(redis, conn, script, written):
                yield answers
    finally:
        if written:  # stopped with answers unread: the connection cannot be reused
            await conn.disconnect(nowait=True)
        await redis.connection_pool.release(conn)


def _evalsha(script: AsyncScript, argv: Sequence[str | int]) -> tuple[Any, ...]:
    return ("EVALSHA", script.sha, 0, *argv)


async def _read_ahead(
    redis: Redis, conn: Any, script: AsyncScript, written: deque[list[list[str | int]]]
) -> list[list[object]]:
    """The answers of the oldest trip in ``written`` (taken off it), or, after a
    ``NOSCRIPT``, of every trip in it (see :func:`run_ahead`)."""
    trip = written[0]
    replies = await read_replies(conn, len(trip))
    assert replies is not None  # a hiredis reader (run_ahead checked)
    written.popleft()
    trips, answers = [trip], [replies]
    if any(isinstance(r, NoScriptError) for r in replies):
        while written:  # read what was sent after it
            later = written[0]
            got = await read_replies(conn, len(later))
            assert got is not None
            written.popleft()
            trips.append(later)
            answers.append(got)
        flat = [r for got in answers for r in got]
        calls = [argv for t in trips for argv in t]
        first = next(n for n, r in enumerate(flat) if isinstance(r, NoScriptError))
        _loaded.get(id(redis), set()).discard(script.sha)
        flat[first:] = await run_scripts(redis, [(script, argv) for argv in calls[first:]])
        answers, at = [], 0
        for t in trips:
            answers.append(flat[at : at + len(t)])
            at += len(t)
    for got in answers:
        for reply in got:
            if isinstance(reply, Exception) and is_transient(reply):
                raise reply
    return answers
