"""Feed writes while slots move: a live load applied to the cluster during
``redis-cli --cluster reshard`` leaves exactly the keys the same log leaves on a
standalone Redis (what ``feedamp verify`` checks: the views are a function of the log).

The first test applies the load through :class:`FeedStore`, as a worker applies its
batches: a batch a node refuses mid-migration (MOVED, ASK, TRYAGAIN, a script reaching a
key that already moved) raises a transient error and is applied again whole, as the worker
does. The second runs a real worker on the cluster while slots move back, with gifts and
orders in the log too, and ends with ``feedamp verify``.
"""

from __future__ import annotations

import asyncio
import random

from feedamp.config import Caps
from feedamp.embedded.cluster import RedisClusterService
from feedamp.embedded.services import Service
from feedamp.feeds import FeedStore
from feedamp.feeds.batch import is_transient
from feedamp.feeds.cluster import scan_keys
from feedamp.feeds.connection import AnyRedis, close, connect
from feedamp.models.events import Event

from .conftest import make_settings
from .factory import Events

USERS = [f"m{i}" for i in range(60)]


def live_log(rng: random.Random, length: int = 700) -> list[Event]:
    """A follow graph, then posts, reposts, unreposts, deletions, follows, unfollows,
    blocks and mutes (each repost once per post and reposter, as producers send them)."""
    ev = Events(start_ms=1_700_000_000_000)
    out: list[Event] = []
    for user in USERS:
        for followee in rng.sample([u for u in USERS if u != user], 8):
            out.append(ev.follow(user, followee))
    posts: dict[str, str] = {}
    live: list[str] = []
    reposts: list[tuple[str, str]] = []
    done: set[tuple[str, str]] = set()
    for _ in range(length):
        kind = rng.choices(["post", "repost", "unrepost", "delete", "follow", "unfollow",
                            "hide"], weights=[6, 10, 2, 1, 2, 1, 1])[0]  # fmt: skip
        a, b = rng.sample(USERS, 2)
        if kind == "post" or not live:
            pid = f"p{len(posts)}"
            posts[pid] = a
            live.append(pid)
            out.append(ev.post(pid, a, text=f"t{pid}"))
        elif kind == "repost":
            pid = rng.choice(live)
            if a == posts[pid] or (pid, a) in done:
                continue
            done.add((pid, a))
            reposts.append((pid, a))
            out.append(ev.repost(pid, posts[pid], a, comment=rng.choice([None, "wow"])))
        elif kind == "unrepost" and reposts:
            pid, reposter = reposts.pop(rng.randrange(len(reposts)))
            out.append(ev.unrepost(pid, reposter))
        elif kind == "delete":
            pid = live.pop(rng.randrange(len(live)))
            out.append(ev.delete(pid, posts[pid]))
        elif kind in ("follow", "unfollow", "hide"):
            out.append(ev.graph(kind, a, b, rng))
    return out


async def apply_retrying(store: FeedStore, batch: list[Event]) -> int:
    """Apply one batch as the worker does: a transient error retries it whole. Returns
    the retries."""
    retries = 0
    while True:
        try:
            result = await store.apply(batch)
        except Exception as exc:
            if not is_transient(exc) or retries > 200:
                raise
            retries += 1
            await asyncio.sleep(0.02)
            continue
        assert result.failures == [], result.failures
        return retries


async def dump(redis: AnyRedis, prefix: str) -> dict[str, object]:
    """Every key of the namespace (every master of a cluster), without the prefix."""
    out: dict[str, object] = {}
    async for raw in scan_keys(redis, f"{prefix}*"):
        key = raw.decode()
        kind = (await redis.type(key)).decode()
        if kind == "zset":
            value: object = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "set":
            value = sorted(await redis.smembers(key))
        else:
            value = await redis.get(key)
        out[key[len(prefix) :]] = (kind, value)
    return out


def _node_ids(cluster: RedisClusterService) -> list[tuple[str, int]]:
    """(node id, slots served) of every master, most slots first."""
    rows = []
    for line in cluster.cli("CLUSTER", "NODES").splitlines():
        parts = line.split()
        slots = 0
        for r in parts[8:]:
            lo, _, hi = r.partition("-")
            slots += int(hi or lo) - int(lo) + 1 if lo.isdigit() else 0
        rows.append((parts[0], slots))
    return sorted(rows, key=lambda row: -row[1])


