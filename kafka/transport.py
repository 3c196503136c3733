"""Faust's aiokafka transport with a configurable fetch wait and a watch on the group.

Faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer. Apache Kafka answers a fetch
as soon as data arrives, but some Kafka-compatible brokers (the embedded Tansu among them)
hold it for the whole wait, which put about 750 ms between an event and its fan-out.

The consumer thread also checks, several times a second, whether aiokafka's group
coordinator stopped on an error it hands to its user (see :mod:`feedamp.kafka.group`),
and then calls ``on_group_error``. The consumer hands the records of ``bulk_topics`` to
the agent a fetch at a time (:mod:`feedamp.kafka.bulk`). Its producer hands out the
aiokafka producer it runs (:func:`aiokafka_producer`), for sends by record batches
(:class:`feedamp.kafka.produce.BatchSend`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from aiokafka import AIOKafkaProducer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.transports import ProducerT

from .bulk import BulkDrain, BulkSink
from .group import pending_group_error

__all__ = ["GROUP_CHECK_INTERVAL", "Producer", "aiokafka_producer", "transport_class"]

#: How often (s) the consumer thread looks for a group error.
GROUP_CHECK_INTERVAL = 0.25


class Producer(faust_aiokafka.Producer):
    """Faust's aiokafka producer, handing out the aiokafka producer it runs."""

    def client(self) -> AIOKafkaProducer:
        """The started aiokafka producer (Faust's ``NotReady`` before it starts)."""
        return self._ensure_producer()


def aiokafka_producer(producer: ProducerT) -> AIOKafkaProducer:
    """The aiokafka producer behind an app's producer made by :func:`transport_class`."""
    if not isinstance(producer, Producer):
        raise TypeError(f"not a feedamp transport's producer: {type(producer).__name__}")
    return producer.client()


def transport_class(
    fetch_max_wait_ms: int,
    on_group_error: Callable[[BaseException], Any] | None = None,
    bulk_topics: Collection[str] = (),
) -> type[faust_aiokafka.Transport]:
    """A Faust Kafka transport whose consumer waits at most ``fetch_max_wait_ms``, calls
    ``on_group_error`` with an error that stopped the group coordination, and puts the
    records of ``bulk_topics`` in its ``bulk`` sink."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read when the consumer starts
            return consumer

        @faust_aiokafka.AIOKafkaConsumerThread.timer(GROUP_CHECK_INTERVAL)
        async def _watch_group(self) -> None:
            error = pending_group_error(self._consumer)
            if error is not None and on_group_error is not None:
                on_group_error(error)

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class BulkConsumer(BulkDrain, Consumer):  # type: ignore[misc]  # Faust's untyped drain hook
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.bulk = BulkSink(bulk_topics)
            # cleared on a rebalance
            self.app.flow_control.manage_queue(self.bulk)  # type: ignore[arg-type]

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = BulkConsumer if bulk_topics else Consumer
    Transport.Producer = Producer
    return Transport
