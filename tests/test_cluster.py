"""The read side and the slot-local writes on a standalone Redis and on a real three-master
Redis Cluster (parametrized), and client detection (the worker, replay and verify on a
cluster: tests/test_cluster_worker.py; ``feedamp dev --cluster``: tests/test_dev.py).

Feeds are written here through the key schema of the README (the contract for readers in
other languages), so the reader is tested against the schema on both layouts.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
from feedamp.config import Settings
from feedamp.embedded.cluster import RedisClusterService
from feedamp.embedded.services import Service
from feedamp.embedded.worker import worker_env
from feedamp.feeds import FeedReader, FeedStore, Keys
from feedamp.feeds.accounts import AccountStore
from feedamp.feeds.cluster import scan_keys
from feedamp.feeds.connection import RedisUnreachable, close, connect, is_cluster
from feedamp.feeds.keys import bucket_of
from feedamp.feeds.namespace import Namespaces, pattern
from feedamp.feeds.shop.campaigns import load_campaigns
from feedamp.feeds.shop.gifts import GiftStore
from feedamp.feeds.watermark import Watermark
from feedamp.ops.status import count_feeds
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from .conftest import make_settings
from .factory import Events
from .layouts import Layout

SAMPLE = "config/campaigns.sample.json"


@pytest.fixture(params=["standalone", "cluster"])
async def backend(request: pytest.FixtureRequest, broker: Service) -> AsyncIterator[Layout]:
    server = request.getfixturevalue("redis_server" if request.param == "standalone"
                                     else "redis_cluster")  # fmt: skip
    settings = make_settings(broker, server)
    redis = connect(settings.redis_url)
    yield Layout(request.param, settings, redis)
    await close(redis)


async def write_entry(b: Layout, user: str, post: str, author: str, ts: int,
                      via: str | None = None) -> None:  # fmt: skip
    """One Following entry and its post record, as the schema describes them."""
    k, bucket = b.keys, bucket_of(post, b.settings.feed_buckets)
    await b.redis.hset(k.post(post), mapping={"a": author, "ts": ts, "vis": "public",
                                              "text": f"text of {post}"})  # fmt: skip
    await b.redis.zadd(k.feed(user, bucket), {post: ts})
    if via is not None:
        await b.redis.hset(k.via(user, bucket), post, f"{via}@{ts}")  # reposter@time


def test_detection(redis_server: Service, redis_cluster: RedisClusterService) -> None:
    """Any node of the cluster is detected as a cluster; a standalone server is not."""
    assert isinstance(connect(f"redis://{redis_server.address}/0"), Redis)
    for node in redis_cluster.nodes:
        assert is_cluster(connect(f"redis://{node.address}/0"))


async def test_cluster_keys_spread_over_every_master(redis_cluster: RedisClusterService) -> None:
    """The fixture's cluster has three masters sharing the slots."""
    redis = connect(redis_cluster.url)
    assert isinstance(redis, RedisCluster)
    try:
        await redis.initialize()
        assert len(redis.get_primaries()) == 3
        tag = uuid.uuid4().hex[:8]
        owners = {redis.get_node_from_key(f"x{tag}:{{u{i}}}").name for i in range(30)}
        assert len(owners) == 3
    finally:
        await close(redis)


async def test_following_pages(backend: Layout, uid) -> None:
    """Pages newest first, cursor paging, attribution, deleted posts hidden."""
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    for i in range(12):
        await write_entry(backend, alice, uid(f"p{i}"), bob, 1_000 + i)
    await write_entry(backend, alice, uid("rp"), carol, 2_000, via=bob)
    await backend.redis.hset(backend.keys.comments(uid("rp")), bob, "look")
    await backend.redis.hset(backend.keys.post(uid("p11")), "del", 5_000)
    reader = FeedReader(backend.redis, key_prefix=backend.settings.key_prefix)
    first = await reader.following(alice, limit=5)
    assert [i.post_id for i in first.items] == [uid("rp"), *(uid(f"p{i}") for i in (10, 9, 8, 7))]
    assert first.items[0].reposted_by == (bob,) and first.items[0].comment == "look"
    assert first.items[1].text == f"text of {uid('p10')}"
    rest = await reader.following(alice, limit=50, cursor=first.next_cursor)
    assert [i.post_id for i in rest.items] == [uid(f"p{i}") for i in range(6, -1, -1)]
    assert rest.next_cursor is None


