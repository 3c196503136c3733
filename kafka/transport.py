"""Faust's aiokafka transport with a configurable fetch wait and a watch on the group.

Faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer. Apache Kafka answers a fetch
as soon as data arrives, but some Kafka-compatible brokers (the embedded Tansu among them)
hold it for the whole wait, which put about 750 ms between an event and its fan-out.

The consumer thread also checks, several times a second, whether aiokafka's group
coordinator stopped on an error it hands to its user (see :mod:`feedamp.kafka.group`),
and then calls ``on_group_error``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

from .group import pending_group_error

__all__ = ["GROUP_CHECK_INTERVAL", "transport_class"]

#: How often (s) the consumer thread looks for a group error.
GROUP_CHECK_INTERVAL = 0.25


def transport_class(
    fetch_max_wait_ms: int, on_group_error: Callable[[BaseException], Any] | None = None
) -> type[faust_aiokafka.Transport]:
    """A Faust Kafka transport whose consumer waits at most ``fetch_max_wait_ms``, and
    calls ``on_group_error`` with an error that stopped the group coordination."""

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

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport
