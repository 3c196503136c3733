"""``feedamp worker`` whose group coordinator is handed the error a stock Kafka broker
answers to a session timeout below ``group.min.session.timeout.ms``.

The embedded broker does not enforce that minimum, so this runs the real worker (``python
-m tests.refused_join_worker``, with the worker's environment) and, as soon as its
aiokafka consumer exists, gives the consumer's real group coordinator the exact exception
aiokafka raises on such a JoinGroup answer (``InvalidSessionTimeoutError``), through the
coordinator's own ``_push_error_to_user``, where aiokafka puts it. Everything from there
on (detection, the line, the exit) is the worker's own.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import feedamp.streams as streams
from aiokafka.errors import InvalidSessionTimeoutError
from feedamp.cli import main

original = streams.create_app


def refuse_join(app) -> None:  # type: ignore[no-untyped-def]
    """Wait for the worker's aiokafka consumer, then push the error in its own loop."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        thread = getattr(app._consumer, "_thread", None)  # not app.consumer: it would make one
        consumer = getattr(thread, "_consumer", None)
        coordinator = getattr(consumer, "_coordinator", None)
        if coordinator is not None:
            push = coordinator._push_error_to_user
            error = InvalidSessionTimeoutError()
            thread.thread_loop.call_soon_threadsafe(
                lambda: asyncio.ensure_future(push(error))  # noqa: B023 (runs before return)
            )
            return
        time.sleep(0.05)


def create_app(settings):  # type: ignore[no-untyped-def]
    app = original(settings)
    threading.Thread(target=refuse_join, args=(app,), daemon=True).start()
    return app


if __name__ == "__main__":
    streams.create_app = create_app
    sys.exit(main(["worker", "--loglevel", "warning"]))