async def test_from_url_detects(backend: Layout, uid) -> None:
    """``FeedReader.from_url`` with the URL of any node reads the same feed."""
    await write_entry(backend, uid("u"), uid("p"), uid("a"), 7)
    reader = FeedReader.from_url(backend.settings.redis_url,
                                 key_prefix=backend.settings.key_prefix)  # fmt: skip
    try:
        assert is_cluster(reader.redis) == (backend.name == "cluster")
        page = await reader.following(uid("u"))
        assert [(i.post_id, i.author_id, i.ts) for i in page.items] == [(uid("p"), uid("a"), 7)]
    finally:
        await reader.close()


async def test_account_labels_and_reinstatement(backend: Layout, uid) -> None:
    """Label, unlabel and reinstate are slot-local: they run on both layouts, and readers
    see the label on old entries."""
    ev = Events()
    author = uid("author")
    await write_entry(backend, uid("u"), uid("p"), author, 9)
    store = AccountStore(backend.redis, backend.settings)
    from feedamp.models.events import Account

    def account(action: str, label: str | None = None) -> Account:
        return Account(**ev._base(None), user_id=author, action=action, label=label)

    applied = await store.apply([account("label", "virtual_influencer"), account("reinstate")])
    assert applied.failures == []
    reader = FeedReader(backend.redis, key_prefix=backend.settings.key_prefix)
    (item,) = (await reader.following(uid("u"))).items
    assert item.labels == ("virtual_influencer",)
    assert (await store.apply([account("unlabel", "virtual_influencer")])).failures == []
    (item,) = (await reader.following(uid("u"))).items
    assert item.labels == ()


async def test_gift_code_pools_seed_once(backend: Layout) -> None:
    """Seeding the code pools is slot-local and idempotent."""
    catalog = load_campaigns(SAMPLE)
    store = GiftStore(backend.redis, backend.settings, catalog)
    await store.seed()
    await store.seed()
    assert await backend.redis.lrange(backend.keys.gift_codes("editor-90"), 0, -1) == [
        b"CUTPRO-7Q2M", b"CUTPRO-K81D", b"CUTPRO-Z4XN", b"CUTPRO-W0PL"]  # fmt: skip


async def test_event_order_bookkeeping(backend: Layout) -> None:
    """Park, progress, release and forget share the ``{order}`` slot: they run on both."""
    order = Watermark(backend.redis, backend.settings)
    await order.park([("e1", 100, b"one"), ("e2", 300, b"two")])
    await order.advance({"reposts:0": 200, "posts:0": 250})
    watermark, items = await order.release(10, ["reposts:0", "posts:0"])
    assert watermark == 200 and items == [("e1", b"one")]
    await order.forget(["e1"])
    assert await backend.redis.zrange(backend.keys.parked(), 0, -1) == [b"e2"]


async def test_drop_and_count_visit_every_master(backend: Layout, uid) -> None:
    """Dropping a namespace and counting feeds see the keys of every master."""
    namespaces = Namespaces(backend.redis, backend.settings.key_prefix)
    generation = await namespaces.new_generation()
    old = Layout(backend.name, backend.settings.with_(key_prefix=generation), backend.redis)
    for i in range(30):
        await write_entry(old, uid(f"u{i}"), uid(f"p{i}"), uid("a"), i + 1)
    counted = await count_feeds(backend.redis, old.keys.feed_pattern())
    assert (counted.feeds, counted.entries) == (30, 30)
    assert await namespaces.drop(generation) == 60  # a feed bucket and a post each
    assert [k async for k in scan_keys(backend.redis, pattern(generation))] == []


