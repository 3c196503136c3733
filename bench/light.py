"""Benchmark: light events (gifts, orders, graph events) through the worker against Faust
itself, and an idle worker's cost.

Starts the stack of ``bench/run.py`` (embedded Tansu broker, tuned redis-server, a
``feedamp worker``) with the campaigns of ``bench/shop.py``, and measures in the same run:

(a) idle: once the worker has joined and applied a first gift, with nothing else talking
    to Redis, its Redis commands per second (``total_commands_processed``, which counts
    the commands scripts run too) and its CPU (share of one core) over a few seconds;
(b) the worker: ``Bench.timed`` of ``bench/shop.py`` (produce a realistic log, time until
    Redis shows every event applied and ``/metrics`` counts every record handled), best of
    ``runs``: gifts, graph events (follows, a share of them backfilling a creator's
    recent posts, and unfollows, mutes, blocks and their undos; ``LogMaker.graph`` of
    ``bench/shop.py``) and, in a full run, orders;
(c) a minimal Faust agent: a Faust app of its own (same broker, same fetch wait, a topic
    of its own per kind) whose one agent does ``take_events(500, within=0.02)`` and one
    ``INCRBY`` per batch, fed the same kind of log and timed until Redis counts every
    record (the worker is stopped meanwhile);
(d) raw aiokafka consumption of the same topics (``raw_consumption`` of
    ``bench/replay.py``, best of five).

Run ``python bench/light.py`` (``--quick``: gifts only, smaller). The last line printed:

    light_vs_faust   worker events/s over the minimal Faust agent's (gifts; target >= 0.8)
    light_vs_raw     worker events/s over raw aiokafka consumption (gifts; target >= 0.03)
    light_eps, faust_eps, raw_eps   the rates behind them (gifts)
    graph_vs_faust, graph_vs_raw    the same for graph events (target >= 0.8, >= 0.03)
    order_vs_faust, order_vs_raw    the same for orders (full run only)
    idle_cpu         an idle worker's CPU, share of one core (target < 0.03)
    idle_redis_ops   an idle worker's Redis commands/s (target < 50)
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from feedamp.config import Settings
from feedamp.feeds import FeedStore
from feedamp.kafka.topics import ensure_topics
from redis.asyncio import Redis
from replay import raw_consumption
from run import Stack, apart, cpu_seconds, fill_feeds, launch_script, quick_args, running_stack
from shop import (
    SMALL_POOL_PER_GIFT,
    TOPIC_OF,
    Bench,
    Ids,
    LogMaker,
    Plan,
    campaigns_doc,
    make_creators,
    print_timed,
)

AGENT_FLAG = "--faust-agent"
#: Redis key (in the agent's namespace) counting the records the minimal agent took.
AGENT_COUNTER = "bench:agent_records"
IDLE_SETTLE, IDLE_WINDOW = 2.0, 5.0
RAW_READS = 5
RUN_TIMEOUT = 600.0

FULL = Plan(gifts=20_000, orders=8_000, views=0, runs=2, graph=10_000)
QUICK = Plan(gifts=5_000, orders=0, views=0, runs=2, graph=4_000)
#: (kind of log, name in the figures).
KINDS = (("gifts", "light"), ("graph", "graph"), ("orders", "order"))


@dataclass(slots=True)
class Idle:
    """An idle worker's cost over ``seconds``."""

    seconds: float
    redis_ops_per_s: float
    cpu: float


# --- the minimal Faust agent (a child process) ---------------------------------------------


def agent_main() -> int:
    """A Faust app with one ``take_events(500, within=0.02)`` agent counting records."""
    import faust
    from feedamp.kafka.transport import transport_class

    settings = Settings.from_env()
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{s}" for s in settings.kafka_bootstrap_servers.split(",")],
        store="memory://",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.partitions,
        stream_wait_empty=False,
        broker_session_timeout=settings.session_timeout,
        broker_rebalance_timeout=settings.rebalance_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
    )
    # The worker's fetch wait (the embedded broker holds a fetch for the whole wait);
    # no bulk topics: Faust's own path for every record.
    app.transport = transport_class(settings.fetch_max_wait_ms)(app.conf.broker_consumer, app)
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
           "value_serializer": "raw"}  # fmt: skip
    topics = settings.topics
    topic = app.topic(topics.gifts, topics.graph, topics.purchases, **raw)
    redis = Redis.from_url(settings.redis_url)
    key = f"{settings.key_prefix}{AGENT_COUNTER}"

    @app.agent(topic)
    async def count(stream: faust.StreamT) -> None:
        async for events in stream.take_events(500, within=0.02):
            await redis.incrby(key, len(events))

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()
    return 0


#: The minimal agent as a child process configured by the settings, logging to the path.
launch_agent = launch_script(__file__, AGENT_FLAG)


def agent_settings(settings: Settings) -> Settings:
    """The agent's settings: its own consumer group, topics and namespace."""
    return apart(settings, "faust", web_port=0)


# --- measuring -----------------------------------------------------------------------------


async def measure_idle(stack: Stack, redis: Redis) -> Idle:
    """The worker's Redis commands/s and CPU while nothing happens (this client sends
    only the two INFO calls, which are subtracted)."""
    await asyncio.sleep(IDLE_SETTLE)
    pid = stack.worker.pid
    before = int((await redis.info("stats"))["total_commands_processed"])
    cpu, start = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(IDLE_WINDOW)
    after = int((await redis.info("stats"))["total_commands_processed"])
    cpu, seconds = cpu_seconds(pid) - cpu, time.monotonic() - start
    return Idle(seconds, (after - before - 1) / seconds, cpu / seconds)


