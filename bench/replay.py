"""Benchmark: ``feedamp replay`` speed as a ratio to raw aiokafka consumption, and its
deliveries/s on a log where deliveries dominate.

Starts the embedded Tansu broker and a Redis server (tuned with ``REDIS_TUNING``) on free
ports, then measures in the same run, on three logs:

- the **mixed log** (:func:`make_log`): follows, then posts, then reposts (30/40/30 %),
  about 15 users per event, followees drawn from a skewed popularity (Zipf 0.8), so a
  post or repost reaches about 4 followers on average: replay is bound by per-event steps;
- the **light log**: ``bench/shop.py``'s gifts and orders, as many events as the mixed
  log, on the gifts and purchases topics;
- the **fan-out log** (:func:`make_fanout_log`): follows giving each of a few sources
  1,000 followers (drawn from a pool of 4,000 users, so follower sets overlap), then
  posts and reposts by those sources (half each; a repost is of another source's recent
  post), event times 15 s apart so no cap triggers: every post and repost reaches 1,000
  followers and deliveries dominate, as in the live fan-out benchmark
  (``bench/run.py``: reposts to 1,000 followers).

(a) raw consumption: an aiokafka consumer reads every input partition from the beginning
    to the end with ``getmany`` and does nothing with the records (best of two reads);
(b) replay of the mixed log into an empty key namespace (a rebuild):
    :func:`feedamp.ops.replay.replay` in-process, through the worker's pipeline, from the
    beginning;
(c) replay again over what (b) wrote (every write idempotent, nothing changes; not in
    ``--quick``);
(d) the light log, its raw consumption and its replay;
(e) the fan-out log, on topics of its own: its raw consumption and its replay into a
    namespace of its own, deliveries/s (feed entries pushed per second of the whole
    replay, follows included) and CPU; then, in another namespace, as the live benchmark
    times its fan-out (followers in place before the clock starts): the graph topic
    replayed, then the posts and reposts topics, timed (deliveries/s of that replay,
    ``fanout_log_posts_deliveries_per_s``);
(f) the fan-out log through a live ``feedamp worker`` (topics, consumer group and key
    namespace of its own), timed as (e)'s second replay: the follows published and
    applied first, then the posts and reposts published, timed until the worker's
    ``/metrics`` count every delivery (``fanout_log_live_deliveries_per_s``, with the
    worker's and Redis' CPU); its feeds are checked to hold as many entries as the
    replay's.

Both reads use the same consumer options (fetch wait, fetch sizes, batch of 2,000).
``replay_ratio`` is replay events/s over raw events/s on the light log (target >= 0.3);
``heavy_ratio`` the same on the mixed log (the key's name is older than the fan-out log),
whose replay also reports its deliveries/s (``replay_deliveries_per_s``);
``fanout_log_replay_vs_worker`` is (e)'s second replay over (f), the same log replayed and
handled live (target >= 1); ``fanout_log_deliveries_per_s`` is the fan-out log's, which
``bench/all.py`` also divides by ``bench/run.py``'s live fan-out (another shape: one set
of followers, empty feeds) as ``fanout_log_replay_vs_live``, and the mixed log's as
``replay_vs_live_fanout``.

Run ``python bench/replay.py`` (``--events N``, default 150,000, for the mixed and light
logs; a fan-out log of 20 sources and 3,000 posts and reposts, ``--sources`` and
``--fanouts`` to change it; ``--quick`` for 30,000 events, (c) left out, and 10 sources
with 1,000 posts and reposts; ``--fanout-only`` for the fan-out log alone). The last line
printed is machine-readable:

    replay_ratio=... light_eps=... light_raw_eps=... heavy_ratio=... replay_eps=...
    raw_eps=... rereplay_eps=... replay_deliveries_per_s=... events=... deliveries=...
    feed_entries=... replay_cpu=... redis_cpu=... fanout_log_deliveries_per_s=...
    fanout_log_eps=... fanout_log_ratio=... fanout_log_seconds=... fanout_log_deliveries=...
    fanout_log_cpu=... fanout_log_redis_cpu=... fanout_log_posts_deliveries_per_s=...
    fanout_log_follows_seconds=... fanout_log_live_deliveries_per_s=...
    fanout_log_live_seconds=... fanout_log_live_cpu=... fanout_log_live_redis_cpu=...
    fanout_log_replay_vs_worker=...   (on one line; CPU as shares of one core)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from feedamp.cli.produce import messages_from_lines, publish
from feedamp.config import Settings
from feedamp.embedded.services import Service, free_port, start_broker, start_redis
from feedamp.embedded.worker import start_worker, stop_process
from feedamp.feeds import FeedStore, Keys
from feedamp.feeds.connection import close, connect
from feedamp.kafka.offsets import end_offsets, partitions
from feedamp.kafka.topics import ensure_topics
from feedamp.ops.replay import BATCH, PARTITION_FETCH_BYTES, ReplayStats, replay
from redis.asyncio import Redis
from run import cpu_seconds, scrape_metrics

#: Ids look like snowflakes: 19 decimal digits.
ID_BASE = 1_790_000_000_000_000_000
#: Share of follows, posts and reposts in the log.
MIX = (0.3, 0.4, 0.3)
#: Users per event of the log, and the skew of followee popularity (Zipf exponent).
USERS_PER_EVENT = 1 / 15
SKEW = 0.8
#: The fan-out log: followers of each source, the follower pool (times that), and the
#: event time between two events (a rate window over the default cap's 5, so no source
#: reposts more often than the cap allows).
FANOUT_FOLLOWERS = 1000
FANOUT_POOL = 4
FANOUT_SPACING_MS = 15_000
#: The namespace of the fan-out log's replay in two passes (follows, then posts and
#: reposts), which the live worker's feeds are checked against.
SPLIT_PREFIX = "bg:"
#: The live pass: its polling interval (seconds), and how long it may take in all.
LIVE_POLL = 0.02
LIVE_TIMEOUT = 300.0


@dataclass(frozen=True)
class Log:
    """The generated events (JSON lines) and the expected fan-out."""

    lines: list[bytes]
    follows: int
    posts: int
    reposts: int
    #: Sum over posts and reposts of the followers they reach (an upper bound of feed
    #: writes: the reposted post's author and duplicates are not subtracted).
    deliveries: int


def make_log(events: int, seed: int = 7) -> Log:
    """Follows, then posts, then reposts, ``events`` in all, 1 ms apart."""
    rng = random.Random(seed)
    users = max(100, int(events * USERS_PER_EVENT))
    n_follows, n_posts = int(events * MIX[0]), int(events * MIX[1])
    n_reposts = events - n_follows - n_posts
    weights = [1 / (rank + 1) ** SKEW for rank in range(users)]
    ts = itertools.count(1_790_000_000_000)
    ids = itertools.count(ID_BASE)
    lines: list[bytes] = []
    followers: dict[int, int] = {}
    pairs: set[tuple[int, int]] = set()
    followees = rng.choices(range(users), weights, k=n_follows * 2)
    for followee in followees:
        follower = rng.randrange(users)
        if follower == followee or (follower, followee) in pairs:
            continue
        pairs.add((follower, followee))
        followers[followee] = followers.get(followee, 0) + 1
        lines.append(
            orjson.dumps(
                {
                    "type": "follow",
                    "event_id": str(next(ids)),
                    "ts": next(ts),
                    "follower_id": str(ID_BASE + follower),
                    "followee_id": str(ID_BASE + followee),
                }
            )
        )
        if len(pairs) == n_follows:
            break
    deliveries = 0
    posts: list[tuple[str, int]] = []
    for _ in range(n_posts):
        author = rng.randrange(users)
        post_id = str(next(ids))
        posts.append((post_id, author))
        deliveries += followers.get(author, 0)
        lines.append(
            orjson.dumps(
                {
                    "type": "post",
                    "event_id": str(next(ids)),
                    "ts": next(ts),
                    "post_id": post_id,
                    "author_id": str(ID_BASE + author),
                    "text": "clip",
                }
            )
        )
    for _ in range(n_reposts):
        reposter = rng.randrange(users)
        post_id, author = posts[rng.randrange(len(posts))]
        deliveries += followers.get(reposter, 0)
        event = {
            "type": "repost",
            "event_id": str(next(ids)),
            "ts": next(ts),
            "repost_id": str(next(ids)),
            "post_id": post_id,
            "post_author_id": str(ID_BASE + author),
            "reposter_id": str(ID_BASE + reposter),
        }
        if rng.random() < 0.3:
            event["comment"] = "look at this"
        lines.append(orjson.dumps(event))
    return Log(lines, len(pairs), n_posts, n_reposts, deliveries)


@dataclass(frozen=True)
class FanoutLog:
    """The fan-out log (JSON lines): follows making ``sources`` accounts of
    ``followers_each`` followers, then their posts and reposts."""

    lines: list[bytes]
    sources: int
    followers_each: int
    follows: int
    posts: int
    reposts: int
    #: The sources' user ids.
    source_ids: list[str]

    @property
    def deliveries(self) -> int:
        """Feed deliveries of the log: every post and repost reaches every follower of
        its source (sources do not follow one another, none is hidden, none inactive),
        once every follow is applied."""
        return (self.posts + self.reposts) * self.followers_each


def make_fanout_log(
    sources: int, fanouts: int, followers_each: int = FANOUT_FOLLOWERS, seed: int = 11
) -> FanoutLog:
    """Follows (shuffled) giving each of ``sources`` accounts ``followers_each`` distinct
    followers drawn from a pool of ``FANOUT_POOL`` times as many users (so a user follows
    several sources and the follower sets overlap), then ``fanouts`` posts and reposts by
    the sources (half each, in turn at random; a repost is of an earlier post by another
    source), each event ``FANOUT_SPACING_MS`` after the one before: no source reposts
    more than ``rate_max`` times in a rate window, so no cap triggers and every repost is
    delivered, as in the live fan-out benchmark."""
    rng = random.Random(seed)
    pool = followers_each * FANOUT_POOL
    source_ids = [ID_BASE + 10_000_000 + s for s in range(sources)]
    pairs = [(ID_BASE + f, source) for source in source_ids
             for f in rng.sample(range(pool), followers_each)]  # fmt: skip
    rng.shuffle(pairs)
    ts = itertools.count(1_790_000_000_000, FANOUT_SPACING_MS)
    ids = itertools.count(ID_BASE + 100_000_000)
    lines = [
        orjson.dumps({"type": "follow", "event_id": str(next(ids)), "ts": next(ts),
                      "follower_id": str(follower), "followee_id": str(followee)})
        for follower, followee in pairs
    ]  # fmt: skip
    posts: list[tuple[str, int]] = []
    n_posts = n_reposts = 0
    for _ in range(fanouts):
        source = rng.choice(source_ids)
        others = [p for p in posts[-50:] if p[1] != source]
        if others and rng.random() < 0.5:
            post_id, author = rng.choice(others)
            event: dict[str, object] = {
                "type": "repost", "event_id": str(next(ids)), "ts": next(ts),
                "repost_id": str(next(ids)), "post_id": post_id,
                "post_author_id": str(author), "reposter_id": str(source),
            }  # fmt: skip
            if rng.random() < 0.3:
                event["comment"] = "look at this"
            n_reposts += 1
        else:
            post_id = str(next(ids))
            posts.append((post_id, source))
            event = {"type": "post", "event_id": str(next(ids)), "ts": next(ts),
                     "post_id": post_id, "author_id": str(source), "text": "clip"}  # fmt: skip
            n_posts += 1
        lines.append(orjson.dumps(event))
    return FanoutLog(
        lines, sources, followers_each, len(pairs), n_posts, n_reposts, [str(s) for s in source_ids]
    )


async def raw_consumption(
    settings: Settings, topics: Sequence[str] | None = None
) -> tuple[int, float]:
    """Read every record of ``topics`` (default: every input topic) once with getmany,
    doing nothing; (records, seconds)."""
    started = time.monotonic()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
    )
    await consumer.start()
    try:
        tps = await partitions(consumer, topics or settings.topics.inputs)
        consumer.assign(tps)
        ends = await end_offsets(consumer, tps)
        await consumer.seek_to_beginning(*tps)
        active, count = {tp for tp in tps if ends[tp]}, 0
        while active:
            fetched = await consumer.getmany(*active, timeout_ms=500, max_records=BATCH)
            for tp, records in fetched.items():
                count += len(records)
                if records[-1].offset + 1 >= ends[tp]:
                    active.discard(tp)
                    consumer.pause(tp)
    finally:
        await consumer.stop()
    return count, time.monotonic() - started


async def timed_replay(redis: Redis, settings: Settings) -> tuple[ReplayStats, float, float]:
    """A replay of the whole log into ``settings``' namespace: its stats, and the Redis
    and own CPU seconds it took."""
    redis_cpu, own_cpu = await redis_cpu_seconds(redis), time.process_time()
    stats = await replay(settings)
    redis_cpu = await redis_cpu_seconds(redis) - redis_cpu
    return stats, redis_cpu, time.process_time() - own_cpu


async def redis_cpu_seconds(redis: Redis) -> float:
    """CPU seconds redis-server has used (user + system, all threads)."""
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def feed_entries(redis: Redis, prefix: str) -> int:
    """Entries in every Following feed of the namespace."""
    head = Keys(prefix).feed("u", 0).split("{", 1)[0]
    total, keys = 0, []
    async for key in redis.scan_iter(match=head + "*", count=1000):
        keys.append(key)
        if len(keys) == 1000:  # a round trip of ZCARDs a thousand keys
            total += await _cards(redis, keys)
            keys = []
    return total + await _cards(redis, keys)


async def _cards(redis: Redis, keys: Sequence[bytes]) -> int:
    """The summed sizes of the sorted sets ``keys``, in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zcard(key)
        return sum(await pipe.execute())


