"""The Faust application: one agent consumes every input topic in batches.

The agent hands each batch to :class:`BatchHandler`, which never lets an exception escape
(an exception escaping a Faust agent stops it without a word): Redis outages (and a
Redis Cluster slot moving) are retried with backoff, bad records go to the dead-letter
topic, and a bug hit by one record dead-letters that record alone. Offsets are
acknowledged (by the consumer's bulk sink, :mod:`feedamp.kafka.bulk`) only after the
batch was handled, so a worker killed mid-batch replays the batch on restart, which is
harmless because every Redis write is idempotent.
"""

from __future__ import annotations

import asyncio
import gc
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
from feedamp.feeds.connection import connect
from feedamp.feeds.store import TRANSIENT_ERRORS, is_transient
from feedamp.kafka.config import faust_security
from feedamp.kafka.group import QuietFatalJoin, stop_on_group_error
from feedamp.kafka.produce import BatchSend
from feedamp.kafka.transport import aiokafka_producer, transport_class

from .metrics import Metrics
from .pipeline import Parsed, Pipeline, progress_field
from .publish import Publisher
from .records import DeadLetter, Outcome, Outputs, Record
from .ticker import ReleaseTicker
from .web import install_console, install_web

__all__ = ["BatchHandler", "create_app"]

log = logging.getLogger("feedamp.worker")
T = TypeVar("T")

#: Errors that mean "unavailable right now" (Redis or Kafka): wait and retry, never skip.
RETRYABLE = (*TRANSIENT_ERRORS, KafkaError)


def retryable(error: BaseException) -> bool:
    """True for an error to wait out: :data:`RETRYABLE`, and whatever else
    :func:`~feedamp.feeds.batch.is_transient` counts transient (a Redis Cluster slot
    moving: ``MOVED``, ``ASK``, a script reaching a key that moved, the client giving up
    its redirections), which the stores raise for the batch to be retried whole."""
    return isinstance(error, RETRYABLE) or is_transient(error)


MAX_BACKOFF = 5.0


class BatchHandler:
    """Applies batches of records; retries outages, dead-letters what cannot be applied,
    publishes decisions."""

    def __init__(self, pipeline: Pipeline, outputs: Outputs) -> None:
        self.pipeline = pipeline
        self.outputs = outputs

    async def handle(self, records: Sequence[Record], parsed: Parsed | None = None) -> Outcome:
        """Apply ``records``; returns only when each was applied or dead-lettered and every
        dead letter and decision was published. ``parsed``: the records as
        :meth:`Pipeline.parse_all` parsed them, when the caller did it ahead."""
        outcome = await self.apply(records, parsed)
        await self.finish(records, outcome)
        return outcome

    async def apply(self, records: Sequence[Record], parsed: Parsed | None = None) -> Outcome:
        """The first half of :meth:`handle`: apply ``records`` (or dead-letter them);
        publish nothing. ``parsed`` as for :meth:`handle`."""
        try:
            outcome = await self.retrying(self.pipeline.apply, records, parsed)
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
        return outcome

    async def finish(self, records: Sequence[Record], outcome: Outcome) -> None:
        """The second half of :meth:`handle`: publish ``outcome``, then release what the
        batch let pass (added to ``outcome``)."""
        await self._publish(outcome)
        if self.pipeline.watermarked and any(r.topic in self.pipeline.watched for r in records):
            outcome.extend(await self.release())

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
            except Exception as exc:
                if not retryable(exc):
                    raise
                what = "Kafka" if isinstance(exc, KafkaError) else "Redis"
                log.warning("%s unavailable (%s); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)


#: Bind addresses meaning "every interface": not an address to advertise.
WILDCARDS = ("0.0.0.0", "::", "")


class PartitionWatch:
    """What this worker knows of its watched partitions (posts, reposts, gifts, accounts:
    :attr:`~feedamp.config.Topics.watched`): the last offset it handled in each, or else
    the group's committed offset; from these, which ones it has handled to the end (their
    progress may then follow the clock). Never the fetch position: records fetched ahead
    are not handled yet."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.watched = settings.topics.watched
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

    def alone(self) -> bool:
        """True when this worker holds every partition of the watched topics: then no
        other worker of the group parks events."""
        fields = self.partitions()
        mine = {progress_field(tp.topic, tp.partition)
                for tp in self.app.consumer.assignment() if tp.topic in self.watched}  # fmt: skip
        return bool(fields) and mine.issuperset(fields)

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
        settings.fetch_max_wait_ms,
        lambda exc: stop_on_group_error(exc, settings),
        bulk_topics=settings.topics.inputs,
    )(app.conf.broker_consumer, app)
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    inputs = app.topic(*settings.topics.inputs, **raw)
    redis = connect(settings.redis_url, max_connections=settings.redis_max_connections)
    watch = PartitionWatch(app, settings)
    pipeline = Pipeline(FeedStore(redis, settings), settings, partitions=watch.partitions)

    # Straight to the aiokafka producer Faust runs, a record batch per partition: Topic.send
    # costs a future chain per message.
    send = BatchSend(lambda: aiokafka_producer(app.producer))
    handler = BatchHandler(pipeline, Publisher(settings.topics, send, log=log))
    metrics = Metrics()

    @app.agent(inputs, name="feedamp.apply")
    async def apply(stream: faust.StreamT) -> None:
        """Handles the input topics' records a fetch at a time (up to the batch size),
        taken from the consumer's bulk sink rather than one by one from ``stream``. A
        batch's decisions are published while the next batch is applied; a batch is
        acknowledged once its own are stored, and batches publish in order."""
        consumer = app.consumer
        sink = consumer.bulk  # type: ignore[attr-defined]  # the BulkConsumer's sink
        publishing: asyncio.Future | None = None
        # The app is up: what it holds now lives as long as the worker. Set aside from the
        # garbage collector, so that the full collections each batch's many objects set
        # off do not walk all of it again every time.
        gc.freeze()

        async def finish(messages, records, outcome, started) -> None:
            await handler.finish(records, outcome)
            sink.ack(consumer, messages)
            metrics.observe(records, outcome, time.perf_counter() - started)

        try:
            async for messages in sink.batches(
                consumer, settings.batch_size, settings.batch_within, acks=False
            ):
                records = [Record.from_message(m) for m in messages]
                started = time.perf_counter()
                outcome = await handler.apply(records)
                watch.handled(records)
                ticker.handled(records, outcome.parked)
                if publishing is not None:
                    await publishing
                publishing = asyncio.ensure_future(finish(messages, records, outcome, started))
        finally:
            if publishing is not None and not publishing.done():
                publishing.cancel()  # not acknowledged: read again after a restart

    ticker = ReleaseTicker(pipeline, handler.retrying, handler._publish, watch.caught_up,
                           settings.topics.parked, settings.caps.lateness_ms,
                           alone=watch.alone)  # fmt: skip
    if pipeline.watermarked:

        @app.task
        async def release() -> None:
            """Raise the progress of partitions read to the end, then release (see
            :mod:`feedamp.streams.ticker` for how often)."""

            def done(outcome: Outcome, seconds: float) -> None:
                metrics.watermark = pipeline.watermark
                if outcome.decisions or outcome.dead_letters:
                    metrics.observe([], outcome, seconds)

            await ticker.run(done)

    if settings.web_port:
        install_web(app, metrics, redis, settings.topics.inputs)
        install_console(app, settings, redis)
    app.feedamp_redis = redis  # type: ignore[attr-defined]
    app.feedamp_metrics = metrics  # type: ignore[attr-defined]
    return app
