"""Slot-local steps reaching a slot that is moving: a batch of gifts, orders and graph
events applied to a Redis Cluster while one slot of its keys is half-way between two
masters (``CLUSTER SETSLOT ... MIGRATING`` / ``IMPORTING``, some of its keys moved with
``MIGRATE``) leaves exactly the keys the same batches leave on a standalone Redis.

The slot holds the tags of a sender (who already used up a campaign's sends), a new
sender, a recipient, orders and gifts, old and new; the other entities of the batch live
elsewhere, and a last gift in another slot of the same master, so the steps calls sent
to the slot's master also carry calls that do run there. The migration stands still
while the batch is applied, as between two keys of a ``redis-cli --cluster reshard``; a
batch refused with a transient error (``ASK``, ``TRYAGAIN``, a key that already moved)
is applied again whole, as the worker does, after the migration moved one more key. That
the moving-slot path ran (a steps call stopped at a key its master no longer serves, the
call and the later ones then run one by one) is read from the masters' slow logs, every
command logged for the test: step scripts sent on their own, which the packed path never
does (checked on the batch before the move). The worker's batch handler waits out a
batch the moving slot refuses instead of dead-lettering it.

The feed and graph paths are run the same way, one batch each, a tag of the slot split
across the masters: deliveries to a follower alone in the slot whose feeds moved and
whose pair state did not; a follow's backfill, an unfollow's purge and a block's purge;
an unrepost and a deletion of posts whose records moved and whose reposters did not,
and a repost recorded where an order waits for it. Each reaches keys of its tag that
its call does not declare: followed to the node importing the slot, such a call reads
them as absent there (a delivery, a purge or an order lost) or writes them on the
wrong side of the move (a key on both masters, ``BUSYKEY`` when it is migrated).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from feedamp.config import Settings
from feedamp.embedded.cluster import RedisClusterService
from feedamp.embedded.services import Service
from feedamp.feeds import FeedStore
from feedamp.feeds.batch import is_transient
from feedamp.feeds.connection import AnyRedis, close, connect
from feedamp.feeds.keys import bucket_of
from feedamp.feeds.scripts import STEPS, source, steps_source
from feedamp.streams import Pipeline
from redis.asyncio import Redis
from redis.crc import key_slot

from .factory import Events, record_of
from .snapshot import snapshot
from .test_gifts import START, catalog_doc

#: Times a batch is applied again after a transient error (the migration moves a key
#: each time, so it ends well before).
RETRIES = 200


def ids_where(ok: Callable[[int], bool], stem: str, n: int) -> list[str]:
    """The first ``n`` ids ``<stem><i>`` whose hash tag's slot passes ``ok``."""
    found = (f"{stem}{i}" for i in itertools.count() if ok(key_slot(f"{stem}{i}".encode())))
    return list(itertools.islice(found, n))


def sha1(text: str) -> str:
    """The SHA1 Redis names a script by."""
    return hashlib.sha1(text.encode()).hexdigest()


