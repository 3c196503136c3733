"""Gifts in event-time order across partitions, on a real broker and Redis: a worker hands
the last code of a pool, the last send under a limit and the door's verdict by event time,
whatever order the partitions are read in, and a replay of the log agrees (``verify``;
the code pool also on a Redis Cluster).
With the watermark off (lateness 0) the same arrivals are decided first come, first
served, which is what parking gifts is for."""

from __future__ import annotations

import time
from dataclasses import replace

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from feedamp.config import Settings
from feedamp.feeds.connection import close, connect
from feedamp.kafka.topics import ensure_topics
from feedamp.models import Event, topic_of
from feedamp.ops.verify import verify

from .conftest import WorkerHandle, make_settings
from .factory import Events, to_json
from .kafka import read_topic, send_events
from .test_watermark import send_one_by_one, started, wait_parked

#: An offer with one code, and one without codes under a limit of one send per sender.
CATALOG = {"campaigns": [
    {"id": "drop", "offers": [{"id": "cam", "partner": "Lens", "title": "a camera",
                               "codes": ["ONLY-CODE"]}]},
    {"id": "once", "send_limit": 1, "offers": [{"id": "pass", "partner": "Gym",
                                                 "title": "a day pass"}]},
]}  # fmt: skip

#: Lateness with the watermark on (ms): the events are stamped seconds ahead of the clock,
#: so they wait however slowly the machine runs.
LATENESS_MS = 600


def gift_settings(broker, redis_server, tmp_path, lateness_ms: int) -> Settings:
    path = tmp_path / "campaigns.json"
    path.write_bytes(orjson.dumps(CATALOG))
    s = make_settings(broker, redis_server, campaigns=str(path))
    return s.with_(caps=replace(s.caps, lateness_ms=lateness_ms))


def ahead() -> Events:
    """Events stamped 4 s ahead of the clock, 10 ms apart: parked until the clock passes
    them (made once the worker is ready, so a slow start does not eat the head start)."""
    return Events(start_ms=int(time.time() * 1000) + 4000, step_ms=10)


async def send_to(settings: Settings, event: Event, partition: int) -> None:
    """Send ``event`` to a chosen partition of its topic, as a producer with another
    partitioner than the engine's may."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        topic = topic_of(event.type, settings.topics)
        await producer.send_and_wait(topic, to_json(event), key=b"any", partition=partition)
    finally:
        await producer.stop()


async def decided(settings: Settings, count: int) -> dict[str, tuple[str, list[str]]]:
    records = await read_topic(settings, settings.topics.decisions, count, timeout=60)
    out = {}
    for record in records:
        d = orjson.loads(record.value)
        out[d["gift_id"]] = (d["decision"], d["reasons"])
    return out


async def run(s: Settings, redis, tmp_path, send) -> dict[str, tuple[str, list[str]]]:
    """Start a worker, ``send`` the events once it reports progress, return the gift
    decisions once both are out.
    Checks ``verify`` too: a replay (which decides a batch's gifts by event time) gives
    the same keys with the watermark on, and other gift keys with it off."""
    await ensure_topics(s)
    worker = WorkerHandle(s, tmp_path / "worker.log")
    try:
        if s.caps.lateness_ms:
            await started(redis, s)
        await send()
        out = await decided(s, 2)
        check = await verify(s, wait=30)
    finally:
        worker.stop()
    if s.caps.lateness_ms:
        assert check.differences == [], check.differences[:3]
    else:
        assert {d.key.split(":", 1)[0] for d in check.differences} & {"gift", "gift_claims"}
    return out


@pytest.mark.parametrize(("layout", "lateness_ms", "winner"), [
    ("standalone", LATENESS_MS, "early"),  # by event time
    ("cluster", LATENESS_MS, "early"),  # the same on a cluster
    ("standalone", 0, "late"),  # first come
], indirect=["layout"])  # fmt: skip
async def test_the_last_code_goes_to_the_earlier_gift_whatever_the_arrival_order(
    broker, redis_service, tmp_path, lateness_ms, winner
):
    s = gift_settings(broker, redis_service, tmp_path, lateness_ms)
    redis = connect(s.redis_url)

    async def send() -> None:
        ev = ahead()
        early = ev.gift("early", "amy", "tom", "cam")
        late = ev.gift("late", "sue", "tom", "cam")
        await send_one_by_one(redis, s, [late, early], parked=lateness_ms > 0)

    try:
        out = await run(s, redis, tmp_path, send)
    finally:
        await close(redis)
    loser = "late" if winner == "early" else "early"
    assert out == {winner: ("accepted", []), loser: ("refused", ["codes_exhausted"])}


@pytest.mark.parametrize(("lateness_ms", "winner"), [(LATENESS_MS, "early"), (0, "late")])
async def test_one_senders_gifts_split_over_partitions_meet_the_limit_by_event_time(
    broker, redis_server, redis, tmp_path, lateness_ms, winner
):
    s = gift_settings(broker, redis_server, tmp_path, lateness_ms)

    async def send() -> None:
        ev = ahead()
        early = ev.gift("early", "amy", "tom", "pass")
        late = ev.gift("late", "amy", "una", "pass")
        # Later first, each on its own partition.
        await send_to(s, late, 1)
        if lateness_ms:
            await wait_parked(redis, s, 1)
        else:
            await read_topic(s, s.topics.decisions, 1)
        await send_to(s, early, 2)

    out = await run(s, redis, tmp_path, send)
    loser = "late" if winner == "early" else "early"
    assert out == {winner: ("accepted", []), loser: ("refused", ["send_limit"])}


@pytest.mark.parametrize(("lateness_ms", "expected"), [
    (LATENESS_MS, ("refused", ["suspended"])),  # as if the suspension came first
    (0, ("accepted", [])),  # judged on arrival
])  # fmt: skip
async def test_a_suspension_within_the_lateness_stops_a_gift_that_arrived_before_it(
    broker, redis_server, redis, tmp_path, lateness_ms, expected
):
    s = gift_settings(broker, redis_server, tmp_path, lateness_ms)

    async def send() -> None:
        ev = ahead()
        suspension = ev.account("sus", "suspend")
        gift = ev.gift("gift", "sus", "tom", "pass")
        other = ev.gift("other", "amy", "tom", "pass")
        await send_one_by_one(redis, s, [gift], parked=lateness_ms > 0)
        await send_events(s, [suspension, other])

    out = await run(s, redis, tmp_path, send)
    assert out == {"gift": expected, "other": ("accepted", [])}