async def test_feeds_written_while_slots_move_equal_the_standalone_feeds(
    broker: Service, redis_server: Service, redis_cluster: RedisClusterService
) -> None:
    log = live_log(random.Random(13))
    batches = [log[i : i + 6] for i in range(0, len(log), 6)]
    on_cluster = make_settings(broker, redis_cluster, fanout_chunk=16)
    on_single = make_settings(broker, redis_server, fanout_chunk=16)
    cluster, single = connect(on_cluster.redis_url), connect(on_single.redis_url)
    try:
        store = FeedStore(cluster, on_cluster)
        (source, _), *_, (target, _) = _node_ids(redis_cluster)
        reshard = asyncio.create_task(asyncio.to_thread(
            redis_cluster.cli, "--cluster", "reshard", redis_cluster.address,
            "--cluster-from", source, "--cluster-to", target, "--cluster-slots", "3000",
            "--cluster-yes", timeout=300,
        ))  # fmt: skip
        during, retries = 0, 0
        for batch in batches:
            retries += await apply_retrying(store, batch)
            during += not reshard.done()
        moved = await reshard
        assert "Moving slot" in moved
        assert during >= 10, "the load ended before the slots started moving"
        reference = FeedStore(single, on_single)
        for batch in batches:
            assert (await reference.apply(batch)).failures == []
        got = await dump(cluster, on_cluster.key_prefix)
        expected = await dump(single, on_single.key_prefix)
        diff = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
        assert not diff, f"{len(diff)} keys differ ({retries} retries), e.g. {diff[:5]}"
        assert any(k.startswith("feed:") for k in got) and any(k.startswith("foryou:") for k in got)
        print(f"{during} batches while slots moved, {retries} retried, {store.regrouped} "
              "followers re-grouped by slot")  # fmt: skip
    finally:
        await close(cluster)
        await close(single)


def shop_log(rng: random.Random, events: list[Event]) -> list[Event]:
    """Gifts between the users (an open offer: no window, no limit) and purchases through
    their posts and reposts, dated after ``events``: orders credit creators on their own
    slots while those move too."""
    from .factory import Events as Factory

    ev = Factory(start_ms=events[-1].ts + 1)
    posts = [e for e in events if e.type == "post"]
    reposts = [e for e in events if e.type == "repost"]
    out: list[Event] = []
    for n in range(40):
        a, b = rng.sample(USERS, 2)
        out.append(ev.gift(f"g{n}", a, b, "mic"))
        via = rng.choice(posts)
        rp = rng.choice(reposts)
        out.append(ev.purchase(f"o{n}", b, amount=100 + n, via_post=via.post_id,  # type: ignore[attr-defined]
                               via_repost=rp.repost_id if n % 2 else None))  # type: ignore[attr-defined]  # fmt: skip
        if n % 5 == 0:
            out.append(ev.status(f"o{n}", b, "cancelled", seq=1))
    return out


async def test_a_worker_load_while_slots_move_then_verify_is_clean(
    broker: Service, redis_cluster: RedisClusterService, tmp_path
) -> None:
    """A worker applies a live load (feeds, reposts, gifts, orders) while ``redis-cli
    --cluster reshard`` moves slots between masters, back and forth for as long as the
    load lasts; once it caught up, ``feedamp verify`` (a replay of the log into a scratch
    namespace, compared key by key) finds no difference. The load's event times are far
    behind the clock, so every repost is later than the allowed lateness and is decided
    in arrival order (README, *What is guaranteed*): the caps are off here; the caps'
    steps under a reshard are covered by the direct-store test above."""
    import subprocess
    import sys

    import orjson
    from feedamp.embedded.worker import worker_env
    from feedamp.kafka.topics import ensure_topics

    from .conftest import WorkerHandle, wait_until
    from .kafka import send_events
    from .test_gifts import catalog_doc
    from .test_replay import caught_up

    rng = random.Random(31)
    path = tmp_path / "campaigns.json"
    path.write_bytes(orjson.dumps(catalog_doc([f"C{n}" for n in range(10)])))
    s = make_settings(broker, redis_cluster, campaigns=str(path), fanout_chunk=16,
                      caps=Caps(enabled=False))  # fmt: skip
    await ensure_topics(s)
    feeds = live_log(rng, 400)
    log = feeds + shop_log(rng, feeds)
    chunks = [log[i : i + 40] for i in range(0, len(log), 40)]
    worker = WorkerHandle(s, tmp_path / "worker.log")
    try:
        await send_events(s, chunks[0])
        await wait_until(lambda: caught_up(s), what="the worker to apply the first chunk")
        (source, _), *_, (target, _) = _node_ids(redis_cluster)

        def move(src: str, dst: str) -> asyncio.Task[str]:
            return asyncio.create_task(asyncio.to_thread(
                redis_cluster.cli, "--cluster", "reshard", redis_cluster.address,
                "--cluster-from", src, "--cluster-to", dst, "--cluster-slots", "500",
                "--cluster-yes", timeout=300,
            ))  # fmt: skip

        moving = move(source, target)
        outputs: list[str] = []
        for chunk in chunks[1:]:
            if moving.done():  # keep slots moving while the load lasts, back and forth
                outputs.append(await moving)
                forth = len(outputs) % 2 == 0
                moving = move(source, target) if forth else move(target, source)
            await send_events(s, chunk)
            await asyncio.sleep(0.3)  # the load's pace, not a wait for a condition
        outputs.append(await moving)
        assert all("Moving slot" in out for out in outputs)
        await wait_until(lambda: caught_up(s), timeout=120, what="the worker to catch up")
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "feedamp.cli", "verify", "--wait", "20"],
            env=worker_env(s), capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert "no differences" in out.stdout
        assert worker.proc.poll() is None
    finally:
        worker.stop()