async def agent_timed(bench: Bench, messages: list[tuple[str, bytes, bytes]], want: int) -> float:
    """Events/s of the minimal agent: produce ``messages``, time until it counted ``want``
    records in all."""
    key = f"{bench.settings.key_prefix}{AGENT_COUNTER}"
    start = time.perf_counter()
    acks = await bench.send(messages)
    deadline = time.monotonic() + RUN_TIMEOUT
    while int(await bench.redis.get(key) or 0) < want:
        bench.stack.check_worker()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Faust agent counted fewer than {want}\n{bench.stack.log()}")
        await asyncio.sleep(0.01)
    seconds = time.perf_counter() - start
    await asyncio.gather(*acks)
    return len(messages) / seconds


async def run(stack: Stack, plan: Plan) -> dict[str, float]:
    """Every measurement; the headline figures."""
    settings = stack.settings
    redis = Redis.from_url(settings.redis_url)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=0
    )
    await producer.start()
    out: dict[str, float] = {}
    try:
        bench = Bench(stack, redis, producer)
        ids = Ids()
        creators = make_creators(ids, random.Random(5), int(time.time() * 1000) - 86_400_000)
        await fill_feeds(FeedStore(redis, settings), creators.events)
        maker = LogMaker(settings, ids, creators)
        say(f"worker ready after {await bench.warm_up(maker):.1f} s")
        idle = await measure_idle(stack, redis)
        say(f"idle worker: {idle.redis_ops_per_s:.1f} Redis commands/s, {idle.cpu:.1%} of a "
            f"core over {idle.seconds:.1f} s (targets: < 50/s, < 3 %)")  # fmt: skip
        out["idle_cpu"], out["idle_redis_ops"] = round(idle.cpu, 4), round(idle.redis_ops_per_s, 1)
        kinds = [kind for kind, _ in KINDS if getattr(plan, kind)]
        worker: dict[str, float] = {}
        for kind in kinds:
            for _ in range(plan.runs):
                result = await bench.timed(maker.make(kind, plan), "worker")
                print_timed(result)
                worker[kind] = max(worker.get(kind, 0.0), result.events_per_s)
        raw: dict[str, float] = {}
        for kind in kinds:
            topic = getattr(settings.topics, TOPIC_OF[kind])
            reads = [await raw_consumption(settings, [topic]) for _ in range(RAW_READS)]
            raw[kind] = max(n / s for n, s in reads)
            say(f"{kind}, raw aiokafka consumption of {topic!r}: {reads[0][0]:,} records, best "
                f"{raw[kind]:,.0f} records/s")  # fmt: skip
        faust = await measure_agent(bench, plan, ids, creators, kinds)
        for kind, name in KINDS:
            if kind not in kinds:
                continue
            vs_faust, vs_raw = worker[kind] / faust[kind], worker[kind] / raw[kind]
            say(f"{kind}: worker {worker[kind]:,.0f} events/s = {vs_faust:.2f} of the minimal "
                f"Faust agent ({faust[kind]:,.0f}/s; target >= 0.8), {vs_raw:.3f} of raw "
                f"consumption ({raw[kind]:,.0f}/s; target >= 0.03)")  # fmt: skip
            out[f"{name}_vs_faust"], out[f"{name}_vs_raw"] = round(vs_faust, 3), round(vs_raw, 4)
            if kind == "gifts":
                out["light_eps"], out["faust_eps"] = round(worker[kind]), round(faust[kind])
                out["raw_eps"] = round(raw[kind])
    finally:
        await producer.stop()
        await redis.aclose()
    return out


async def measure_agent(bench: Bench, plan: Plan, ids: Ids, creators, kinds) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The minimal agent's best events/s per kind (the worker is stopped first)."""
    settings = agent_settings(bench.settings)
    await ensure_topics(settings)
    bench.stack.switch_worker(settings, "worker-faust.log", launch_agent)
    bench.settings = settings
    maker = LogMaker(settings, ids, creators, seed=13)
    warm = maker.gifts(1).messages
    start = time.perf_counter()
    await agent_timed(bench, warm, len(warm))
    say(f"minimal Faust agent ready after {time.perf_counter() - start:.1f} s")
    counted, best = len(warm), {}
    for kind in kinds:
        for _ in range(plan.runs):
            messages = maker.make(kind, plan).messages
            counted += len(messages)
            eps = await agent_timed(bench, messages, counted)
            say(f"{kind}, minimal Faust agent: {len(messages):,} events = {eps:,.0f} events/s")
            best[kind] = max(best.get(kind, 0.0), eps)
    return best


def say(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the figures, the last line machine-readable."""
    args = quick_args(__doc__, argv, "gifts only, smaller")
    plan = QUICK if args.quick else FULL
    say(f"feedamp light-events benchmark ({'quick' if args.quick else 'full'})")
    with tempfile.TemporaryDirectory(prefix="feedamp-bench-light-") as scratch:
        campaigns = Path(scratch) / "campaigns.json"
        gifts = plan.gifts * plan.runs + 10
        doc = campaigns_doc(int(time.time() * 1000), gifts, int(gifts * SMALL_POOL_PER_GIFT))
        campaigns.write_bytes(orjson.dumps(doc))
        with running_stack(Path(scratch), campaigns=str(campaigns)) as stack:
            figures = asyncio.run(run(stack, plan))
    say(" ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == [AGENT_FLAG]:
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        sys.exit(agent_main())
    sys.exit(main())