async def test_a_decided_repost_runs_on_both_layouts(backend: Layout, uid) -> None:
    """Every feed write and the repost decision (caps on) run on both layouts: the
    repost is decided once and its decision kept."""
    ev = Events()
    author, fan = uid("author"), uid("fan")
    store = FeedStore(backend.redis, backend.settings)
    events = [ev.follow(fan, author), ev.post(uid("p"), author)]
    assert (await store.apply(events)).failures == []
    reader = FeedReader(backend.redis, key_prefix=backend.settings.key_prefix)
    assert [i.post_id for i in (await reader.following(fan)).items] == [uid("p")]
    repost = ev.repost(uid("p"), author, uid("r"))
    applied = await store.apply([repost])
    assert applied.failures == []
    assert [d.repost_id for d in applied.decisions] == [repost.repost_id]
    again = await store.apply([repost])
    assert [d.decision for d in again.decisions] == [applied.decisions[0].decision]


async def test_a_post_and_repost_orders_wait_for_credit_them_once(backend: Layout, uid) -> None:
    """Purchases that name a post and a repost before either is recorded wait for them;
    the post's and the repost's origin steps hand the waiting orders to the order steps,
    which credit the author and the reposter once each (a redelivery counts nothing
    twice) and empty the waiting sets, on both layouts."""
    from feedamp.streams import Pipeline

    from .factory import record_of

    ev, s = Events(), backend.settings
    author, reposter, post, repost = uid("ava"), uid("rex"), uid("p"), uid("r")
    orders = [ev.purchase(uid("o1"), uid("bea"), amount=700, via_post=post),
              ev.purchase(uid("o2"), uid("cal"), amount=300, via_repost=repost)]  # fmt: skip
    feeds = [ev.post(post, author), ev.repost(post, author, reposter, repost_id=repost)]
    pipeline = Pipeline(FeedStore(backend.redis, s), s)

    async def run(events) -> None:
        records = [record_of(s, e, n) for n, e in enumerate(events)]
        assert (await pipeline.apply(records)).dead_letters == []

    await run(orders)
    k = backend.keys
    assert await backend.redis.scard(k.awaiting_post(post)) == 1
    assert await backend.redis.scard(k.awaiting_repost(repost)) == 1
    await run(feeds)
    await run(feeds)  # redelivered
    reader = FeedReader(backend.redis, key_prefix=s.key_prefix)
    got = [((st := await reader.creator_stats(u)).orders, st.revenue_cents)
           for u in (author, reposter)]  # fmt: skip
    assert got == [(2, 1000), (1, 300)]
    assert await backend.redis.exists(k.awaiting_post(post), k.awaiting_repost(repost)) == 0


