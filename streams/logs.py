"""Log output: plain text by default, one JSON object a line with ``FEEDAMP_LOG_FORMAT=json``.

A JSON line has ``ts`` (ISO-8601, UTC, milliseconds), ``level``, ``logger`` and
``message``, plus ``exception`` (the formatted traceback) when one was logged. Every
``feedamp`` command calls :func:`configure_logging`; the Faust worker, which sets up
logging itself, gets the same configuration through :func:`logging_config`.
"""

from __future__ import annotations

import logging
import logging.config
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "FORMATS",
    "JsonFormatter",
    "configure_logging",
    "log_format",
    "logging_config",
    "quiet_clients",
]

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as compact JSON (newlines inside values are escaped)."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def log_format(env: Mapping[str, str] | None = None) -> str:
    """``FEEDAMP_LOG_FORMAT`` (``text`` or ``json``); ValueError naming it otherwise."""
    env = os.environ if env is None else env
    value = (env.get("FEEDAMP_LOG_FORMAT") or "text").strip().lower()
    if value not in FORMATS:
        raise ValueError(f"FEEDAMP_LOG_FORMAT must be text or json, got {value!r}")
    return value


def logging_config(fmt: str, level: int | str = logging.INFO) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` configuration: one stderr handler, ``fmt``."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if fmt == "json" else {"format": TEXT_FORMAT}
    )
    level = logging.getLevelName(level) if isinstance(level, int) else level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["default"]},
    }


def quiet_clients() -> None:
    """Keep the Kafka client's routine INFO messages (subscriptions, coordinators) out of
    the output of one-shot commands; warnings still show."""
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def configure_logging(level: int | str = logging.INFO, fmt: str | None = None) -> str:
    """Set up the root logger for a command; return the format used."""
    fmt = fmt or log_format()
    logging.config.dictConfig(logging_config(fmt, level))
    return fmt