class Migration:
    """One slot moved by hand between two masters, as ``redis-cli --cluster reshard``
    moves it: importing on the target, migrating on the source, keys moved with
    ``MIGRATE``, then the slot given to the target on every master."""

    def __init__(self, cluster: RedisClusterService, slot: int) -> None:
        self.slot = slot
        self.nodes = [Redis(host="127.0.0.1", port=n.port) for n in cluster.nodes]
        self.source: Redis | None = None
        self.target: Redis | None = None
        self.ids: dict[int, str] = {}
        self.started = self.done = False

    async def locate(self) -> list[tuple[int, int]]:
        """Find the slot's master (the source; the target is the next master); the slot
        ranges the source serves."""
        for n, node in enumerate(self.nodes):
            self.ids[n] = (await node.execute_command("CLUSTER", "MYID")).decode()
        ranges: dict[str, list[tuple[int, int]]] = {}
        for lo, hi, master, *_ in await self.nodes[0].execute_command("CLUSTER", "SLOTS"):
            ranges.setdefault(master[2].decode(), []).append((int(lo), int(hi)))
        owner = next(i for i, rs in ranges.items() if any(lo <= self.slot <= hi for lo, hi in rs))
        n = next(n for n, id_ in self.ids.items() if id_ == owner)
        self.source, self.target = self.nodes[n], self.nodes[(n + 1) % len(self.nodes)]
        return ranges[owner]

    async def start(self) -> None:
        """The slot importing on the target, migrating on the source."""
        assert self.source is not None and self.target is not None
        source_id, target_id = (self.ids[self.nodes.index(n)] for n in (self.source, self.target))
        await self.target.execute_command("CLUSTER", "SETSLOT", self.slot, "IMPORTING", source_id)
        await self.source.execute_command("CLUSTER", "SETSLOT", self.slot, "MIGRATING", target_id)
        self.started = True

    async def left(self) -> list[bytes]:
        """The slot's keys still on the source."""
        assert self.source is not None
        return list(
            await self.source.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, 10_000)
        )

    async def move(self, keys: Iterable[bytes | str], replace: bool = False) -> None:
        """``MIGRATE`` ``keys`` to the target (without ``replace``, a key already there
        fails: ``BUSYKEY``)."""
        keys = list(keys)
        if not keys:
            return
        assert self.source is not None and self.target is not None
        port = self.target.connection_pool.connection_kwargs["port"]
        how = ["REPLACE"] if replace else []
        await self.source.execute_command("MIGRATE", "127.0.0.1", port, "", 0, 5000, *how,
                                          "KEYS", *keys)  # fmt: skip

    async def step(self) -> None:
        """Move one more key, or give the slot to the target when none is left."""
        left = await self.left()
        if left:
            await self.move(left[:1])
        else:
            await self.finish()

    async def finish(self, replace: bool = False) -> None:
        """Move every key left and give the slot to the target, on every master."""
        if self.done or not self.started or self.source is None or self.target is None:
            return
        await self.move(await self.left(), replace)
        target_id = next(i for n, i in self.ids.items() if self.nodes[n] is self.target)
        rest = [n for n in self.nodes if n not in (self.source, self.target)]
        for node in [self.target, self.source, *rest]:
            await node.execute_command("CLUSTER", "SETSLOT", self.slot, "NODE", target_id)
        self.done = True

    async def close(self) -> None:
        """Finish the move whatever happened (a key written on both sides replaced), so
        that the cluster is left stable for the tests after."""
        try:
            await self.finish(replace=True)
        finally:
            for node in self.nodes:
                await node.aclose()


class SlowLogs:
    """Every command the masters run, from their slow logs (threshold 0 while open)."""

    def __init__(self, cluster: RedisClusterService) -> None:
        self.nodes = [Redis(host="127.0.0.1", port=n.port) for n in cluster.nodes]
        self.saved: list[dict[str, Any]] = []

    async def open(self) -> None:
        for node in self.nodes:
            self.saved.append(await node.config_get("slowlog-*"))
            await node.config_set("slowlog-max-len", 1_000_000)
            await node.config_set("slowlog-log-slower-than", 0)
            await node.slowlog_reset()

    async def commands(self) -> list[bytes]:
        """The commands logged since the last call (each node's, oldest first)."""
        out: list[bytes] = []
        for node in self.nodes:
            entries = await node.execute_command("SLOWLOG", "GET", -1)
            out += [b" ".join(e[3]) for e in reversed(entries)]  # id, time, duration, args
            await node.slowlog_reset()
        return out

    async def close(self) -> None:
        for node, saved in zip(self.nodes, self.saved, strict=False):
            for name, value in saved.items():
                await node.config_set(name, value)
        for node in self.nodes:
            await node.aclose()


def runs(commands: list[bytes]) -> tuple[int, int]:
    """(calls of the steps script, calls of a step script on its own) among ``commands``."""
    packed = sha1(steps_source()).encode()
    alone = {sha1(source(name)).encode() for name in STEPS}
    found = [c.split(b" ")[1] for c in commands if c.upper().startswith(b"EVALSHA ")]
    return sum(s == packed for s in found), sum(s in alone for s in found)


def settings_on(service: Service, campaigns: Path) -> Settings:
    return Settings(redis_url=f"redis://{service.address}/0", campaigns=str(campaigns),
                    key_prefix=f"t{uuid.uuid4().hex[:10]}:")  # fmt: skip


