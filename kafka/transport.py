"""Faust's aiokafka transport with a configurable fetch wait.

Faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer. Apache Kafka answers a fetch
as soon as data arrives, but some Kafka-compatible brokers (the embedded Tansu among them)
hold it for the whole wait, which put about 750 ms between an event and its fan-out.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = ["transport_class"]


def transport_class(fetch_max_wait_ms: int) -> type[faust_aiokafka.Transport]:
    """A Faust Kafka transport whose consumer waits at most ``fetch_max_wait_ms``."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read when the consumer starts
            return consumer

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport
