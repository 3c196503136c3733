"""Benchmark of the real pipeline: Tansu broker -> ``feedamp worker`` -> redis-server.

Starts the embedded broker, a Redis server (tuned with ``REDIS_TUNING``) and a worker child
process on free ports, then measures:

(a) fan-out throughput: M reposts, each delivered to the same N followers, for N = 1,000
    and N = 10,000, timed from the first produce until every follower feed holds all M
    (a sample of feeds is polled, then every feed is checked once, in one round trip of
    Lua calls that build the feed keys from the follower ids: the check of all N feeds
    is inside the timed phase, and sending its N x buckets keys from here cost several
    times its Redis work, up to a fifth of the N = 10,000 phase; see ``SHORT_FEEDS_LUA``);
(b) the Redis ceiling: ``redis-benchmark -t zadd -P 64`` against the same server, and the
    ratio fan-out deliveries/s to ZADD ops/s;
(c) Redis memory per feed entry at the cap (19-digit ids), for feeds filled by posts and
    feeds filled by reposts (the latter carry a ``via`` hash entry per feed entry);
(d) latency from producing one repost to its last follower's feed (N = 1,000);
(e) the cost of the repost caps: fan-out deliveries/s (N = 1,000) with every repost going
    through the decision script, over the same figure from a second worker started with
    caps off (its own consumer group, topics and key prefix; only one worker runs at a
    time). The runs alternate on, off, off, on and the best of each side counts.

Event times of reposts are spaced one rate window apart per repost, so every repost is
decided and delivered and no cap ever triggers.

Run ``python bench/run.py`` (or ``--quick``, under a minute); ``redis-benchmark`` must be
on PATH. ``FEEDAMP_*`` variables (say ``FEEDAMP_FEED_BUCKETS``) reach the worker and the
measurements alike. The last line printed is ``key=value`` pairs:

    fanout_ratio, fanout_ratio_10k    fan-out deliveries/s over the ZADD ceiling (N=1k, 10k)
    bytes_per_entry(_repost)          Redis bytes per feed entry at the cap (posts, reposts)
    p50_ms, p99_ms                    repost produced -> last follower's feed (N=1k)
    fanout_per_s(_10k), ceiling_ops_per_s   the raw rates behind the ratios
    caps_ratio                        fan-out deliveries/s, caps on over caps off (N=1k)
    caps_on_per_s, caps_off_per_s     the raw rates behind caps_ratio
    lua_at_cap_per_s                  repost pushes/s through the Lua path into full feeds

The same figures, with details, go to ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from feedamp.config import Settings
from feedamp.embedded.services import REDIS_TUNING, Service, free_port, start_broker, start_redis
from feedamp.embedded.worker import start_worker, stop_process, worker_env
from feedamp.feeds import FeedStore, Keys
from feedamp.feeds.keys import bucket_of
from feedamp.kafka.topics import ensure_topics
from feedamp.models import key_of, topic_of
from feedamp.models.events import Event, Post, Repost
from redis.asyncio import Redis

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
#: Ids look like snowflakes: 19 decimal digits.
ID_BASE = 1_790_000_000_000_000_000
#: Feeds polled while a fan-out runs, before every feed is checked.
POLL_SAMPLE = 32
POLL_INTERVAL = 0.002
LATENCY_POLL_INTERVAL = 0.001
#: Extra feeds checked, besides the last follower's, before a latency sample counts.
LATENCY_PROBES = 3
WORKER_START_TIMEOUT = 90.0
#: A series without labels in Prometheus' text format: its name and value.
METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*) (\S+)$", re.MULTILINE)
PHASE_TIMEOUT = 300.0
#: Starts a worker process for the settings, logging to the path.
Launcher = Callable[[Settings, Path], subprocess.Popen]

# ARGV: wanted size, buckets per feed n, then n pairs (head, tail) whose joins around a
# follower id are that follower's bucket keys in turn, then the followers. Returns the
# positions (0-based) of the followers whose feeds hold fewer entries than wanted. The keys
# are built here rather than sent: the check of every feed of a large fan-out (10,000
# followers, 8 buckets) would otherwise send 80,000 keys, and building and encoding them
# here took 0.2-0.3 s against about 0.06 s of Redis work, all inside the timed phase, a
# share of it ten times that of the N = 1,000 phase. The keys are not declared, which a
# standalone Redis (the one this bench starts) allows.
# ZCOUNT, which no write path of the engine uses, keeps these polls out of the ZCARD
# figures of the engine's own Lua calls in the command stats.
SHORT_FEEDS_LUA = """
local want, n, short = tonumber(ARGV[1]), tonumber(ARGV[2]), {}
local first = 3 + 2 * n
for i = first, #ARGV do
  local follower, size = ARGV[i], 0
  for b = 3, first - 1, 2 do
    size = size + redis.call('ZCOUNT', ARGV[b] .. follower .. ARGV[b + 1], '-inf', '+inf')
  end
  if size < want then short[#short + 1] = i - first end
end
return short
"""
#: Commands of the benchmark's own polling (and script calls in general), left out of the
#: per-delivery command figures.
BENCH_COMMANDS = frozenset({"evalsha", "eval", "zcount", "zscore", "script|load", "info",
                            "config|resetstat", "ping"})  # fmt: skip
#: Stands for the user id in a feed key split by :meth:`Bench._feed_key_parts` (no id or
#: key prefix holds it).
FEED_KEY_USER = "\x00user\x00"
#: Feeds checked by one call of SHORT_FEEDS_LUA.
FEEDS_PER_CHECK = 1000
# KEYS: feed keys. ARGV: post id. Returns 1 when every feed holds the post.
ALL_HOLD_LUA = """
for _, k in ipairs(KEYS) do
  if not redis.call('ZSCORE', k, ARGV[1]) then return 0 end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes of one run."""

    #: (followers N, reposts M) per fan-out measurement.
    fanout: tuple[tuple[int, int], ...]
    reposters: int
    ceiling_requests: int
    #: redis-benchmark runs; the best counts (on a small machine one run can be unlucky).
    ceiling_runs: int
    memory_feeds: int
    latency_samples: int
    #: Fan-out runs (N = 1,000, the first plan's M) per block of the caps comparison:
    #: caps on, then caps off twice over, then caps on again.
    caps_repeats: int
    latency_followers: int = 1000


FULL = Plan(((1000, 400), (10_000, 60)), 4, 1_000_000, 3, 1000, 50, 2)
QUICK = Plan(((1000, 150), (10_000, 20)), 4, 200_000, 2, 100, 20, 1)


@dataclass(slots=True)
class Phase:
    """Where the time of one timed phase went: CPU seconds per process, Redis commands."""

    elapsed: float
    cpu: dict[str, float]
    commands: dict[str, dict[str, float]]

    def busy(self) -> str:
        """CPU use of each process as a share of the elapsed time."""
        return ", ".join(f"{name} {sec / self.elapsed:.0%}" for name, sec in self.cpu.items())


@dataclass(slots=True)
class Fanout:
    """Result of one fan-out measurement."""

    followers: int
    reposts: int
    deliveries: int
    seconds: float
    deliveries_per_s: float
    phase: Phase
    #: Whether the worker decided each repost (repost caps on).
    caps: bool = True


@dataclass(slots=True)
class Memory:
    """Redis memory of feeds filled to the cap by one kind of event."""

    kind: str
    feeds: int
    entries: int
    feed_bytes: int
    via_bytes: int
    bytes_per_entry: float
    used_memory_per_entry: float
    feed_encoding: str
    via_encoding: str
    #: Pushes/s through the Lua path (no Kafka) while the feeds grow to the cap, and once
    #: they are full (each push then also evicts the oldest entry).
    filling_per_s: float
    at_cap_per_s: float


@dataclass(slots=True)
class Report:
    """Everything one run measured."""

    mode: str
    redis_config: dict[str, str]
    fanout: list[Fanout] = field(default_factory=list)
    ceiling_ops_per_s: float = 0.0
    memory: list[Memory] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    #: The caps comparison's fan-out runs (N = 1,000), in the order they ran.
    caps_runs: list[Fanout] = field(default_factory=list)
    dead_letters: int = 0

    def best_per_s(self, caps: bool) -> float:
        """Best deliveries/s of the caps comparison's runs with caps on (or off)."""
        return max(f.deliveries_per_s for f in self.caps_runs if f.caps == caps)

    def summary(self) -> dict[str, float]:
        """The headline figures (the last printed line and the JSON ``summary``)."""
        by_n = {f.followers: f.deliveries_per_s for f in self.fanout}
        by_kind = {m.kind: m.bytes_per_entry for m in self.memory}
        at_cap = {m.kind: m.at_cap_per_s for m in self.memory}
        ceiling = self.ceiling_ops_per_s
        return {
            "fanout_ratio": round(by_n[1000] / ceiling, 3),
            "fanout_ratio_10k": round(by_n[10_000] / ceiling, 3),
            "bytes_per_entry": round(by_kind["post"], 1),
            "bytes_per_entry_repost": round(by_kind["repost"], 1),
            "p50_ms": round(percentile(self.latency_ms, 50), 1),
            "p99_ms": round(percentile(self.latency_ms, 99), 1),
            "fanout_per_s": round(by_n[1000]),
            "fanout_per_s_10k": round(by_n[10_000]),
            "ceiling_ops_per_s": round(ceiling),
            "lua_at_cap_per_s": round(at_cap["repost"]),
            "caps_ratio": round(self.best_per_s(True) / self.best_per_s(False), 3),
            "caps_on_per_s": round(self.best_per_s(True)),
            "caps_off_per_s": round(self.best_per_s(False)),
        }


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


class IdPool:
    """Hands out fresh 19-digit numeric ids, so every measurement starts on empty keys."""

    def __init__(self) -> None:
        self._next = itertools.count(ID_BASE)

    def take(self, n: int) -> list[str]:
        return [str(next(self._next)) for _ in range(n)]

    def one(self) -> str:
        return str(next(self._next))


def scrape_metrics(port: int) -> dict[str, float]:
    """Every unlabelled series of a worker's ``/metrics`` (Prometheus text), by name."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {name: float(value) for name, value in METRIC_LINE.findall(text)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (Linux /proc)."""
    try:
        fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class Stack:
    """The running services and the settings that point at them."""

    settings: Settings
    redis_port: int
    worker: subprocess.Popen
    worker_log: Path
    pids: dict[str, int]
    scratch: Path
    #: Every worker started, for the final clean-up.
    workers: list[subprocess.Popen] = field(default_factory=list)

    def switch_worker(self, settings: Settings, log_name: str,
                      launch: Launcher | None = None) -> None:  # fmt: skip
        """Stop the running worker, then start one configured by ``settings`` (with
        ``launch``, default :func:`launch_worker`)."""
        stop_process(self.worker)
        self.settings, self.worker_log = settings, self.scratch / log_name
        self.worker = (launch or launch_worker)(settings, self.worker_log)
        self.workers.append(self.worker)
        self.pids["worker"] = self.worker.pid

    def check_worker(self) -> None:
        """Raise with the worker's log tail if the worker has exited."""
        if self.worker.poll() is not None:
            raise RuntimeError(f"worker exited with code {self.worker.returncode}\n{self.log()}")

    def log(self, lines: int = 30) -> str:
        text = self.worker_log.read_text(errors="replace") if self.worker_log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def dead_letters(self) -> int:
        """Records the workers dead-lettered (each logs a warning for each)."""
        logs = self.scratch.glob("worker*.log")
        return sum(log.read_text(errors="replace").count("dead letter ") for log in logs)


@contextlib.contextmanager
def running_stack(scratch: Path, **overrides: Any) -> Iterator[Stack]:
    """Broker, Redis and a worker on free ports; all stopped on exit, error or not.
    ``overrides`` are further :class:`Settings` fields (say ``campaigns``)."""
    with contextlib.ExitStack() as stack:
        broker = start_broker()
        stack.callback(broker.stop)
        redis = start_redis()
        stack.callback(redis.stop)
        settings = Settings.from_env().with_(
            kafka_bootstrap_servers=broker.address,
            redis_url=f"redis://{redis.address}/0",
            session_timeout=3.0,
            rebalance_timeout=3.0,
            web_port=free_port(),
            **overrides,
        )
        asyncio.run(ensure_topics(settings))
        log = scratch / "worker.log"
        worker = launch_worker(settings, log)
        running = Stack(settings, redis.port, worker, log, _pids(broker, redis, worker),
                        scratch, [worker])  # fmt: skip
        stack.callback(lambda: [stop_process(w) for w in running.workers])
        yield running


def launch_worker(settings: Settings, log: Path) -> subprocess.Popen:
    """A ``feedamp worker`` child configured by ``settings``, logging to ``log``."""
    with contextlib.chdir(log.parent):  # Faust writes its data dir into the cwd
        return start_worker(settings, str(log))


def apart(settings: Settings, name: str, **overrides: Any) -> Settings:
    """``settings`` for a worker sharing nothing with the others: a consumer group, topics,
    key prefix and web port of its own, named after ``name``; ``overrides`` are further
    :class:`Settings` fields (``web_port`` included)."""
    return settings.with_(**{
        "app_id": f"{settings.app_id}-{name}",
        "topics": settings.topics.prefixed(f"{name}-"),
        "key_prefix": f"{settings.key_prefix}{name}:",
        "web_port": free_port(),
        **overrides,
    })  # fmt: skip


def launch_script(script: str, flag: str) -> Launcher:
    """A launcher that runs ``script`` again as a child process with ``flag``, configured
    by the settings it is given and logging to the path it is given."""

    def launch(settings: Settings, log: Path) -> subprocess.Popen:
        argv = [sys.executable, str(Path(script).resolve()), flag]
        with contextlib.chdir(log.parent), open(log, "ab") as out:
            return subprocess.Popen(argv, env=worker_env(settings), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)  # fmt: skip

    return launch


def uncapped(settings: Settings) -> Settings:
    """``settings`` with the repost caps off, for a worker sharing nothing with the capped
    one: its own consumer group, topics, key prefix and web port."""
    return apart(settings, "uncapped", caps=replace(settings.caps, enabled=False))


def _pids(broker: Service, redis: Service, worker: subprocess.Popen) -> dict[str, int]:
    return {"redis": redis.proc.pid, "worker": worker.pid, "broker": broker.proc.pid}


class Bench:
    """The measurements that drive the worker through Kafka and watch Redis."""

    def __init__(self, stack: Stack, redis: Redis, producer: AIOKafkaProducer) -> None:
        self.stack = stack
        self.settings = stack.settings
        self.keys = Keys(stack.settings.key_prefix)
        self.redis = redis
        self.producer = producer
        self.ids = IdPool()
        self._short_feeds = redis.register_script(SHORT_FEEDS_LUA)
        self._all_hold = redis.register_script(ALL_HOLD_LUA)
        self._ts = past_origin_ms()
        #: Event-time step between reposts: a reposter's reposts are a rate window apart,
        #: so the rate cap never triggers (each repost is of a fresh post, at depth 1, so
        #: neither do the virality brake and the forwarding caps).
        self._ts_step = repost_spacing_ms(self.settings)

    async def switch_worker(self, settings: Settings, log_name: str) -> float:
        """Replace the worker by one configured by ``settings``; return its warm-up time."""
        await ensure_topics(settings)
        self.stack.switch_worker(settings, log_name)
        self.settings, self.keys = settings, Keys(settings.key_prefix)
        return await self.warm_up()

    # --- set-up (never timed) -------------------------------------------------------------

    async def follow(self, sources: Sequence[str], followers: Sequence[str]) -> None:
        """Make every follower follow every source, written straight into Redis."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for source in sources:
                for start in range(0, len(followers), 5000):
                    pipe.sadd(self.keys.followers(source), *followers[start : start + 5000])
            followed = self.keys.pair_value("1|")  # followed since event time 1
            for follower in followers:
                pipe.sadd(self.keys.following(follower), *sources)
                pipe.hset(self.keys.pair(follower), mapping=dict.fromkeys(sources, followed))
            await pipe.execute()

    def feed_keys(self, user: str) -> list[str]:
        """Every bucket key of ``user``'s feed."""
        return [self.keys.feed(user, b) for b in range(self.settings.feed_buckets)]

    @property
    def _feed_key_parts(self) -> list[str]:
        """Per bucket of a feed, the parts of its key before and after the user id (as
        :data:`SHORT_FEEDS_LUA` takes them), split out of :meth:`Keys.feed` itself."""
        parts: list[str] = []
        for key in self.feed_keys(FEED_KEY_USER):
            before, after = key.split(FEED_KEY_USER)
            parts += [before, after]
        return parts

    def feed_size(self, post_ids: Sequence[str]) -> int:
        """Entries a feed holds after receiving ``post_ids`` (each bucket keeps its cap)."""
        counts = Counter(bucket_of(p, self.settings.feed_buckets) for p in post_ids)
        return sum(min(c, self.settings.bucket_cap) for c in counts.values())

    def repost(self, reposter: str, author: str, ts: int | None = None) -> tuple[str, bytes, bytes]:
        """A repost of a fresh post: (topic, key, value) as a producer would send it.
        The key is the post id. Without ``ts``, the next step of the bench's own clock
        (in the past, see :func:`past_origin_ms`)."""
        if ts is None:
            self._ts += self._ts_step
            ts = self._ts
        event = {"type": "repost", "event_id": f"bench-{self.ids.one()}", "ts": ts,
                 "repost_id": self.ids.one(), "post_id": self.ids.one(),
                 "post_author_id": author, "reposter_id": reposter}  # fmt: skip
        topic = topic_of("repost", self.settings.topics)
        return topic, key_of(event).encode(), orjson.dumps(event)

    # --- polling ----------------------------------------------------------------------------

    async def short_feeds(self, followers: Sequence[str], want: int) -> list[str]:
        """The followers whose feeds hold fewer than ``want`` entries, in order: one
        round trip of :data:`SHORT_FEEDS_LUA` calls, each given follower ids (not their
        feed keys: see there) of :data:`FEEDS_PER_CHECK` feeds."""
        head = [want, self.settings.feed_buckets, *self._feed_key_parts]
        groups = [followers[s : s + FEEDS_PER_CHECK] for s in range(0, len(followers),
                                                                   FEEDS_PER_CHECK)]  # fmt: skip
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip
            for group in groups:
                await self._short_feeds(args=[*head, *group], client=pipe)
            replies = await pipe.execute()
        return [group[i] for group, found in zip(groups, replies, strict=True) for i in found]

    async def wait_full(self, followers: Sequence[str], want: int, timeout: float) -> None:
        """Return once every follower feed holds ``want`` entries.

        Polls a small sample until it is complete, then checks every feed once and from
        then on only the feeds still short, so polling adds little load to Redis.
        """
        pending: Sequence[str] = random.sample(list(followers), min(POLL_SAMPLE, len(followers)))
        deadline = time.monotonic() + timeout
        for group in (pending, followers):
            pending = group
            while pending := await self.short_feeds(pending, want):
                self._check_deadline(deadline, f"{len(pending)} feeds to reach {want} entries")
                await asyncio.sleep(POLL_INTERVAL)

    async def wait_holding(self, feed_keys: list[str], post_id: str, timeout: float) -> None:
        """Return once every feed in ``feed_keys`` holds ``post_id``."""
        deadline = time.monotonic() + timeout
        while not int(await self._all_hold(keys=feed_keys, args=[post_id])):
            self._check_deadline(deadline, f"post {post_id} to reach {len(feed_keys)} feeds")
            await asyncio.sleep(LATENCY_POLL_INTERVAL)

    def _check_deadline(self, deadline: float, what: str) -> None:
        self.stack.check_worker()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}\n{self.stack.log()}")

    async def send(self, messages: Sequence[tuple[str, bytes, bytes]]) -> list[asyncio.Future]:
        """Hand ``messages`` to the producer; the futures resolve when the broker has them."""
        return [await self.producer.send(t, value=v, key=k) for t, k, v in messages]

    # --- measurements -----------------------------------------------------------------------

    async def warm_up(self) -> float:
        """Wait until the worker has joined and delivers; return how long that took."""
        reposter, follower = self.ids.one(), self.ids.one()
        await self.follow([reposter], [follower])
        start = time.perf_counter()
        await asyncio.gather(*await self.send([self.repost(reposter, self.ids.one())]))
        await self.wait_full([follower], 1, WORKER_START_TIMEOUT)
        return time.perf_counter() - start

    async def fanout(self, n: int, m: int, reposters: int) -> Fanout:
        """Deliver ``m`` reposts by ``reposters`` users to the same ``n`` followers."""
        followers, sources, author = self.ids.take(n), self.ids.take(reposters), self.ids.one()
        await self.follow(sources, followers)
        messages = [self.repost(sources[i % reposters], author) for i in range(m)]
        size = self.feed_size([key.decode() for _, key, _ in messages])
        watch = await PhaseWatch.start(self.redis, self.stack.pids)
        start = time.perf_counter()
        acks = await self.send(messages)
        await self.wait_full(followers, size, PHASE_TIMEOUT)
        seconds = time.perf_counter() - start
        phase = await watch.stop(seconds)
        await asyncio.gather(*acks)
        await self.check_decisions(messages)
        caps = self.settings.caps.enabled
        return Fanout(n, m, n * m, seconds, n * m / seconds, phase, caps)

    async def check_decisions(self, messages: Sequence[tuple[str, bytes, bytes]]) -> None:
        """Raise unless every repost was decided 'delivered' (caps on) or none was decided
        (caps off): the caps must cost their full price yet never trigger."""
        events = [orjson.loads(value) for _, _, value in messages]
        async with self.redis.pipeline(transaction=False) as pipe:
            for ev in events:
                pipe.hget(self.keys.decided(ev["post_id"]), ev["repost_id"])
            found = [_text(d) for d in await pipe.execute()]
        want = "delivered|1|" if self.settings.caps.enabled else "-"
        if wrong := Counter(d for d in found if d != want):
            raise RuntimeError(f"reposts decided other than {want!r}: {dict(wrong)}")

    async def latency(self, n: int, samples: int) -> list[float]:
        """Milliseconds from producing one repost to its arrival in the last follower's feed.

        Each repost is stamped with the current time, as a producer would, so with caps on
        it waits for the event-time watermark like any live repost; each is by another
        reposter (of the same followers), so the rate cap never triggers."""
        followers, author = self.ids.take(n), self.ids.one()
        result = []
        for _ in range(samples):
            reposter = self.ids.one()
            await self.follow([reposter], followers)
            last = await last_scanned(self.redis, self.keys.followers(reposter),
                                      self.settings.fanout_chunk)  # fmt: skip
            others = random.sample([f for f in followers if f != last], LATENCY_PROBES)
            message = self.repost(reposter, author, ts=int(time.time() * 1000))
            post_id = message[1].decode()
            bucket = bucket_of(post_id, self.settings.feed_buckets)
            probes = [self.keys.feed(f, bucket) for f in (last, *others)]
            start = time.perf_counter()
            acks = await self.send([message])
            await self.wait_holding(probes, post_id, PHASE_TIMEOUT)
            result.append((time.perf_counter() - start) * 1000)
            await asyncio.gather(*acks)
            await asyncio.sleep(random.uniform(0.005, 0.02))  # do not phase-lock with polls
        return result


