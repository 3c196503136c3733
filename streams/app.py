"""The Faust application: one agent consumes every input topic in batches.

The agent hands each batch to :class:`BatchHandler`, which never lets an exception escape
(an exception escaping a Faust agent stops it without a word): Redis outages are retried
with backoff, bad records go to the dead-letter topic, and a bug hit by one record
dead-letters that record alone. Offsets are acknowledged by ``take_events`` only after
the batch was handled, so a worker killed mid-batch replays the batch on restart, which
is harmless because every Redis write is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import faust
from aiokafka.errors import KafkaError
from feedamp.config import Settings
from feedamp.feeds import FeedStore
from feedamp.feeds.cluster import refuse_writes_on_cluster
from feedamp.feeds.connection import connect
from feedamp.feeds.store import TRANSIENT_ERRORS
from feedamp.kafka.config import faust_security
from feedamp.kafka.group import QuietFatalJoin, stop_on_group_error
from feedamp.kafka.transport import transport_class

from .metrics import Metrics
from .pipeline import Pipeline, progress_field
from .publish import Publisher
from .records import DeadLetter, Outcome, Outputs, Record
from .web import install_console, install_web

__all__ = ["BatchHandler", "create_app"]

log = logging.getLogger("feedamp.worker")
T = TypeVar("T")

#: Errors that mean "unavailable right now" (Redis or Kafka): wait and retry, never skip.
RETRYABLE = (*TRANSIENT_ERRORS, KafkaError)
MAX_BACKOFF = 5.0


class BatchHandler:
    """Applies batches of records; retries outages, dead-letters what cannot be applied,
    publishes decisions."""

    def __init__(self, pipeline: Pipeline, outputs: Outputs) -> None:
        self.pipeline = pipeline
        self.outputs = outputs

    async def handle(self, records: Sequence[Record]) -> Outcome:
        """Apply ``records``; returns only when each was applied or dead-lettered and every
        dead letter and decision was published."""
        try:
            outcome = await self.retrying(self.pipeline.apply, records)
        except Exception:
            log.exception("batch of %d failed; applying one record at a time", len(records))
            outcome = Outcome()
            for record in records:
                try:
                    outcome.extend(await self.retrying(self.pipeline.apply, [record]))
                except Exception as exc:
                    log.exception("record %s[%d]@%d failed", record.topic, record.partition,
                                  record.offset)  # fmt: skip
                    outcome.dead_letters.append(DeadLetter(record, f"internal error: {exc!r}"))
        await self._publish(outcome)
        if self.pipeline.watermarked:
            outcome.extend(await self.release())
        return outcome

    async def release(self) -> Outcome:
        """Decide, apply and publish the parked events the watermark has passed (see
        :meth:`Pipeline.release`); never raises (what fails stays parked for the next
        try)."""
        try:
            return await self.retrying(self.pipeline.release, self._publish)
        except Exception:
            log.exception("releasing parked events failed; retrying at the next tick")
            return Outcome()

    async def _publish(self, outcome: Outcome) -> None:
        if outcome.dead_letters or outcome.decisions:
            await self.retrying(self.outputs.publish, outcome)

    @staticmethod
    async def retrying(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``fn(*args)``, waiting out outages (Redis, Kafka) with backoff."""
        delay = 0.1
        while True:
            try:
                return await fn(*args)
            except RETRYABLE as exc:
                what = "Kafka" if isinstance(exc, KafkaError) else "Redis"
                log.warning("%s unavailable (%s); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)


#: Bind addresses meaning "every interface": not an address to advertise.
WILDCARDS = ("0.0.0.0", "::", "")

#: How often (s) a worker raises the progress of idle partitions and releases parked events.
RELEASE_INTERVAL = 0.02


class PartitionWatch:
    """What this worker knows of its posts and reposts partitions: the last offset it
    handled in each, or else the group's committed offset; from these, which ones it has
    handled to the end (their progress may then follow the clock). Never the fetch
    position: records fetched ahead are not handled yet."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.watched = (settings.topics.posts, settings.topics.reposts)
        self.done: dict[tuple[str, int], int] = {}

    def partitions(self) -> list[str]:
        """The progress field of every partition of the watched topics (empty until the
        consumer knows how many there are)."""
        fields = []
        for topic in self.watched:
            count = self.app.consumer.topic_partitions(topic)
            if not count:
                return []
            fields += [progress_field(topic, p) for p in range(count)]
        return fields

    def handled(self, records: Sequence[Record]) -> None:
        for r in records:
            if r.topic in self.watched:
                key = (r.topic, r.partition)
                self.done[key] = max(self.done.get(key, -1), r.offset)

    def caught_up(self) -> dict[str, int]:
        """Progress for the assigned watched partitions handled to their end: now less
        the allowed lateness."""
        now = int(time.time() * 1000) - self.settings.caps.lateness_ms
        progress = {}
        for tp in self.app.consumer.assignment():
            if tp.topic not in self.watched:
                continue
            highwater = self.app.consumer.highwater(tp)
            if (
                highwater is not None
                and self.done.get((tp.topic, tp.partition), -1) + 1 >= highwater
            ):
                progress[progress_field(tp.topic, tp.partition)] = now
        return progress


def _broker_urls(servers: str) -> list[str]:
    return [f"kafka://{s.strip()}" for s in servers.split(",") if s.strip()]


def create_app(settings: Settings) -> faust.App:
    """The Faust app for ``settings``, with its agent registered."""
    # Advertise the bind address unless it is a wildcard (Faust's default then).
    web_host: dict[str, Any] = (
        {} if settings.web_host in WILDCARDS else {"web_host": settings.web_host}
    )
    app = faust.App(
        settings.app_id,
        broker=_broker_urls(settings.kafka_bootstrap_servers),
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout,
        broker_rebalance_timeout=settings.rebalance_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
        web_enabled=settings.web_port != 0,
        web_port=settings.web_port or 6066,
        web_bind=settings.web_host,  # the listen address; Faust's own default is every one
        **web_host,
        stream_wait_empty=False,
        producer_acks=-1,
        datadir=settings.data_dir or os.path.join(tempfile.gettempdir(), "feedamp-{conf.id}"),
        **faust_security(settings),
    )
    logging.getLogger("aiokafka.consumer.group_coordinator").addFilter(QuietFatalJoin())
    app.transport = transport_class(
        settings.fetch_max_wait_ms, lambda exc: stop_on_group_error(exc, settings)
    )(app.conf.broker_consumer, app)
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    inputs = app.topic(*settings.topics.inputs, **raw)
    dead_letters = app.topic(settings.topics.dead_letter, **raw)
    decisions = app.topic(settings.topics.decisions, **raw)
    redis = connect(settings.redis_url, max_connections=settings.redis_max_connections)
    refuse_writes_on_cluster(redis, "feedamp worker")
    watch = PartitionWatch(app, settings)
    pipeline = Pipeline(FeedStore(redis, settings), settings, partitions=watch.partitions)

    outputs = {settings.topics.dead_letter: dead_letters, settings.topics.decisions: decisions}

    async def send(
        topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None
    ) -> Any:
        return await outputs[topic].send(key=key, value=value, headers=headers)

    handler = BatchHandler(pipeline, Publisher(settings.topics, send, log=log))
    metrics = Metrics()

    @app.agent(inputs, name="feedamp.apply")
    async def apply(stream: faust.StreamT) -> None:
        # take_events is on faust.Stream, not on the StreamT protocol agents are typed with.
        async for events in stream.take_events(  # type: ignore[attr-defined]
            settings.batch_size, within=settings.batch_within
        ):
            records = [Record.from_message(e.message) for e in events]
            started = time.perf_counter()
            outcome = await handler.handle(records)
            watch.handled(records)
            metrics.observe(records, outcome, time.perf_counter() - started)

    if pipeline.watermarked:

        @app.timer(interval=RELEASE_INTERVAL)
        async def release() -> None:
            """Raise the progress of partitions read to the end, then release."""
            try:
                await handler.retrying(pipeline.advance_watermark, watch.caught_up())
            except Exception:
                log.exception("could not record partition progress")
            started = time.perf_counter()
            outcome = await handler.release()
            metrics.watermark = pipeline.watermark
            if outcome.decisions or outcome.dead_letters:
                metrics.observe([], outcome, time.perf_counter() - started)

    if settings.web_port:
        install_web(app, metrics, redis, settings.topics.inputs)
        install_console(app, settings, redis)
    app.feedamp_redis = redis  # type: ignore[attr-defined]
    app.feedamp_metrics = metrics  # type: ignore[attr-defined]
    return app