async def light_replay(settings: Settings, events: int, scratch: Path) -> dict[str, float]:
    """Publish a log of about ``events`` gifts and order events, read it raw, replay it;
    the figures (see the module, (d))."""
    # imported here: bench/shop.py imports this module
    from run import fill_feeds
    from shop import SMALL_POOL_PER_GIFT, Ids, LogMaker, campaigns_doc, make_creators

    now = int(time.time() * 1000)
    gifts = events // 2
    campaigns = scratch / "campaigns.json"
    pool = int(gifts * SMALL_POOL_PER_GIFT)
    campaigns.write_bytes(orjson.dumps(campaigns_doc(now, gifts + 10, pool)))
    settings = settings.with_(campaigns=str(campaigns), key_prefix="bl:")
    ids = Ids()
    creators = make_creators(ids, random.Random(5), now - 86_400_000)
    redis = connect(settings.redis_url)
    try:
        await fill_feeds(FeedStore(redis, settings), creators.events)
    finally:
        await close(redis)
    maker = LogMaker(settings, ids, creators)
    messages = maker.gifts(gifts).messages
    messages += maker.orders(max(1, (events - len(messages)) * 10 // 35)).messages
    topics = [settings.topics.gifts, settings.topics.purchases]
    await publish(iter(messages), settings)
    reads = [await raw_consumption(settings, topics) for _ in range(2)]
    raw_count, raw_s = min(reads, key=lambda r: r[1])
    raw_eps = raw_count / raw_s
    stats = await replay(settings, topics=topics)
    assert stats.events == raw_count == len(messages) and stats.dead_letters == 0, stats
    light_eps = stats.events / stats.seconds
    ratio = light_eps / raw_eps
    print(f"light log: {len(messages):,} gifts and order events; raw consumption "
          f"{raw_eps:,.0f}/s, replay {stats.seconds:.2f}s ({light_eps:,.0f}/s)")  # fmt: skip
    print(f"ratio replay / raw consumption, light events: {ratio:.3f} (target >= 0.3: "
          f"{'met' if ratio >= 0.3 else 'missed'})")  # fmt: skip
    return {"replay_ratio": round(ratio, 3), "light_eps": round(light_eps),
            "light_raw_eps": round(raw_eps)}  # fmt: skip


async def fanout_replay(settings: Settings, sources: int, fanouts: int) -> dict[str, float]:
    """Publish the fan-out log (:func:`make_fanout_log`) on topics of its own, read it raw,
    replay it into a namespace of its own, then through a live worker; the figures (see
    the module, (e) and (f)). The worker starts first: it joins its group while the
    replays run (an idle worker costs about 2% of a core)."""
    live = live_settings(settings)
    settings = settings.with_(topics=settings.topics.prefixed("fo-"), key_prefix="bf:")
    await ensure_topics(settings)
    await ensure_topics(live)
    with tempfile.TemporaryDirectory(prefix="feedamp-bench-live-") as scratch:
        worker = start_worker(live, str(Path(scratch) / "worker.log"))
        try:
            log, figures = await _fanout_replays(settings, sources, fanouts)
            found = await fanout_live(live, worker, log, Path(scratch), SPLIT_PREFIX)
        finally:
            stop_process(worker)
    vs_worker = (
        figures["fanout_log_posts_deliveries_per_s"] / found["fanout_log_live_deliveries_per_s"]
    )
    verdict = "met" if vs_worker >= 1 else "missed"
    print(f"ratio replay / the live worker on the same log (follows first, then posts and "
          f"reposts): {vs_worker:.3f} (target >= 1: {verdict})")  # fmt: skip
    return {**found, "fanout_log_replay_vs_worker": round(vs_worker, 3), **figures}


async def _fanout_replays(
    settings: Settings, sources: int, fanouts: int
) -> tuple[FanoutLog, dict[str, float]]:
    """The replays of :func:`fanout_replay` (the module's (e)): the log, and their
    figures."""
    log = make_fanout_log(sources, fanouts)
    print(f"fan-out log: {len(log.lines):,} events ({log.follows:,} follows making "
          f"{log.sources} sources of {log.followers_each:,} followers, {log.posts:,} posts, "
          f"{log.reposts:,} reposts), {log.deliveries:,} feed deliveries", flush=True)  # fmt: skip
    sent = await publish(messages_from_lines(log.lines, settings), settings)
    reads = [await raw_consumption(settings) for _ in range(2)]
    raw_count, raw_s = min(reads, key=lambda r: r[1])
    assert raw_count == sent, (raw_count, sent)
    redis = Redis.from_url(settings.redis_url)
    try:
        stats, redis_cpu, own_cpu = await timed_replay(redis, settings)
    finally:
        await redis.aclose()
    assert stats.events == sent and stats.dead_letters == 0, stats
    # Records are merged by their (produce) time: a post produced in the millisecond of
    # the last follows may come before some of them, as it would to a worker.
    assert 0.99 * log.deliveries <= stats.deliveries <= log.deliveries, stats.deliveries
    per_s = stats.deliveries / stats.seconds
    eps = stats.events / stats.seconds
    print(f"replay of the fan-out log into an empty namespace: {stats.seconds:.2f}s "
          f"({eps:,.0f} events/s, raw consumption {raw_count / raw_s:,.0f}/s); "
          f"{per_s:,.0f} deliveries/s")  # fmt: skip
    print(f"  busy during the replay: replay process {own_cpu / stats.seconds:.0%}, "
          f"redis-server {redis_cpu / stats.seconds:.0%} (of one core each)")  # fmt: skip
    # As the live benchmark times it: the followers in place first (the graph topic
    # replayed, not timed), then the posts and reposts replayed, timed.
    apart = settings.with_(key_prefix=SPLIT_PREFIX)
    follows = await replay(apart, topics=["graph"])
    fanouts = await replay(apart, topics=["posts", "reposts"])
    assert fanouts.deliveries == log.deliveries, (fanouts.deliveries, log.deliveries)
    only_per_s = fanouts.deliveries / fanouts.seconds
    print(f"  the same in two replays: the follows {follows.seconds:.2f}s, then the posts and "
          f"reposts {fanouts.seconds:.2f}s, {only_per_s:,.0f} deliveries/s")  # fmt: skip
    return log, {
        "fanout_log_deliveries_per_s": round(per_s),
        "fanout_log_eps": round(eps),
        "fanout_log_ratio": round(eps / (raw_count / raw_s), 3),
        "fanout_log_seconds": round(stats.seconds, 2),
        "fanout_log_deliveries": stats.deliveries,
        "fanout_log_cpu": round(own_cpu / stats.seconds, 2),
        "fanout_log_redis_cpu": round(redis_cpu / stats.seconds, 2),
        "fanout_log_posts_deliveries_per_s": round(only_per_s),
        "fanout_log_follows_seconds": round(follows.seconds, 2),
    }


def live_settings(settings: Settings) -> Settings:
    """``settings`` for the fan-out log's live worker: topics, consumer group, key
    namespace and web port of its own."""
    return settings.with_(topics=settings.topics.prefixed("fl-"), key_prefix="bw:",
                          app_id="bench-replay-live", web_port=free_port())  # fmt: skip


async def fanout_live(
    live: Settings, worker: subprocess.Popen, log: FanoutLog, scratch: Path, replayed: str
) -> dict[str, float]:
    """The fan-out log through ``worker`` (started on ``live``, logging to
    ``scratch``/worker.log), timed as the replay's second pass: the follows published and
    applied first (not timed), then the posts and reposts published, timed from the first
    send until the worker's ``/metrics`` count every delivery; the figures (see the
    module, (f)). Its feeds must hold as many entries as those of the replay into the
    namespace ``replayed``."""
    keys = Keys(live.key_prefix)
    follows, rest = log.lines[: log.follows], log.lines[log.follows :]
    redis = Redis.from_url(live.redis_url)
    try:
        await publish(messages_from_lines(follows, live), live)
        deadline = time.monotonic() + LIVE_TIMEOUT
        while True:  # the follows applied: every source has all its followers
            async with redis.pipeline(transaction=False) as pipe:
                for source in log.source_ids:
                    pipe.scard(keys.followers(source))
                if all(n == log.followers_each for n in await pipe.execute()):
                    break
            _check_live(worker, scratch, deadline, "the follows to be applied")
            await asyncio.sleep(LIVE_POLL)
        redis_cpu, worker_cpu = await redis_cpu_seconds(redis), cpu_seconds(worker.pid)
        start = time.perf_counter()
        await publish(messages_from_lines(rest, live), live)
        while (delivered := await asyncio.to_thread(_deliveries, live.web_port)) < log.deliveries:
            _check_live(worker, scratch, deadline, f"{log.deliveries - delivered:.0f} deliveries")
            await asyncio.sleep(LIVE_POLL)
        seconds = time.perf_counter() - start
        redis_cpu = await redis_cpu_seconds(redis) - redis_cpu
        worker_cpu = cpu_seconds(worker.pid) - worker_cpu
        entries, want = await asyncio.gather(feed_entries(redis, live.key_prefix),
                                             feed_entries(redis, replayed))  # fmt: skip
        assert delivered == log.deliveries and entries == want, (delivered, entries, want)
    finally:
        await redis.aclose()
    per_s = log.deliveries / seconds
    print(f"the live worker on the same log (follows applied first): the posts and reposts "
          f"{seconds:.2f}s, {per_s:,.0f} deliveries/s; busy: worker {worker_cpu / seconds:.0%}, "
          f"redis-server {redis_cpu / seconds:.0%}")  # fmt: skip
    return {
        "fanout_log_live_deliveries_per_s": round(per_s),
        "fanout_log_live_seconds": round(seconds, 2),
        "fanout_log_live_cpu": round(worker_cpu / seconds, 2),
        "fanout_log_live_redis_cpu": round(redis_cpu / seconds, 2),
    }


def _deliveries(port: int) -> float:
    """Deliveries counted so far by the worker serving ``/metrics`` on ``port``."""
    return scrape_metrics(port).get("feedamp_fanout_deliveries_total", 0.0)


def _check_live(worker: subprocess.Popen, scratch: Path, deadline: float, what: str) -> None:
    """Raise with the worker's log if it has exited or ``deadline`` has passed."""
    if worker.poll() is None and time.monotonic() < deadline:
        return
    tail = (scratch / "worker.log").read_text(errors="replace")[-3000:]
    raise RuntimeError(f"live worker: waiting for {what}, exit {worker.poll()}\n{tail}")


async def mixed_replay(settings: Settings, events: int, rereplay: bool = True) -> dict[str, float]:
    """Publish the mixed log (:func:`make_log`), read it raw, replay it twice, then the
    light log; the figures (see the module, (a) to (d))."""
    await ensure_topics(settings)
    log = make_log(events)
    print(
        f"log: {len(log.lines):,} events ({log.follows:,} follows, {log.posts:,} posts, "
        f"{log.reposts:,} reposts), about {log.deliveries:,} feed deliveries",
        flush=True,
    )
    t = time.monotonic()
    sent = await publish(messages_from_lines(log.lines, settings), settings)
    print(f"published {sent:,} events in {time.monotonic() - t:.1f}s", flush=True)

    raws = [await raw_consumption(settings) for _ in range(2)]
    raw_count, raw_s = min(raws, key=lambda r: r[1])
    assert raw_count == sent, (raw_count, sent)
    raw_eps = raw_count / raw_s
    print(
        f"raw aiokafka consumption: {raw_count:,} records in {raw_s:.2f}s "
        f"({raw_eps:,.0f}/s; runs {', '.join(f'{s:.2f}s' for _, s in raws)})"
    )

    redis = Redis.from_url(settings.redis_url)
    try:
        stats, redis_cpu, own_cpu = await timed_replay(redis, settings)
        entries = await feed_entries(redis, settings.key_prefix)
        memory = (await redis.info("memory"))["used_memory_human"]
    finally:
        await redis.aclose()
    assert stats.events == sent and stats.dead_letters == 0, stats
    replay_eps = stats.events / stats.seconds
    print(
        f"replay into an empty namespace: {stats.events:,} events in {stats.seconds:.2f}s "
        f"({replay_eps:,.0f}/s); {entries:,} feed entries, Redis {memory}"
    )
    print(
        f"  busy during the replay: replay process {own_cpu / stats.seconds:.0%}, "
        f"redis-server {redis_cpu / stats.seconds:.0%} (of one core each)"
    )
    again: dict[str, float] = {}
    if rereplay:
        stats_again = await replay(settings)
        again["rereplay_eps"] = round(stats_again.events / stats_again.seconds)
        print(f"replay again over the same state: {stats_again.seconds:.2f}s "
              f"({again['rereplay_eps']:,.0f}/s)")  # fmt: skip
    ratio = replay_eps / raw_eps
    per_s = stats.deliveries / stats.seconds
    print(f"ratio replay / raw consumption, mixed log: {ratio:.3f}; "
          f"{stats.deliveries:,} deliveries, {per_s:,.0f}/s during the replay")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="feedamp-bench-replay-") as scratch:
        light = await light_replay(settings, events, Path(scratch))
    return {
        **light,
        "heavy_ratio": round(ratio, 3),
        "replay_eps": round(replay_eps),
        "raw_eps": round(raw_eps),
        **again,
        "replay_deliveries_per_s": round(per_s),
        "events": sent,
        "deliveries": log.deliveries,
        "feed_entries": entries,
        "replay_cpu": round(own_cpu / stats.seconds, 2),
        "redis_cpu": round(redis_cpu / stats.seconds, 2),
    }


async def run(
    events: int, sources: int, fanouts: int, *, mixed: bool = True, rereplay: bool = True
) -> dict[str, float]:
    """Start the broker and Redis, measure (the mixed and light logs unless not ``mixed``,
    then the fan-out log), print; return the headline figures."""
    services: list[Service] = []
    try:
        services.append(broker := start_broker())
        services.append(redis_server := start_redis())
        settings = Settings(
            kafka_bootstrap_servers=broker.address,
            redis_url=f"redis://{redis_server.address}/0",
            app_id="bench-replay",
            partitions=4,
            key_prefix="br:",
        )
        figures = await mixed_replay(settings, events, rereplay) if mixed else {}
        return {**figures, **await fanout_replay(settings, sources, fanouts)}
    finally:
        for service in reversed(services):
            service.stop()


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--events N`` or ``--quick``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="30,000 events, (c) left out; a fan-out log of 10 sources, 1,000 posts and reposts",
    )
    parser.add_argument("--sources", type=int, help="sources of the fan-out log (default 20)")
    parser.add_argument(
        "--fanouts", type=int, help="posts and reposts of the fan-out log (default 3,000)"
    )
    parser.add_argument("--fanout-only", action="store_true", help="measure the fan-out log only")
    args = parser.parse_args(argv)
    sources = args.sources or (10 if args.quick else 20)
    fanouts = args.fanouts or (1000 if args.quick else 3000)
    events = 30_000 if args.quick else args.events
    figures = asyncio.run(
        run(events, sources, fanouts, mixed=not args.fanout_only, rereplay=not args.quick)
    )
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