def past_origin_ms() -> int:
    """Where the benchmark's event clock starts: 30 days ago. Reposts a rate window apart
    then stay in the past, where the event-time watermark (caps on) has already passed
    them, so throughput runs measure the work and not the wait for the clock."""
    return int(time.time() * 1000) - 30 * 86_400_000


def repost_spacing_ms(settings: Settings) -> int:
    """Event time between two reposts that keeps the rate cap from ever triggering."""
    return max(1, settings.caps.rate_window_ms)


async def last_scanned(redis: Redis, key: str, count: int) -> str:
    """The member an SSCAN walk with ``count`` (the worker's fan-out chunk) visits last."""
    cursor, last = 0, ""
    while True:
        cursor, page = await redis.sscan(key, cursor, count=count)
        if page:
            last = _text(page[-1])
        if cursor == 0:
            return last


@dataclass(slots=True)
class PhaseWatch:
    """Counts CPU seconds per process and Redis command stats across one phase."""

    redis: Redis
    pids: dict[str, int]
    cpu0: dict[str, float]

    @classmethod
    async def start(cls, redis: Redis, pids: dict[str, int]) -> PhaseWatch:
        await redis.config_resetstat()
        return cls(redis, pids, {name: cpu_seconds(pid) for name, pid in pids.items()})

    async def stop(self, elapsed: float) -> Phase:
        """The phase's figures; ``elapsed`` is its wall-clock time in seconds."""
        cpu = {name: cpu_seconds(pid) - self.cpu0[name] for name, pid in self.pids.items()}
        stats = await self.redis.info("commandstats")
        commands = {
            name.removeprefix("cmdstat_"): {"calls": s["calls"], "usec": s["usec"]}
            for name, s in stats.items()
        }
        return Phase(elapsed, cpu, commands)


