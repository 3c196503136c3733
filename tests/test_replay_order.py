"""A replay decides reposts in the workers' event-time order whatever their record times:
two reposts by one user under a rate cap of one, the later (by event time) produced first
and thousands of records between them, so that a replay merging by record time meets them
in different batches. The worker decides the earlier one first (the watermark); ``verify``
replays the log and finds the same decisions, keys and windows."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import orjson
from aiokafka import AIOKafkaProducer
from feedamp.feeds.keys import Keys
from feedamp.kafka.topics import ensure_topics
from feedamp.models import key_of, topic_of
from feedamp.ops.replay import BATCH, replay
from feedamp.ops.verify import verify

from .conftest import WorkerHandle, make_settings
from .factory import Events, to_json
from .kafka import read_topic, send_events
from .test_watermark import send_one_by_one, started


async def send_fast(settings, events) -> None:
    """Send ``events`` without waiting for each (one producer, acknowledged at the end)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        sent = [await producer.send(topic_of(e.type, settings.topics), to_json(e),
                                    key=key_of(e).encode()) for e in events]  # fmt: skip
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def test_a_replay_decides_reposts_by_event_time_across_its_batches(
    broker, redis_server, redis, tmp_path
):
    s = make_settings(broker, redis_server)
    s = s.with_(caps=replace(s.caps, lateness_ms=600, rate_max=1))
    await ensure_topics(s)
    worker = WorkerHandle(s, tmp_path / "worker.log")
    try:
        await started(redis, s)
        ev = Events(start_ms=int(time.time() * 1000) + 6000, step_ms=10)
        posts = [ev.post("p0", "star"), ev.post("p1", "star")]
        early = ev.repost("p0", "star", "fan", repost_id="early")
        late = ev.repost("p1", "star", "fan", repost_id="late")
        filler = Events(start_ms=int(time.time() * 1000), step_ms=1, id_prefix="f-")
        between = [filler.follow(f"u{n}", f"v{n}") for n in range(BATCH + 500)]
        await send_events(s, posts)
        await send_one_by_one(redis, s, [late], parked=True)
        await send_fast(s, between)
        await send_events(s, [early])
        records = await read_topic(s, s.topics.decisions, 2, timeout=60)
        check = await verify(s, wait=60)
    finally:
        worker.stop()
    decided = {d["repost_id"]: d["decision"] for d in map(orjson.loads, (r.value for r in records))}
    assert decided == {"early": "delivered", "late": "rate_limited"}
    assert check.differences == [], check.differences[:3]


async def test_a_pass_hands_what_it_holds_to_the_next_one(broker, redis_server, redis):
    """A rebuild's passes: the first stops at the end offsets it saw, holding the later
    repost; the catch-up reads the earlier one and decides both in event-time order, as
    one replay of the whole log does."""
    s = make_settings(broker, redis_server)
    s = s.with_(caps=replace(s.caps, lateness_ms=600, rate_max=1))
    await ensure_topics(s)
    ev = Events(start_ms=1_700_000_000_000, step_ms=10)
    posts = [ev.post("p0", "star"), ev.post("p1", "star")]
    early = ev.repost("p0", "star", "fan", repost_id="early")
    late = ev.repost("p1", "star", "fan", repost_id="late")
    await send_events(s, [*posts, late])
    spaces = {carried: s.with_(key_prefix=f"{s.key_prefix}{'c' if carried else 'n'}:")
              for carried in (True, False)}  # fmt: skip
    firsts = {carried: await replay(ns, prefix=ns.key_prefix, hold=carried)
              for carried, ns in spaces.items()}  # fmt: skip
    assert firsts[True].events == 2 and firsts[False].events == 3  # held: the later repost
    await send_events(s, [early])
    results = {}
    for carried, ns in spaces.items():
        first = firsts[carried]
        again = await replay(ns, prefix=ns.key_prefix, starts=first.ends,
                             carry=first.order if carried else None)  # fmt: skip
        assert again.events == (2 if carried else 1)
        keys = Keys(ns.key_prefix)
        results[carried] = {rid: (await redis.hget(keys.decided(post), rid) or b"").decode()
                            for post, rid in (("p0", "early"), ("p1", "late"))}  # fmt: skip
    assert results[True] == {"early": "delivered|1|", "late": "rate_limited|1|user_rate"}
    # Handed on at the first pass's end, the later one was decided alone, and the earlier
    # one, which counts only attempts up to its own time, passed too: two over a cap of one.
    assert results[False] == {"early": "delivered|1|", "late": "delivered|1|"}