async def test_rebuild_feed_on_a_cluster_regenerates_the_live_feeds(
    broker: Service, redis_cluster: RedisClusterService, uid
) -> None:
    """``feedamp rebuild-feed`` runs on a cluster: from the followees' recent posts and
    reposts it writes back exactly the Following and For You keys the live writes left,
    to the byte (the two posts share a bucket, so the live delivery writes the reader's
    post of p1 and both reposts together, and the attribution hash keeps the order its
    fields were first written in)."""
    from feedamp.config import Caps

    settings = make_settings(broker, redis_cluster, caps=Caps(enabled=False))
    ev, user = Events(), uid("reader")
    a, b, c = uid("a"), uid("b"), uid("c")
    p1 = uid("p1")
    p2 = next(p for n in range(1000) if bucket_of(p := uid(f"p2.{n}"), settings.feed_buckets)
              == bucket_of(p1, settings.feed_buckets))  # fmt: skip
    events = [ev.follow(user, a), ev.follow(user, b), ev.post(p1, a),
              ev.post(p2, c), ev.repost(p2, c, b, comment="see"),
              ev.repost(p1, a, b)]  # fmt: skip
    redis = connect(settings.redis_url)
    try:
        assert (await FeedStore(redis, settings).apply(events)).failures == []
        k, buckets = Keys(settings.key_prefix), range(settings.feed_buckets)
        names = [f(user, n) for n in buckets for f in (k.feed, k.via, k.for_you)]

        async def feeds() -> dict[str, object]:
            return {name: await redis.dump(name) for name in names}

        live = await feeds()
        assert any(live.values())
        await redis.delete(*names)
        done = subprocess.run([sys.executable, "-m", "feedamp.cli", "rebuild-feed", user],
                              env=worker_env(settings), capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "from 2 followees" in done.stdout
        assert await feeds() == live
    finally:
        await close(redis)


def test_unreachable_redis_is_one_line_without_the_password() -> None:
    """A REDIS_URL where nothing answers: one line naming it (password hidden), exit 2."""
    from feedamp.embedded.services import free_port

    env = {**worker_env(Settings()), "REDIS_URL": f"redis://:hush@127.0.0.1:{free_port()}/0"}
    done = subprocess.run([sys.executable, "-m", "feedamp.cli", "feed", "alice"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("feedamp feed: cannot reach Redis at REDIS_URL=redis://:***@127.0.0.1:")
    assert "hush" not in line


async def _graph(b: Layout, author: str, fans: list[str], hiders: list[str]) -> None:
    """Follow edges, and ``hiders`` muting the author (half of them) or blocked by it
    (the others), written as the schema has them, on either layout."""
    k = b.keys
    since = "1|"  # followed, and hidden, from event time 1 on, never lifted
    for i, fan in enumerate(fans):
        await b.redis.sadd(k.followers(author), fan)
        await b.redis.sadd(k.following(fan), author)
        if fan not in hiders:
            state = k.pair_value(since)
        elif i % 2:
            state = k.pair_value(since, mutes=since)
        else:
            state = k.pair_value(since, blocked_by=since)
        await b.redis.hset(k.pair(fan), author, state)
        if fan in hiders and not i % 2:
            await b.redis.hset(k.pair(author), fan, k.pair_value(blocks=since))


async def _feeds(b: Layout, fans: list[str]) -> dict[str, list]:
    k = b.keys
    return {fan: [await b.redis.zrange(k.feed(fan, n), 0, -1, withscores=True)
                  for n in range(b.settings.feed_buckets)] for fan in fans}  # fmt: skip


async def test_post_fanout_by_node_matches_the_standalone_fanout(
    redis_server: Service, redis_cluster: RedisClusterService, broker: Service, uid
) -> None:
    """The same post to the same 300 followers (5 of them muting or blocked by the
    author), chunks of 64: delivery steps grouped by node on the cluster leave every
    follower's feed exactly as on a standalone Redis (one group), and a second run
    changes nothing."""
    ev = Events()
    author = uid("star")
    fans = [uid(f"fan{i}") for i in range(300)]
    hiders = fans[:5]
    post = ev.post(uid("p"), author, text="hello")
    feeds = {}
    for server in (redis_server, redis_cluster):
        b = Layout("", make_settings(broker, server, fanout_chunk=64), connect(
            f"redis://{server.address}/0"))  # fmt: skip
        try:
            await _graph(b, author, fans, hiders)
            store = FeedStore(b.redis, b.settings)
            assert (await store.apply([post])).deliveries == 295
            assert (await store.apply([post])).deliveries == 295  # idempotent
            assert store.regrouped == 0  # one call per node and chunk, none refused
            if isinstance(b.redis, RedisCluster):
                nodes = {b.redis.get_node_from_key(b.keys.feed(f, 0)).name for f in fans}
                assert len(nodes) == 3
            feeds[server is redis_cluster] = await _feeds(b, fans)
            reader = FeedReader(b.redis, key_prefix=b.settings.key_prefix)
            (item,) = (await reader.following(fans[-1])).items
            assert (item.post_id, item.author_id, item.text) == (uid("p"), author, "hello")
            assert (await reader.following(hiders[0])).items == []
        finally:
            await close(b.redis)
    assert feeds[True] == feeds[False]


async def test_a_fanout_finds_each_followers_node_once(
    redis_cluster: RedisClusterService, broker: Service, uid, monkeypatch
) -> None:
    """Eight posts in several buckets to the same 300 followers: the fan-out finds each
    follower's node once (every key of a follower carries its hash tag), not once per
    post and follower, and each call still reaches the node serving its followers (none
    refused), so every follower gets every post."""
    ev = Events()
    author = uid("star")
    fans = [uid(f"fan{i}") for i in range(300)]
    posts = [ev.post(uid(f"p{i}"), author, text="x") for i in range(8)]
    b = Layout("", make_settings(broker, redis_cluster, fanout_chunk=64),
               connect(f"redis://{redis_cluster.address}/0"))  # fmt: skip
    try:
        await _graph(b, author, fans, [])
        assert len({bucket_of(p.post_id, b.settings.feed_buckets) for p in posts}) > 1
        store = FeedStore(b.redis, b.settings)
        looked_up: list[str] = []
        find = b.redis.get_node_from_key

        def spy(key: str, *args: object, **kwargs: object) -> object:
            looked_up.append(key)
            return find(key, *args, **kwargs)

        monkeypatch.setattr(b.redis, "get_node_from_key", spy)
        assert (await store.apply(posts)).deliveries == 8 * 300
        assert store.regrouped == 0
        feed_prefix = b.keys.feed("", 0).split("{", 1)[0]  # <prefix>feed:
        feed_keys = [key for key in looked_up if key.startswith(feed_prefix)]
        assert len(feed_keys) == len(fans)
        reader = FeedReader(b.redis, key_prefix=b.settings.key_prefix)
        page = await reader.following(fans[-1], limit=20)
        assert sorted(item.post_id for item in page.items) == sorted(p.post_id for p in posts)
    finally:
        await close(b.redis)


async def test_post_fanout_survives_slots_moved_behind_the_client(
    broker: Service, redis_cluster: RedisClusterService, uid
) -> None:
    """Slots move to another master after the client read the slot table: the groups
    sent to the old owner are refused (MOVED) before running, re-grouped by slot and
    delivered; every follower gets the post once. The post's own slot moved too: its
    origin step, answered MOVED (never followed, as an ASK would not be), is sent again
    to the new owner."""
    b = Layout("cluster", make_settings(broker, redis_cluster), connect(redis_cluster.url))
    assert isinstance(b.redis, RedisCluster)
    try:
        author, fans = uid("star"), [uid(f"fan{i}") for i in range(200)]
        await _graph(b, author, fans, [])
        await b.redis.initialize()  # the slot table as it is now
        before = {f: b.redis.get_node_from_key(b.keys.feed(f, 0)).name for f in fans}
        source = before[fans[0]]
        target = next(n.name for n in b.redis.get_primaries() if n.name != source)
        ids = (_node_id(redis_cluster, source), _node_id(redis_cluster, target))
        moved = redis_cluster.cli(
            "--cluster", "reshard", redis_cluster.address, "--cluster-from", ids[0],
            "--cluster-to", ids[1], "--cluster-slots", "2000", "--cluster-yes", timeout=120,
        )  # fmt: skip
        assert "Moving slot" in moved
        fresh = connect(redis_cluster.url)
        await fresh.initialize()
        after = {f: fresh.get_node_from_key(b.keys.feed(f, 0)).name for f in fans}
        # a post whose slot moved: the stale table sends its origin step to the old owner
        pid = next(p for p in (uid(f"p{n}") for n in range(10_000))
                   if b.redis.get_node_from_key(b.keys.post(p)).name == source
                   and fresh.get_node_from_key(b.keys.post(p)).name == target)  # fmt: skip
        await close(fresh)
        assert any(before[f] != after[f] for f in fans)  # the client's table is stale
        post = Events().post(pid, author)
        store = FeedStore(b.redis, b.settings)
        applied = await store.apply([post])
        assert applied.failures == [] and applied.deliveries == 200
        # the whole group sent to the old owner was refused, and only that one
        assert store.regrouped == sum(before[f] == source for f in fans)
        assert await b.redis.hget(b.keys.post(pid), "a") == author.encode()
        for fan in fans:
            assert await b.redis.zscore(b.keys.feed(fan, bucket_of(pid, 8)), pid)
    finally:
        await close(b.redis)


def _node_id(cluster: RedisClusterService, name: str) -> str:
    """The cluster node id of ``host:port``."""
    for line in cluster.cli("CLUSTER", "NODES").splitlines():
        node_id, address = line.split()[:2]
        if address.split("@")[0] == name:
            return node_id
    raise AssertionError(f"no node {name}")


async def test_scripts_are_loaded_again_after_a_node_lost_them(backend: Layout, uid) -> None:
    """A master that restarted answers NOSCRIPT: the calls are loaded and run again."""
    ev = Events()
    store = AccountStore(backend.redis, backend.settings)
    from feedamp.models.events import Account

    label = Account(**ev._base(None), user_id=uid("a"), action="label", label="x")
    assert (await store.apply([label])).failures == []
    await backend.redis.script_flush()  # every master of a cluster
    assert await backend.redis.script_exists(store.scripts.account.sha) == [False]
    unlabel = Account(**ev._base(None), user_id=uid("a"), action="unlabel", label="x")
    assert (await store.apply([unlabel])).failures == []
    assert (await backend.redis.hget(backend.keys.account(uid("a")), "label:x")).startswith(b"-")


async def test_product_views_are_slot_local(backend: Layout, uid) -> None:
    """A product view touches only the viewer's keys: it runs on both layouts and the
    "Looked at" read shows it, latest view first."""
    from feedamp.feeds.shop.products import ProductStore

    ev, user = Events(), uid("viewer")
    store = ProductStore(backend.redis, backend.settings)
    views = [ev.view(user, "tripod"), ev.view(user, "mic"), ev.view(user, "tripod")]
    assert (await store.apply(views)).failures == []
    reader = FeedReader(backend.redis, key_prefix=backend.settings.key_prefix)
    page = await reader.viewed(user)
    assert [item.product_id for item in page.items] == ["tripod", "mic"]


async def test_a_cluster_behind_a_password_is_detected_and_read(uid) -> None:
    """AUTH in the URL: the probe and the cluster client both use it."""
    from feedamp.embedded.cluster import start_redis_cluster

    cluster = start_redis_cluster(password="s3cret")
    try:
        url = cluster.url.replace(cluster.address, cluster.nodes[2].address)
        redis = connect(url)
        assert is_cluster(redis)
        await redis.set(uid("k"), "v")
        assert await redis.get(uid("k")) == b"v"
        await close(redis)
        with pytest.raises(RedisUnreachable, match="refused the credentials") as refused:
            connect(url.replace("s3cret", "wrong"))
        assert "wrong" not in str(refused.value)
    finally:
        cluster.stop()


async def test_suspension_clean_up_is_slot_local(backend: Layout, uid) -> None:
    """The clean-up a suspension runs (``AccountStore.clean``) on both layouts: the
    account's posts leave every feed they reached (also through others' reposts), its
    reposts' attributions leave its followers' feeds, and the entries another reason
    keeps stay, re-placed."""
    from feedamp.config import Caps

    settings = backend.settings.with_(caps=Caps(enabled=False))
    ev = Events()
    bad, other, fan, fan2 = uid("bad"), uid("other"), uid("fan"), uid("fan2")
    p_bad, p_other = uid("pbad"), uid("pother")
    events = [ev.follow(fan, bad), ev.follow(fan, other), ev.follow(fan2, other),
              ev.post(p_bad, bad), ev.post(p_other, other),
              ev.repost(p_bad, bad, other), ev.repost(p_other, other, bad)]  # fmt: skip
    assert (await FeedStore(backend.redis, settings).apply(events)).failures == []
    reader = FeedReader(backend.redis, key_prefix=settings.key_prefix)
    assert {i.post_id for i in (await reader.following(fan2)).items} == {p_bad, p_other}
    await AccountStore(backend.redis, settings).clean(bad)
    # raw keys: the reader would hide a suspended account's content anyway
    k, buckets = Keys(settings.key_prefix), range(settings.feed_buckets)
    for user, kept in ((fan, {p_other}), (fan2, {p_other})):
        entries = {m.decode() for b in buckets for m in await backend.redis.zrange(
            k.feed(user, b), 0, -1)}  # fmt: skip
        assert entries == kept, user
    via = await backend.redis.hget(k.via(fan, bucket_of(p_other, 8)), p_other)
    assert via is None  # bad's repost of it withdrawn; other's own post remains
    own = await backend.redis.zscore(k.feed(fan, bucket_of(p_other, 8)), p_other)
    assert own == ev.ts - 2000  # re-placed at the post's own time