def redis_ceiling(port: int, requests: int, runs: int) -> float:
    """Best ZADD ops/s of ``runs`` runs of ``redis-benchmark -P 64`` against ``port``."""
    return max(_redis_benchmark(port, requests) for _ in range(runs))


def _redis_benchmark(port: int, requests: int) -> float:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise RuntimeError("redis-benchmark not found on PATH (apt-get install redis-tools)")
    argv = [binary, "-h", "127.0.0.1", "-p", str(port), "-q", "-P", "64", "-t", "zadd",
            "-n", str(requests)]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True).stdout
    found = re.findall(r"ZADD: ([\d.]+) requests per second", out)
    if not found:
        raise RuntimeError(f"cannot parse redis-benchmark output: {out[-300:]!r}")
    return float(found[-1])


async def fill_feeds(store: FeedStore, events: Sequence[Event]) -> None:
    """Apply ``events`` through the real Lua path, in worker-sized batches."""
    size = store.settings.batch_size
    for start in range(0, len(events), size):
        failures = (await store.apply(events[start : start + size])).failures
        if failures:
            raise RuntimeError(f"Redis rejected an event: {failures[0].error}")


async def timed_fill(store: FeedStore, events: Sequence[Event], feeds: int) -> float:
    """Apply ``events`` (each pushed to ``feeds`` feeds); return pushes per second."""
    start = time.perf_counter()
    await fill_feeds(store, events)
    return len(events) * feeds / (time.perf_counter() - start)


