"""A session timeout the broker refuses stops the worker with one line and exit 2.

No stock Apache Kafka broker can be had here, and the embedded broker does not enforce
``group.min.session.timeout.ms``; so the real worker runs against the real embedded
broker behind ``tests/session_guard.py``, a proxy that answers a JoinGroup asking less
than 6 s with error 26 (``INVALID_SESSION_TIMEOUT``) as Apache Kafka's coordinator does,
on the wire. The line itself is also checked against aiokafka's exception.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    InvalidSessionTimeoutError,
    KafkaConnectionError,
)
from feedamp.embedded.services import Service, free_port, start_broker
from feedamp.embedded.worker import worker_env
from feedamp.kafka.group import QuietFatalJoin, group_error_line
from feedamp.kafka.topics import ensure_topics

from .conftest import make_settings, wait_until
from .session_guard import SessionGuard


def test_the_line_names_the_setting_and_the_brokers_minimum(settings):
    s = settings.with_(session_timeout=2.0)
    line, code = group_error_line(InvalidSessionTimeoutError(), s)
    assert code == 2
    assert "FEEDAMP_SESSION_TIMEOUT=2 s" in line
    assert "group.min.session.timeout.ms (6 s by default on Apache Kafka)" in line
    assert "\n" not in line
    line, code = group_error_line(GroupAuthorizationFailedError(s.app_id), s)
    assert (code, f"FEEDAMP_APP_ID={s.app_id!r}" in line) == (2, True)
    assert group_error_line(KafkaConnectionError("gone"), s)[1] == 1


@pytest.fixture
async def guarded_broker() -> AsyncIterator[tuple[Service, SessionGuard]]:
    """A Tansu broker reachable only through the guard (it advertises the guard's port)."""
    port = free_port()
    guard = SessionGuard(port)
    await guard.start()
    broker = await asyncio.to_thread(start_broker, port, guard.port)
    yield broker, guard
    await guard.close()
    await asyncio.to_thread(broker.stop)


async def test_a_refused_session_timeout_stops_the_worker_with_one_line(
    guarded_broker, redis_server
):
    broker, guard = guarded_broker
    s = make_settings(broker, redis_server, session_timeout=2.0)
    s = s.with_(kafka_bootstrap_servers=guard.address)
    started = time.monotonic()
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "feedamp.cli", "worker", "--loglevel", "warning",
        env=worker_env(s), cwd=Path(__file__).parents[1],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(worker.communicate(), timeout=45)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    elapsed = time.monotonic() - started
    output = out.decode()
    assert guard.refused >= 1, output  # the refusal crossed the wire
    assert worker.returncode == 2, output
    assert elapsed < 30, f"took {elapsed:.0f} s"
    mentions = [ln for ln in output.splitlines() if "session" in ln.lower()]
    assert len(mentions) == 1, output
    assert "feedamp worker: the broker refused FEEDAMP_SESSION_TIMEOUT=2 s" in mentions[0]
    assert "Traceback" not in output, output


async def test_a_session_timeout_at_the_minimum_joins_through_the_guard(
    guarded_broker, redis_server
):
    """The guard refuses only what stock Kafka refuses: a 6 s session joins the group."""
    broker, guard = guarded_broker
    s = make_settings(broker, redis_server).with_(kafka_bootstrap_servers=guard.address)
    await ensure_topics(s, partitions=1)
    consumer = AIOKafkaConsumer(s.topics.posts, bootstrap_servers=guard.address,
                                group_id=s.app_id, session_timeout_ms=6000)  # fmt: skip
    await consumer.start()
    try:

        async def assigned() -> bool:
            return bool(consumer.assignment())

        await wait_until(assigned, timeout=30, what="a partition assigned")
    finally:
        await consumer.stop()
    assert guard.refused == 0


def test_aiokafkas_own_fatal_join_record_is_dropped():
    """aiokafka logs the refused join itself; the worker's line replaces it."""

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("aiokafka.consumer.group_coordinator", logging.ERROR, "", 0,
                                 msg, (InvalidSessionTimeoutError(),), None)  # fmt: skip

    quiet = QuietFatalJoin()
    assert not quiet.filter(record("Attempt to join group failed due to fatal error: %s"))
    assert quiet.filter(record("Heartbeat failed: %s"))