async def apply(
    pipeline: Pipeline, settings: Settings, batch: list, migration: Migration | None = None
) -> int:
    """Apply ``batch`` as the worker does (again, whole, after a transient error; the
    migration moves a key in between); no dead letter. Returns the retries."""
    records = [record_of(settings, e, n) for n, e in enumerate(batch)]
    for retries in range(RETRIES):
        try:
            outcome = await pipeline.apply(records)
        except Exception as exc:
            if not is_transient(exc) or migration is None:
                raise
            await migration.step()
            continue
        assert outcome.dead_letters == [], outcome.dead_letters
        return retries
    pytest.fail(f"the batch was refused {RETRIES} times")


async def on_two_nodes(cluster: RedisClusterService, prefix: str) -> list[bytes]:
    """Keys of the namespace held by more than one master."""
    seen: dict[bytes, int] = {}
    for node in cluster.nodes:
        client = Redis(host="127.0.0.1", port=node.port)
        try:
            async for key in client.scan_iter(match=f"{prefix}*", count=1000):
                seen[key] = seen.get(key, 0) + 1
        finally:
            await client.aclose()
    return sorted(k for k, n in seen.items() if n > 1)


@pytest.mark.parametrize("split", [False, True], ids=["whole-tags", "split-tag"])
async def test_a_batch_reaching_a_moving_slot_writes_what_an_unmoved_one_writes(
    redis_server: Service, redis_cluster: RedisClusterService, tmp_path: Path, split: bool
) -> None:
    """Whole tags moved (an order's, a gift's), or one tag split (a sender's claims
    moved, the count of its sends not yet): the same keys as on a standalone Redis."""
    catalog = tmp_path / "campaigns.json"
    catalog.write_bytes(orjson.dumps(catalog_doc([f"C{n}" for n in range(8)])))
    # Ids need not be unique across tests (each has its own key prefix): the same slot
    # every run, the slot of the sender's tag.
    sender = "snd"
    slot = key_slot(sender.encode())
    migration, logs = Migration(redis_cluster, slot), SlowLogs(redis_cluster)
    ranges = await migration.locate()

    def in_slot(stem: str, n: int) -> list[str]:
        return ids_where(lambda s: s == slot, stem, n)

    def elsewhere(stem: str, n: int) -> list[str]:
        return ids_where(lambda s: s != slot, stem, n)

    # In the slot: the sender (three sends of the campaign of limit 3 before the move), a
    # new sender, a recipient (their accounts known: the door reads them), an old and a
    # new order, gifts; last, a gift of another slot of the same master.
    new_sender, recipient = in_slot("new", 1)[0], in_slot("rcp", 1)[0]
    old_order, new_order = in_slot("ord", 2)
    gifts_in = in_slot("gft", 5)
    (beside,) = ids_where(lambda s: s != slot and any(lo <= s <= hi for lo, hi in ranges),
                          "side", 1)  # fmt: skip
    buyer, users, posts = elsewhere("buy", 1)[0], elsewhere("u", 6), elsewhere("p", 4)
    others = elsewhere("o", 3)
    ev = Events(start_ms=START + 1_000)
    before = [
        *(ev.account(u, "label", label="shop") for u in (sender, new_sender, recipient)),
        *(ev.follow(a, b) for a in users for b in users if a != b and (a < b) == (a[-1] < "4")),
        ev.post(posts[0], users[0]), ev.post(posts[1], users[1]),
        ev.repost(posts[0], users[0], users[2], repost_id="r0"),
        ev.gift(gifts_in[0], sender, recipient, "editor"),
        ev.gift(gifts_in[1], sender, users[3], "editor"),
        ev.gift("g-a", sender, users[4], "music"),  # the sender's third send
        ev.gift("g-b", users[1], recipient, "mic"),
        ev.purchase(old_order, buyer, amount=700, via_post=posts[0]),
        ev.purchase(others[0], users[5], amount=300, via_repost="r0"),
    ]  # fmt: skip
    during = [
        ev.gift(gifts_in[2], sender, users[5], "music"),  # over the limit: send_limit
        ev.gift(gifts_in[3], new_sender, recipient, "editor"),
        ev.gift("g-c", users[2], recipient, "editor"),
        ev.gift(gifts_in[4], users[3], sender, "mic"),
        ev.status(old_order, buyer, "paid", seq=1),
        ev.purchase(new_order, buyer, amount=500, via_repost="r0"),
        ev.purchase(others[1], users[0], amount=200, via_post=posts[1]),
        ev.post(posts[2], users[2]), ev.follow(users[5], users[2]),
        ev.repost(posts[1], users[1], users[3], repost_id="r1"),
        ev.hide("mute", users[4], users[0]), ev.follow(users[1], users[5]),
        ev.status(new_order, buyer, "refunded", seq=1),
        ev.gift(beside, users[0], users[1], "mic"),
    ]  # fmt: skip
    on_cluster, on_single = settings_on(redis_cluster, catalog), settings_on(redis_server, catalog)
    cluster: AnyRedis = connect(on_cluster.redis_url)
    single: AnyRedis = connect(on_single.redis_url)
    try:
        pipeline = Pipeline(FeedStore(cluster, on_cluster), on_cluster)
        reference = Pipeline(FeedStore(single, on_single), on_single)
        await logs.open()
        assert await apply(pipeline, on_cluster, before) == 0
        packed, alone = runs(await logs.commands())
        assert packed > 0 and alone == 0, "steps ran on their own on a stable cluster"
        await migration.start()
        prefix = on_cluster.key_prefix
        if split:
            # the sender's claims moved, the count of its sends not yet
            await migration.move([f"{prefix}gift_claims:{{{sender}}}"])
            assert f"{prefix}gift_sends:{{{sender}}}".encode() in await migration.left()
        else:
            # the old order and the first gift moved (every key of their tags)
            whole = (f"{{{old_order}}}".encode(), f"{{{gifts_in[0]}}}".encode())
            await migration.move([k for k in await migration.left() if k.endswith(whole)])
        left = await migration.left()
        order_moved = f"{prefix}order:{{{old_order}}}".encode() not in left
        assert left and order_moved != split  # half-way: keys of the slot on both masters
        # A worker's client holds several connections to each node (its stores run at
        # once, each node's calls at once): this one too.
        await asyncio.gather(*(cluster.execute_command("PING", target_nodes=node)
                               for node in cluster.get_primaries() for _ in range(4)))  # fmt: skip
        retries = await apply(pipeline, on_cluster, during, migration)
        packed, alone = runs(await logs.commands())
        assert packed > 0 and alone > 0, "no steps call reached the moving slot"
        for batch in (before, during):
            assert await apply(reference, on_single, batch) == 0
        # Nothing written on both sides of the move; then the move ends.
        assert await on_two_nodes(redis_cluster, prefix) == []
        await migration.finish()
        got, expected = (
            await snapshot(cluster, prefix),
            await snapshot(single, on_single.key_prefix),
        )
        diff = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
        assert not diff, f"{len(diff)} keys differ ({retries} retries), e.g. " + "; ".join(
            f"{k}: {got.get(k)} != {expected.get(k)}" for k in diff[:3]
        )
        print(f"{retries} retries, {alone} step calls run on their own, {packed} packed")
        # the sender's send over the campaign's limit was refused (its count was read)
        over = dict(expected[f"gift:{{{gifts_in[2]}}}"][1])  # type: ignore[call-overload]
        assert (over[b"decision"], over[b"reasons"]) == (b"refused", b"send_limit")
    finally:
        await logs.close()
        await migration.close()
        await close(cluster)
        await close(single)


