"""A session timeout the broker refuses stops the worker with one line and exit 2.

No stock Apache Kafka broker can be had here, and the embedded broker does not enforce
``group.min.session.timeout.ms``; so the error is fed to the real worker's aiokafka group
coordinator where aiokafka puts it (see ``tests/refused_join_worker.py``), on the real
broker and Redis, and the line itself is checked against aiokafka's exception.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

from aiokafka.errors import (
    GroupAuthorizationFailedError,
    InvalidSessionTimeoutError,
    KafkaConnectionError,
)
from feedamp.embedded.worker import worker_env
from feedamp.kafka.group import QuietFatalJoin, group_error_line

from .conftest import make_settings


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


def test_a_refused_session_timeout_stops_the_worker_with_one_line(broker, redis_server):
    s = make_settings(broker, redis_server, session_timeout=2.0)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tests.refused_join_worker"], env=worker_env(s),
        cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=45,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert elapsed < 60, f"took {elapsed:.0f} s"
    mentions = [ln for ln in output.splitlines() if "session" in ln.lower()]
    assert len(mentions) == 1, output
    assert "feedamp worker: the broker refused FEEDAMP_SESSION_TIMEOUT=2 s" in mentions[0]
    assert "Traceback" not in output, output


def test_aiokafkas_own_fatal_join_record_is_dropped():
    """aiokafka logs the refused join itself; the worker's line replaces it."""

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("aiokafka.consumer.group_coordinator", logging.ERROR, "", 0,
                                 msg, (InvalidSessionTimeoutError(),), None)  # fmt: skip

    quiet = QuietFatalJoin()
    assert not quiet.filter(record("Attempt to join group failed due to fatal error: %s"))
    assert quiet.filter(record("Heartbeat failed: %s"))
