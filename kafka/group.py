"""Consumer-group errors the worker cannot get past: one line, then exit.

aiokafka hands an error it cannot recover from (the broker refusing the join: a session
timeout outside the broker's limits, an invalid group id, no authorization for the
group) to its user by keeping it pending for the next ``getmany``. Faust's consumer reads
records without calling ``getmany``, so such an error used to be logged once by aiokafka
and the worker then sat for good with no partitions. :func:`pending_group_error` reads the
pending error (the consumer thread checks it several times a second, see
:mod:`feedamp.kafka.transport`) and :func:`stop_on_group_error` stops the process with
one line naming the setting to change, and a non-zero exit code.

Invariant: a worker never stays up with its group coordination stopped.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, NoReturn

from aiokafka.errors import (
    GroupAuthorizationFailedError,
    InvalidGroupIdError,
    InvalidSessionTimeoutError,
)
from feedamp.config import Settings

__all__ = [
    "EXIT_CONFIG",
    "EXIT_GROUP",
    "QuietFatalJoin",
    "group_error_line",
    "pending_group_error",
    "stop_on_group_error",
]

log = logging.getLogger("feedamp.worker")

#: Exit code when a setting must change (as for a bad setting at start).
EXIT_CONFIG = 2
#: Exit code for any other error that stopped the group coordination.
EXIT_GROUP = 1

#: Apache Kafka's defaults for the session timeouts a group member may ask for.
KAFKA_MIN_SESSION_S = 6
KAFKA_MAX_SESSION_MIN = 30


def group_error_line(exc: BaseException, settings: Settings) -> tuple[str, int]:
    """The one line that says what to do about ``exc``, and the exit code."""
    if isinstance(exc, InvalidSessionTimeoutError):
        return (
            f"the broker refused FEEDAMP_SESSION_TIMEOUT={settings.session_timeout:g} s: it "
            f"must lie within the broker's group.min.session.timeout.ms "
            f"({KAFKA_MIN_SESSION_S} s by default on Apache Kafka) and "
            f"group.max.session.timeout.ms ({KAFKA_MAX_SESSION_MIN} min by default); set "
            f"FEEDAMP_SESSION_TIMEOUT to at least the broker's minimum",
            EXIT_CONFIG,
        )
    if isinstance(exc, InvalidGroupIdError):
        return (f"the broker refused the consumer group FEEDAMP_APP_ID={settings.app_id!r} "
                "as invalid", EXIT_CONFIG)  # fmt: skip
    if isinstance(exc, GroupAuthorizationFailedError):
        return (f"not authorized to join the consumer group FEEDAMP_APP_ID={settings.app_id!r} "
                f"(KAFKA_SASL_USERNAME={settings.kafka_sasl_username!r} needs READ on the "
                "group)", EXIT_CONFIG)  # fmt: skip
    return f"the consumer group stopped on a Kafka error: {exc!r}", EXIT_GROUP


def pending_group_error(consumer: Any) -> BaseException | None:
    """The error aiokafka's group coordinator of ``consumer`` (an ``AIOKafkaConsumer``)
    holds for its user, if any; read from the consumer's own event loop."""
    coordinator = getattr(consumer, "_coordinator", None)
    return getattr(coordinator, "_pending_exception", None)


def stop_on_group_error(exc: BaseException, settings: Settings) -> NoReturn:
    """Log the one line for ``exc`` and end the process at once with its exit code (the
    worker holds no partitions and owes no commit; a graceful stop could wait on the
    stopped coordination)."""
    line, code = group_error_line(exc, settings)
    log.critical("feedamp worker: %s", line)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(code)


class QuietFatalJoin(logging.Filter):
    """Drops aiokafka's own "Attempt to join group failed due to fatal error" record:
    :func:`stop_on_group_error` says it once, with the setting to change."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the record this filter exists to drop."""
        return not str(record.msg).startswith("Attempt to join group failed due to fatal")