async def test_the_worker_waits_out_a_moving_slot_instead_of_dead_lettering(
    redis_cluster: RedisClusterService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch whose steps a moving slot refuses fails with a transient error: the
    worker's batch handler (``BatchHandler``) waits it out and applies the batch once the
    slot has moved, as for an outage, rather than taking it apart record by record and
    dead-lettering what the slot still refuses."""
    from feedamp.streams.app import BatchHandler

    from .conftest import wait_until

    catalog = tmp_path / "campaigns.json"
    catalog.write_bytes(orjson.dumps(catalog_doc(["C1"])))
    slot = key_slot(b"wgift")
    migration = Migration(redis_cluster, slot)
    await migration.locate()
    # Only the gifts are in the slot (their senders and recipients, whom the door reads
    # with plain commands, are elsewhere): every call that reaches it is a step.
    gifts = ids_where(lambda s: s == slot, "wgift", 3)
    users = ids_where(lambda s: s != slot, "wu", 4)
    ev = Events(start_ms=START + 1_000)
    batch = [ev.gift(g, users[n], users[n + 1], "mic") for n, g in enumerate(gifts)]
    settings = settings_on(redis_cluster, catalog)
    cluster: AnyRedis = connect(settings.redis_url)
    caplog.set_level(logging.WARNING, logger="feedamp.worker")
    try:
        handler = BatchHandler(Pipeline(FeedStore(cluster, settings), settings), None)  # type: ignore[arg-type]  # applying publishes nothing
        await migration.start()
        records = [record_of(settings, e, n) for n, e in enumerate(batch)]
        applying = asyncio.create_task(handler.apply(records))

        async def waiting() -> bool:
            return applying.done() or "unavailable" in caplog.text

        await wait_until(waiting, timeout=20, what="the batch to be refused")
        await migration.finish()
        outcome = await asyncio.wait_for(applying, 30)
        assert outcome.dead_letters == []
        assert [(d.gift_id, d.decision) for d in outcome.decisions] == [
            (g, "accepted") for g in gifts
        ]
    finally:
        await migration.close()
        await close(cluster)


#: The feed and graph paths of a batch that reach a moving slot (see the test below).
PATHS = ("deliveries", "graph", "origins")


def feed_batches(path: str, slot: int, buckets: int) -> tuple[list, list, dict[str, list[str]]]:
    """The events before the move and during it for one of :data:`PATHS`, and the tags
    of the moving slot: what moves (``moved``: every key of these tags but their
    ``pair``, ``following``, ``reposters`` and ``comments``) and what stays (``stayed``).
    Every post is in feed bucket 0, so that a follower's pushes all meet one bucket."""

    def ids(stem: str, n: int, here: bool) -> list[str]:
        return ids_where(lambda s: (s == slot) == here, stem, 5 * n)  # then by bucket

    def posts(stem: str, n: int, here: bool) -> list[str]:
        found = (p for p in ids(stem, 40 * n, here) if bucket_of(p, buckets) == 0)
        return list(itertools.islice(found, n))

    mover, stayer = ids("mv", 2, True)[:2]
    (rid,) = ids("rp", 1, True)[:1]
    split, gone = posts("pm", 2, True)
    author, other, lone, late, reposter, reader, buyer = ids("au", 7, False)[:7]
    a1, b1, l1, l2, t1 = posts("pe", 5, False)
    ev = Events(start_ms=START + 1_000)
    if path == "deliveries":
        # The mover is the only follower in the slot of the batch's sources: its
        # deliveries declare its feed bucket, which moved; its pair state did not.
        before = [ev.follow(mover, author), ev.follow(mover, lone), ev.follow(mover, other),
                  ev.follow(reader, author), ev.post(a1, author), ev.post(l1, lone),
                  ev.post(b1, other)]  # fmt: skip
        during = [ev.post(l2, lone), ev.repost(b1, other, author, comment="seen")]
        return before, during, {"moved": [mover], "stayed": []}
    if path == "graph":
        # A follow's backfill and an unfollow's purge of the stayer (whose keys stay), a
        # block's purge of the mover (whose feeds moved, not its pair state nor its
        # followings): each feed step declares a key of the user's tag that is never
        # written.
        before = [ev.follow(stayer, author), ev.follow(mover, author), ev.follow(mover, other),
                  ev.post(a1, author), ev.post(b1, other), ev.post(t1, late),
                  ev.repost(t1, late, author)]  # fmt: skip
        during = [ev.follow(stayer, late), ev.unfollow(stayer, author),
                  ev.hide("block", mover, other), ev.follow(mover, late)]  # fmt: skip
        return before, during, {"moved": [mover], "stayed": [stayer]}
    # origins: an unrepost and a deletion of posts whose records moved, not their
    # reposters and comments; a repost whose id is in the slot, recorded where an order
    # waits for it (awaiting_repost:{repost}, not moved). The stayer follows the
    # reposter: its deliveries run where its keys are.
    before = [ev.follow(stayer, reposter), ev.follow(reader, reposter),
              ev.post(split, author), ev.post(gone, other), ev.post(a1, author),
              ev.repost(split, author, reposter, comment="first"),
              ev.repost(gone, other, reposter, comment="also"),
              ev.purchase("ord-w", buyer, amount=400, via_repost=rid)]  # fmt: skip
    during = [ev.unrepost(split, reposter), ev.delete(gone, other),
              ev.repost(a1, author, late, repost_id=rid)]  # fmt: skip
    return before, during, {"moved": [split, gone], "stayed": [rid, stayer]}


@pytest.mark.parametrize("path", PATHS)
async def test_feed_and_graph_events_reaching_a_moving_slot_write_what_an_unmoved_one_writes(
    redis_server: Service,
    redis_cluster: RedisClusterService,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    """Feed and graph events applied while the slot of some of their tags is half-moved,
    a tag split across the masters (a follower's feeds moved, its pair state and
    followings not; a post's record moved, its reposters and comments not): the same
    keys as on a standalone Redis, nothing dead-lettered, nothing written on both sides
    of the move. Each path declares only some of the keys it touches: the deliveries to
    a follower alone in the slot (its feed bucket), the graph's feed steps (a key of the
    user's tag that is never written), the origin steps (a post's record, a repost's)."""
    # A delivery waits a little for a moving slot before its batch is retried: the slot
    # here moves only between tries.
    monkeypatch.setattr("feedamp.feeds.fanout.SLOT_WAIT", 0.2)
    catalog = tmp_path / "campaigns.json"
    catalog.write_bytes(orjson.dumps(catalog_doc(["C1"])))
    slot = key_slot(b"mv")
    migration = Migration(redis_cluster, slot)
    await migration.locate()
    on_cluster, on_single = settings_on(redis_cluster, catalog), settings_on(redis_server, catalog)
    before, during, tags = feed_batches(path, slot, on_cluster.feed_buckets)
    cluster: AnyRedis = connect(on_cluster.redis_url)
    single: AnyRedis = connect(on_single.redis_url)
    try:
        pipeline = Pipeline(FeedStore(cluster, on_cluster), on_cluster)
        reference = Pipeline(FeedStore(single, on_single), on_single)
        assert await apply(pipeline, on_cluster, before) == 0
        await migration.start()
        prefix = on_cluster.key_prefix
        stay = tuple(f"{prefix}{kind}:".encode()
                     for kind in ("pair", "following", "reposters", "comments"))  # fmt: skip

        def of(tag: str, keys: list[bytes]) -> list[bytes]:
            return [k for k in keys if f"{{{tag}}}".encode() in k]

        left = await migration.left()
        await migration.move(k for tag in tags["moved"] for k in of(tag, left)
                             if not k.startswith(stay))  # fmt: skip
        left = await migration.left()
        for tag in tags["moved"]:  # split: some keys moved, the rest left
            assert of(tag, left) and all(k.startswith(stay) for k in of(tag, left)), tag
        for tag in tags["stayed"]:
            assert of(tag, left), tag
        retries = await apply(pipeline, on_cluster, during, migration)
        for batch in (before, during):
            assert await apply(reference, on_single, batch) == 0
        # Nothing written on both sides of the move; then the move ends.
        assert await on_two_nodes(redis_cluster, prefix) == []
        await migration.finish()
        got, expected = (
            await snapshot(cluster, prefix),
            await snapshot(single, on_single.key_prefix),
        )
        diff = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
        assert not diff, f"{len(diff)} keys differ ({retries} retries), e.g. " + "; ".join(
            f"{k}: {got.get(k)} != {expected.get(k)}" for k in diff[:3]
        )
        print(f"{path}: {retries} retries")
    finally:
        await migration.close()
        await close(cluster)
        await close(single)
