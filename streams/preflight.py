"""Connection checks and one-line operator errors.

Every command that talks to Redis or Kafka first checks the address it was given, with a
bound on the time it waits (a few seconds, never a client's 40 s request timeout), and a
failure becomes an :class:`~feedamp.config.OperatorError` (defined with the settings, so
that the Kafka helpers raise it too): one line naming the setting and the address
(``cannot reach Redis at REDIS_URL=redis://127.0.0.1:1/0: connection refused``), never a
traceback. The password of a URL is never printed.

:func:`describe` turns an error raised later, while the command runs (a server that went
away), into the same kind of line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

from aiokafka.errors import KafkaError
from feedamp.config import OperatorError, Settings
from feedamp.kafka.config import kafka_client_kwargs
from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = [
    "CHECK_TIMEOUT",
    "OperatorError",
    "check_kafka",
    "check_redis",
    "describe",
    "parse_redis_url",
    "redis_address",
]

#: How long a check waits for an answer (seconds).
CHECK_TIMEOUT = 3.0


def redis_address(url: str) -> str:
    """``REDIS_URL=<url without its password>``."""
    try:
        parts = urlsplit(url)
        if parts.password:
            netloc = parts.netloc.rsplit("@", 1)[1]
            user = f"{parts.username}:***@" if parts.username else ":***@"
            url = parts._replace(netloc=user + netloc).geturl()
    except ValueError:
        pass
    return f"REDIS_URL={url}"


def kafka_address(settings: Settings) -> str:
    """``KAFKA_BOOTSTRAP_SERVERS=<servers>``."""
    return f"KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = text.lower()
    if "refused" in low or "error 111 " in low or "connect call failed" in low:
        return "connection refused"
    if "name or service not known" in low or "nodename nor servname" in low:
        return "unknown host"
    return text


def parse_redis_url(url: str) -> None:
    """OperatorError naming ``REDIS_URL`` when it is not a Redis URL."""
    _redis_client(url, 1.0)


def _redis_client(url: str, timeout: float) -> Redis:
    try:
        return Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except ValueError as exc:
        if "scheme" in str(exc):
            raise OperatorError(
                f"{redis_address(url)}: not a Redis URL (it must start with redis://, "
                "rediss:// or unix://, e.g. redis://localhost:6379/0)"
            ) from None
        raise OperatorError(f"{redis_address(url)}: {exc}") from None


async def check_redis(settings: Settings, timeout: float = CHECK_TIMEOUT) -> None:
    """PING Redis at ``settings.redis_url`` within ``timeout``; OperatorError otherwise."""
    redis = _redis_client(settings.redis_url, timeout)
    where = f"cannot reach Redis at {redis_address(settings.redis_url)}"
    try:
        await asyncio.wait_for(redis.ping(), timeout + 1)
    except TimeoutError:
        raise OperatorError(
            f"{where}: no answer within {timeout:g} s (is that address a Redis server?)"
        ) from None
    except RedisError as exc:
        text = _reason(exc)
        if "timeout" in text.lower():
            text = f"no answer within {timeout:g} s (is that address a Redis server?)"
        raise OperatorError(f"{where}: {text}") from None
    except OSError as exc:
        raise OperatorError(f"{where}: {_reason(exc)}") from None
    finally:
        with contextlib.suppress(Exception):
            await redis.aclose()


async def check_kafka(settings: Settings, timeout: float = CHECK_TIMEOUT) -> None:
    """Fetch the cluster metadata from ``KAFKA_BOOTSTRAP_SERVERS`` within ``timeout``;
    OperatorError otherwise. Bounds the wait a client would otherwise spend on an address
    that accepts connections but does not speak Kafka (40 s)."""
    from aiokafka.client import AIOKafkaClient

    where = f"cannot reach Kafka at {kafka_address(settings)}"
    kwargs = kafka_client_kwargs(settings)
    client = AIOKafkaClient(**kwargs, request_timeout_ms=int(timeout * 1000))
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # its own "Unable connect" line would be a second one
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
    except TimeoutError:
        raise OperatorError(
            f"{where}: no answer within {timeout:g} s (is that address a Kafka broker?)"
        ) from None
    except KafkaError as exc:
        text = _reason(exc)
        if "Unable to bootstrap" in text:
            text = await _tcp_reason(settings.kafka_bootstrap_servers, timeout)
        raise OperatorError(f"{where}: {text}") from None
    except OSError as exc:
        raise OperatorError(f"{where}: {_reason(exc)}") from None
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        quiet.setLevel(level)


async def _tcp_reason(servers: str, timeout: float) -> str:
    """Why no bootstrap server answered: the first server's TCP connect error, else that
    it accepts connections but does not answer as a Kafka broker."""
    first = servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    except ValueError:
        return f"not host:port: {first!r}"
    except (OSError, TimeoutError) as exc:
        return _reason(exc) if str(exc) else "connection timed out"
    writer.close()
    return "it accepts connections but does not answer as a Kafka broker"


async def check(settings: Settings, needs: tuple[str, ...]) -> None:
    """Run the checks ``needs`` names (``"redis"``, ``"kafka"``) together; raise the
    first failure."""
    checks = {"redis": check_redis, "kafka": check_kafka}
    results = await asyncio.gather(*(checks[n](settings) for n in needs), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def describe(exc: BaseException, settings: Settings | None) -> str | None:
    """One line for an error from Redis or Kafka met while a command ran; None for
    anything else (a bug: its traceback is worth showing)."""
    if isinstance(exc, OperatorError):
        return str(exc)
    if isinstance(exc, RedisError):
        where = redis_address(settings.redis_url) if settings else "?"
        return f"Redis at {where}: {_reason(exc)}"
    if isinstance(exc, KafkaError):
        where = kafka_address(settings) if settings else "?"
        return f"Kafka at {where}: {_reason(exc)}"
    return None