class EventMaker:
    """Fresh posts by ``source``, or reposts by ``source`` of another author's posts."""

    def __init__(self, kind: str, source: str, ids: IdPool, settings: Settings) -> None:
        self.kind, self.source, self.ids = kind, source, ids
        self.author = ids.one()
        self.ts = past_origin_ms()
        # One source makes every repost: space them so the rate cap never triggers.
        self.step = 1 if kind == "post" else repost_spacing_ms(settings)

    def __call__(self) -> Post | Repost:
        ids = self.ids
        self.ts += self.step
        if self.kind == "post":
            return Post(event_id=ids.one(), ts=self.ts, post_id=ids.one(), author_id=self.source)
        return Repost(event_id=ids.one(), ts=self.ts, repost_id=ids.one(), post_id=ids.one(),
                      post_author_id=self.author, reposter_id=self.source)  # fmt: skip


def filling_events(make: EventMaker, settings: Settings) -> tuple[list[Event], list[Event]]:
    """Events that bring every bucket of a feed to its cap, then ``feed_cap // 10`` more."""
    counts = [0] * settings.feed_buckets
    fill: list[Event] = []
    while min(counts) < settings.bucket_cap:
        event = make()
        counts[bucket_of(event.post_id, settings.feed_buckets)] += 1
        fill.append(event)
    return fill, [make() for _ in range(settings.feed_cap // 10)]


async def feed_memory(bench: Bench, followers: Sequence[str]) -> tuple[int, int, int]:
    """(entries, feed bytes, via bytes) over every bucket of the followers' feeds."""
    keys, buckets = bench.keys, range(bench.settings.feed_buckets)
    async with bench.redis.pipeline(transaction=False) as pipe:
        for f in followers:
            for b in buckets:
                pipe.zcard(keys.feed(f, b))
                pipe.memory_usage(keys.feed(f, b), samples=0)
                pipe.memory_usage(keys.via(f, b), samples=0)
        rows = await pipe.execute()
    entries, feed_bytes, via_bytes = (sum(r or 0 for r in rows[i::3]) for i in range(3))
    return entries, feed_bytes, via_bytes


async def measure_memory(bench: Bench, kind: str, feeds: int) -> Memory:
    """Fill ``feeds`` feeds past the cap with ``kind`` events; measure bytes per entry."""
    settings, redis, keys = bench.settings, bench.redis, bench.keys
    followers, source = bench.ids.take(feeds), bench.ids.one()
    await bench.follow([source], followers)
    used0 = (await redis.info("memory"))["used_memory"]
    store = FeedStore(redis, settings)
    parts = filling_events(EventMaker(kind, source, bench.ids, settings), settings)
    rates = [await timed_fill(store, part, feeds) for part in parts]
    used = (await redis.info("memory"))["used_memory"] - used0
    entries, feed_bytes, via_bytes = await feed_memory(bench, followers)
    if entries != feeds * settings.feed_buckets * settings.bucket_cap:
        raise RuntimeError(f"{feeds} feeds are not all at the cap: {entries} entries")
    feed_enc = await redis.object("encoding", keys.feed(followers[0], 0))
    via_enc = await redis.object("encoding", keys.via(followers[0], 0))
    return Memory(kind, feeds, entries, feed_bytes, via_bytes, (feed_bytes + via_bytes) / entries,
                  used / entries, _text(feed_enc), _text(via_enc), *rates)  # fmt: skip


def _text(value: Any) -> str:
    if value is None:
        return "-"
    return value.decode() if isinstance(value, bytes) else str(value)


async def redis_config(redis: Redis) -> dict[str, str]:
    """The Redis settings that decide feed encodings and persistence."""
    names = ("zset-max-listpack-entries", "zset-max-listpack-value", "hash-max-listpack-entries",
             "hash-max-listpack-value", "save", "appendonly")  # fmt: skip
    config: dict[str, str] = {}
    for name in names:
        config.update({_text(k): _text(v) for k, v in (await redis.config_get(name)).items()})
    return config


async def run_measurements(stack: Stack, plan: Plan, report: Report) -> None:
    """Every measurement, in an order that keeps them from disturbing each other."""
    redis = Redis.from_url(stack.settings.redis_url)
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.settings.kafka_bootstrap_servers, acks="all", linger_ms=0
    )
    await producer.start()
    try:
        bench = Bench(stack, redis, producer)
        report.redis_config = await redis_config(redis)
        say(f"redis: {report.redis_config}")
        say(f"worker ready after {await bench.warm_up():.1f} s")
        for n, m in plan.fanout:
            result = await bench.fanout(n, m, plan.reposters)
            report.fanout.append(result)
            print_fanout(result)
        await compare_caps(bench, plan, report)
        report.ceiling_ops_per_s = await asyncio.to_thread(
            redis_ceiling, stack.redis_port, plan.ceiling_requests, plan.ceiling_runs
        )
        await redis.delete("myzset")  # redis-benchmark's key
        say(f"redis ceiling: ZADD {report.ceiling_ops_per_s:,.0f} ops/s (redis-benchmark -P 64)")
        report.latency_ms = await bench.latency(plan.latency_followers, plan.latency_samples)
        print_latency(report.latency_ms, plan.latency_followers)
        for kind in ("post", "repost"):
            report.memory.append(await measure_memory(bench, kind, plan.memory_feeds))
            print_memory(report.memory[-1])
        report.dead_letters = stack.dead_letters()
    finally:
        await producer.stop()
        await redis.aclose()


async def compare_caps(bench: Bench, plan: Plan, report: Report) -> None:
    """Fan-out runs (N = 1,000) with caps on, off, off, on; the worker is swapped between
    blocks (stopped first, so the two never compete for CPU). Leaves the capped worker
    running."""
    n, m = plan.fanout[0]
    capped = bench.settings
    # None: keep the running worker.
    for settings in (None, uncapped(capped), None, capped):
        if settings is not None:
            on = settings.caps.enabled
            log_name = "worker.log" if on else "worker-uncapped.log"
            ready = await bench.switch_worker(settings, log_name)
            say(f"caps {'on' if on else 'off'}: worker ready after {ready:.1f} s")
        for _ in range(plan.caps_repeats):
            result = await bench.fanout(n, m, plan.reposters)
            report.caps_runs.append(result)
            print_fanout(result)
    on, off = report.best_per_s(True), report.best_per_s(False)
    say(f"caps: best {on:,.0f} deliveries/s on, {off:,.0f} off: ratio {on / off:.3f}")


def say(text: str) -> None:
    print(text, flush=True)


def print_fanout(f: Fanout) -> None:
    """One fan-out result and where its time went."""
    caps = "on" if f.caps else "off"
    say(f"fan-out N={f.followers:,}, caps {caps}: {f.reposts} reposts, {f.deliveries:,} "
        f"deliveries in {f.seconds:.2f} s = {f.deliveries_per_s:,.0f} deliveries/s")  # fmt: skip
    engine = {k: v for k, v in f.phase.commands.items() if k not in BENCH_COMMANDS}
    # Redis CPU per delivery (its busy share of the phase), and the commands the engine's
    # scripts ran per delivery (each a redis.call, whose overhead is about that of a small
    # command): the figures to compare across runs when the ZADD ceiling swings
    redis_us = f.phase.cpu.get("redis", 0.0) / max(f.deliveries, 1) * 1e6
    calls = sum(s["calls"] for s in engine.values()) / max(f.deliveries, 1)
    say(
        f"  cpu busy: {f.phase.busy()}; redis {redis_us:.2f}us/delivery, "
        f"{calls:.2f} engine commands/delivery"
    )
    top = sorted(engine.items(), key=lambda kv: -kv[1]["usec"])[:6]
    per = ", ".join(
        f"{name} {s['calls'] / f.deliveries:.2f}/delivery {s['usec'] / s['calls']:.2f}us"
        for name, s in top
    )
    say(f"  redis commands inside the engine's scripts (by total time): {per}")


def print_latency(latency_ms: Sequence[float], followers: int) -> None:
    say(f"latency produce -> last of {followers:,} followers ({len(latency_ms)} reposts): "
        f"p50 {percentile(latency_ms, 50):.1f} ms, p99 {percentile(latency_ms, 99):.1f} ms, "
        f"min {min(latency_ms):.1f} ms, max {max(latency_ms):.1f} ms")  # fmt: skip


def print_memory(m: Memory) -> None:
    say(f"memory, {m.feeds:,} feeds filled by {m.kind}s to {m.entries // m.feeds} entries: "
        f"{m.bytes_per_entry:.1f} bytes/entry (feed {m.feed_bytes / m.entries:.1f} "
        f"[{m.feed_encoding}] + via {m.via_bytes / m.entries:.1f} [{m.via_encoding}]; "
        f"used_memory grew {m.used_memory_per_entry:.1f} bytes/entry)")  # fmt: skip
    say(f"  Lua path without Kafka: {m.filling_per_s:,.0f} pushes/s while filling, "
        f"{m.at_cap_per_s:,.0f} pushes/s at the cap")  # fmt: skip


def write_report(path: Path, report: Any) -> None:
    """Write ``report`` (a dataclass with a ``summary()``) to ``path``: the summary, then
    the details."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"summary": report.summary(), **asdict(report)}
    path.write_text(json.dumps(data, indent=2) + "\n")


def quick_args(doc: str, argv: list[str] | None, quick: str) -> argparse.Namespace:
    """A benchmark's command line: ``--quick`` (what it does: ``quick``), described by the
    first paragraph of the script's ``doc``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    return parser.parse_args(argv)


def write_results(report: Report) -> None:
    """``bench/results/latest.json``: the summary, then the details."""
    write_report(RESULTS, report)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the figures, the last line machine-readable."""
    args = quick_args(__doc__, argv, "smaller sizes, under a minute")
    plan = QUICK if args.quick else FULL
    report = Report(mode="quick" if args.quick else "full", redis_config={})
    say(f"feedamp benchmark ({report.mode}); REDIS_TUNING {' '.join(REDIS_TUNING)}")
    with (
        tempfile.TemporaryDirectory(prefix="feedamp-bench-") as scratch,
        running_stack(Path(scratch)) as stack,
    ):
        asyncio.run(run_measurements(stack, plan, report))
    if report.dead_letters:
        say(f"WARNING: the worker dead-lettered {report.dead_letters} records")
    write_results(report)
    summary = report.summary()
    say(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
